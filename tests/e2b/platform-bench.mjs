// The E2B SDK against a whole Wrenn (wrenn dev), configured by E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY: from a snapshot template,
// Sandbox.create() to the first commands.run('true') result (median of
// 10), and 10 creates at once (all must succeed). The baseline, in the
// same run, is commands.run('true') on a sandbox that already exists.
// `wrenn bench sdk` starts the stack and runs this; prints a table.
import { Sandbox } from 'e2b'

for (const v of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[v]) { console.error(`${v} is not set: run this through 'wrenn bench sdk', or against a running wrenn dev`); process.exit(2) }
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const runs = Number(process.env.WRENN_BENCH_RUNS || 10)
const concurrent = Number(process.env.WRENN_BENCH_CONCURRENT || 10)
const rows = []

const src = await Sandbox.create()
let snapshotId
try {
  await src.files.write('warm.txt', 'warm') // the default user's home: files are written with its permissions
  snapshotId = (await src.createSnapshot({ name: `bench-${Date.now()}` })).snapshotId

  const warm = []
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    await src.commands.run('true')
    warm.push(performance.now() - t)
  }

  const cold = []
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    const s = await Sandbox.create(snapshotId)
    await s.commands.run('true')
    cold.push(performance.now() - t)
    await s.kill()
  }
  rows.push([`Sandbox.create(snapshot) → first commands.run('true'), median of ${runs}`, `${median(cold).toFixed(0)} ms`, `commands.run('true') on a running sandbox: ${median(warm).toFixed(1)} ms`])

  const t0 = performance.now()
  const results = await Promise.allSettled(Array.from({ length: concurrent }, async () => {
    const t = performance.now()
    const s = await Sandbox.create(snapshotId)
    await s.commands.run('true')
    const took = performance.now() - t
    await s.kill()
    return took
  }))
  const total = performance.now() - t0
  const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value)
  const failed = results.filter((r) => r.status === 'rejected')
  rows.push([`${concurrent} concurrent creates from the snapshot → first run`, `${ok.length}/${concurrent} ok, all in ${total.toFixed(0)} ms, slowest ${Math.max(...ok).toFixed(0)} ms`, `median ${median(ok).toFixed(0)} ms`])
  for (const f of failed) console.error('failed:', f.reason?.message || f.reason)
  if (failed.length) process.exitCode = 1
} finally {
  await src.kill()
  if (snapshotId) await Sandbox.deleteSnapshot(snapshotId)
}

const head = ['operation', 'result', 'baseline (same run)']
const widths = [0, 1, 2].map((i) => Math.max(...[head, ...rows].map((r) => r[i].length)))
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')
console.log(`\nE2B SDK against wrenn dev (control plane, sandbox proxy, agent)`)
console.log(line(head))
for (const r of rows) console.log(line(r))
