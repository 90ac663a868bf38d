// Egress policy through the official E2B SDK: network.allowOut/denyOut at
// create, updateNetwork on a running sandbox, getInfo().network, and the
// policy kept across pause and resume. tests/e2e (TestEgressPolicySDK)
// starts a Wrenn whose agent's guests resolve names through a test DNS
// server, and "outside" web servers at EGRESS_A/B/C that answer
// "<address> <host or TLS server name>"; allowed.test resolves to A and
// other.test to B. Without those variables every test is skipped.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, ALL_TRAFFIC } from 'e2b'

const { EGRESS_A: A, EGRESS_B: B, EGRESS_C: C } = process.env
const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY && A && B && C)
const skip = configured ? false : 'needs a Wrenn and the outside servers of tests/e2e TestEgressPolicySDK'

// get fetches url in the sandbox with busybox wget (HTTPS sends the host
// as TLS server name); null when the connection is refused.
async function get(sbx, url) {
  const r = await sbx.commands.run(`wget -q -T 5 --no-check-certificate -O - ${url} 2>&1; echo " exit=$?"`)
  const m = r.stdout.match(/^([\s\S]*) exit=(\d+)\n$/)
  assert.ok(m, `unexpected output ${JSON.stringify(r.stdout)}`)
  return m[2] === '0' ? m[1] : null
}

test('denyOut an address blocks it and no other', { skip, timeout: 300_000 }, async () => {
  const sbx = await Sandbox.create({ network: { denyOut: [B] } })
  try {
    assert.equal(await get(sbx, `http://${B}/`), null)
    assert.equal(await get(sbx, `http://${A}/`), `${A} ${A}`)
    assert.ok((await get(sbx, `https://${C}/`))?.startsWith(`${C} `), 'TLS to another address')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network.denyOut, [B])
    assert.equal(info.network.allowOut, undefined)
  } finally {
    await sbx.kill()
  }
})

test('allowOut a domain with all traffic denied, changed live, kept across pause', { skip, timeout: 600_000 }, async () => {
  const sbx = await Sandbox.create({ network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] } })
  try {
    assert.equal(await get(sbx, 'http://allowed.test/'), `${A} allowed.test`, 'by HTTP Host')
    assert.equal(await get(sbx, 'https://allowed.test/'), `${A} allowed.test`, 'by TLS server name')
    assert.equal(await get(sbx, 'http://other.test/'), null)
    assert.equal(await get(sbx, 'https://other.test/'), null)
    assert.equal(await get(sbx, `http://${C}/`), null)
    assert.deepEqual((await Sandbox.getInfo(sbx.sandboxId)).network.allowOut, ['allowed.test'])

    await sbx.updateNetwork({ allowOut: ['other.test', C], denyOut: [ALL_TRAFFIC] })
    assert.equal(await get(sbx, 'https://other.test/'), `${B} other.test`)
    assert.equal(await get(sbx, `http://${C}/`), `${C} ${C}`)
    assert.equal(await get(sbx, 'https://allowed.test/'), null)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network.allowOut, ['other.test', C])
    assert.deepEqual(info.network.denyOut, [ALL_TRAFFIC])

    assert.equal(await sbx.pause(), true)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await get(again, 'http://other.test/'), `${B} other.test`)
    assert.equal(await get(again, 'http://allowed.test/'), null)
    assert.deepEqual((await Sandbox.getInfo(sbx.sandboxId)).network.allowOut, ['other.test', C])

    // Cleared: everything passes again.
    await again.updateNetwork({})
    assert.equal(await get(again, 'http://allowed.test/'), `${A} allowed.test`)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).network.allowOut, undefined)
  } finally {
    await sbx.kill()
  }
})

test('network fields Wrenn cannot honour are refused by name', { skip, timeout: 60_000 }, async () => {
  await assert.rejects(Sandbox.create({ network: { egressProxy: { address: 'proxy.test:1080' } } }), /egressProxy/)
  await assert.rejects(Sandbox.create({ network: { maskRequestHost: 'x.test' } }), /maskRequestHost/)
  await assert.rejects(Sandbox.create({ network: { denyOut: ['example.com'] } }), /denyOut.*domain names are not supported/)
  await assert.rejects(Sandbox.create({ network: { allowOut: ['not a name'] } }), /allowOut/)
})
