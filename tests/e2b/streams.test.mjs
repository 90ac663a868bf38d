// Twenty long streams at once into one sandbox through the sandbox proxy
// and the agent's proxy (issue 15, bug 6): terminal bursts, 256 MiB
// downloads and commands printing for a minute, every byte counted and
// compared. tests/e2e creates the sandbox (with room for the file) and
// runs this file with E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and
// WRENN_STREAMS_SANDBOX.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Sandbox } from 'e2b'

const sandboxId = process.env.WRENN_STREAMS_SANDBOX
const skip = sandboxId && process.env.E2B_API_URL && process.env.E2B_API_KEY ? false : 'needs WRENN_STREAMS_SANDBOX and the E2B_* variables of a running Wrenn'
const downloads = 6, terminals = 7, printers = 7
const size = 256 << 20
const burstLines = 100_000 // of 100 base64 characters: 7.5 MB of zeros

test(`${downloads + terminals + printers} concurrent long streams: nothing lost, nothing cut`, { skip, timeout: 1_200_000 }, async () => {
  const sbx = await Sandbox.connect(sandboxId)
  const run = (cmd) => sbx.commands.run(cmd, { timeoutMs: 0, requestTimeoutMs: 0 })
  await run(`head -c ${size} /dev/urandom > /tmp/big && sha256sum /tmp/big > /tmp/big.sha`)
  const want = (await run('cat /tmp/big.sha')).stdout.split(' ')[0]

  const download = async () => {
    const stream = await sbx.files.read('/tmp/big', { format: 'stream', requestTimeoutMs: 0 })
    const h = createHash('sha256')
    let n = 0
    for await (const chunk of stream) {
      h.update(chunk)
      n += chunk.length
    }
    return { kind: 'download', got: n, ok: n === size && h.digest('hex') === want }
  }

  const terminal = async () => {
    let tail = ''
    let full = 0
    const dec = new TextDecoder()
    const count = (text) => {
      const lines = (tail + text).split('\r\n')
      tail = lines.pop()
      for (const l of lines) if (l.length === 100 && /^A+$/.test(l)) full++
    }
    const term = await sbx.pty.create({ cols: 120, rows: 40, timeoutMs: 0, onData: (d) => count(dec.decode(d, { stream: true })) })
    await sbx.pty.sendInput(term.pid, new TextEncoder().encode(`head -c ${burstLines * 75} /dev/zero | base64 -w 100; exit\n`))
    await term.wait().catch((e) => { if (e.exitCode === undefined) throw e })
    count('\r\n')
    return { kind: 'terminal', got: full, ok: full === burstLines }
  }

  const printer = async () => {
    let text = ''
    await sbx.commands.run('end=$(($(date +%s)+60)); i=0; while [ $(date +%s) -lt $end ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done; echo "total $i"',
      { timeoutMs: 0, requestTimeoutMs: 0, onStdout: (d) => { text += d } })
    const lines = text.trimEnd().split('\n')
    const total = Number(lines.pop()?.replace('total ', ''))
    const inOrder = lines.every((l, i) => l === `line ${i}`)
    return { kind: 'printer', got: lines.length, ok: total > 0 && lines.length === total && inOrder }
  }

  const all = await Promise.allSettled([
    ...Array.from({ length: downloads }, download),
    ...Array.from({ length: terminals }, terminal),
    ...Array.from({ length: printers }, printer),
  ])
  const failed = all.filter((r) => r.status === 'rejected' || !r.value.ok)
  console.log(all.map((r) => (r.status === 'fulfilled' ? `${r.value.kind} ${r.value.got} ${r.value.ok ? 'ok' : 'SHORT'}` : `error ${r.reason}`)).join('\n'))
  assert.equal(failed.length, 0, `${failed.length} of ${all.length} streams lost data or were cut`)
})
