// The official E2B SDK's calls for issue 15's bugs and features (logs
// through the SDK's own API client, which its generated schema types), against a Wrenn whose
// reconciler does not run during the test (tests/e2e TestE2BParitySDK
// starts it and sets E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ApiClient, ConnectionConfig, Sandbox } from 'e2b'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY)
const skip = configured ? false : 'needs E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY of a running Wrenn'
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

test('create refuses what it cannot honour, naming it', { skip }, async () => {
  const cases = [
    [{ network: { maskRequestHost: 'localhost:${PORT}' } }, 'network.maskRequestHost'],
    [{ network: { egressProxy: { address: 'proxy.example.com:1080' } } }, 'network.egressProxy'],
    [{ volumeMounts: { '/data': 'my-volume' } }, 'volumeMounts'],
    [{ lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } }, 'autoPauseMemory'],
  ]
  for (const [opts, field] of cases) {
    await assert.rejects(Sandbox.create({ ...opts, metadata: { suite: 'parity-refused' } }),
      (e) => e.statusCode === 400 && e.message.includes(field), `create with ${JSON.stringify(opts)}`)
  }
  // Nothing was created; what is honoured still is.
  assert.equal((await Sandbox.list({ query: { metadata: { suite: 'parity-refused' } } }).nextItems()).length, 0)
  const sbx = await Sandbox.create({ network: { allowPublicTraffic: false }, lifecycle: { onTimeout: { action: 'pause', keepMemory: true } } })
  await sbx.kill()
})

test('connect extends the timeout, never shortens it', { skip, timeout: 120_000 }, async () => {
  const sbx = await Sandbox.create({ timeoutMs: 300_000 })
  try {
    await Sandbox.connect(sbx.sandboxId, { timeoutMs: 10_000 })
    let end = (await Sandbox.getInfo(sbx.sandboxId)).endAt.getTime()
    assert.ok(end - Date.now() > 200_000, `connect with 10 s moved the end to ${new Date(end).toISOString()}`)
    await Sandbox.connect(sbx.sandboxId, { timeoutMs: 900_000 })
    end = (await Sandbox.getInfo(sbx.sandboxId)).endAt.getTime()
    assert.ok(end - Date.now() > 800_000, `connect with 900 s left the end at ${new Date(end).toISOString()}`)
  } finally {
    await sbx.kill()
  }
})

test('a sandbox paused by its timeout shows paused and resumes on traffic', { skip, timeout: 180_000 }, async () => {
  const sbx = await Sandbox.create({ timeoutMs: 3_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
  try {
    await sbx.files.write('/tmp/kept', 'before the pause')
    // The reconciler does not run in this test: only the agent's report
    // can make it paused. The bound is generous, not a speed claim.
    let state
    for (let i = 0; i < 600 && state !== 'paused'; i++) {
      state = (await Sandbox.getInfo(sbx.sandboxId)).state
      if (state !== 'paused') await sleep(100)
    }
    assert.equal(state, 'paused')
    // Traffic resumes it: a command, a file read.
    const r = await sbx.commands.run('cat /tmp/kept')
    assert.equal(r.stdout, 'before the pause')
  } finally {
    await Sandbox.kill(sbx.sandboxId)
  }
})

// E2B's REST API by hand, for what the SDK reads but does not expose.
async function api(path) {
  const res = await fetch(process.env.E2B_API_URL + path, { headers: { 'X-API-Key': process.env.E2B_API_KEY } })
  assert.equal(res.status, 200, `GET ${path}: ${res.status} ${await res.clone().text()}`)
  return res.json()
}

test('metrics: start and end, memCache and timestampUnix; many sandboxes at once', { skip, timeout: 180_000 }, async () => {
  const a = await Sandbox.create()
  const b = await Sandbox.create()
  try {
    let raw = []
    for (let i = 0; i < 600 && raw.length < 2; i++) {
      raw = await api(`/sandboxes/${a.sandboxId}/metrics`)
      if (raw.length < 2) await sleep(100)
    }
    assert.ok(raw.length >= 2, `samples: ${JSON.stringify(raw)}`)
    for (const m of raw) {
      assert.equal(m.timestampUnix, Math.floor(new Date(m.timestamp).getTime() / 1000))
      // The guest's page cache: may be 0 on a fresh gVisor guest, never absent.
      assert.ok(Number.isInteger(m.memCache) && m.memCache >= 0 && m.memTotal > 0 && m.memUsed > 0, JSON.stringify(m))
    }
    const last = raw[raw.length - 1]
    const since = await api(`/sandboxes/${a.sandboxId}/metrics?start=${last.timestampUnix}`)
    assert.ok(since.length >= 1 && since.length < raw.length + 2 && since.every((m) => m.timestampUnix >= last.timestampUnix), JSON.stringify(since))
    assert.ok(since.some((m) => m.timestamp === last.timestamp))
    const until = await api(`/sandboxes/${a.sandboxId}/metrics?end=${raw[0].timestampUnix}`)
    assert.ok(until.length >= 1 && until.every((m) => m.timestampUnix <= raw[0].timestampUnix), JSON.stringify(until))

    // The SDK's view: memCache, and its start/end.
    const all = await a.getMetrics({ start: new Date(Date.now() - 3_600_000), end: new Date(Date.now() + 60_000) })
    assert.ok(all.length >= 2 && all.every((m) => Number.isInteger(m.memCache)))
    assert.deepEqual(await a.getMetrics({ start: new Date(Date.now() + 3_600_000) }), [])
    assert.deepEqual(await a.getMetrics({ end: new Date(Date.now() - 3_600_000) }), [])

    let many = { sandboxes: {} }
    for (let i = 0; i < 600 && Object.keys(many.sandboxes).length < 2; i++) {
      many = await api(`/sandboxes/metrics?sandbox_ids=${a.sandboxId},${b.sandboxId},sb-00000000000000000000000000000000`)
      if (Object.keys(many.sandboxes).length < 2) await sleep(100)
    }
    assert.deepEqual(Object.keys(many.sandboxes).sort(), [a.sandboxId, b.sandboxId].sort())
    assert.ok(many.sandboxes[b.sandboxId].memTotal > 0 && many.sandboxes[b.sandboxId].timestampUnix > 0)
  } finally {
    await a.kill()
    await b.kill()
  }
})

test('logs: the SDK\'s API client reads /v2/sandboxes/{id}/logs and /sandboxes/{id}/logs', { skip, timeout: 120_000 }, async () => {
  const sbx = await Sandbox.create()
  const client = new ApiClient(new ConnectionConfig())
  const v2 = (query) => client.api.GET('/v2/sandboxes/{sandboxID}/logs', { params: { path: { sandboxID: sbx.sandboxId }, query } })
  try {
    // A line a root process writes to the console, as a start command would.
    const marker = `e2b-log-${Date.now()}`
    await sbx.commands.run(`echo ${marker} > /proc/1/fd/1`, { user: 'root' })
    let res
    for (let i = 0; i < 200; i++) {
      res = await v2({ search: marker })
      assert.equal(res.response.status, 200, JSON.stringify(res.error))
      if (res.data.logs.length) break
      await sleep(100)
    }
    assert.equal(res.data.logs.length, 1, JSON.stringify(res.data))
    const line = res.data.logs[0]
    assert.equal(line.message, marker)
    assert.equal(line.level, 'info')
    assert.deepEqual(line.fields, {})
    const at = new Date(line.timestamp).getTime()
    assert.ok(Math.abs(Date.now() - at) < 600_000, line.timestamp)

    // envd's start line, structured.
    const start = (await v2({ search: 'envd listening', level: 'info' })).data.logs
    assert.ok(start.length >= 1 && start[0].fields.component === 'envd', JSON.stringify(start))
    // Backward from the end: newest first; warnings only.
    const back = (await v2({ direction: 'backward', limit: 2 })).data.logs
    assert.equal(back.length, 2)
    assert.ok(new Date(back[0].timestamp) >= new Date(back[1].timestamp), JSON.stringify(back))
    assert.ok((await v2({ level: 'warn' })).data.logs.every((e) => e.level === 'warn' || e.level === 'error'))
    // Forward from the marker's millisecond.
    const fwd = (await v2({ cursor: at, limit: 1 })).data.logs
    assert.ok(fwd.length === 1 && new Date(fwd[0].timestamp).getTime() >= at, JSON.stringify(fwd))
    assert.equal((await v2({ direction: 'sideways' })).response.status, 400)

    // The deprecated v1 route: lines and entries side by side.
    const v1 = await client.api.GET('/sandboxes/{sandboxID}/logs', { params: { path: { sandboxID: sbx.sandboxId }, query: { start: at, limit: 1000 } } })
    assert.equal(v1.response.status, 200)
    assert.equal(v1.data.logs.length, v1.data.logEntries.length)
    assert.ok(v1.data.logs.some((l) => l.line === marker) && v1.data.logEntries.some((e) => e.message === marker), JSON.stringify(v1.data))
  } finally {
    await sbx.kill()
  }
  assert.equal((await v2({})).response.status, 404)
})
