// Measures the dashboard's first load in Chromium: the JavaScript a cold
// load of /sandboxes fetches (bytes on the wire, gzip) and the time from
// navigation to an interactive sandbox list (rows or the empty state
// rendered, from performance.timeOrigin), cold cache and warm, as medians
// of several runs. Prints a table; asserts nothing.
//   WRENN_URL=http://127.0.0.1:8080 ADMIN_EMAIL=… ADMIN_PASSWORD=… node tests/measure.mjs
import { BASE, launch } from './browser.mjs';

const RUNS = Number(process.env.RUNS ?? 5);
const email = process.env.ADMIN_EMAIL;
const password = process.env.ADMIN_PASSWORD;
const ready = 'table[aria-label="Sandboxes"] tbody tr, :text("No sandboxes yet")';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const browser = await launch();
const cold = [];
const warm = [];
let jsBytes = 0;
let jsRaw = 0;
let jsFiles = 0;
for (let i = 0; i < RUNS; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const login = await ctx.request.post(BASE + '/v1/auth/login', { data: { email, password, session: 'cookie' } });
  if (!login.ok()) throw new Error(`sign-in failed: ${login.status()} ${await login.text()}`);
  const page = await ctx.newPage();
  const scripts = [];
  page.on('requestfinished', async (r) => {
    if (r.resourceType() === 'script') scripts.push(r);
  });
  await page.goto(BASE + '/sandboxes');
  await page.locator(ready).first().waitFor();
  cold.push(await page.evaluate(() => performance.now()));
  if (i === 0) {
    for (const r of scripts) {
      const sizes = await r.sizes();
      jsBytes += sizes.responseBodySize;
      jsRaw += (await (await r.response()).body()).length;
      jsFiles++;
    }
  }
  await page.goto(BASE + '/snapshots');
  await page.goto(BASE + '/sandboxes');
  await page.locator(ready).first().waitFor();
  warm.push(await page.evaluate(() => performance.now()));
  await ctx.close();
}
await browser.close();

const row = (a, b) => console.log(a.padEnd(52) + b);
row('measure', 'value');
row('JavaScript fetched by a cold load of /sandboxes', `${(jsBytes / 1024).toFixed(1)} KiB gzipped (${(jsRaw / 1024).toFixed(1)} KiB raw, ${jsFiles} files)`);
row(`navigation to interactive sandbox list, cold (n=${RUNS})`, `median ${median(cold).toFixed(0)} ms (min ${Math.min(...cold).toFixed(0)}, max ${Math.max(...cold).toFixed(0)})`);
row(`navigation to interactive sandbox list, warm (n=${RUNS})`, `median ${median(warm).toFixed(0)} ms (min ${Math.min(...warm).toFixed(0)}, max ${Math.max(...warm).toFixed(0)})`);
