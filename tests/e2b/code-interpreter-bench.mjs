// E2B's code-interpreter SDK against a running Wrenn with the
// code-interpreter image (`wrenn dev --code-interpreter`), configured by
// E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY:
//   - Sandbox.create() (template code-interpreter-v1) to the first
//     runCode('1+1') result, WRENN_BENCH_CREATES times (default 5);
//   - runCode('1+1') round trips on a running sandbox (WRENN_BENCH_RUNS,
//     default 50), beside commands.run('true') on the same sandbox in the
//     same run (the baseline).
// Prints a table with medians and 95th percentiles.
import { Sandbox } from '@e2b/code-interpreter'

for (const v of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[v]) { console.error(`${v} is not set: run this against a running wrenn dev --code-interpreter (set -a; . /var/lib/wrenn-dev/e2b.env; set +a)`); process.exit(2) }
}
const creates = Number(process.env.WRENN_BENCH_CREATES || 5)
const runs = Number(process.env.WRENN_BENCH_RUNS || 50)
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] }
const fmt = (xs) => `median ${pct(xs, 50).toFixed(1)} ms, p95 ${pct(xs, 95).toFixed(1)} ms`
const timed = async (n, fn) => { const out = []; for (let i = 0; i < n; i++) { const t = performance.now(); await fn(); out.push(performance.now() - t) } return out }

const cold = []
for (let i = 0; i < creates; i++) {
  const t = performance.now()
  const s = await Sandbox.create()
  try {
    const e = await s.runCode('1+1')
    if (e.text !== '2') throw new Error(`runCode('1+1') gave ${JSON.stringify(e.toJSON())}`)
    cold.push(performance.now() - t)
  } finally {
    await s.kill()
  }
}

const sbx = await Sandbox.create()
let code, cmd
try {
  await timed(5, async () => {
    const e = await sbx.runCode('1+1')
    if (e.text !== '2') throw new Error(`warm-up runCode('1+1') gave ${JSON.stringify(e.toJSON())}`)
  })
  await timed(5, () => sbx.commands.run('true'))
  // Interleaved, so both see the same machine.
  code = []
  cmd = []
  for (let i = 0; i < runs; i++) {
    let t = performance.now()
    const e = await sbx.runCode('1+1')
    code.push(performance.now() - t)
    if (e.text !== '2') throw new Error(`runCode('1+1') gave ${e.text}`)
    t = performance.now()
    await sbx.commands.run('true')
    cmd.push(performance.now() - t)
  }
} finally {
  await sbx.kill()
}

const rows = [
  [`Sandbox.create() → first runCode('1+1') result (${creates} runs)`, fmt(cold), '—'],
  [`runCode('1+1') round trip (${runs} runs)`, fmt(code), `commands.run('true'): ${fmt(cmd)}`],
]
const head = ['operation', 'result', 'baseline (same run, same sandbox)']
const widths = [0, 1, 2].map((i) => Math.max(...[head, ...rows].map((r) => r[i].length)))
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')
console.log(`\n@e2b/code-interpreter against Wrenn (template code-interpreter-v1)`)
console.log(line(head))
for (const r of rows) console.log(line(r))
