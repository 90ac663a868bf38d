// Template builds through E2B's SDK against a whole Wrenn (wrenn dev with
// the base image), configured by E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY. Medians of WRENN_BENCH_RUNS (default 3) of:
// - the README's example built cold (skipCache) and cached (unchanged),
//   against the same steps run by hand with commands.run in a sandbox
//   from base (the baseline, same run);
// - Sandbox.create(template) to the first commands.run('true') result,
//   against the same from base.
// `wrenn-bench templates` starts the stack and runs this; prints a table.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Sandbox, Template, waitForPort } from 'e2b'

for (const v of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[v]) { console.error(`${v} is not set: run this through 'wrenn-bench templates', or against a running wrenn dev`); process.exit(2) }
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const runs = Number(process.env.WRENN_BENCH_RUNS || 3)
const s = (ms) => `${(ms / 1000).toFixed(1)} s`

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wrenn-template-bench-'))
fs.mkdirSync(path.join(dir, 'app'))
fs.writeFileSync(path.join(dir, 'app', 'index.html'), 'hello\n')

const example = (cold) => {
  let t = Template({ fileContextPath: dir })
  if (cold) t = t.skipCache()
  return t.fromTemplate('base')
    .aptInstall(['jq']).runCmd('pip --version').setEnvs({ A: '1' })
    .copy('app/', '/home/user/app').setWorkdir('/home/user/app')
    .setStartCmd('python3 -m http.server 8000', waitForPort(8000))
}

async function timed(f) {
  const t = performance.now()
  await f()
  return performance.now() - t
}

const cold = []
const cached = []
const byHand = []
for (let i = 0; i < runs; i++) {
  cold.push(await timed(() => Template.build(example(true), 'bench-app')))
  cached.push(await timed(() => Template.build(example(false), 'bench-app')))
  byHand.push(await timed(async () => {
    const sbx = await Sandbox.create('base')
    try {
      await sbx.commands.run('apt-get update && DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y jq', { user: 'root', timeoutMs: 600_000 })
      await sbx.commands.run('pip --version')
      await sbx.files.write('/home/user/app/index.html', fs.readFileSync(path.join(dir, 'app', 'index.html')))
      await sbx.commands.run('python3 -m http.server 8000', { background: true, cwd: '/home/user/app', envs: { A: '1' } })
      for (;;) {
        const r = await sbx.commands.run('[ -n "$(ss -Htuln sport = :8000)" ]').catch((e) => e)
        if (r.exitCode === 0) break
        await new Promise((res) => setTimeout(res, 200))
      }
    } finally {
      await sbx.kill()
    }
  }))
}

const fromTemplate = []
const fromBase = []
for (let i = 0; i < Math.max(runs, 5); i++) {
  for (const [name, out] of [['bench-app', fromTemplate], ['base', fromBase]]) {
    let sbx
    out.push(await timed(async () => {
      sbx = await Sandbox.create(name)
      await sbx.commands.run('true')
    }))
    await sbx.kill()
  }
}

const rows = [
  [`build of the README example, cold (skipCache), median of ${runs}`, s(median(cold)), `the same steps by hand in a sandbox from base: ${s(median(byHand))}`, (median(cold) / median(byHand)).toFixed(2) + '×'],
  [`build of the README example, all steps cached, median of ${runs}`, s(median(cached)), `cold build: ${s(median(cold))}`, (median(cached) / median(cold)).toFixed(2) + '×'],
  [`Sandbox.create(template) → first commands.run, median of ${fromTemplate.length}`, `${median(fromTemplate).toFixed(0)} ms`, `from base: ${median(fromBase).toFixed(0)} ms`, (median(fromTemplate) / median(fromBase)).toFixed(2) + '×'],
]
const head = ['operation', 'wrenn', 'baseline (same run)', 'ratio']
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')
console.log('\ntemplates (E2B SDK against wrenn dev)\n' + '='.repeat(37))
console.log(line(head))
for (const r of rows) console.log(line(r))
fs.rmSync(dir, { recursive: true, force: true })
