// The E2B SDK's view of envd: the operations of issue 20 (and ANCHORS.md),
// each beside a baseline measured in this same run, interleaved with it so
// that machine noise hits both alike.
// Usage: node bench.mjs [path/to/envd] [--json] [--runs N]
//   prints a table of medians, or with --json the rows as one JSON line
//   (`wrenn bench envd` merges them into its own table).
//
// envd and every baseline process run with the same clean HOME, so that a
// login shell's profile costs the same on both sides (as for a new user).
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Sandbox } from 'e2b'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const json = args.includes('--json')
const runsAt = args.indexOf('--runs')
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 60
const positional = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs')
const envdBin = positional[0] || join(here, '..', '..', 'bin', 'envd')

const freePort = () => new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)) }) })
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const p95 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)] }
const time = async (f) => { const t = performance.now(); await f(); return performance.now() - t }
const say = (m) => { if (!json) process.stderr.write(m + '\n') }
const statusKB = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
const waitHealthy = async (u) => {
  for (let i = 0; i < 200; i++) { try { const r = await fetch(u); await r.arrayBuffer(); return } catch {} await new Promise((r) => setTimeout(r, 25)) }
  throw new Error(`${u} did not answer`)
}

const dir = mkdtempSync(join(tmpdir(), 'wrenn-sdk-bench-'))
const home = join(dir, 'home')
spawnSync('mkdir', ['-p', home])
const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, LANG: 'C.UTF-8' }

// The plain Node HTTP server the transfers are compared with: it writes a
// request body into a file and serves a file, nothing else, in its own
// process as envd is.
const plainSrc = `
const { createServer } = require('node:http'); const fs = require('node:fs'); const { pipeline } = require('node:stream')
createServer((req, res) => {
  const u = new URL(req.url, 'http://x'); const p = u.searchParams.get('path')
  if (req.method === 'POST') pipeline(req, fs.createWriteStream(p), (err) => { res.statusCode = err ? 500 : 200; res.end('[]') })
  else if (req.method === 'GET' && p) { const st = fs.statSync(p); res.setHeader('Content-Length', st.size); pipeline(fs.createReadStream(p), res, () => {}) }
  else res.end()
}).listen(Number(process.argv[1]), '127.0.0.1')`
const plainPort = await freePort()
const plain = spawn(process.execPath, ['-e', plainSrc, String(plainPort)], { stdio: 'ignore', env })
const plainUrl = `http://127.0.0.1:${plainPort}`

// A Connect server that does no work: it answers a command with start and
// end at once, and a PTY with the burst's bytes, pre-encoded in 256 KB
// messages. The SDK's time against it is the SDK's own share (it parses
// JSON and base64 in script), the floor under any envd.
const noopSrc = `
const { createServer } = require('node:http')
const env = (flags, obj) => { const j = Buffer.from(JSON.stringify(obj)); const b = Buffer.alloc(5 + j.length); b[0] = flags; b.writeUInt32BE(j.length, 1); j.copy(b, 5); return b }
const burst = Buffer.from(require('node:crypto').randomBytes(Number(process.argv[2]) * 3 / 4).toString('base64'))
const chunks = []
for (let i = 0; i < burst.length; i += 256 << 10) chunks.push(env(0, { event: { data: { pty: burst.subarray(i, i + (256 << 10)).toString('base64') } } }))
createServer((req, res) => {
  let body = []
  req.on('data', (d) => body.push(d)).on('end', () => {
    if (req.url.endsWith('/Start')) {
      res.setHeader('Content-Type', 'application/connect+json')
      res.write(env(0, { event: { start: { pid: 4242 } } }))
      if (Buffer.concat(body).includes('"pty"')) for (const c of chunks) res.write(c)
      res.write(env(0, { event: { end: { exitCode: 0, exited: true, status: 'exit status 0' } } }))
      res.end(env(2, {}))
    } else { res.setHeader('Content-Type', 'application/json'); res.end('{}') }
  })
}).listen(Number(process.argv[1]), '127.0.0.1')`

const port = await freePort()
const envd = spawn(envdBin, ['--local', '--port', String(port)], { stdio: 'ignore', env })
const url = `http://127.0.0.1:${port}`
const burst = 27_000_000
const noopPort = await freePort()
const noopServer = spawn(process.execPath, ['-e', noopSrc, String(noopPort), String(burst)], { stdio: 'ignore' })
const noopUrl = `http://127.0.0.1:${noopPort}`
const rows = []

try {
  await waitHealthy(`${url}/health`)
  await waitHealthy(plainUrl)
  await waitHealthy(noopUrl)
  const sbx = await Sandbox.create({ debug: true, sandboxUrl: url })
  const noop = await Sandbox.create({ debug: true, sandboxUrl: noopUrl })
  rows.push({ metric: 'envd resident memory, idle', wrenn: `${(statusKB(envd.pid, 'VmRSS') / 1024).toFixed(1)} MB`, baseline: '', ratio: '', target: 'E2B envd: 11.5 MB' })

  say('commands.run…')
  for (let i = 0; i < 5; i++) { await sbx.commands.run('true'); spawnSync('/bin/bash', ['-l', '-c', 'true'], { env }) }
  const run = [], spawnBash = [], floor = []
  for (let i = 0; i < runs; i++) {
    run.push(await time(() => sbx.commands.run('true')))
    spawnBash.push(await time(async () => { if (spawnSync('/bin/bash', ['-l', '-c', 'true'], { env }).status !== 0) throw new Error('bash failed') }))
    floor.push(await time(() => noop.commands.run('true')))
  }
  rows.push({ metric: `commands.run('true') round trip (median of ${runs})`, wrenn: `${median(run).toFixed(2)} ms`, baseline: `spawn bash -l -c true: ${median(spawnBash).toFixed(2)} ms`, ratio: `${(median(run) / median(spawnBash)).toFixed(2)}×`, target: '≤ 1.2× (E2B envd: 1.53×)' })
  rows.push({ metric: `commands.run('true') round trip (p95 of ${runs})`, wrenn: `${p95(run).toFixed(2)} ms`, baseline: `spawn bash -l -c true: ${p95(spawnBash).toFixed(2)} ms`, ratio: '', target: '' })
  rows.push({ metric: '  the SDK\'s own share: the same call to a no-op server', wrenn: '', baseline: `${median(floor).toFixed(2)} ms`, ratio: '', target: '' })

  say('files…')
  const size = 64 << 20
  const data = new Uint8Array(size).map((_, i) => (i * 31 + (i >> 13)) & 0xff)
  const target = join(dir, 'blob.bin')
  const plainTarget = join(dir, 'plain.bin')
  const w = [], wBase = [], r = [], rBase = []
  const mbps = (ms) => size / 1e6 / (ms / 1000)
  for (let i = 0; i < 5; i++) {
    // Every upload makes a new file, deleted after it is timed, on both
    // sides: freeing a large file's blocks is no part of the transfer.
    w.push(mbps(await time(() => sbx.files.write(target, data))))
    wBase.push(mbps(await time(async () => {
      const res = await fetch(`${plainUrl}/?path=${encodeURIComponent(plainTarget)}`, { method: 'POST', body: data })
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`plain upload ${res.status}`)
    })))
    let got
    r.push(mbps(await time(async () => { got = await sbx.files.read(target, { format: 'bytes' }) })))
    if (got.length !== size) throw new Error(`read ${got.length} bytes`)
    rBase.push(mbps(await time(async () => {
      const res = await fetch(`${plainUrl}/?path=${encodeURIComponent(target)}`)
      if ((await res.arrayBuffer()).byteLength !== size) throw new Error('plain download short')
    })))
    rmSync(target)
    rmSync(plainTarget)
  }
  rows.push({ metric: 'files.write 64 MiB (SDK default: multipart)', wrenn: `${median(w).toFixed(0)} MB/s`, baseline: `plain Node HTTP server into a file: ${median(wBase).toFixed(0)} MB/s`, ratio: (median(w) / median(wBase)).toFixed(2), target: '≥ 0.8 (E2B envd: 0.43)' })
  rows.push({ metric: 'files.read 64 MiB as bytes (SDK default)', wrenn: `${median(r).toFixed(0)} MB/s`, baseline: `plain Node HTTP server from a file: ${median(rBase).toFixed(0)} MB/s`, ratio: (median(r) / median(rBase)).toFixed(2), target: '≥ 0.9 (E2B envd: 2.0 MB/s)' })

  say('pty…')
  const script = `head -c ${burst * 3 / 4} /dev/urandom | base64 -w0`
  const pty = [], ptyBase = []
  let lost = 0, baseLost = 0
  for (let i = 0; i < 3; i++) {
    let got = 0
    const t = await time(async () => {
      const h = await sbx.pty.create({ cols: 200, rows: 50, onData: (d) => { got += d.length } })
      await sbx.pty.sendInput(h.pid, new TextEncoder().encode(`stty raw -echo; ${script}; exit\n`))
      await h.wait().catch(() => {})
    })
    pty.push(got / 1e6 / (t / 1000))
    if (got < burst) lost += burst - got
    // Baseline: the same output through a local PTY (script(1) relays it).
    let n = 0
    const tb = await time(() => new Promise((resolve, reject) => {
      const c = spawn('script', ['-q', '-e', '-c', `stty raw -echo; ${script}`, '/dev/null'], { env, stdio: ['ignore', 'pipe', 'inherit'] })
      c.stdout.on('data', (d) => { n += d.length })
      c.on('exit', (code) => code === 0 ? resolve() : reject(new Error(`script exited ${code}`)))
    }))
    ptyBase.push(n / 1e6 / (tb / 1000))
    if (n < burst) baseLost += burst - n
  }
  const ceiling = []
  for (let i = 0; i < 3; i++) {
    let got = 0
    const t = await time(async () => {
      const h = await noop.pty.create({ cols: 200, rows: 50, onData: (d) => { got += d.length } })
      await h.wait().catch(() => {})
    })
    if (got !== burst) throw new Error(`no-op server burst: ${got} bytes`)
    ceiling.push(got / 1e6 / (t / 1000))
  }
  rows.push({ metric: `PTY burst, ${burst / 1e6} MB of base64 (median of 3)`, wrenn: `${median(pty).toFixed(1)} MB/s, ${lost ? `LOST ${lost} bytes` : 'nothing lost'}`, baseline: `local PTY via script(1): ${median(ptyBase).toFixed(1)} MB/s${baseLost ? `, lost ${baseLost}` : ''}`, ratio: (median(pty) / median(ptyBase)).toFixed(2), target: '≥ 30 MB/s, nothing lost (E2B envd: 12 MB/s)' })
  rows.push({ metric: '  the SDK\'s ceiling: the same bytes from a no-op server', wrenn: '', baseline: `${median(ceiling).toFixed(1)} MB/s`, ratio: '', target: '' })

  rows.push({ metric: 'envd resident memory after the runs (peak)', wrenn: `${(statusKB(envd.pid, 'VmRSS') / 1024).toFixed(1)} MB (${(statusKB(envd.pid, 'VmHWM') / 1024).toFixed(1)} MB)`, baseline: '', ratio: '', target: 'E2B envd: ~20 MB' })
} finally {
  envd.kill('SIGTERM')
  plain.kill('SIGTERM')
  noopServer.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
}

if (json) {
  console.log(JSON.stringify(rows))
} else {
  const sdk = JSON.parse(readFileSync(join(here, 'node_modules/e2b/package.json'))).version
  const head = { metric: 'operation', wrenn: 'wrenn envd', baseline: 'baseline (same run)', ratio: 'ratio', target: 'target (reference: ANCHORS.md)' }
  const keys = Object.keys(head)
  const widths = keys.map((k) => Math.max(...[head, ...rows].map((r) => r[k].length)))
  const line = (r) => keys.map((k, i) => r[k].padEnd(widths[i])).join('  ')
  console.log(`\nE2B SDK ${sdk} (Node ${process.versions.node}) against Wrenn envd (local mode, loopback; medians)`)
  console.log(line(head))
  for (const r of rows) console.log(line(r))
}
