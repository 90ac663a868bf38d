// The official E2B SDK against a whole Wrenn (control plane, sandbox proxy,
// agent) configured by environment variables only, as a user would:
// E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY from `wrenn dev`.
// tests/e2e starts the stack and runs this file; without those variables
// every test is skipped.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError, SandboxNotFoundError } from 'e2b'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY)
const skip = configured ? false : 'needs E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY of a running Wrenn (wrenn dev)'
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

test('a sandbox through its whole life', { skip, timeout: 300_000 }, async () => {
  const sbx = await Sandbox.create({ metadata: { suite: 'platform' }, envs: { FROM_CREATE: 'yes' } })
  try {
    // Commands: output, exit codes, environment, background, kill.
    const r = await sbx.commands.run('echo hello; echo $FROM_CREATE; echo oops >&2')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello\nyes\n')
    assert.equal(r.stderr, 'oops\n')
    await assert.rejects(sbx.commands.run('exit 7'), (e) => e instanceof CommandExitError && e.exitCode === 7)
    const bg = await sbx.commands.run('while true; do date +%s >> /tmp/ticks; sleep 1; done', { background: true })
    assert.ok(bg.pid > 0)
    const doomed = await sbx.commands.run('sleep 600', { background: true })
    assert.ok((await sbx.commands.list()).some((p) => p.pid === doomed.pid))
    assert.equal(await sbx.commands.kill(doomed.pid), true)
    await assert.rejects(doomed.wait())

    // Files: write, read, list, watch.
    await sbx.files.write('/tmp/data/a.txt', 'alpha')
    assert.equal(await sbx.files.read('/tmp/data/a.txt'), 'alpha')
    const big = new Uint8Array(8 << 20).map((_, i) => (i * 7) & 0xff)
    await sbx.files.write('/tmp/data/big.bin', big)
    const back = await sbx.files.read('/tmp/data/big.bin', { format: 'bytes' })
    assert.equal(back.length, big.length)
    assert.ok(Buffer.from(back).equals(Buffer.from(big)))
    const names = (await sbx.files.list('/tmp/data')).map((e) => e.name).sort()
    assert.deepEqual(names, ['a.txt', 'big.bin'])
    const events = []
    const watcher = await sbx.files.watchDir('/tmp/data', (ev) => events.push(ev))
    await sbx.files.write('/tmp/data/new.txt', 'new')
    for (let i = 0; i < 50 && !events.some((e) => e.name === 'new.txt'); i++) await sleep(100)
    await watcher.stop()
    assert.ok(events.some((e) => e.name === 'new.txt'), `watch events: ${JSON.stringify(events)}`)

    // A terminal: input, output, resize.
    let out = ''
    const dec = new TextDecoder()
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { out += dec.decode(d) } })
    await sbx.pty.resize(term.pid, { cols: 120, rows: 40 })
    await sbx.pty.sendInput(term.pid, new TextEncoder().encode('stty size; echo pty-$((6*7))\n'))
    for (let i = 0; i < 100 && !(out.includes('pty-42') && out.includes('40 120')); i++) await sleep(100)
    assert.ok(out.includes('pty-42') && out.includes('40 120'), `terminal output: ${JSON.stringify(out)}`)
    await sbx.pty.kill(term.pid)

    // Pause, then connect resumes it: the file and the background
    // process are still there, and the process is still running.
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.pause(), false) // already paused
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
    assert.equal(await again.files.read('/tmp/data/a.txt'), 'alpha')
    assert.ok((await again.commands.list()).some((p) => p.pid === bg.pid), 'background process listed after resume')
    const before = (await again.files.read('/tmp/ticks')).trim().split('\n').length
    await sleep(2500)
    const after = (await again.files.read('/tmp/ticks')).trim().split('\n').length
    assert.ok(after > before, `background process stopped ticking (${before} -> ${after})`)

    await again.setTimeout(120_000)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.ok(info.endAt.getTime() - Date.now() > 100_000, `endAt ${info.endAt}`)
    assert.deepEqual(info.metadata, { suite: 'platform' })

    const listed = await Sandbox.list({ query: { metadata: { suite: 'platform' } } }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
  } finally {
    assert.equal(await Sandbox.kill(sbx.sandboxId), true)
  }
  assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  const left = await Sandbox.list({ query: { metadata: { suite: 'platform' } } }).nextItems()
  assert.equal(left.length, 0)
  await assert.rejects(Sandbox.connect(sbx.sandboxId), SandboxNotFoundError)
})

test('snapshots: create, spawn from, list, delete', { skip, timeout: 300_000 }, async () => {
  const src = await Sandbox.create()
  try {
    await src.files.write('/home/user/state.txt', 'warm')
    const snap = await src.createSnapshot({ name: 'platform-warm' })
    assert.ok(snap.snapshotId)
    const clone = await Sandbox.create(snap.snapshotId)
    assert.equal(await clone.files.read('/home/user/state.txt'), 'warm')
    await clone.files.write('/home/user/state.txt', 'clone')
    assert.equal(await src.files.read('/home/user/state.txt'), 'warm')
    await clone.kill()
    const byName = await Sandbox.create('platform-warm')
    assert.equal(await byName.files.read('/home/user/state.txt'), 'warm')
    await byName.kill()
    const snaps = await Sandbox.listSnapshots().nextItems()
    assert.ok(snaps.some((s) => s.snapshotId === snap.snapshotId && s.names.includes('platform-warm')))
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), false)
  } finally {
    await src.kill()
  }
})

test('a gone sandbox is not running', { skip }, async () => {
  const sbx = await Sandbox.create()
  assert.equal(await sbx.isRunning(), true)
  await sbx.kill()
  assert.equal(await sbx.isRunning(), false)
})
