// The official E2B SDK against `wrenn dev`'s sandbox proxy by host name
// over TLS, configured as its e2b-tls.env says: E2B_DOMAIN (a name under
// localhost, with the proxy's port) and NODE_EXTRA_CA_CERTS (the CA wrenn
// dev made), no E2B_SANDBOX_URL. The SDK then names the sandbox in every
// URL's host (https://<port>-<sandboxID>.<domain>), which getHost(port)
// and signed file URLs need. tests/e2e starts the stack and runs this file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_DOMAIN && process.env.E2B_API_KEY && process.env.NODE_EXTRA_CA_CERTS) && !process.env.E2B_SANDBOX_URL
const skip = configured ? false : "needs wrenn dev's e2b-tls.env (E2B_API_URL, E2B_DOMAIN, E2B_API_KEY, NODE_EXTRA_CA_CERTS) and no E2B_SANDBOX_URL"
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

test('envd, a served port and signed file URLs, by host name over TLS', { skip, timeout: 240_000 }, async () => {
  // minimal: busybox serves the port below (base has no busybox).
  const sbx = await Sandbox.create('minimal')
  try {
    // envd itself is reached at https://49983-<id>.<domain>.
    assert.equal((await sbx.commands.run('echo by-name')).stdout, 'by-name\n')
    const health = `https://${sbx.getHost(49983)}/health`
    assert.match(health, new RegExp(`^https://49983-${sbx.sandboxId}\\.${process.env.E2B_DOMAIN.replace(/\./g, '\\.')}/health$`))
    assert.ok((await fetch(health)).ok, health)

    // A server the sandbox runs, at getHost(port).
    await sbx.files.write('/tmp/www/index.html', 'hello by host name\n')
    await sbx.commands.run('busybox httpd -p 8000 -h /tmp/www')
    const site = `https://${sbx.getHost(8000)}/index.html`
    let body
    for (let i = 0; i < 50 && body === undefined; i++) {
      const r = await fetch(site).catch(() => undefined)
      if (r?.ok) body = await r.text()
      else await sleep(200)
    }
    assert.equal(body, 'hello by host name\n', site)

    // Signed URLs: a plain POST and GET with no header carry the sandbox
    // in the host and the permission in the signature.
    const up = await sbx.uploadUrl('/tmp/signed.txt', { useSignatureExpiration: 120 })
    assert.ok(new URL(up).host.startsWith(`49983-${sbx.sandboxId}.`), up)
    const form = new FormData()
    form.append('file', new Blob(['signed upload\n']), 'signed.txt')
    const posted = await fetch(up, { method: 'POST', body: form })
    assert.ok(posted.ok, `upload: ${posted.status} ${await posted.text()}`)
    assert.equal(await sbx.files.read('/tmp/signed.txt'), 'signed upload\n')
    const down = await sbx.downloadUrl('/tmp/signed.txt')
    const got = await fetch(down)
    assert.equal(got.status, 200)
    assert.equal(await got.text(), 'signed upload\n')
    // A URL whose signature does not match is refused.
    const forged = new URL(down)
    forged.searchParams.set('path', '/etc/shadow')
    assert.ok([401, 403].includes((await fetch(forged)).status))
  } finally {
    await sbx.kill()
  }
})
