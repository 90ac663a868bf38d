// The dashboard in a real browser against a real control plane, PostgreSQL
// and agent (started by tests/e2e TestDashboard, which sets the environment
// below), with GitHub played by a local server answering as GitHub does.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BASE, launch, watch, shot, signIn } from './browser.mjs';

const ADMIN = { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD };
const MEMBER = { email: process.env.MEMBER_EMAIL, password: process.env.MEMBER_PASSWORD };
const GITHUB = process.env.GITHUB_URL;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let browser;
let admin; // the admin's page, signed in once
let adminWatch;
let sandboxId;
const pages = []; // every watched page, checked after each test

before(async () => {
  browser = await launch();
  const ctx = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  admin = await ctx.newPage();
  adminWatch = track(admin);
});

after(async () => {
  await browser?.close();
});

afterEach(() => {
  for (const w of pages) {
    const found = w.problems.splice(0);
    assert.deepEqual(found, [], 'the page logged errors or had failed requests');
  }
});

function track(page) {
  const w = watch(page);
  pages.push(w);
  return w;
}

async function newPage(opts = {}) {
  const ctx = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true, ...opts });
  const page = await ctx.newPage();
  return { page, w: track(page), ctx };
}

const terminalText = (page, name) => page.locator(`[data-terminal="${name}"] .xterm-rows`).innerText();

async function waitForTerminal(page, name, text, timeout = 20000) {
  try {
    await page.waitForFunction(
      ([n, t]) => document.querySelector(`[data-terminal="${n}"] .xterm-rows`)?.textContent?.includes(t),
      [name, text],
      { timeout }
    );
  } catch (e) {
    // Say what the terminal showed instead.
    const screen = await page.locator(`[data-terminal="${name}"] .xterm-rows`).innerText().catch(() => '(no terminal)');
    throw new Error(`${name} never showed ${JSON.stringify(text)}; its screen ends:\n${screen.split('\n').slice(-12).join('\n')}`, { cause: e });
  }
}

async function typeIn(page, name, line) {
  await page.locator(`[data-terminal="${name}"] .xterm`).click();
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

async function apiAs(ctx, method, path, { csrf = true, data } = {}) {
  const s = await (await ctx.request.get(BASE + '/v1/auth/session')).json();
  return ctx.request.fetch(BASE + path, { method, headers: csrf ? { 'X-CSRF-Token': s.csrf_token } : {}, data });
}

async function setGitHubUser(u) {
  const res = await fetch(GITHUB + '/_test/sign-in', { method: 'POST', body: JSON.stringify(u) });
  assert.equal(res.status, 204);
}

test('sign in with email and password', async () => {
  await admin.goto(BASE + '/sandboxes');
  await admin.waitForURL(/\/sign-in/);
  await admin.getByRole('link', { name: 'Continue with GitHub' }).waitFor();
  await shot(admin, 'sign-in');
  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Password').fill('not the password');
  adminWatch.allow(/HTTP 401: POST .*\/v1\/auth\/login|status of 401/);
  await admin.getByRole('button', { name: 'Sign in', exact: true }).click();
  await admin.getByRole('alert').filter({ hasText: 'wrong email or password' }).waitFor();
  await shot(admin, 'sign-in-error');
  adminWatch.disallow(/HTTP 401: POST .*\/v1\/auth\/login|status of 401/);
  adminWatch.problems.splice(0);
  await admin.getByLabel('Password').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Sign in', exact: true }).click();
  await admin.waitForURL(BASE + '/sandboxes');
  await admin.getByText('No sandboxes yet').waitFor();
  await shot(admin, 'sandboxes-empty');

  const cookies = await admin.context().cookies();
  const session = cookies.find((c) => c.name === 'wrenn_session');
  assert.ok(session, 'a session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  const stored = await admin.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  assert.ok(!stored.includes(session.value), 'the session is not readable by the page');
});

test('create a sandbox from the dialog', async () => {
  await admin.getByRole('button', { name: 'New sandbox' }).first().click();
  const dialog = admin.getByRole('dialog');
  await dialog.getByRole('combobox', { name: 'Template' }).selectOption('minimal');
  await dialog.getByText('Metadata and environment').click();
  await dialog.getByRole('button', { name: 'Add metadata' }).click();
  await dialog.getByLabel('Key', { exact: true }).fill('owner');
  await dialog.getByLabel('Value', { exact: true }).first().fill('dashboard-test');
  await dialog.getByRole('button', { name: 'Add variable' }).click();
  await dialog.getByLabel('NAME').fill('GREETING');
  await dialog.getByLabel('Value', { exact: true }).nth(1).fill('hello');
  await shot(admin, 'create-sandbox-dialog');
  await dialog.getByRole('button', { name: 'Create sandbox' }).click();
  await admin.waitForURL(/\/sandboxes\/sb-/, { timeout: 60000 });
  sandboxId = admin.url().split('/').pop().split('?')[0];
  await admin.locator('.head').getByText('running').waitFor({ timeout: 60000 });
  await admin.getByText('GREETING').waitFor();
  await admin.getByText('dashboard-test').first().waitFor();
  await shot(admin, 'sandbox-overview');

  await admin.goto(BASE + '/sandboxes');
  await admin.getByRole('link', { name: sandboxId }).waitFor();
  await admin.getByPlaceholder(/Search by ID/).fill('owner=dashboard');
  await admin.getByRole('link', { name: sandboxId }).waitFor();
  await shot(admin, 'sandboxes');
  await admin.getByPlaceholder(/Search by ID/).fill('no-such-thing');
  await admin.getByText('No sandbox matches').waitFor();
  await admin.getByPlaceholder(/Search by ID/).fill('');
});

test('files: upload, see, preview, download, rename, delete', async () => {
  await admin.goto(`${BASE}/sandboxes/${sandboxId}?tab=files`);
  const tree = admin.getByRole('tree');
  await admin.getByRole('button', { name: 'Upload' }).waitFor();
  const text = 'def greet(name):\n    return f"hello {name}"\n\nprint(greet("wrenn"))\n';
  const binary = randomBytes(300 * 1024);
  await admin.getByTestId('file-picker').setInputFiles([
    { name: 'hello.py', mimeType: 'text/x-python', buffer: Buffer.from(text) },
    { name: 'blob.bin', mimeType: 'application/octet-stream', buffer: binary }
  ]);
  await tree.getByRole('button', { name: 'hello.py' }).waitFor();
  await tree.getByRole('button', { name: 'blob.bin' }).waitFor();

  // Drag and drop: a file dropped on the pane uploads into the folder it
  // shows, with a progress bar, and arrives byte for byte.
  const droppedText = `dropped ${randomBytes(8).toString('hex')}\n`;
  const dropped = await admin.evaluateHandle((t) => {
    const dt = new DataTransfer();
    dt.items.add(new File([t], 'dropped.txt', { type: 'text/plain' }));
    return dt;
  }, droppedText);
  const pane = admin.getByRole('region', { name: 'Files', exact: true });
  await pane.dispatchEvent('dragover', { dataTransfer: dropped });
  await admin.getByText('Drop to upload into').waitFor();
  await pane.dispatchEvent('drop', { dataTransfer: dropped });
  await admin.getByRole('progressbar', { name: 'Uploading dropped.txt' }).waitFor();
  await tree.getByRole('button', { name: 'dropped.txt' }).waitFor();
  assert.equal(await admin.getByText('Drop to upload into').count(), 0, 'the drop hint goes away');
  const droppedRes = await apiAs(admin.context(), 'GET', `/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent('/home/user/dropped.txt')}`);
  assert.equal(droppedRes.status(), 200);
  assert.equal(await droppedRes.text(), droppedText);

  await tree.getByRole('button', { name: 'hello.py' }).click();
  const preview = admin.getByTestId('preview-text');
  await preview.waitFor();
  assert.equal(await preview.innerText(), text.replace(/\n$/, '') + '\n'.repeat(text.endsWith('\n') ? 1 : 0));
  assert.ok((await preview.locator('.hljs-keyword').count()) > 0, 'the preview is highlighted');
  await shot(admin, 'sandbox-files');

  await tree.getByRole('button', { name: 'blob.bin' }).click();
  await admin.getByText('A binary file').waitFor();
  const [download] = await Promise.all([admin.waitForEvent('download'), admin.getByRole('button', { name: 'Download' }).click()]);
  assert.equal(download.suggestedFilename(), 'blob.bin');
  assert.ok(Buffer.compare(await readFile(await download.path()), binary) === 0, 'downloaded bytes equal the uploaded ones');

  await tree.getByRole('button', { name: 'hello.py' }).click();
  await preview.waitFor();
  await admin.getByRole('button', { name: 'Rename' }).click();
  const dialog = admin.getByRole('dialog');
  await dialog.getByLabel('New name').fill('renamed.py');
  await dialog.getByRole('button', { name: 'Rename' }).click();
  await tree.getByRole('button', { name: 'renamed.py' }).waitFor();
  assert.equal(await tree.getByRole('button', { name: 'hello.py' }).count(), 0);

  await admin.getByRole('button', { name: 'Delete', exact: true }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await tree.getByRole('button', { name: 'renamed.py' }).waitFor({ state: 'detached' });

  // A device file is refused with a message, never streamed.
  await admin.getByRole('button', { name: 'root', exact: true }).click();
  await tree.getByRole('button', { name: 'dev', exact: true }).click();
  adminWatch.allow(/HTTP 400: GET .*files\?path=%2Fdev%2Fzero|status of 400/);
  await tree.getByRole('button', { name: 'zero', exact: true }).click();
  await admin.getByRole('status').filter({ hasText: /regular file/i }).waitFor();
  adminWatch.disallow(/HTTP 400: GET .*files\?path=%2Fdev%2Fzero|status of 400/);
  adminWatch.problems.splice(0);
});

test('terminals: two sessions survive a tab switch and a reload', async () => {
  await admin.goto(`${BASE}/sandboxes/${sandboxId}?tab=terminal`);
  await admin.locator('[data-terminal="Terminal 1"] .xterm-rows').waitFor();
  await typeIn(admin, 'Terminal 1', 'export MARK=kept-$((6*7)); echo one-$((40+2))');
  await waitForTerminal(admin, 'Terminal 1', 'one-42');

  await admin.getByRole('button', { name: 'New terminal' }).click();
  await admin.locator('[data-terminal="Terminal 2"] .xterm-rows').waitFor();
  await typeIn(admin, 'Terminal 2', 'echo two-$((40+3))');
  await waitForTerminal(admin, 'Terminal 2', 'two-43');

  // A long multi-line paste into cat arrives whole, and Ctrl-D at the
  // start of the next line ends cat even with the next command typed right
  // behind it (the keys are batched, so Ctrl-D and what follows reach the
  // terminal in one write; gVisor's line discipline used to lose that end
  // and cat read the command: envd now holds the rest until cat is done).
  const pasted = Array.from({ length: 200 }, (_, i) => `line ${String(i).padStart(3, '0')} ` + 'x'.repeat(90)).join('\n') + '\n';
  // Once the echo's output is on the screen, bash has switched bracketed
  // paste off (it does before running a command), so the paste reaches
  // cat as typed text.
  await typeIn(admin, 'Terminal 2', 'echo ready-$((1+2)); cat > /tmp/paste.txt');
  await waitForTerminal(admin, 'Terminal 2', 'ready-3');
  await admin.evaluate((t) => {
    const ta = document.querySelector('[data-terminal="Terminal 2"] textarea');
    const dt = new DataTransfer();
    dt.setData('text/plain', t);
    ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, pasted);
  // As a user would: once the paste's last line shows, Ctrl-D, then type on.
  await waitForTerminal(admin, 'Terminal 2', 'line 199 ', 60000);
  await admin.locator('[data-terminal="Terminal 2"] .xterm').click();
  await admin.keyboard.press('Control+D');
  await admin.keyboard.type('echo size=$(wc -c < /tmp/paste.txt) sum=$(md5sum < /tmp/paste.txt | cut -c1-8)');
  await admin.keyboard.press('Enter');
  const { createHash } = await import('node:crypto');
  const sum = createHash('md5').update(pasted).digest('hex').slice(0, 8);
  await waitForTerminal(admin, 'Terminal 2', `size=${Buffer.byteLength(pasted)} sum=${sum}`);
  await typeIn(admin, 'Terminal 2', 'clear; echo two-$((40+3))');
  await waitForTerminal(admin, 'Terminal 2', 'two-43');
  await shot(admin, 'sandbox-terminal');

  // Away to Files and back: both sessions are where they were.
  await admin.getByRole('tab', { name: 'Files' }).click();
  await admin.getByRole('button', { name: 'Upload' }).waitFor();
  await admin.getByRole('tab', { name: 'Terminal' }).click();
  assert.match(await terminalText(admin, 'Terminal 2'), /two-43/);
  await admin.getByRole('tab', { name: 'Terminal 1' }).click();
  assert.match(await terminalText(admin, 'Terminal 1'), /one-42/);
  await typeIn(admin, 'Terminal 1', 'echo again-$((1+1))');
  await waitForTerminal(admin, 'Terminal 1', 'again-2');

  // A reload lands on the terminal tab and reattaches to the same shells.
  await admin.reload();
  assert.ok(admin.url().endsWith('?tab=terminal'));
  await admin.getByRole('tab', { name: 'Terminal', selected: true, exact: true }).waitFor();
  await admin.getByRole('tab', { name: 'Terminal 2' }).waitFor();
  await admin.getByRole('tab', { name: 'Terminal 1' }).click();
  await admin.locator('[data-terminal="Terminal 1"] .xterm-rows').waitFor();
  // The new screen shows what the terminal showed before, once.
  await waitForTerminal(admin, 'Terminal 1', 'again-2');
  assert.equal((await terminalText(admin, 'Terminal 1')).match(/^again-2$/gm)?.length, 1, 'the replayed output appears once');
  await shot(admin, 'sandbox-terminal-reattached');
  await typeIn(admin, 'Terminal 1', 'echo mark=$MARK');
  await waitForTerminal(admin, 'Terminal 1', 'mark=kept-42');

  // A server started in the terminal shows up among the open ports.
  await typeIn(admin, 'Terminal 1', 'busybox httpd -p 8000 && echo httpd-$((2+2))');
  await waitForTerminal(admin, 'Terminal 1', 'httpd-4');
  await admin.getByRole('tab', { name: 'Overview' }).click();
  await admin.locator('.ports').getByText('8000', { exact: true }).waitFor();
});

test('metrics and a snapshot', async () => {
  await admin.getByRole('tab', { name: 'Metrics' }).click();
  await admin.getByRole('heading', { name: 'CPU' }).waitFor({ timeout: 30000 });
  await admin.waitForTimeout(3500);
  await shot(admin, 'sandbox-metrics');

  await admin.getByRole('button', { name: 'Snapshot' }).click();
  const dialog = admin.getByRole('dialog');
  await dialog.getByLabel('Name').fill('dashboard-snap');
  await dialog.getByRole('button', { name: 'Take snapshot' }).click();
  await dialog.waitFor({ state: 'hidden', timeout: 60000 });
  await admin.goto(BASE + '/snapshots');
  await admin.getByText('dashboard-snap').waitFor();
  await shot(admin, 'snapshots');

  // A clone from it; the snapshot then cannot be deleted.
  await admin.getByRole('button', { name: 'Launch' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Create sandbox' }).click();
  await admin.waitForURL(/\/sandboxes\/sb-/, { timeout: 60000 });
  await admin.locator('.head').getByText('running').waitFor({ timeout: 60000 });
  await admin.goto(BASE + '/snapshots');
  await admin.getByRole('button', { name: 'Delete dashboard-snap' }).click();
  adminWatch.allow(/HTTP 409: DELETE .*\/v1\/snapshots\/|status of 409/);
  await admin.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await admin.getByRole('dialog').getByRole('alert').waitFor();
  assert.match(await admin.getByRole('dialog').getByRole('alert').innerText(), /in use|clone|sandbox/i);
  adminWatch.disallow(/HTTP 409: DELETE .*\/v1\/snapshots\/|status of 409/);
  adminWatch.problems.splice(0);
  await admin.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
});

test('create and revoke an API key; the key stops working', async () => {
  await admin.goto(BASE + '/keys');
  await admin.getByRole('button', { name: 'Create key' }).first().click();
  await admin.getByRole('dialog').getByLabel('Name').fill('browser-test');
  await admin.getByRole('dialog').getByRole('button', { name: 'Create key' }).click();
  const key = (await admin.getByTestId('new-key').innerText()).trim();
  assert.match(key, /^e2b_[0-9a-f]{40}$/);
  await shot(admin, 'api-key-created');
  let res = await fetch(BASE + '/v1/sandboxes', { headers: { Authorization: 'Bearer ' + key } });
  assert.equal(res.status, 200, 'the new key works');
  await admin.getByRole('button', { name: 'Done' }).click();
  await admin.getByRole('row', { name: /browser-test/ }).waitFor();
  await shot(admin, 'api-keys');

  await admin.getByRole('row', { name: /browser-test/ }).getByRole('button', { name: 'Revoke' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Revoke key' }).click();
  await admin.getByRole('row', { name: /browser-test/ }).getByText('revoked').waitFor();
  res = await fetch(BASE + '/v1/sandboxes', { headers: { Authorization: 'Bearer ' + key } });
  assert.equal(res.status, 401, 'the revoked key is refused');
});

test('admin pages: members and invitations, hosts, audit, admin, settings', async () => {
  await admin.goto(BASE + '/team');
  await admin.getByRole('table', { name: 'Members' }).waitFor();
  // People join by an invitation they accept: invite the member, and
  // someone whose invitation is cancelled.
  const pending = admin.getByRole('table', { name: 'Pending invitations' });
  for (const email of [MEMBER.email, 'nobody@wrenn.test']) {
    await admin.getByRole('button', { name: 'Invite member' }).click();
    await admin.getByRole('dialog').getByLabel('Email').fill(email);
    await admin.getByRole('dialog').getByRole('button', { name: 'Send invitation' }).click();
    await pending.getByRole('row', { name: new RegExp(email) }).waitFor();
  }
  await shot(admin, 'members');
  assert.equal(await admin.getByRole('table', { name: 'Members' }).getByRole('row', { name: new RegExp(MEMBER.email) }).count(), 0, 'an invitation is not yet membership');
  await admin.getByRole('button', { name: 'Cancel the invitation to nobody@wrenn.test' }).click();
  await pending.getByRole('row', { name: /nobody@wrenn\.test/ }).waitFor({ state: 'detached' });
  await pending.getByRole('row', { name: new RegExp(MEMBER.email) }).waitFor();
  // Another of the admin's teams invites the member too (they decline it).
  const side = await apiAs(admin.context(), 'POST', '/v1/teams', { data: { name: 'Side project' } });
  assert.equal(side.status(), 201);
  const invited = await apiAs(admin.context(), 'POST', `/v1/teams/${(await side.json()).id}/invitations`, { data: { email: MEMBER.email } });
  assert.equal(invited.status(), 201);

  await admin.goto(BASE + '/hosts');
  await admin.getByText('gvisor').first().waitFor();
  await shot(admin, 'hosts');
  await admin.getByRole('button', { name: 'Register host' }).click();
  await admin.getByTestId('host-command').waitFor();
  assert.match(await admin.getByTestId('host-command').innerText(), /host-agent --control-plane http/);
  await shot(admin, 'hosts-register');
  // A host registers with that token (no agent behind it: it is only
  // drained and deleted here, and the real host stays as it is).
  const token = /echo '([^']+)'/.exec(await admin.getByTestId('host-command').innerText())[1];
  // As an agent does, it sends a certificate request for a P-256 key it
  // keeps (here: openssl's, thrown away).
  const keyDir = mkdtempSync(join(tmpdir(), 'spare-host-'));
  const csr = execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-subj', '/CN=spare-host', '-keyout', join(keyDir, 'host.key')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  rmSync(keyDir, { recursive: true });
  const reg = await fetch(BASE + '/v1/hosts/register', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token, name: 'spare-host', address: '127.0.0.1:9', csr }) });
  assert.equal(reg.status, 201, await reg.clone().text());
  await admin.getByRole('button', { name: 'Done' }).click();
  const spare = admin.locator('section.host', { has: admin.getByRole('heading', { name: 'spare-host' }) });
  await spare.waitFor();
  // It has never reported: no made-up zeros for its capacity.
  await spare.getByText('Capacity shows once its agent reports').waitFor();
  assert.equal(await spare.getByText('0 MiB').count(), 0);
  await spare.getByRole('button', { name: 'Drain' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Drain' }).click();
  await spare.getByText('draining').waitFor();
  assert.ok(await spare.getByRole('button', { name: 'Drain' }).isDisabled(), 'a draining host cannot be drained again');
  await shot(admin, 'hosts-draining');
  await spare.getByRole('button', { name: 'Delete' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Delete host' }).click();
  await spare.waitFor({ state: 'detached' });
  const left = await (await apiAs(admin.context(), 'GET', '/v1/hosts')).json();
  const leftHosts = Array.isArray(left) ? left : left.hosts;
  assert.equal(leftHosts.length, 1, 'only the real host is left');
  assert.notEqual(leftHosts[0].name, 'spare-host');
  assert.equal(leftHosts[0].status, 'ready');

  await admin.goto(BASE + '/audit');
  await admin.getByRole('button', { name: 'sandbox.create' }).first().waitFor();
  await shot(admin, 'audit');
  await admin.getByLabel('Result').selectOption('error');
  await admin.getByRole('button', { name: 'Apply' }).click();
  await admin.getByRole('button', { name: 'snapshot.delete' }).first().waitFor();
  assert.equal(await admin.getByRole('button', { name: 'sandbox.create' }).count(), 0, 'the result filter applies');
  await admin.getByText('Whole platform').click();
  await admin.getByRole('button', { name: 'auth.login' }).first().waitFor();

  await admin.goto(BASE + '/admin');
  await admin.getByRole('row', { name: new RegExp(MEMBER.email) }).waitFor();
  await shot(admin, 'admin-users');
  // Deactivating the member ends their sessions at once and refuses their
  // sign-in; activating lets them in again.
  const login = () => fetch(BASE + '/v1/auth/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(MEMBER) });
  const memberToken = (await (await login()).json()).token;
  const asMember = () => fetch(BASE + '/v1/sandboxes', { headers: { Authorization: `Bearer ${memberToken}` } });
  assert.equal((await asMember()).status, 200);
  const memberRow = admin.getByRole('row', { name: new RegExp(MEMBER.email) });
  await memberRow.getByRole('button', { name: 'Deactivate' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Deactivate' }).click();
  await memberRow.getByText('inactive').waitFor();
  await shot(admin, 'admin-user-deactivated');
  assert.equal((await asMember()).status, 401, "a deactivated user's session ends");
  assert.notEqual((await login()).status, 200, 'a deactivated user cannot sign in');
  await memberRow.getByRole('button', { name: 'Activate' }).click();
  await memberRow.getByText('active', { exact: true }).waitFor();
  assert.equal((await login()).status, 200, 'an activated user signs in again');
  await admin.getByRole('tab', { name: 'All sandboxes' }).click();
  await admin.getByText(sandboxId).waitFor();
  await shot(admin, 'admin-sandboxes');

  await admin.goto(BASE + '/settings');
  await admin.getByRole('heading', { name: 'Connected accounts' }).waitFor();
  await shot(admin, 'settings');
});

test('a member sees no admin pages and the API refuses them', async () => {
  const { page, ctx } = await newPage();
  await signIn(page, MEMBER.email, MEMBER.password);
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'Sandboxes' }).waitFor();
  assert.equal(await nav.getByRole('link', { name: 'Hosts' }).count(), 0);
  assert.equal(await nav.getByRole('link', { name: 'Admin' }).count(), 0);
  for (const path of ['/admin', '/hosts']) {
    await page.goto(BASE + path);
    await page.getByText(/is for platform admins/).waitFor();
  }
  await shot(page, 'member-admin-forbidden');
  for (const path of ['/v1/admin/users', '/v1/admin/sandboxes', '/v1/hosts']) {
    const res = await apiAs(ctx, 'GET', path);
    assert.equal(res.status(), 403, `${path} refuses a member`);
  }
  // The cookie alone is not enough: a forged request has no CSRF token.
  const forged = await apiAs(ctx, 'GET', '/v1/sandboxes', { csrf: false });
  assert.equal(forged.status(), 403);
  assert.equal((await forged.json()).code, 'csrf');

  // The member sees the invitations waiting for them, declines one and
  // accepts the admin's team's; their active team stays their own until
  // they switch to the admin's team, where the sandbox is.
  await page.goto(BASE + '/sandboxes');
  const switcher = page.getByRole('button', { name: 'Switch team' });
  assert.match(await switcher.innerText(), /member's team/);
  const invites = page.getByRole('region', { name: 'Invitations' });
  await invites.getByText("admin's team").waitFor();
  await invites.getByText('Side project').waitFor();
  await shot(page, 'invitations');
  await page.getByRole('button', { name: 'Decline the invitation to Side project' }).click();
  await invites.getByText('Side project').waitFor({ state: 'detached' });
  await page.getByRole('button', { name: "Accept the invitation to admin's team" }).click();
  await invites.waitFor({ state: 'detached' });
  assert.match(await switcher.innerText(), /member's team/);
  await switcher.click();
  assert.equal(await page.getByRole('menuitem', { name: /Side project/ }).count(), 0, 'a declined invitation joins nothing');
  await page.getByRole('menuitem', { name: /admin's team/ }).click();
  await page.getByRole('link', { name: sandboxId }).waitFor();
  assert.match(await switcher.innerText(), /admin's team/);
  // The choice is remembered: a new sign-in starts in the admin's team.
  const again = await newPage();
  await signIn(again.page, MEMBER.email, MEMBER.password);
  assert.match(await again.page.getByRole('button', { name: 'Switch team' }).innerText(), /admin's team/);
  await again.ctx.close();
  await ctx.close();
});

test('GitHub sign-in end to end against the local GitHub', async () => {
  // An account whose verified primary email is the admin's links to it.
  await setGitHubUser({ ID: 9001, Login: 'octo-admin', Name: 'Octo Admin', Emails: [{ email: ADMIN.email, primary: true, verified: true }] });
  const { page, ctx } = await newPage();
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  await page.goto(BASE + '/sign-in');
  await page.getByRole('link', { name: 'Continue with GitHub' }).click();
  await page.waitForURL(GITHUB + '/**');
  assert.match(page.url(), /code_challenge_method=S256/);
  assert.match(page.url(), /state=/);
  await shot(page, 'github-consent');
  await page.getByRole('button', { name: 'Authorize' }).click();
  await page.waitForURL(BASE + '/sandboxes');
  const s = await (await ctx.request.get(BASE + '/v1/auth/session')).json();
  assert.equal(s.me.user.email, ADMIN.email);
  const cookie = (await ctx.cookies()).find((c) => c.name === 'wrenn_session');
  assert.ok(cookie?.httpOnly);
  assert.ok(!urls.some((u) => u.includes(cookie.value)), 'the session never appears in a URL');
  assert.ok(!urls.some((u) => /[?&](token|access_token)=/.test(u)), 'no token in any URL');
  await page.goto(BASE + '/settings');
  await page.getByText('octo-admin').waitFor();
  await ctx.close();

  // Consent denied: back on the sign-in page with a message.
  const denied = await newPage();
  await denied.page.goto(BASE + '/sign-in');
  await denied.page.getByRole('link', { name: 'Continue with GitHub' }).click();
  await denied.page.getByRole('button', { name: 'Cancel' }).click();
  await denied.page.waitForURL(/\/sign-in\?error=github_denied/);
  await denied.page.getByRole('alert').filter({ hasText: 'cancelled' }).waitFor();
  await shot(denied.page, 'github-denied');
  await denied.ctx.close();

  // A new GitHub user with a verified email gets an account (sign-up is on).
  await setGitHubUser({ ID: 9002, Login: 'new-octo', Name: 'New Octo', Emails: [{ email: 'octo@example.test', primary: true, verified: true }] });
  const fresh = await newPage({ viewport: PHONE });
  await fresh.page.goto(BASE + '/sign-in');
  await fresh.page.getByRole('link', { name: 'Continue with GitHub' }).click();
  await fresh.page.getByRole('button', { name: 'Authorize' }).click();
  await fresh.page.waitForURL(BASE + '/sandboxes');
  await fresh.page.getByText('No sandboxes yet').waitFor();
  await shot(fresh.page, 'phone-sandboxes');
  await fresh.page.getByRole('button', { name: 'Open navigation' }).click();
  await fresh.page.getByRole('link', { name: 'API keys' }).waitFor();
  await shot(fresh.page, 'phone-navigation');
  const who = await (await fresh.ctx.request.get(BASE + '/v1/auth/session')).json();
  assert.equal(who.me.user.email, 'octo@example.test');
  assert.equal(who.me.has_password, false);
  // Like any sign-up: a personal team of their own, active, and never an admin.
  assert.equal(who.me.user.admin, false);
  assert.equal(who.me.teams.length, 1);
  assert.equal(who.me.teams[0].role, 'owner');
  assert.equal(who.me.active_team_id, who.me.teams[0].id);
  await fresh.ctx.close();

  // An unverified email that matches no one cannot make an account.
  await setGitHubUser({ ID: 9003, Login: 'unverified', Name: '', Emails: [{ email: 'x@example.test', primary: true, verified: false }] });
  const unverified = await newPage();
  await unverified.page.goto(BASE + '/sign-in');
  await unverified.page.getByRole('link', { name: 'Continue with GitHub' }).click();
  await unverified.page.getByRole('button', { name: 'Authorize' }).click();
  await unverified.page.waitForURL(/error=github_no_email/);
  await unverified.page.getByRole('alert').filter({ hasText: 'no verified primary email' }).waitFor();
  await unverified.ctx.close();
});

test('connect and disconnect GitHub in Settings; change password', async () => {
  await setGitHubUser({ ID: 9004, Login: 'octo-member', Name: 'Octo Member', Emails: [{ email: 'other@example.test', primary: true, verified: true }] });
  const { page, ctx } = await newPage({ colorScheme: 'dark' });
  await signIn(page, MEMBER.email, MEMBER.password);
  await page.goto(BASE + '/settings');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.getByRole('button', { name: 'Authorize' }).click();
  await page.waitForURL(/\/settings\?github=connected/);
  await page.getByText('octo-member').waitFor();
  await shot(page, 'settings-dark');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Disconnect' }).click();
  await page.waitForURL(BASE + '/settings');
  await page.getByRole('button', { name: 'Connect' }).waitFor();

  await page.getByLabel('Current password').fill(MEMBER.password);
  await page.getByLabel('New password').fill('a new password 2');
  await page.getByLabel('Repeat it').fill('a new password 2');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByText('your other sessions were signed out').waitFor();
  const old = await fetch(BASE + '/v1/auth/login', { method: 'POST', body: JSON.stringify({ email: MEMBER.email, password: MEMBER.password }), headers: { 'Content-Type': 'application/json' } });
  assert.equal(old.status, 401, 'the old password no longer works');
  const fresh = await fetch(BASE + '/v1/auth/login', { method: 'POST', body: JSON.stringify({ email: MEMBER.email, password: 'a new password 2' }), headers: { 'Content-Type': 'application/json' } });
  assert.equal(fresh.status, 200);
  MEMBER.password = 'a new password 2';

  await page.goto(BASE + '/sandboxes');
  await page.getByRole('heading', { name: 'Sandboxes', level: 1 }).waitFor();
  await shot(page, 'sandboxes-dark');
  await page.getByRole('button', { name: 'Account' }).click();
  await page.getByRole('menuitem', { name: 'Sign out' }).click();
  await page.waitForURL(/\/sign-in/);
  await ctx.close();
});

test('destroy a sandbox with confirmation', async () => {
  await admin.goto(BASE + '/sandboxes');
  const row = admin.getByRole('row', { name: new RegExp(sandboxId) });
  await row.getByRole('button', { name: `Actions for ${sandboxId}` }).click();
  await admin.getByRole('menuitem', { name: 'Destroy' }).click();
  await shot(admin, 'destroy-confirm');
  await admin.getByRole('dialog').getByRole('button', { name: 'Destroy' }).click();
  await row.waitFor({ state: 'detached' });
});
