// The JS half of `wrenn-bench sdks`: the operations the Go SDK is timed on,
// through the official E2B SDK against the same wrenn dev (E2B_API_URL,
// E2B_SANDBOX_URL, E2B_API_KEY). Prints one JSON object of samples on
// standard output; wrenn-bench prints the table beside the Go SDK's.
import { Sandbox } from 'e2b'

for (const v of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[v]) { console.error(`${v} is not set: run this through 'wrenn-bench sdks'`); process.exit(2) }
}
const creates = Number(process.env.WRENN_BENCH_CREATES || 5)
const runs = Number(process.env.WRENN_BENCH_RUNS || 20)
const fileRuns = Number(process.env.WRENN_BENCH_FILE_RUNS || 3)
const fileMiB = Number(process.env.WRENN_BENCH_FILE_MIB || 64)
const ptyFile = process.env.WRENN_BENCH_PTY_FILE // made by the Go side in the sandbox it names
const out = { create_first_run_ms: [], run_true_ms: [], write_mbps: [], read_mbps: [], pty_mbps: [] }

for (let i = 0; i < creates; i++) {
  const t = performance.now()
  const s = await Sandbox.create('minimal')
  await s.commands.run('true')
  out.create_first_run_ms.push(performance.now() - t)
  await s.kill()
}

const sbx = await Sandbox.create('minimal', { timeoutMs: 600_000 })
try {
  await sbx.commands.run('true')
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    await sbx.commands.run('true')
    out.run_true_ms.push(performance.now() - t)
  }
  const data = new Uint8Array(fileMiB << 20)
  for (let off = 0; off < data.length; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536))
  for (let i = 0; i < fileRuns; i++) {
    let t = performance.now()
    await sbx.files.write('/tmp/bench.bin', data)
    out.write_mbps.push(data.length / 1e6 / ((performance.now() - t) / 1000))
    t = performance.now()
    const got = await sbx.files.read('/tmp/bench.bin', { format: 'bytes' })
    out.read_mbps.push(got.length / 1e6 / ((performance.now() - t) / 1000))
    if (got.length !== data.length) throw new Error(`read ${got.length} bytes of ${data.length}`)
  }
  if (ptyFile) {
    await sbx.commands.run(`head -c ${Number(process.env.WRENN_BENCH_PTY_BYTES)} /dev/urandom | base64 > ${ptyFile}`)
    const size = Number((await sbx.commands.run(`wc -c < ${ptyFile}`)).stdout.trim())
    for (let i = 0; i < fileRuns; i++) {
      let got = 0
      const term = await sbx.pty.create({ cols: 200, rows: 50, onData: (d) => { got += d.length } })
      const t = performance.now()
      await sbx.pty.sendInput(term.pid, new TextEncoder().encode(`cat ${ptyFile}; exit\n`))
      await term.wait().catch(() => {})
      out.pty_mbps.push(size / 1e6 / ((performance.now() - t) / 1000))
      if (got < size) throw new Error(`PTY delivered ${got} bytes of ${size}`)
    }
  }
} finally {
  await sbx.kill()
}
console.log(JSON.stringify(out))
