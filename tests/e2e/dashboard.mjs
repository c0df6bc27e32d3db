// dashboard.mjs — the dashboard as an analyst uses it, in headless Chromium.
//
// Run by tests/integration/test_dashboard.c, which starts the real servers
// (PostgreSQL, nats-server, vigil serve) and passes, in the environment:
//   VIGIL_URL          http://127.0.0.1:PORT of `vigil serve`
//   VIGIL_ANALYST_KEY  the key the analyst signs in with (role analyst)
//   VIGIL_INGEST_KEY   a key that may post customers and transactions
//   VIGIL_ADMIN_KEY    a second person's key (approves a four-eyes proposal)
//   VIGIL_E2E_OUT      directory for screenshots
//   CHROMIUM           the browser binary (Debian's /usr/bin/chromium)
//
// The browser reaches vigil through a small TCP relay of our own (below), so
// the test can cut the live feed's connection the way a flaky network would
// and check that the feed resumes without losing an event.
//
// Exits 0 when every check passed; otherwise prints what failed and exits 1.
// Prints "E2E alert_live_ms=N" and "E2E ALERT <id> CUSTOMER <id>" for the
// driver.

import { chromium } from 'playwright-core';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';

const URL_ = process.env.VIGIL_URL;
const ANALYST = process.env.VIGIL_ANALYST_KEY;
const INGEST = process.env.VIGIL_INGEST_KEY;
const ADMIN = process.env.VIGIL_ADMIN_KEY; // a second person, for four eyes
const OUT = process.env.VIGIL_E2E_OUT || '.';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LIVE_LIMIT_MS = 2000;

if (!URL_ || !ANALYST || !INGEST || !ADMIN) {
  console.error('dashboard.mjs: VIGIL_URL, VIGIL_ANALYST_KEY, VIGIL_INGEST_KEY and VIGIL_ADMIN_KEY are required');
  process.exit(2);
}
fs.mkdirSync(OUT, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function api(method, p, key, body) {
  const r = await fetch(URL_ + p, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return json;
}

// ---- a TCP relay in front of vigil, whose connections we can cut ----------
// It can also hold back the response to the next request that starts with a
// given prefix (holdResponseTo), the way a slow network would, until
// releaseHeld(): the live feed and every other request still flow.
const upstream = new URL(URL_);
const conns = new Set();
let refusing = false;
let holdPrefix = null;
const relay = net.createServer((c) => {
  if (refusing) return c.destroy();
  const u = net.connect(Number(upstream.port), upstream.hostname);
  const pair = { c, u, held: null };
  conns.add(pair);
  const end = () => {
    c.destroy();
    u.destroy();
    conns.delete(pair);
  };
  c.on('error', end).on('close', end);
  u.on('error', end).on('close', end);
  c.on('data', (d) => {
    if (holdPrefix && d.toString('latin1', 0, holdPrefix.length) === holdPrefix) {
      holdPrefix = null;
      pair.held = [];
    }
    u.write(d);
  });
  u.on('data', (d) => (pair.held ? pair.held.push(d) : c.write(d)));
});
await new Promise((res) => relay.listen(0, '127.0.0.1', res));
const UI = `http://127.0.0.1:${relay.address().port}`;

function holdResponseTo(prefix) {
  holdPrefix = prefix;
}

// Resolves once a response is being held (the request was answered).
async function waitHeld(ms = 10000) {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 20)))
    for (const pair of conns) if (pair.held?.length) return;
  throw new Error('no response was held');
}

// Sends what was held; returns how many responses were held.
function releaseHeld() {
  let n = 0;
  for (const pair of conns) {
    if (!pair.held) continue;
    n++;
    for (const d of pair.held) pair.c.write(d);
    pair.held = null;
  }
  return n;
}

function cutAll() {
  for (const { c, u } of conns) {
    c.destroy();
    u.destroy();
  }
  conns.clear();
}

// ---- the browser -----------------------------------------------------------
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
let consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

async function shot(name) {
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  console.log(`screenshot ${file}`);
}

try {
  // 1. Sign in: a wrong key is refused with the server's own words.
  await page.goto(UI + '/');
  await page.waitForSelector('#signin:not([hidden])');
  await shot('0-signin');
  check(await page.locator('#app').isHidden(), 'the app is hidden until signed in');
  await page.fill('#key', 'vgl_not_a_real_key_000000000000000000000000000');
  await page.click('#signin-submit');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.length > 0);
  const refusal = await page.textContent('#signin-error');
  check(/key/i.test(refusal), `a wrong key is refused with the API's detail ("${refusal}")`);
  consoleErrors = []; // the browser logs that 401; nothing else may fail

  await page.fill('#key', ANALYST);
  await page.click('#signin-submit');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  check(true, 'signed in; the live feed is connected');
  const stored = await page.evaluate(() => [sessionStorage.getItem('vigil.key'), localStorage.length]);
  check(stored[0] === ANALYST && stored[1] === 0, 'the key is in sessionStorage only');
  await page.waitForSelector('#queue');

  // 2. A structuring pattern through the API: 3 cash deposits of 9,500 USD
  // within 24 h for one customer. The alert must be in the queue within 2 s.
  const cust = await api('POST', '/customers', INGEST, {
    full_name: 'Erin Structurer',
    email: 'erin@example.com',
    country: 'GB',
    external_id: `e2e-${Date.now()}`,
  });
  const now = Date.now();
  const tx = (i) => ({
    external_id: `e2e-dep-${cust.id}-${i}`,
    customer_id: cust.id,
    amount: '9500.00',
    currency: 'USD',
    direction: 'in',
    channel: 'cash',
    occurred_at: new Date(now - (4 - i) * 3600e3).toISOString(),
  });
  await api('POST', '/transactions', INGEST, tx(1));
  await api('POST', '/transactions', INGEST, tx(2));
  // The rule runs inside the transaction that stores the deposit: when the
  // POST returns, the alert exists. "Live" is measured from there to the row
  // being on the analyst's screen (sequencer → event log → SSE → browser).
  const tPost = Date.now();
  await api('POST', '/transactions', INGEST, tx(3));
  const t0 = Date.now();
  const row = await page.waitForSelector(`#queue-body tr[data-customer="${cust.id}"]`, { timeout: 10000 });
  const liveMs = Date.now() - t0;
  console.log(`E2E alert_live_ms=${liveMs} post_ms=${t0 - tPost}`);
  check(liveMs <= LIVE_LIMIT_MS, `the alert was on screen ${liveMs} ms after the third deposit was accepted (limit ${LIVE_LIMIT_MS} ms; the POST took ${t0 - tPost} ms)`);
  const alertId = await row.getAttribute('data-id');
  check(/structuring/.test(await row.textContent()), 'the new row is a structuring alert');
  await page.waitForSelector(`#feed li[data-type="aml.alert.created"]`);
  check(true, 'the feed shows the alert too');
  await shot('1-alert-queue');

  // 3. Its page says why it fired.
  // Keyboard: the newest row is selected; Enter opens it.
  check(await row.evaluate((r) => r.classList.contains('sel')), 'the new alert is the selected row');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#workflow');
  const why = await page.textContent('main');
  check(/Parameters in force/.test(why) && /lower_pct|threshold/.test(why), 'the alert page shows the rule parameters');
  check(/28,500/.test(why), 'the alert page shows the aggregates (sum 28,500)');
  const txRows = await page.locator('main section:has(h2:text-matches("Contributing transactions")) tbody tr').count();
  check(txRows === 3, `the three contributing transactions are listed (${txRows})`);

  // 4. Work it: investigating, then an invalid close (the API's detail is
  // shown), then closed as a false positive. The response to "investigating"
  // is held back in the relay: the page learns of the change from the live
  // feed first (aml.alert.updated) and offers "close" while that response is
  // still on its way. When it arrives, late, the page re-renders; that must
  // not wipe the refusal the analyst is reading or the form being filled.
  holdResponseTo('PATCH /alerts/');
  await page.keyboard.press('i');
  await page.waitForFunction(() => document.querySelector('#alert-status')?.textContent === 'investigating');
  check(true, 'the analyst moved the alert to investigating (shown from the live feed; the response is held)');
  await page.click('#wf-close');
  await page.waitForSelector('#wf-outcome .error-box');
  const problem = await page.textContent('#wf-outcome .error-box');
  check(/disposition/.test(problem), `closing without a disposition shows the API's problem ("${problem.trim()}")`);
  consoleErrors = consoleErrors.filter((e) => !/status of 422/.test(e)); // that refusal was the point
  await page.selectOption('#wf-disposition', 'false_positive');
  await page.fill('#wf-note', 'salary paid in cash; documented');
  const renders = await page.getAttribute('#workflow', 'data-renders');
  check(releaseHeld() === 1, 'the held response to "investigating" was released');
  // The late response makes the page load the alert again and re-render.
  await page.waitForFunction((n) => Number(document.querySelector('#workflow')?.dataset.renders) > n, Number(renders));
  const kept = await page.evaluate(() => ({
    error: document.querySelector('#wf-outcome .error-box')?.textContent || '',
    disposition: document.querySelector('#wf-disposition')?.value,
    note: document.querySelector('#wf-note')?.value,
  }));
  check(/disposition/.test(kept.error), `after the late re-render the refusal is still shown ("${kept.error.trim()}")`);
  check(kept.disposition === 'false_positive' && kept.note === 'salary paid in cash; documented', `the half-filled form survived the re-render (${JSON.stringify(kept)})`);
  await page.keyboard.press('Tab');
  await page.click('#wf-close');
  await page.waitForFunction(() => document.querySelector('#alert-status')?.textContent === 'closed');
  await shot('2-alert-closed');
  const closed = await api('GET', `/alerts/${alertId}`, ANALYST);
  check(closed.status === 'closed' && closed.disposition === 'false_positive', 'the API says the alert is closed as false_positive');
  check(closed.note === 'salary paid in cash; documented', 'the note was saved');
  console.log(`E2E ALERT ${alertId} CUSTOMER ${cust.id}`);

  // 5. The customer page: risk with factors and a history chart, the
  // transactions, the alert, the KYC tasks.
  await page.click('#alert-customer');
  await page.waitForSelector('#risk-chart');
  const score = await page.textContent('#risk-score');
  check(/^\d+$/.test(score.trim()), `the customer page shows the risk score (${score.trim()})`);
  const custText = await page.textContent('main');
  check(/identity_verification/.test(custText), 'the customer page lists the KYC tasks');
  check(/9,500\.00 USD/.test(custText), 'the customer page lists the transactions');
  const chartInk = await page.evaluate(() => {
    const c = document.querySelector('#risk-chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
    return n;
  });
  check(chartInk > 200, `the risk history chart is drawn (${chartInk} painted pixels)`);
  await shot('3-customer');

  // 5b. A KYC refusal stays on screen when the page reloads live. Someone
  // else starts a task; the page's reload for that event is held in the
  // relay, so the analyst still sees "Start" and clicks it: refused (the
  // task is no longer open). Then the reload renders; the refusal must
  // still be there, next to the task's new state.
  const task = (await api('GET', `/kyc/tasks?customer_id=${cust.id}&status=open&limit=1`, ANALYST)).items[0];
  check(task, `the customer has an open KYC task (${task?.kind})`);
  holdResponseTo(`GET /customers/${cust.id}`);
  await api('PATCH', `/kyc/tasks/${task.id}`, ADMIN, { status: 'in_progress' });
  await waitHeld();
  await page.click(`main tr[data-id="${task.id}"] button:has-text("Start")`);
  await page.waitForSelector(`tr[data-id="${task.id}"] .kyc-out .error-box`);
  consoleErrors = consoleErrors.filter((e) => !/status of 409/.test(e)); // that refusal was the point
  check(releaseHeld() === 1, "the page's live reload was held while the analyst clicked");
  await page.waitForSelector(`tr[data-id="${task.id}"][data-status="in_progress"]`);
  const kycErr = await page.textContent(`tr[data-id="${task.id}"] .kyc-out`);
  check(/409|in_progress|open/i.test(kycErr), `after the live reload the KYC refusal is still shown ("${kycErr.trim()}")`);

  // 5c. Overlapping reloads: an older one that finishes last must not
  // paint its stale state over the newer one. The reload for "started" is
  // held; the one for "completed" renders; then the held one is released.
  const task2 = (await api('GET', `/kyc/tasks?customer_id=${cust.id}&status=open&limit=1`, ANALYST)).items[0];
  check(task2, `the customer has another open KYC task (${task2?.kind})`);
  holdResponseTo(`GET /customers/${cust.id}`);
  await api('PATCH', `/kyc/tasks/${task2.id}`, ADMIN, { status: 'in_progress' });
  await waitHeld();
  await api('PATCH', `/kyc/tasks/${task2.id}`, ADMIN, { status: 'completed' });
  await page.waitForSelector(`tr[data-id="${task2.id}"][data-status="completed"]`);
  check(releaseHeld() === 1, 'the older reload ("in_progress") was held until the newer one ("completed") had rendered');
  await page.waitForTimeout(700); // the released reload, if it rendered, would within ms
  const st2 = await page.getAttribute(`tr[data-id="${task2.id}"]`, 'data-status');
  check(st2 === 'completed', `the older reload did not paint over the newer one (task shows ${st2})`);

  // 6. Resume after a dropped connection: cut every connection, post while
  // the feed is down, let it reconnect; the event must still arrive.
  refusing = true;
  cutAll();
  await page.waitForSelector('#conn:not([data-state="live"])', { timeout: 5000 });
  check(true, `the feed shows it lost the connection (${await page.getAttribute('#conn', 'data-state')})`);
  const late = await api('POST', '/transactions', INGEST, {
    ...tx(9),
    amount: '123.45',
    channel: 'card',
    occurred_at: new Date().toISOString(),
  });
  refusing = false;
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
  await page.waitForSelector(`#feed li[data-type="aml.transaction.ingested"]:has-text("123.45 USD")`, { timeout: 5000 });
  check(true, `after reconnecting, the event posted while disconnected (${late.id}) is in the feed`);
  // the browser logs the cut connections themselves; those were the point
  consoleErrors = consoleErrors.filter((e) => !/net::ERR_|EventSource/.test(e));
  const seqs = await page.$$eval('#feed li', (lis) => lis.map((l) => Number(l.dataset.seq)));
  const sorted = [...seqs].sort((a, b) => b - a);
  check(
    seqs.every((s, i) => s === sorted[i]) && new Set(seqs).size === seqs.length && seqs[0] - seqs[seqs.length - 1] === seqs.length - 1,
    `the feed has every event once, in order, without a gap (${seqs.length} events)`,
  );

  // 7. Four eyes: closing as sar_filed is a proposal (202) that the page
  // shows; a second person (another key, in another browser context)
  // approves it on the same page, and the first analyst sees it close live.
  const cust2 = await api('POST', '/customers', INGEST, { full_name: 'Sam Second', country: 'GB', external_id: `e2e2-${Date.now()}` });
  for (const i of [1, 2, 3]) await api('POST', '/transactions', INGEST, { ...tx(i), customer_id: cust2.id, external_id: `e2e2-${cust2.id}-${i}` });
  const a2 = (await api('GET', `/alerts?customer_id=${cust2.id}`, ANALYST)).items[0];
  check(a2 && a2.rule_id === 'structuring', 'a second structuring alert exists');
  await api('PATCH', `/alerts/${a2.id}`, ANALYST, { status: 'investigating' });
  await page.goto(`${UI}/#/alerts/${a2.id}`);
  await page.waitForSelector('#wf-disposition');
  await page.selectOption('#wf-disposition', 'sar_filed');
  await page.fill('#wf-note', 'SAR 2026-001');
  await page.click('#wf-close');
  await page.waitForSelector('#wf-pending');
  check(/approval/i.test(await page.textContent('#wf-pending')), 'a SAR filing is shown as submitted for approval (202)');
  await page.waitForSelector('#approvals .approval[data-status="pending"]');
  check(true, 'the pending proposal is listed on the alert page');
  const checker = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page2 = await checker.newPage();
  page2.on('pageerror', (e) => consoleErrors.push(`page 2 error: ${e.message}`));
  await page2.goto(UI + '/');
  await page2.fill('#key', ADMIN);
  await page2.click('#signin-submit');
  await page2.waitForSelector('#app:not([hidden])');
  await page2.goto(`${UI}/#/alerts/${a2.id}`);
  await page2.click('#approvals .approval[data-status="pending"] button.primary');
  await page2.waitForFunction(() => document.querySelector('#alert-status')?.textContent === 'closed');
  await checker.close();
  await page.waitForFunction(() => document.querySelector('#alert-status')?.textContent === 'closed', null, { timeout: 5000 });
  const a2closed = await api('GET', `/alerts/${a2.id}`, ANALYST);
  check(a2closed.status === 'closed' && a2closed.disposition === 'sar_filed', "the second person's approval closed it as sar_filed, and the first analyst's page shows it live");
  await shot('5-four-eyes');

  // 7b. An alert that fires while the queue is loading is not lost: the
  // queue's answer (which predates the alert) is held in the relay until the
  // alert's event has reached the page; the row must be in the queue after
  // that older answer is rendered.
  const cust3 = await api('POST', '/customers', INGEST, { full_name: 'Lou Late', country: 'GB', external_id: `e2e3-${Date.now()}` });
  const createdBefore = await page.locator('#feed li[data-type="aml.alert.created"]').count();
  holdResponseTo('GET /alerts?');
  await page.goto(`${UI}/#/alerts?status=open&customer_id=${cust3.id}`);
  await waitHeld();
  for (const i of [1, 2, 3]) await api('POST', '/transactions', INGEST, { ...tx(i), customer_id: cust3.id, external_id: `e2e3-${cust3.id}-${i}` });
  await page.waitForFunction((n) => document.querySelectorAll('#feed li[data-type="aml.alert.created"]').length > n, createdBefore);
  check(releaseHeld() === 1, "the queue's answer was held while the alert fired");
  await page.waitForFunction(() => !/Loading/.test(document.querySelector('#queue-msg')?.textContent ?? 'Loading'));
  check((await page.locator(`#queue-body tr[data-customer="${cust3.id}"]`).count()) === 1, 'the alert that fired while the queue was loading is in the queue');

  // 8. The customer list has her.
  await page.keyboard.press('g');
  await page.keyboard.press('c');
  await page.waitForSelector(`#customers tr[data-id="${cust.id}"]`);
  check(true, 'the customer list shows the customer');

  // 9. The system page: tiles and charts from /metrics.
  await page.keyboard.press('g');
  await page.keyboard.press('s');
  await page.waitForSelector('#tiles .tile');
  await page.waitForFunction(() => document.querySelectorAll('#tiles .tile').length >= 8);
  const sys = await page.textContent('#tiles');
  check(/last event seq/.test(sys) && /publish lag/.test(sys), 'the system page shows the pipeline');
  await page.waitForSelector('#dead-letters-none, #dead-letters');
  await page.waitForTimeout(3500); // a second sample: rates
  await shot('4-system');

  check(consoleErrors.length === 0, `no errors in the browser console${consoleErrors.length ? ': ' + consoleErrors.join(' | ') : ''}`);
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.message}`);
  if (consoleErrors.length) console.error(`browser console errors: ${consoleErrors.join(' | ')}`);
  try {
    await shot('failure');
  } catch {
    /* the page may be gone */
  }
} finally {
  await browser.close();
  cutAll();
  relay.close();
}
process.exit(failed ? 1 : 0);
