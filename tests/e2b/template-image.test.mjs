// E2B's Template SDK building from OCI images (fromImage, with and
// without registry credentials, and fromDockerfile, which the SDK turns
// into fromImage plus steps) against a whole Wrenn. tests/e2e starts the
// stack and a local registry holding a busybox image whose second layer
// deletes a file with a whiteout, and runs this file with the registry's
// addresses; without them every test is skipped.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, Template, BuildError } from 'e2b'

const env = process.env
const configured = !!(env.E2B_API_URL && env.E2B_SANDBOX_URL && env.E2B_API_KEY && env.WRENN_TEST_IMAGE && env.WRENN_TEST_PRIVATE_IMAGE)
const skip = configured ? false : 'needs a running Wrenn (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY) and WRENN_TEST_IMAGE, WRENN_TEST_PRIVATE_IMAGE, WRENN_TEST_REGISTRY_USER, WRENN_TEST_REGISTRY_PASSWORD'

async function build(t, name) {
  const logs = []
  await Template.build(t, name, { onBuildLogs: (e) => logs.push(e.message) })
  return logs.join('\n')
}

// run starts a sandbox from template and returns what cmd printed.
async function run(template, cmd) {
  const sbx = await Sandbox.create(template)
  try {
    const r = await sbx.commands.run(cmd)
    assert.equal(r.exitCode, 0, r.stderr)
    return r.stdout
  } finally {
    await sbx.kill()
  }
}

// What every sandbox from the image shows: a layer-2 file, the whiteout's
// effect, busybox as the image's tools and the default user.
const probe = 'cat /etc/kept.txt; test ! -e /etc/gone.txt && echo gone is gone; readlink /bin/ls; whoami'
const probeOut = 'kept by layer 2\ngone is gone\nbusybox\nuser\n'

test('fromImage: an anonymous pull, steps on top, a sandbox from it', { skip, timeout: 600_000 }, async () => {
  const logs = await build(Template().fromImage(env.WRENN_TEST_IMAGE).runCmd('echo built on the image > /home/user/built'), 'oci-app')
  assert.match(logs, /Pulling image /)
  assert.equal(await run('oci-app', probe + '; cat /home/user/built'), probeOut + 'built on the image\n')

  // The image made on the host is the build's only: no team lists it,
  // starts a sandbox from it or builds on it (it may hold a private
  // registry's files).
  const image = logs.match(/is guest image (oci-[0-9a-f]+)/)[1]
  await assert.rejects(Sandbox.create(image), /start template builds only/)
  await assert.rejects(build(Template().fromTemplate(image).runCmd('true'), 'oci-reuse'), /unknown base/)
  const list = await fetch(env.E2B_API_URL.replace(/\/e2b$/, '') + '/v1/templates', { headers: { Authorization: `Bearer ${env.E2B_API_KEY}` } })
  assert.equal(list.status, 200)
  const body = await list.text()
  assert.ok(body.includes('"oci-app"') && !body.includes(image), body)
})

test('fromImage with registry credentials; the same digest is not made again', { skip, timeout: 600_000 }, async () => {
  const creds = { username: env.WRENN_TEST_REGISTRY_USER, password: env.WRENN_TEST_REGISTRY_PASSWORD }
  const logs = await build(Template().fromImage(env.WRENN_TEST_PRIVATE_IMAGE, creds).runCmd('echo private > /home/user/private'), 'oci-private')
  assert.match(logs, /already made; only the manifest was fetched/)
  assert.equal(await run('oci-private', probe + '; cat /home/user/private'), probeOut + 'private\n')
})

test('fromImage failures: wrong password, no credentials, unknown image, unreachable registry, bad reference', { skip, timeout: 600_000 }, async () => {
  const fails = async (t, name, re) => {
    await assert.rejects(build(t, name), (e) => {
      assert.ok(e instanceof BuildError, String(e))
      assert.match(e.message, re)
      return true
    })
  }
  const wrong = { username: env.WRENN_TEST_REGISTRY_USER, password: 'not-the-password' }
  await fails(Template().fromImage(env.WRENN_TEST_PRIVATE_IMAGE, wrong).runCmd('true'), 'oci-wrong', /registry denied access: .*HTTP 401; check the registry user name and password/)
  await fails(Template().fromImage(env.WRENN_TEST_PRIVATE_IMAGE).runCmd('true'), 'oci-anon', /registry denied access/)
  const missing = env.WRENN_TEST_IMAGE.replace(/\/[^/]*$/, '/no-such-image:1')
  await fails(Template().fromImage(missing).runCmd('true'), 'oci-missing', /image not found: .*no such repository or tag/)
  await fails(Template().fromImage('127.0.0.1:1/nothing:1').runCmd('true'), 'oci-unreachable', /registry unreachable: cannot connect to 127\.0\.0\.1:1/)
  await assert.rejects(build(Template().fromImage('Not A Reference').runCmd('true'), 'oci-bad'), /fromImage: image reference "Not A Reference"/)
})

test('fromDockerfile: FROM the image, then RUN, ENV and WORKDIR steps', { skip, timeout: 600_000 }, async () => {
  const dockerfile = [
    `FROM ${env.WRENN_TEST_IMAGE}`,
    'RUN mkdir -p /opt/tool && echo from a dockerfile > /opt/tool/note',
    'ENV TOOL_MODE=docker',
    'WORKDIR /opt/tool',
    'RUN pwd > /opt/tool/where && env | grep TOOL_MODE >> /opt/tool/where',
  ].join('\n')
  const logs = await build(Template().fromDockerfile(dockerfile), 'oci-dockerfile')
  assert.match(logs, /RUN mkdir -p \/opt\/tool/)
  assert.equal(await run('oci-dockerfile', probe + '; cat /opt/tool/note /opt/tool/where; echo "$TOOL_MODE"'),
    probeOut + 'from a dockerfile\n/opt/tool\nTOOL_MODE=docker\ndocker\n')
})
