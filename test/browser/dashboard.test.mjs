// Headless-browser tests of pulsegate's dashboard and embeddable widget,
// against a real `pulsegate demo` (sample app, traffic with bursts, the
// real sidecar). playwright-core drives Debian's chromium; nothing is
// downloaded. Run with test/browser/run.sh (or `node --test` here with
// PULSEGATE_BIN set).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SHOTS = path.join(ROOT, 'test/artifacts/screenshots');
const BIN = process.env.PULSEGATE_BIN || path.join(ROOT, 'test/artifacts/pulsegate-browser');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'browser-test-token-' + Math.random().toString(36).slice(2);
const PAGES = ['', 'performance', 'health', 'monitoring'];
// Generous: this machine is shared and the demo ticks every 5 s.
const WAIT = 60_000;

let demo; // child process
let demoLog;
let proxyURL;
let adminURL;
let context;
let attacker; // http.Server on 127.0.0.2
const consoleErrors = []; // {url, text}

function startDemo() {
  fs.mkdirSync(SHOTS, { recursive: true });
  demoLog = fs.createWriteStream(path.join(ROOT, 'test/artifacts/browser-demo.log'));
  // --no-services: the database and Redis alerts of the demo's schedule
  // fire and resolve within seconds, which the acknowledgement tests would race.
  demo = spawn(BIN, ['demo', '--no-services'], {
    env: {
      ...process.env,
      RESPONSIVENESS_LISTEN_ADDR: '127.0.0.1:0',
      RESPONSIVENESS_ADMIN_ADDR: '127.0.0.1:0',
      RESPONSIVENESS_ADMIN_TOKEN: TOKEN,
      // The tests lower the response-time thresholds to trip an alert,
      // which also makes pulsegate shed load; the app page the widget
      // test opens is a critical route, never shed.
      RESPONSIVENESS_BACKPRESSURE_CRITICAL_ROUTES: '/admin/users',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo.stdout.pipe(demoLog, { end: false });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pulsegate demo did not log "listening" within 60 s')), WAIT);
    demo.on('exit', (code) => reject(new Error(`pulsegate demo exited with ${code} before listening`)));
    readline.createInterface({ input: demo.stderr }).on('line', (line) => {
      demoLog.write(line + '\n');
      if (proxyURL) return;
      let ev;
      try {
        ev = JSON.parse(line);
      } catch {
        return;
      }
      if (ev.msg === 'listening') {
        proxyURL = 'http://' + ev.proxy_addr;
        adminURL = 'http://' + ev.admin_addr;
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function api(pathname, init = {}) {
  const r = await fetch(adminURL + pathname, {
    ...init,
    headers: { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json', ...(init.headers || {}) },
  });
  const body = await r.json();
  return { status: r.status, body };
}

async function waitFor(what, fn, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function newPage() {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push({ url: page.url(), text: m.text() });
  });
  page.on('pageerror', (e) => consoleErrors.push({ url: page.url(), text: 'uncaught: ' + e.message }));
  // Name the resource behind a "Failed to load resource" console line.
  page.on('response', (r) => {
    if (r.status() >= 400) consoleErrors.push({ url: page.url(), text: `HTTP ${r.status()} ${r.url()}`, http: true });
  });
  return page;
}

// errorsFor lists the console errors of pages under urlPrefix, followed
// by the failed responses that explain them. A failed /favicon.ico (Chromium
// asks every page for one; the demo app has none, and pulsegate may shed
// the request) is not the dashboard's business and is excused.
function errorsFor(urlPrefix) {
  const onPage = consoleErrors.filter((e) => e.url.startsWith(urlPrefix));
  const failed = onPage.filter((e) => e.http && !/\/favicon\.ico$/.test(e.text));
  const faviconOnly = failed.length === 0;
  const logged = onPage.filter((e) => !e.http && !(faviconOnly && /^Failed to load resource/.test(e.text)));
  return logged.length ? [...logged, ...failed] : [];
}

// gotoApp opens a page of the demo app through the proxy port. Under load
// pulsegate may shed the request (503 + Retry-After) — that is the product
// working — so try again until the app answers.
async function gotoApp(page, url) {
  await waitFor(`the app to serve ${url}`, async () => {
    const r = await page.goto(url);
    return r && r.status() === 200;
  });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

// firingAlert waits until the API lists a firing alert and returns it.
async function firingAlert(not = []) {
  return waitFor('a firing alert', async () => {
    const { body } = await api('/admin/api/alerts/responsiveness?state=firing');
    return body.alerts.find((a) => !not.includes(a.id));
  });
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `no pulsegate binary at ${BIN}: run test/browser/run.sh or set PULSEGATE_BIN`);
  await startDemo();
  // Trip an alert quickly: response time thresholds far below what the
  // demo's traffic takes (writes need the token).
  const r = await api('/admin/api/config/responsiveness', {
    method: 'POST',
    body: JSON.stringify({ thresholds: { response_time_warning: 0.001, response_time_critical: 0.002 } }),
  });
  assert.equal(r.status, 200, 'lowering the thresholds: ' + JSON.stringify(r.body));
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulsegate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
  });
});

after(async () => {
  if (context) await context.close();
  if (attacker) await new Promise((r) => attacker.close(r));
  if (demo && demo.exitCode === null) {
    const exited = new Promise((r) => demo.once('exit', r));
    demo.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (demo.exitCode === null) demo.kill('SIGKILL');
  }
  if (demoLog) demoLog.end();
});

describe('pulsegate dashboard in chromium', () => {
  it('sends a signed-out browser to sign in, and signs in with the token into an HttpOnly cookie', async () => {
    const page = await newPage();
    const r = await page.goto(adminURL + '/admin/responsiveness/login');
    assert.equal(r.status(), 200);
    assert.match(r.headers()['content-security-policy'], /script-src 'self'/);
    await page.fill('#token', 'wrong-token');
    await page.click('button[type=submit]');
    await page.waitForSelector('#login-msg.error');
    assert.match(await page.textContent('#login-msg'), /not valid/);
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForURL(adminURL + '/admin/responsiveness/'), page.click('button[type=submit]')]);
    const session = (await context.cookies()).find((c) => c.name === 'pulsegate_session');
    assert.ok(session, 'session cookie set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie readable by scripts');
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(TOKEN), 'token not in web storage');
    // The 401 on the login attempt with a wrong token is the one expected console error.
    consoleErrors.length = 0;
    await page.close();
  });

  it('loads every page with no console errors', async () => {
    for (const p of PAGES) {
      const page = await newPage();
      const url = adminURL + '/admin/responsiveness/' + p;
      const r = await page.goto(url);
      assert.equal(r.status(), 200, url);
      assert.equal(r.headers()['x-content-type-options'], 'nosniff');
      assert.match(r.headers()['content-security-policy'], /default-src 'self'.*object-src 'none'/);
      await page.waitForSelector('#conn.on', { timeout: WAIT });
      await page.waitForSelector('.widget .body > :not(.muted)', { timeout: WAIT });
      await page.waitForTimeout(1500); // let late requests land
      await shot(page, p || 'overview');
      assert.deepEqual(errorsFor(url), [], `console errors on ${url}`);
      await page.close();
    }
  });

  it('updates figures live over SSE without a reload', async () => {
    const page = await newPage();
    await page.goto(adminURL + '/admin/responsiveness/');
    await page.waitForSelector('#conn.on');
    await page.evaluate(() => { window.__notReloaded = true; });
    const first = await waitFor('a first snapshot', () => page.getAttribute('#conn', 'data-tick-time'));
    const firstText = await page.textContent('[data-figure="throughput_rps"] .value');
    const later = await waitFor('a newer snapshot', async () => {
      const t = await page.getAttribute('#conn', 'data-tick-time');
      return t && t !== first ? t : null;
    });
    assert.ok(Number(later) > Number(first));
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
    // The visible figures are re-rendered from the snapshot.
    const updated = await page.textContent('[data-widget="figures"] .small');
    assert.match(updated, /updated \d\d:\d\d:\d\d/);
    assert.ok(firstText.length > 0);
    await page.close();
  });

  it('draws the trend graphs from the history ring, for every range', async () => {
    const page = await newPage();
    await page.goto(adminURL + '/admin/responsiveness/monitoring');
    // Two 10-s history steps make a line.
    await waitFor('a drawn CPU line', () => page.evaluate(() =>
      [...document.querySelectorAll('path.line[data-series="cpu_usage"]')].some((p) => /L/.test(p.getAttribute('d') || ''))));
    for (const range of ['1h', '24h', '15m']) {
      await page.click(`.ranges button[data-range="${range}"]`);
      await waitFor(`the ${range} graph`, () => page.evaluate((r) =>
        document.querySelector(`.ranges button[data-range="${r}"]`).getAttribute('aria-pressed') === 'true' &&
        [...document.querySelectorAll('path.line')].some((p) => (p.getAttribute('d') || '').length > 0), range));
    }
    const thresholds = await page.locator('line.threshold.critical').count();
    assert.ok(thresholds >= 3, `threshold markers drawn (${thresholds})`);
    await shot(page, 'monitoring-trends');
    await page.close();
  });

  it('refuses a cross-origin acknowledge POST from a page on 127.0.0.2', async () => {
    const target = await firingAlert();
    const ackURL = adminURL + '/admin/api/alerts/responsiveness/acknowledge';
    attacker = http.createServer((req, res) => {
      res.setHeader('Content-Type', 'text/html');
      res.end(`<!doctype html><title>evil</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="${ackURL}" enctype="text/plain" target="sink">
<input name='{"alert_ids":["${target.id}"],"note":"csrf","x":"' value='"}'></form>
<script>
fetch(${JSON.stringify(ackURL)}, {method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: {'Content-Type': 'text/plain'}, body: JSON.stringify({alert_ids: [${JSON.stringify(target.id)}], note: 'csrf'})})
  .finally(() => document.getElementById('f').submit());
</script>`);
    });
    await new Promise((r) => attacker.listen(0, '127.0.0.2', r));
    const evilURL = `http://127.0.0.2:${attacker.address().port}/`;
    const page = await newPage();
    const statuses = [];
    page.on('response', (r) => {
      if (r.url() === ackURL) statuses.push(r.status());
    });
    await page.goto(evilURL);
    await waitFor('both forged requests answered', () => statuses.length >= 2, 30_000);
    assert.deepEqual(statuses, [403, 403], 'the admin API refused both cross-origin POSTs');
    const { body } = await api('/admin/api/alerts/responsiveness?limit=1000');
    const after = body.alerts.find((a) => a.id === target.id);
    assert.ok(after, 'alert still listed');
    assert.notEqual(after.state, 'acknowledged', 'a cross-origin request acknowledged the alert');
    assert.notEqual(after.ack_note, 'csrf');
    await page.close();
  });

  it('acknowledges an alert from the UI with a note shown as text, and the API shows it', async () => {
    const page = await newPage();
    await page.goto(adminURL + '/admin/responsiveness/health');
    const row = await waitFor('a firing alert in the UI', async () => {
      const l = page.locator('li.alert[data-state="firing"]').first();
      return (await l.count()) > 0 ? l : null;
    });
    const id = await row.getAttribute('data-alert-id');
    const note = 'looking into it <img src=x onerror="window.__pwned=1"> <b>bold</b>';
    await row.locator('input.note').fill(note);
    await row.locator('button.ack').click();
    const acked = page.locator(`li.alert[data-alert-id="${id}"][data-state="acknowledged"]`);
    await acked.waitFor({ timeout: WAIT });
    assert.equal(await acked.locator('.ack-note').textContent(), note, 'the note is shown verbatim, as text');
    assert.equal(await acked.locator('.ack-note img, .ack-note b').count(), 0, 'the note did not become markup');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    const { body } = await api('/admin/api/alerts/responsiveness?state=acknowledged');
    const a = body.alerts.find((x) => x.id === id);
    assert.ok(a, 'the API lists the alert as acknowledged');
    assert.equal(a.ack_note, note);
    assert.match(a.acknowledged_by, /^session:/);
    // The alert history table shows the note as text too.
    await waitFor('the note in the alert history', () => page.evaluate((n) =>
      [...document.querySelectorAll('[data-widget="alert-history"] td.ack-note')].some((td) => td.textContent === n), note));
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await shot(page, 'health-acknowledged');
    assert.deepEqual(errorsFor(adminURL + '/admin/responsiveness/health'), []);
    await page.close();
  });

  it('shows a <script> URL path as text and never runs it', async () => {
    const evilPath = '/%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E';
    for (let i = 0; i < 5; i++) {
      const r = await fetch(proxyURL + evilPath);
      await r.arrayBuffer();
    }
    const page = await newPage();
    await page.goto(adminURL + '/admin/responsiveness/performance');
    await waitFor('the route in the table', () => page.evaluate(() =>
      [...document.querySelectorAll('[data-widget="routes"] td.route')].some((td) => td.textContent.includes('<script>window.__pwned=1</script>'))));
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.evaluate(() => [...document.scripts].filter((s) => s.textContent.includes('__pwned')).length), 0);
    await shot(page, 'performance-escaped-route');
    // The route table sorts by any column.
    await page.click('[data-widget="routes"] button.sort[data-sort="requests"]');
    await waitFor('rows sorted by requests', () => page.evaluate(() => {
      const th = document.querySelector('[data-widget="routes"] button.sort[data-sort="requests"]').closest('th');
      const n = [...document.querySelectorAll('[data-widget="routes"] tbody tr td:nth-child(2)')].map((td) => Number(td.textContent.replace(/,/g, '')));
      return th.getAttribute('aria-sort') === 'descending' && n.length > 1 && n.every((v, i) => i === 0 || n[i - 1] >= v);
    }));
    // The dashboard's own 404 page shows such a path as text as well.
    const r = await page.goto(adminURL + '/admin/responsiveness' + evilPath);
    assert.equal(r.status(), 404);
    assert.equal(await page.textContent('#missing-path'), '/admin/responsiveness/<script>window.__pwned=1</script>');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await page.close();
  });

  it('renders live widgets inside the app page /admin/users on the proxy port', async () => {
    const page = await newPage();
    const url = proxyURL + '/admin/users';
    await gotoApp(page, url);
    assert.match(await page.textContent('h1'), /Users/, 'the page is the app’s own');
    // Playwright's CSS selectors pierce the widgets' open shadow roots.
    await page.waitForSelector('pulsegate-widget[kind="health"] [data-verdict]', { timeout: WAIT });
    await page.waitForSelector('pulsegate-widget[kind="resources"] .gauge[data-figure="cpu_usage"]', { timeout: WAIT });
    await waitFor('a throughput figure', async () => {
      const t = await page.textContent('pulsegate-widget[kind="performance"] [data-figure="throughput_rps"] .value');
      return t && t !== '–';
    });
    const isolated = await page.evaluate(() => [...document.querySelectorAll('pulsegate-widget')].every((w) =>
      w.shadowRoot && w.shadowRoot.querySelector('link[rel=stylesheet]') && !document.querySelector('.widget')));
    assert.ok(isolated, 'widgets render in shadow roots with their own stylesheet');
    await waitFor('a mini trend graph', () => page.evaluate(() => {
      const w = document.querySelector('pulsegate-widget[kind="resources"]');
      return [...w.shadowRoot.querySelectorAll('path.line')].some((p) => (p.getAttribute('d') || '').length > 0);
    }));
    await page.waitForTimeout(1000);
    await shot(page, 'widget-in-app');
    assert.deepEqual(errorsFor(url), [], 'console errors in the app page');
    await page.close();
  });

  it('signs out: the cookie is cleared, the widget asks to sign in and returns to the app page after', async () => {
    const page = await newPage();
    await page.goto(adminURL + '/admin/responsiveness/');
    await page.waitForSelector('#logout:not([hidden])');
    // The README's screenshot: the overview after the demo has run a while.
    await waitFor('drawn trend lines', () => page.evaluate(() =>
      [...document.querySelectorAll('path.line')].filter((p) => /L/.test(p.getAttribute('d') || '')).length >= 3));
    await waitFor('a snapshot', () => page.getAttribute('#conn', 'data-tick-time'));
    await shot(page, 'overview-live');
    await Promise.all([page.waitForURL(/\/admin\/responsiveness\/login$/), page.click('#logout')]);
    assert.equal((await context.cookies()).find((c) => c.name === 'pulsegate_session'), undefined);
    // Signed out, a page navigation is sent to the login page, which will return it there.
    const r = await page.goto(adminURL + '/admin/responsiveness/health');
    assert.equal(r.status(), 200);
    assert.match(page.url(), /\/admin\/responsiveness\/login\?next=%2Fadmin%2Fresponsiveness%2Fhealth$/);
    // Scripts still get a plain 401.
    assert.equal(await page.evaluate(async () => (await fetch('/admin/api/health/responsiveness')).status), 401);
    await gotoApp(page, proxyURL + '/admin/users');
    await page.waitForSelector('pulsegate-widget[kind="health"] .banner:not([hidden]) a[href*="login"]', { timeout: WAIT });
    assert.equal(await page.locator('pulsegate-widget[kind="health"] [data-verdict]').count(), 0, 'no data shown signed out');
    // The widget's "Sign in" link leads back to the app page afterwards.
    await page.click('pulsegate-widget[kind="health"] .banner a');
    await page.waitForURL(/\/admin\/responsiveness\/login\?next=/);
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForURL(proxyURL + '/admin/users'), page.click('button[type=submit]')]);
    await page.waitForSelector('pulsegate-widget[kind="health"] [data-verdict]', { timeout: WAIT });
    await page.close();
  });
});
