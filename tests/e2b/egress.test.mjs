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

// The minimal image has busybox and bash: names resolve with busybox
// nslookup (through the agent's --dns, the test's server), HTTP goes over
// bash's /dev/tcp.
const resolve = `r() { case $1 in *[a-z]*) nslookup $1 2>/dev/null | awk '/^Name:/ {n=1} n && /^Address/ {a=$NF} END {print a}';; *) echo $1;; esac; }`

// get sends GET / with Host: host to host's address on port 80 and
// returns the body, or null when the connection is refused.
async function get(sbx, host) {
  const r = await sbx.commands.run(`${resolve}; ip=$(r ${host}); timeout 8 bash -c "exec 3<>/dev/tcp/$ip/80 && printf 'GET / HTTP/1.0\\r\\nHost: ${host}\\r\\n\\r\\n' >&3 && cat <&3" 2>/dev/null | tail -n 1; true`)
  const body = r.stdout.trim()
  return body === '' ? null : body
}

// tls sends a recorded TLS ClientHello naming `name` (EGRESS_HELLO_<name>,
// hex; busybox has no TLS client that works here) to host:443 with nc and
// reports whether a TLS server answered with a handshake record.
async function tls(sbx, host, name) {
  const hello = process.env['EGRESS_HELLO_' + name.replace(/\W/g, '_')]
  assert.ok(hello, `no recorded ClientHello for ${name}`)
  await sbx.files.write(`/tmp/hello-${name}`, Buffer.from(hello, 'hex'))
  const r = await sbx.commands.run(`${resolve}; ip=$(r ${host}); nc -w 5 $ip 443 < /tmp/hello-${name} | head -c 1 | od -An -tx1 | tr -d ' '; true`)
  return r.stdout.trim() === '16'
}

test('denyOut an address blocks it and no other', { skip, timeout: 300_000 }, async () => {
  const sbx = await Sandbox.create('minimal', { network: { denyOut: [B] } })
  try {
    assert.equal(await get(sbx, B), null)
    assert.equal(await get(sbx, A), `${A} ${A}`)
    assert.equal(await tls(sbx, C, 'allowed.test'), true, 'TLS to another address')
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network.denyOut, [B])
    assert.equal(info.network.allowOut, undefined)
  } finally {
    await sbx.kill()
  }
})

test('allowOut a domain with all traffic denied, changed live, kept across pause', { skip, timeout: 600_000 }, async () => {
  const sbx = await Sandbox.create('minimal', { network: { allowOut: ['allowed.test'], denyOut: [ALL_TRAFFIC] } })
  try {
    assert.equal(await get(sbx, 'allowed.test'), `${A} allowed.test`, 'by HTTP Host')
    assert.equal(await tls(sbx, 'allowed.test', 'allowed.test'), true, 'by TLS server name')
    assert.equal(await get(sbx, 'other.test'), null)
    assert.equal(await tls(sbx, 'other.test', 'other.test'), false)
    assert.equal(await tls(sbx, C, 'other.test'), false, 'TLS naming a denied domain')
    assert.equal(await get(sbx, C), null)
    assert.deepEqual((await Sandbox.getInfo(sbx.sandboxId)).network.allowOut, ['allowed.test'])

    await sbx.updateNetwork({ allowOut: ['other.test', C], denyOut: [ALL_TRAFFIC] })
    assert.equal(await tls(sbx, 'other.test', 'other.test'), true)
    assert.equal(await get(sbx, C), `${C} ${C}`)
    assert.equal(await tls(sbx, 'allowed.test', 'allowed.test'), false)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network.allowOut, ['other.test', C])
    assert.deepEqual(info.network.denyOut, [ALL_TRAFFIC])

    assert.equal(await sbx.pause(), true)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await get(again, 'other.test'), `${B} other.test`)
    assert.equal(await get(again, 'allowed.test'), null)
    assert.deepEqual((await Sandbox.getInfo(sbx.sandboxId)).network.allowOut, ['other.test', C])

    // Cleared: everything passes again.
    await again.updateNetwork({})
    assert.equal(await get(again, 'allowed.test'), `${A} allowed.test`)
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
