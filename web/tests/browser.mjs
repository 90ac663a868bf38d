// Shared by the browser tests: Debian's Chromium driven by playwright-core,
// pages watched for console errors and failed requests, screenshots.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const BASE = process.env.WRENN_URL ?? 'http://127.0.0.1:8080';
export const ARTIFACTS = process.env.ARTIFACTS ?? '/tmp/wrenn-dashboard-artifacts';

export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
];

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: FLAGS });
}

/**
 * watch records what would tell a user something broke: console errors,
 * uncaught exceptions, requests that failed and responses of 400 or more.
 * allow(pattern) admits the ones a test provokes on purpose.
 */
export function watch(page) {
  const problems = [];
  const allowed = [];
  const ok = (text) => allowed.some((re) => re.test(text));
  page.on('console', (m) => {
    if (m.type() === 'error' && !ok(m.text())) problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    // A request the app cancels on purpose (a read the user moved away
    // from) is not a failure.
    if (why === 'net::ERR_ABORTED') return;
    const line = `request failed: ${r.method()} ${r.url()} ${why}`;
    if (!ok(line)) problems.push(line);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const line = `HTTP ${r.status()}: ${r.request().method()} ${r.url()}`;
    if (!ok(line)) problems.push(line);
  });
  return {
    problems,
    allow(re) {
      allowed.push(re);
    },
    disallow(re) {
      const i = allowed.indexOf(re);
      if (i >= 0) allowed.splice(i, 1);
    }
  };
}

let shotCount = 0;
export async function shot(page, name, opts = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  shotCount++;
  const file = join(ARTIFACTS, `${String(shotCount).padStart(2, '0')}-${name}.png`);
  await page.waitForTimeout(150); // let transitions settle
  await page.screenshot({ path: file, fullPage: opts.fullPage ?? false, animations: 'disabled' });
  return file;
}

export async function signIn(page, email, password) {
  await page.goto(BASE + '/sign-in');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(BASE + '/sandboxes');
  await page.getByRole('heading', { name: 'Sandboxes', level: 1 }).waitFor();
}
