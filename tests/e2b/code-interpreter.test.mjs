// E2B's code-interpreter SDK (@e2b/code-interpreter, pinned) against a whole
// Wrenn configured by E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY only, as
// a user would: Sandbox.create() asks for the template code-interpreter-v1,
// which is Wrenn's code-interpreter image. tests/e2e starts `wrenn dev` with
// that image and runs this file; without the variables every test is
// skipped.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, TimeoutError, SandboxError } from '@e2b/code-interpreter'

const configured = !!(process.env.E2B_API_URL && process.env.E2B_SANDBOX_URL && process.env.E2B_API_KEY)
const skip = configured ? false : 'needs E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY of a running Wrenn (wrenn dev) with the code-interpreter image'

let sbx
before(async () => {
  if (!configured) return
  sbx = await Sandbox.create({ envs: { FROM_CREATE: 'sandbox-var' }, metadata: { suite: 'code-interpreter' } })
})
after(async () => {
  if (sbx) await sbx.kill()
})

test('variables persist between runCode calls', { skip }, async () => {
  assert.equal((await sbx.runCode('x = 1')).results.length, 0)
  const e = await sbx.runCode('x + 1')
  assert.equal(e.text, '2')
  assert.equal(e.error, undefined)
  assert.ok(e.executionCount >= 2, `executionCount ${e.executionCount}`)
})

test('stdout and stderr stream to the callbacks in order, while the code runs', { skip }, async () => {
  const seen = []
  const code = 'import sys, time\nfor i in range(3):\n    print("out", i, flush=True)\n    time.sleep(0.3)\n    print("err", i, file=sys.stderr, flush=True)\n    time.sleep(0.3)'
  const t0 = Date.now()
  const e = await sbx.runCode(code, {
    onStdout: (m) => seen.push({ line: m.line.trim(), at: Date.now() - t0, error: m.error }),
    onStderr: (m) => seen.push({ line: m.line.trim(), at: Date.now() - t0, error: m.error }),
  })
  const total = Date.now() - t0
  assert.deepEqual(seen.map((s) => s.line), ['out 0', 'err 0', 'out 1', 'err 1', 'out 2', 'err 2'])
  assert.deepEqual(seen.map((s) => s.error), [false, true, false, true, false, true])
  // Streamed, not delivered at the end: the first line came long before the last.
  assert.ok(seen[5].at - seen[0].at > 1000, `arrival times ${JSON.stringify(seen)} of ${total} ms`)
  assert.deepEqual(e.logs.stdout, ['out 0\n', 'out 1\n', 'out 2\n'])
  assert.deepEqual(e.logs.stderr, ['err 0\n', 'err 1\n', 'err 2\n'])
})

test('a matplotlib figure comes back as a PNG result', { skip }, async () => {
  const results = []
  const e = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()', { onResult: (r) => results.push(r) })
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.equal(e.results.length, 1)
  const png = Buffer.from(e.results[0].png, 'base64')
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  assert.ok(png.length > 5000, `png of ${png.length} bytes`)
  assert.equal(e.results[0].isMainResult, false)
  assert.ok(e.results[0].formats().includes('png'))
  assert.equal(results.length, 1, 'onResult called')
  // Structured chart data (Result.chart) is not produced: see the README.
  assert.equal(e.results[0].chart, undefined)
})

test('a pandas DataFrame comes back as an HTML result with its data', { skip }, async () => {
  const e = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": ["x", "y"]})')
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  const r = e.results.find((x) => x.isMainResult)
  assert.ok(r.html.includes('<table'), r.html)
  assert.ok(r.text.includes('a  b'), r.text)
  assert.deepEqual(r.data, { a: [1, 2], b: ['x', 'y'] })
})

test('rich display formats: HTML, Markdown, SVG, LaTeX, JSON', { skip }, async () => {
  const e = await sbx.runCode(`from IPython.display import display, HTML, Markdown, SVG, Latex, JSON
display(HTML("<i>h</i>")); display(Markdown("**m**")); display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'))
display(Latex(r"$\\frac{1}{2}$")); display(JSON({"k": [1, 2]}))`)
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  const [html, md, svg, latex, json] = e.results
  assert.equal(html.html, '<i>h</i>')
  assert.equal(md.markdown, '**m**')
  assert.ok(svg.svg.includes('<svg'))
  assert.equal(latex.latex, '$\\frac{1}{2}$')
  assert.deepEqual(json.json, { k: [1, 2] })
  assert.ok(e.results.every((r) => r.isMainResult === false))
})

test('an exception returns its name, value and traceback', { skip }, async () => {
  let viaCallback
  const e = await sbx.runCode('def f():\n    return 1 / 0\nf()', { onError: (err) => { viaCallback = err } })
  assert.equal(e.error.name, 'ZeroDivisionError')
  assert.equal(e.error.value, 'division by zero')
  assert.ok(e.error.traceback.includes('1 / 0') && e.error.traceback.includes('ZeroDivisionError'), e.error.traceback)
  assert.equal(viaCallback.name, 'ZeroDivisionError')
  assert.equal(e.results.length, 0)
})

test('an infinite loop with a timeout is interrupted and the context still works', { skip, timeout: 120_000 }, async () => {
  await sbx.runCode('kept = "still here"')
  await assert.rejects(sbx.runCode('while True:\n    pass', { timeoutMs: 3000 }), TimeoutError)
  const t = Date.now()
  const e = await sbx.runCode('kept')
  assert.equal(e.text, 'still here')
  assert.ok(Date.now() - t < 30_000, `the next call took ${Date.now() - t} ms`)
})

test('contexts: create, list, restart, remove; two contexts do not share variables', { skip, timeout: 120_000 }, async () => {
  await sbx.runCode('shared = "default"')
  const a = await sbx.createCodeContext({ cwd: '/tmp' })
  const b = await sbx.createCodeContext()
  assert.equal(a.language, 'python')
  assert.equal(a.cwd, '/tmp')
  assert.equal(b.cwd, '/home/user')
  assert.equal((await sbx.runCode('import os; os.getcwd()', { context: a })).text, '/tmp')
  await sbx.runCode('v = "in a"', { context: a })
  const inB = await sbx.runCode('v', { context: b })
  assert.equal(inB.error.name, 'NameError')
  assert.equal((await sbx.runCode('shared', { context: b })).error.name, 'NameError')
  assert.equal((await sbx.runCode('v', { context: a })).text, 'in a')
  assert.equal((await sbx.runCode('shared')).text, 'default')

  const ids = (await sbx.listCodeContexts()).map((c) => c.id)
  assert.ok(ids.includes(a.id) && ids.includes(b.id), JSON.stringify(ids))

  await sbx.restartCodeContext(a)
  assert.equal((await sbx.runCode('v', { context: a })).error.name, 'NameError')
  assert.equal((await sbx.runCode('import os; os.getcwd()', { context: a })).text, '/tmp')

  await sbx.removeCodeContext(a.id)
  await sbx.removeCodeContext(b)
  const left = (await sbx.listCodeContexts()).map((c) => c.id)
  assert.ok(!left.includes(a.id) && !left.includes(b.id), JSON.stringify(left))
  await assert.rejects(sbx.runCode('1', { context: a }), SandboxError)
})

test('environment variables: the sandbox\'s, and per call', { skip }, async () => {
  const show = 'import os; print(os.environ.get("FROM_CREATE"), os.environ.get("PER_CALL"))'
  assert.equal((await sbx.runCode(show)).logs.stdout.join(''), 'sandbox-var None\n')
  assert.equal((await sbx.runCode(show, { envs: { PER_CALL: 'yes' } })).logs.stdout.join(''), 'sandbox-var yes\n')
  assert.equal((await sbx.runCode(show)).logs.stdout.join(''), 'sandbox-var None\n')
})

test('R runs as a second language; JavaScript has no kernel here', { skip, timeout: 180_000 }, async () => {
  // IRkernel shows a value as display data (not an execute_result), so it
  // is results[0] rather than the main result, as on E2B.
  const e = await sbx.runCode('r_var <- 40\nr_var + 2', { language: 'r' })
  assert.equal(e.error, undefined, JSON.stringify(e.error))
  assert.equal(e.results[0].text, '[1] 42')
  assert.equal((await sbx.runCode('r_var', { language: 'r' })).results[0].text, '[1] 40')
  const ctx = await sbx.createCodeContext({ language: 'r' })
  assert.equal(ctx.language, 'r')
  const out = await sbx.runCode('cat("hello from R\\n")', { context: ctx })
  assert.deepEqual(out.logs.stdout, ['hello from R\n'])
  const err = await sbx.runCode('stop("boom")', { context: ctx })
  assert.ok(err.error && err.error.value.includes('boom'), JSON.stringify(err))
  await sbx.removeCodeContext(ctx)
  await assert.rejects(sbx.runCode('1 + 1', { language: 'javascript' }), SandboxError)
})

test('pause and resume keep a context\'s variables', { skip, timeout: 300_000 }, async () => {
  const ctx = await sbx.createCodeContext()
  await sbx.runCode('survivor = [1, 2, 3]', { context: ctx })
  await sbx.runCode('default_survivor = "yes"')
  assert.equal(await sbx.pause(), true)
  const again = await Sandbox.connect(sbx.sandboxId)
  assert.equal((await again.runCode('sum(survivor)', { context: ctx })).text, '6')
  assert.equal((await again.runCode('default_survivor')).text, 'yes')
  assert.equal((await again.runCode('6 * 7')).text, '42')
})
