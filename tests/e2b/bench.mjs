// The E2B SDK's view of envd: the operations ANCHORS.md measured against
// E2B's own envd, each beside a baseline taken in this same run.
// Usage: node bench.mjs [path/to/envd]   (prints a table; medians)
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Sandbox } from 'e2b'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const envdBin = process.argv[2] || join(root, 'bin', 'envd')
const runs = 20

const freePort = () => new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)) }) })
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const time = async (f) => { const t = performance.now(); await f(); return performance.now() - t }

const port = await freePort()
const envd = spawn(envdBin, ['--local', '--port', String(port)], { stdio: 'ignore' })
const url = `http://127.0.0.1:${port}`
for (let i = 0; i < 100; i++) { try { if ((await fetch(`${url}/health`)).status === 204) break } catch {} await new Promise((r) => setTimeout(r, 50)) }
const sbx = await Sandbox.create({ debug: true, sandboxUrl: url })
const dir = mkdtempSync(join(tmpdir(), 'wrenn-sdk-bench-'))
const rows = []

try {
  for (let i = 0; i < 5; i++) await sbx.commands.run('true')
  const run = [], spawnBash = [], spawnTrue = []
  for (let i = 0; i < runs; i++) {
    run.push(await time(() => sbx.commands.run('true')))
    spawnBash.push(await time(async () => spawnSync('/bin/bash', ['-l', '-c', 'true'])))
    spawnTrue.push(await time(async () => spawnSync('true')))
  }
  rows.push(['commands.run(\'true\') round trip', `${median(run).toFixed(1)} ms`, `spawn bash -l -c true: ${median(spawnBash).toFixed(1)} ms; true: ${median(spawnTrue).toFixed(1)} ms`, 'E2B envd: 13.5 ms'])

  const size = 64 << 20
  const data = new Uint8Array(size).map((_, i) => (i * 31 + (i >> 13)) & 0xff)
  const target = join(dir, 'blob.bin')
  const w = [], octet = [], r = [], identity = []
  for (let i = 0; i < 5; i++) {
    w.push(size / 1e6 / ((await time(() => sbx.files.write(target, data))) / 1000))
    rmSync(target)
    octet.push(size / 1e6 / ((await time(async () => {
      const res = await fetch(`${url}/files?path=${encodeURIComponent(target)}`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: data })
      if (res.status !== 200) throw new Error(`upload ${res.status}`)
    })) / 1000))
    let got
    r.push(size / 1e6 / ((await time(async () => { got = await sbx.files.read(target, { format: 'bytes' }) })) / 1000))
    if (got.length !== size) throw new Error(`read ${got.length} bytes`)
    identity.push(size / 1e6 / ((await time(async () => {
      const res = await fetch(`${url}/files?path=${encodeURIComponent(target)}`, { headers: { 'Accept-Encoding': 'identity' } })
      await res.arrayBuffer()
    })) / 1000))
    rmSync(target)
  }
  rows.push(['files.write 64 MiB (SDK default)', `${median(w).toFixed(0)} MB/s`, `octet-stream POST: ${median(octet).toFixed(0)} MB/s`, 'E2B envd: 138 MB/s'])
  rows.push(['files.read 64 MiB as bytes (SDK default)', `${median(r).toFixed(0)} MB/s`, `GET, Accept-Encoding identity: ${median(identity).toFixed(0)} MB/s`, 'E2B envd: 2.0 MB/s'])

  const burst = 27_000_000
  let got = 0
  const t = await time(async () => {
    const h = await sbx.pty.create({ cols: 200, rows: 50, onData: (d) => { got += d.length } })
    await sbx.pty.sendInput(h.pid, new TextEncoder().encode(`stty raw -echo; head -c ${burst * 3 / 4} /dev/urandom | base64 -w0; exit\n`))
    await h.wait().catch(() => {})
  })
  rows.push([`PTY burst, ${(burst / 1e6).toFixed(0)} MB of base64`, `${(got / 1e6 / (t / 1000)).toFixed(1)} MB/s, ${got >= burst ? 'nothing lost' : `LOST ${burst - got} bytes`}`, '', 'E2B envd: 12 MB/s, nothing lost'])

  const status = readFileSync(`/proc/${envd.pid}/status`, 'utf8')
  rows.push(['envd resident memory after the runs', `${(Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024).toFixed(1)} MB`, '', 'E2B envd: ~20 MB'])
} finally {
  envd.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
}

const widths = [0, 1, 2, 3].map((i) => Math.max(...[['operation', 'wrenn envd', 'baseline (same run)', 'reference (ANCHORS.md, not this run)'], ...rows].map((r) => r[i].length)))
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')
console.log(`\nE2B SDK ${JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'node_modules/e2b/package.json'))).version} against Wrenn envd (local mode, loopback; medians)`)
console.log(line(['operation', 'wrenn envd', 'baseline (same run)', 'reference (ANCHORS.md, not this run)']))
for (const r of rows) console.log(line(r))
