// The official E2B SDK, in debug mode, against Wrenn's envd: started here in
// --local mode, or, with WRENN_E2B_SANDBOX_URL, one already running inside a
// sandbox (tests/e2e drives that against a real guest). Every call goes over
// the real wire to a real envd.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Sandbox, CommandExitError, FileType, FilesystemEventType } from 'e2b'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const envdBin = process.env.WRENN_ENVD_BIN || join(root, 'bin', 'envd')

let envd, sbx, work

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

async function waitHealthy(url) {
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${url}/health`)
      if (r.status === 204) return
    } catch {}
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`envd at ${url} did not become healthy`)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

before(async () => {
  let url = process.env.WRENN_E2B_SANDBOX_URL
  if (!url) {
    const port = await freePort()
    envd = spawn(envdBin, ['--local', '--port', String(port)], { stdio: ['ignore', 'ignore', 'inherit'] })
    url = `http://127.0.0.1:${port}`
  }
  await waitHealthy(url)
  sbx = await Sandbox.create({ debug: true, sandboxUrl: url })
  // The working directory lives wherever envd runs, so it is made through it.
  work = `/tmp/wrenn-e2b-${Math.random().toString(36).slice(2)}`
  assert.equal(await sbx.files.makeDir(work), true)
})

after(async () => {
  await sbx?.files.remove(work).catch(() => {})
  if (envd) {
    envd.kill('SIGTERM')
    await new Promise((r) => envd.once('exit', r))
  }
})

test('commands.run returns stdout, stderr and exit code', async () => {
  const r = await sbx.commands.run('echo hello; echo oops >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'hello\n')
  assert.equal(r.stderr, 'oops\n')
  await assert.rejects(sbx.commands.run('exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3)
})

test('commands.run honours envs and cwd', async () => {
  const r = await sbx.commands.run('echo "$FOO" && pwd', { envs: { FOO: 'bar baz' }, cwd: work })
  assert.equal(r.stdout, `bar baz\n${work}\n`)
  await assert.rejects(sbx.commands.run('true', { cwd: join(work, 'missing') }))
})

test('background command: list, kill', async () => {
  const h = await sbx.commands.run('sleep 60', { background: true })
  const list = await sbx.commands.list()
  assert.ok(list.some((p) => p.pid === h.pid), 'listed')
  assert.equal(await sbx.commands.kill(h.pid), true)
  const err = await h.wait().catch((e) => e)
  assert.ok(err instanceof CommandExitError, 'killed command rejects')
  assert.match(err.error, /signal: killed/)
  assert.equal(await sbx.commands.kill(h.pid), false, 'killing a gone process reports false')
})

test('stdin: send and close', async () => {
  const h = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'line one\n')
  await h.sendStdin('line two\n')
  await sbx.commands.closeStdin(h.pid)
  const r = await h.wait()
  assert.equal(r.stdout, 'line one\nline two\n')
})

test('commands.connect follows a running process', async () => {
  const h = await sbx.commands.run('sleep 0.5; for i in 1 2 3; do echo n$i; sleep 0.2; done', { background: true })
  const seen = []
  const c = await sbx.commands.connect(h.pid, { onStdout: (d) => seen.push(d) })
  const r = await c.wait()
  assert.equal(r.exitCode, 0)
  assert.match(seen.join(''), /n1\nn2\nn3\n/)
})

test('files: write and read text and bytes', async () => {
  const p = join(work, 'deep', 'dir', 'hello.txt')
  const info = await sbx.files.write(p, 'hello world')
  assert.equal(info.path, p)
  assert.equal(await sbx.files.read(p), 'hello world')
  const bytes = new Uint8Array(300000).map((_, i) => (i * 7) & 0xff)
  await sbx.files.write(join(work, 'bin.dat'), bytes)
  const back = await sbx.files.read(join(work, 'bin.dat'), { format: 'bytes' })
  assert.deepEqual(Buffer.from(back), Buffer.from(bytes))
  await assert.rejects(sbx.files.read(join(work, 'nope.txt')), /not exist|not found/i)
})

test('files: refuses device files instead of streaming forever', async () => {
  await assert.rejects(sbx.files.read('/dev/zero'), /not a regular file/)
})

test('files: list with depth, exists, rename, remove, makeDir, getInfo', async () => {
  const d = join(work, 'tree')
  assert.equal(await sbx.files.makeDir(join(d, 'a', 'b')), true)
  assert.equal(await sbx.files.makeDir(join(d, 'a', 'b')), false)
  await sbx.files.write(join(d, 'a', 'b', 'f.txt'), 'x')
  await sbx.files.write(join(d, 'top.txt'), 'y')
  const one = await sbx.files.list(d)
  assert.deepEqual(one.map((e) => e.name).sort(), ['a', 'top.txt'])
  const deep = await sbx.files.list(d, { depth: 3 })
  assert.deepEqual(deep.map((e) => e.path).sort(), [join(d, 'a'), join(d, 'a', 'b'), join(d, 'a', 'b', 'f.txt'), join(d, 'top.txt')])
  const dirEntry = deep.find((e) => e.name === 'a')
  assert.equal(dirEntry.type, FileType.DIR)
  assert.equal(await sbx.files.exists(join(d, 'top.txt')), true)
  assert.equal(await sbx.files.exists(join(d, 'missing')), false)
  const moved = await sbx.files.rename(join(d, 'top.txt'), join(d, 'moved', 'top2.txt'))
  assert.equal(moved.path, join(d, 'moved', 'top2.txt'))
  assert.equal(await sbx.files.exists(join(d, 'top.txt')), false)
  const info = await sbx.files.getInfo(join(d, 'moved', 'top2.txt'))
  assert.equal(info.type, FileType.FILE)
  assert.equal(info.size, 1)
  assert.equal(info.permissions, '-rw-r--r--')
  await sbx.files.remove(d)
  assert.equal(await sbx.files.exists(d), false)
})

test('files: watchDir reports creations and writes', async () => {
  const d = join(work, 'watched')
  await sbx.files.makeDir(d)
  const events = []
  const w = await sbx.files.watchDir(d, (e) => events.push(e))
  await sbx.files.write(join(d, 'new.txt'), 'data')
  await until('watch events', () => events.some((e) => e.name === 'new.txt'))
  await w.stop()
  assert.ok(events.every((e) => typeof e.type === 'string'))
  const rec = []
  const w2 = await sbx.files.watchDir(d, (e) => rec.push(e), { recursive: true })
  await sbx.files.makeDir(join(d, 'sub'))
  await sleep(200)
  await sbx.files.write(join(d, 'sub', 'inner.txt'), 'z')
  await until('recursive events', () => rec.some((e) => e.name === join('sub', 'inner.txt')))
  await w2.stop()
})

// Issue 15, bug 4: every upload shows a write on its target, and the
// temporary file it is written through never appears.
test('files: watchDir sees a write for every upload, and no temporary names', async () => {
  const d = join(work, 'uploads-watched')
  await sbx.files.makeDir(d)
  const events = []
  const w = await sbx.files.watchDir(d, (e) => events.push(e))
  const writes = (name) => events.filter((e) => e.name === name && e.type === FilesystemEventType.WRITE).length
  await sbx.files.write(join(d, 'a.txt'), 'first')
  await until('write event for a new file', () => writes('a.txt') >= 1)
  await sbx.files.write(join(d, 'a.txt'), 'second')
  await until('write event for an overwrite', () => writes('a.txt') >= 2)
  await sbx.files.write(join(d, 'b.bin'), new Uint8Array(3 << 20).fill(7), { useOctetStream: true })
  await until('write event for an octet-stream upload', () => writes('b.bin') >= 1)
  await sbx.files.write([{ path: join(d, 'c.txt'), data: 'c' }, { path: join(d, 'e.txt'), data: 'e' }])
  await until('write events for a multi-file upload', () => writes('c.txt') >= 1 && writes('e.txt') >= 1)
  await w.stop()
  const names = new Set(events.map((e) => e.name))
  assert.deepEqual([...names].sort(), ['a.txt', 'b.bin', 'c.txt', 'e.txt'], `events: ${JSON.stringify(events)}`)
  assert.deepEqual((await sbx.files.list(d)).map((e) => e.name).sort(), ['a.txt', 'b.bin', 'c.txt', 'e.txt'])
})

// Issue 21, item 16: with user set, file operations have that user's
// permissions; a symlink planted by code running as that user does not lead
// anywhere the user may not write. "nobody" exists on a Debian host and in
// every Wrenn image; envd must run as root to act as it.
const asRoot = process.env.WRENN_E2B_SANDBOX_URL || process.getuid() === 0
test('files: a user cannot read root-only files or replace root files through symlinks', { skip: !asRoot && 'envd is not root' }, async () => {
  const d = join(work, 'perm')
  const rootOnly = join(d, 'rootonly')
  const root = { user: 'root' }
  await sbx.files.makeDir(rootOnly, root)
  await sbx.files.write(join(rootOnly, 'secret'), 'root secret', root)
  await sbx.files.write(join(rootOnly, 'victim.conf'), 'root content', root)
  await sbx.commands.run(`chmod 600 ${rootOnly}/secret && chmod 755 ${rootOnly} && chmod 1777 ${d} && chmod 755 ${work} && mkdir -m 700 ${d}/private`, root)
  const user = 'nobody'

  await assert.rejects(sbx.files.read(join(rootOnly, 'secret'), { user }), /403|permission denied/i)
  assert.equal(await sbx.files.read(join(rootOnly, 'victim.conf'), { user }), 'root content')
  // Guest code running as the user plants symlinks; the SDK then writes "as the user".
  await sbx.commands.run(`ln -s ${rootOnly}/victim.conf ${d}/config && ln -s ${rootOnly} ${d}/cfgdir`, { user })
  await assert.rejects(sbx.files.write(join(d, 'config'), 'pwned', { user }), /403|permission denied/i)
  await assert.rejects(sbx.files.write(join(d, 'cfgdir', 'victim.conf'), 'pwned', { user }), /403|permission denied/i)
  await assert.rejects(sbx.files.remove(join(d, 'cfgdir', 'victim.conf'), { user }), /permission/i)
  await assert.rejects(sbx.files.list(join(d, 'private'), { user }), /permission/i)
  assert.equal(await sbx.files.read(join(rootOnly, 'victim.conf'), root), 'root content')
  assert.deepEqual((await sbx.files.list(rootOnly, root)).map((e) => e.name).sort(), ['secret', 'victim.conf'])

  // What the user may do still works, and what it makes is its own.
  const mine = join(d, 'mine', 'deep', 'f.txt')
  const info = await sbx.files.write(mine, 'mine', { user })
  assert.equal(info.path, mine)
  assert.equal(await sbx.files.read(mine, { user }), 'mine')
  assert.equal((await sbx.files.getInfo(mine, { user })).owner, user)
  await sbx.files.rename(mine, join(d, 'mine', 'g.txt'), { user })
  assert.equal(await sbx.files.exists(join(d, 'mine', 'g.txt'), { user }), true)
  await sbx.files.remove(join(d, 'mine'), { user })
  assert.equal(await sbx.files.exists(join(d, 'mine')), false)
})

test('pty: create, input, resize, kill', async () => {
  const chunks = []
  const dec = new TextDecoder()
  const t = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => chunks.push(dec.decode(d)) })
  await sbx.pty.sendInput(t.pid, new TextEncoder().encode('echo $((6*7))\n'))
  await until('pty echo', () => chunks.join('').includes('42'))
  await sbx.pty.resize(t.pid, { cols: 100, rows: 40 })
  await sbx.pty.sendInput(t.pid, new TextEncoder().encode('stty size\n'))
  await until('resized', () => chunks.join('').includes('40 100'))
  assert.equal(await sbx.pty.kill(t.pid), true)
  await t.wait().catch(() => {})
  const list = await sbx.commands.list()
  assert.ok(!list.some((p) => p.pid === t.pid), 'killed pty is gone')
})

test('isRunning answers from /health', async () => {
  assert.equal(await sbx.isRunning(), true)
})
