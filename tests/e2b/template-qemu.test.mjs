// E2B's Template SDK against wrenn dev with a QEMU agent (TCG here, so a
// small build from the minimal image): files, env, a start command frozen
// running and served through the proxy, and a cached rebuild.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Sandbox, Template } from 'e2b'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY)
const skip = configured ? false : 'needs E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY of a running Wrenn (wrenn dev)'

test('a template from minimal under QEMU', { skip, timeout: 900_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wrenn-template-'))
  fs.mkdirSync(path.join(dir, 'site'))
  fs.writeFileSync(path.join(dir, 'site', 'index.html'), 'served from a frozen httpd\n')
  const t = () => Template({ fileContextPath: dir })
    .fromTemplate('minimal')
    .setEnvs({ GREETING: 'hello' })
    .copy('site/', '/home/user/site')
    .runCmd('echo "$GREETING" > /home/user/greeting')
  const logs = []
  await Template.build(t().setStartCmd('busybox httpd -f -p 8000 -h /home/user/site', 'busybox wget -q -O /dev/null http://127.0.0.1:8000/index.html'), 'qemu-app', { onBuildLogs: (e) => logs.push(e.message) })
  assert.match(logs.join('\n'), /Ready check passed/)

  const sbx = await Sandbox.create('qemu-app')
  try {
    const r = await sbx.commands.run('echo "$GREETING"; cat /home/user/greeting /home/user/site/index.html')
    assert.equal(r.stdout, 'hello\nhello\nserved from a frozen httpd\n')
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/index.html`, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' } })
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'served from a frozen httpd\n')
  } finally {
    await sbx.kill()
  }

  // The same steps without the start command: every step is cached.
  const again = []
  await Template.build(t(), 'qemu-app-2', { onBuildLogs: (e) => again.push(e.message) })
  const text = again.join('\n')
  for (const n of [1, 2, 3]) assert.match(text, new RegExp(`\\[${n}/3\\] \\S+ .*: cached`))
})
