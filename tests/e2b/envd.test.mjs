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
import { Sandbox, CommandExitError, FileType } from 'e2b'

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
