// E2B's Template SDK (Template.build, exists, the build-context upload and
// status polling with logs) against a whole Wrenn configured only by
// E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY, then sandboxes from the
// built template. tests/e2e starts the stack (with the base image) and
// runs this file; without those variables every test is skipped.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Sandbox, Template, waitForPort, BuildError } from 'e2b'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY)
const skip = configured ? false : 'needs E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY of a running Wrenn (wrenn dev) with the base image'

function context() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wrenn-template-'))
  fs.mkdirSync(path.join(dir, 'app', 'sub'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'app', 'index.html'), 'hello from a wrenn template\n')
  fs.writeFileSync(path.join(dir, 'app', 'sub', 'data.txt'), 'nested\n')
  return dir
}

function example(dir, workdir = '/home/user/app') {
  return Template({ fileContextPath: dir })
    .fromTemplate('base')
    .aptInstall(['jq'])
    .runCmd('pip --version')
    .setEnvs({ A: '1' })
    .copy('app/', '/home/user/app')
    .setWorkdir(workdir)
}

async function build(t, name) {
  const logs = []
  await Template.build(t, name, { onBuildLogs: (e) => logs.push(e.message) })
  return logs
}

async function buildSandboxesLeft() {
  const list = await Sandbox.list().nextItems()
  return list.filter((s) => s.metadata && s.metadata['wrenn.template_build'])
}

test('Template.build, then a sandbox from it serves its start command', { skip, timeout: 900_000 }, async () => {
  const dir = context()
  assert.equal(await Template.exists('my-app'), false)
  const t = example(dir).setStartCmd('python3 -m http.server 8000', waitForPort(8000))
  const logs = await build(t, 'my-app')
  const joined = logs.join('\n')
  assert.match(joined, /\[1\/5\] RUN apt-get update/)
  assert.match(joined, /pip \d+/, 'the RUN step streamed its output')
  assert.match(joined, /Ready check passed/)
  assert.equal(await Template.exists('my-app'), true)
  assert.deepEqual(await buildSandboxesLeft(), [])

  const sbx = await Sandbox.create('my-app')
  try {
    const r = await sbx.commands.run('echo "A=$A"; cat /home/user/app/index.html /home/user/app/sub/data.txt; jq --version; stat -c %U /home/user/app/index.html')
    assert.equal(r.exitCode, 0)
    const lines = r.stdout.split('\n')
    assert.deepEqual(lines.slice(0, 3), ['A=1', 'hello from a wrenn template', 'nested'])
    assert.match(lines[3], /^jq-/)
    assert.equal(lines[4], 'user', 'copied files belong to the default user')
    // The start command was frozen running: the proxy reaches it at once.
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/index.html`, {
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' },
    })
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'hello from a wrenn template\n')

    // A template in use cannot be deleted.
    await assert.rejects(fetch(`${process.env.E2B_API_URL}/templates/my-app`, { method: 'DELETE', headers: { 'X-API-Key': process.env.E2B_API_KEY } })
      .then(async (r) => { if (r.status !== 409) throw new Error(`status ${r.status}`); throw new Error('refused: ' + (await r.text())) }), /refused: .*used by 1 sandbox/)
  } finally {
    await sbx.kill()
  }

  // A rebuild that changes only the last step runs only that step; the
  // unchanged files are not uploaded again.
  const again = await build(example(dir, '/home/user'), 'my-app-2')
  const text = again.join('\n')
  assert.match(text, /Skipping upload of 'app\/', already cached/)
  for (const n of [1, 2, 3, 4]) assert.match(text, new RegExp(`\\[${n}/5\\] \\S+ .*: cached`), `step ${n} cached`)
  assert.match(text, /\[5\/5\] WORKDIR \/home\/user\n/)
  assert.doesNotMatch(text, /\[[1-4]\/5\] done in/)
  const sbx2 = await Sandbox.create('my-app-2')
  try {
    const r = await sbx2.commands.run('echo "A=$A"; ls /home/user/app')
    assert.equal(r.stdout, 'A=1\nindex.html\nsub\n')
  } finally {
    await sbx2.kill()
  }
})

test('a failing step reports its exit code and output and leaves nothing behind', { skip, timeout: 300_000 }, async () => {
  const t = Template().fromTemplate('base').runCmd('echo about to fail; exit 7')
  await assert.rejects(build(t, 'broken'), (e) => {
    assert.ok(e instanceof BuildError, String(e))
    assert.match(e.message, /exit code 7/)
    assert.match(e.message, /about to fail/)
    return true
  })
  assert.deepEqual(await buildSandboxesLeft(), [])
  await assert.rejects(Sandbox.create('broken'), /no ready build/)
})

test('bad specs are refused with a message naming what is wrong', { skip, timeout: 120_000 }, async () => {
  await assert.rejects(build(Template().fromTemplate('no-such-base').runCmd('true'), 'bad1'), /unknown base "no-such-base"/)
  await assert.rejects(build(Template().fromImage('Python:3.12!').runCmd('true'), 'bad2'), /fromImage: image reference/)
  await assert.rejects(build(Template().fromTemplate('base'), 'bad3'), /at least one step/)
})

// Wrenn's own API (/v1) with the same key: a build cancelled in its
// second step leaves no sandbox and no layer (a rebuild runs step 1
// again), and its log says where it stopped.
test('a cancelled build leaves nothing behind', { skip, timeout: 300_000 }, async () => {
  const v1 = process.env.E2B_API_URL.replace(/\/e2b$/, '/v1')
  const call = async (method, p, body) => {
    const r = await fetch(v1 + p, { method, headers: { 'X-API-Key': process.env.E2B_API_KEY, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) })
    const text = await r.text()
    return { status: r.status, body: text ? JSON.parse(text.split('\n')[0] || 'null') : null, text }
  }
  const spec = { name: 'slow', from_template: 'base', steps: [{ type: 'RUN', args: ['echo one > /tmp/one'] }, { type: 'RUN', args: ['echo started; sleep 600'] }] }
  const started = await call('POST', '/templates', spec)
  assert.equal(started.status, 202, started.text)
  const build = started.body
  for (;;) {
    const logs = await call('GET', `/templates/slow/builds/${build.id}/logs`)
    if (logs.text.includes('"message":"started"')) break
    await new Promise((r) => setTimeout(r, 500))
  }
  assert.equal((await call('POST', `/templates/slow/builds/${build.id}/cancel`)).status, 202)
  let b
  for (;;) {
    b = (await call('GET', `/templates/slow/builds/${build.id}`)).body
    if (b.status !== 'building') break
    await new Promise((r) => setTimeout(r, 500))
  }
  assert.equal(b.status, 'cancelled')
  assert.equal(b.snapshot_id, undefined)
  assert.deepEqual(await buildSandboxesLeft(), [])
  const logs = (await call('GET', `/templates/slow/builds/${build.id}/logs`)).text
  assert.match(logs, /Build cancelled/)

  // The layer step 1 made went with the cancelled build.
  const again = await call('POST', '/templates/slow/builds', { from_template: 'base', steps: [spec.steps[0], { type: 'RUN', args: ['exit 3'] }] })
  assert.equal(again.status, 202, again.text)
  for (;;) {
    b = (await call('GET', `/templates/slow/builds/${again.body.id}`)).body
    if (b.status !== 'building') break
    await new Promise((r) => setTimeout(r, 500))
  }
  assert.equal(b.status, 'error')
  assert.equal(b.failed_step, 2)
  assert.equal(b.exit_code, 3)
  const text = (await call('GET', `/templates/slow/builds/${again.body.id}/logs`)).text
  assert.match(text, /"message":"\[1\/2\] RUN echo one > \/tmp\/one"/)
  assert.doesNotMatch(text, /: cached/)
  assert.deepEqual(await buildSandboxesLeft(), [])
  assert.equal((await call('DELETE', '/templates/slow')).status, 204)
})
