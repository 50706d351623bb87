// The console in a real browser: Debian's Chromium driven by Playwright's driver
// (npm `playwright-core`, no bundled browser), with axe-core run in every page visited.
// tests/browser.rs starts the provider, the GitHub stand-in and `stackgate serve`, then
// runs this once and sends it one step at a time:
//
//   node tests/browser/console.mjs --base http://127.0.0.1:PORT --issuer http://127.0.0.1:PORT \
//        --shots target/browser-screenshots [--chromium /usr/bin/chromium]
//
// stdin: one JSON object a line, {"step": NAME, "args": {...}}. stdout: log lines, and for
// each step one line `RESULT {"ok": true, "data": ...}` or `RESULT {"ok": false, "error": "..."}`.
// Every wait is bounded; a failed step names what it waited for. The browser keeps one
// context per user (`otto`, `viola`), each logged in through the provider's HTML form.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string' },
    issuer: { type: 'string' },
    shots: { type: 'string', default: 'target/browser-screenshots' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
if (!opts.base || !opts.issuer) {
  console.error('console.mjs: --base and --issuer are required');
  process.exit(2);
}
const BASE = opts.base.replace(/\/$/, '');
const ISSUER = opts.issuer.replace(/\/$/, '');
mkdirSync(opts.shots, { recursive: true });

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const log = (...a) => console.log('browser:', ...a);
class StepError extends Error {}
const fail = (msg) => {
  throw new StepError(msg);
};
const check = (cond, msg) => {
  if (!cond) fail(msg);
};

// ------------------------------------------------------------------ the browser
// Playwright's launch() gives the browser a fresh --user-data-dir of its own (a temp folder,
// removed on close: it refuses the flag itself); the flags keep Chromium off the network.
const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
  timeout: 30_000,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
log(`chromium ${browser.version()} at ${opts.chromium}`);

/** name -> { context, page } */
const users = new Map();
/** every page's axe results: { page, url, violations: [...] } */
const axeReport = [];
let shotCount = 0;

function user(who) {
  const u = users.get(who);
  if (!u) fail(`no browser context for ${who}: log in first`);
  return u;
}

async function newUser(who) {
  const context = await browser.newContext({
    baseURL: BASE,
    viewport: { width: 1280, height: 860 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') log(`${who}: console error: ${m.text()}`);
  });
  const u = { context, page };
  users.set(who, u);
  return u;
}

/** axe-core in the page; records every violation, returns the serious and critical ones. */
async function axe(page, name) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), html: n.html.slice(0, 200), summary: n.failureSummary })),
    }));
  });
  const url = new URL(page.url()).pathname;
  axeReport.push({ page: name, url, violations: result });
  for (const v of result) {
    log(`axe ${name} (${url}): ${v.impact} ${v.id}: ${v.help} [${v.nodes.length} node(s)]`);
    for (const n of v.nodes.slice(0, 5)) log(`    ${n.target}: ${n.html}`);
  }
  if (result.length === 0) log(`axe ${name} (${url}): no violations`);
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function shot(page, name) {
  shotCount += 1;
  const file = join(opts.shots, `${String(shotCount).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
  return file;
}

/** A page visited: axe, a screenshot. */
async function visited(page, name) {
  await axe(page, name);
  return shot(page, name);
}

/** The JSON of a GET in the page, with its cookies. */
async function getJson(page, path) {
  return page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { accept: 'application/json' } });
    return { status: r.status, body: r.ok ? await r.json() : await r.text() };
  }, path);
}

// ------------------------------------------------------------------ the steps

/** Logs `who` in through the provider's HTML form, from the console's front page. */
async function login({ who, user: name, password }) {
  const { page } = await newUser(who);
  await page.goto('/');
  // `/` -> /login?next=/ -> the provider's /auth -> its login form.
  await page.waitForURL((u) => u.href.startsWith(`${ISSUER}/interaction/`), { timeout: 20_000 });
  check((await page.getByRole('heading', { level: 1 }).textContent()).includes('Sign in'), 'the provider shows its sign-in form');
  await shot(page, `provider-login-${who}`);
  await page.getByLabel('User').fill(name);
  await page.getByLabel('Password').fill(password);
  await Promise.all([
    page.waitForURL(`${BASE}/`, { timeout: 20_000 }),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  const me = await getJson(page, '/auth/session');
  check(me.status === 200, `GET /auth/session after the login: ${me.status} ${JSON.stringify(me.body)}`);
  check(me.body.subject === name, `logged in as ${me.body.subject}, not ${name}`);
  check(me.body.credential === 'session', `credential ${me.body.credential}`);
  const header = (await page.locator('header .who').textContent()) ?? '';
  check(header.includes(name), `the header names ${name}: "${header.trim()}"`);
  check((await page.getByRole('button', { name: 'Log out' }).count()) === 1, 'a Log out button');
  log(`${who} logged in: ${JSON.stringify(me.body.roles)}`);
  return { subject: me.body.subject, roles: me.body.roles };
}

/** The overview's stacks table as {header: text} per row, and the counts per state. */
async function readOverview(page) {
  return page.evaluate(() => {
    const table = document.querySelector('table[aria-label="Stacks"]');
    const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
    const rows = [...table.querySelectorAll('tbody tr')].map((tr) => {
      const cells = [...tr.children];
      const row = {};
      heads.forEach((h, i) => {
        row[h] = (cells[i]?.innerText ?? '').replace(/\s+/g, ' ').trim();
      });
      row._state_badge = tr.querySelector('td .badge[class*="s-"]')?.textContent.trim() ?? null;
      row._href = tr.querySelector('th a')?.getAttribute('href') ?? null;
      return row;
    });
    const counts = {};
    for (const li of document.querySelectorAll('nav[aria-label="Stacks by state"] li')) {
      const n = Number(li.querySelector('strong')?.textContent);
      const label = li.textContent.replace(/^\s*\d+/, '').trim();
      counts[label] = n;
    }
    const shown = document.querySelector('main [role="status"]')?.textContent.trim() ?? null;
    return { heads, rows, counts, shown };
  });
}

/** The overview: the stack's row with its state (and drift), and the counts. Reloads until
 * the row says `state`, for `within` ms at most. */
async function overview({ who, folder, stack_name: stackName, state, counts, drift, within = 10_000, name = 'overview' }) {
  const { page } = user(who);
  const deadline = Date.now() + within;
  let seen;
  for (;;) {
    const r = await page.goto('/');
    check(r.status() === 200, `GET / answered ${r.status()}`);
    await page.getByRole('table', { name: 'Stacks' }).waitFor();
    seen = await readOverview(page);
    const row = seen.rows.find((x) => x._href?.endsWith(`/${folder}`));
    if (row && row._state_badge === state) break;
    if (Date.now() > deadline) {
      fail(`the overview's row ${folder} does not say "${state}" within ${within} ms: ${JSON.stringify(seen)}`);
    }
    await page.waitForTimeout(500);
  }
  const row = seen.rows.find((x) => x._href?.endsWith(`/${folder}`));
  check(seen.heads.join('|') === 'Stack folder|Repository|Account / region|State|Deployed commit|Last run|Policy|Drift', `the columns: ${seen.heads}`);
  check(row['Stack folder'] === `stacks/${folder} ${stackName}`, `the row names its folder and the CloudFormation stack ${stackName}: ${row['Stack folder']}`);
  check(row._href === `/stacks/${row.Repository}/${folder}`, `the row links to its stack page: ${row._href}`);
  check(row.State === state, `the State cell says "${state}": "${row.State}"`);
  check(/^[0-9a-f]{7}/.test(row['Deployed commit']), `a deployed commit: ${row['Deployed commit']}`);
  check(row['Last run'].startsWith('run '), `a last run: ${row['Last run']}`);
  check(row.Policy === 'pass', `policy pass: ${row.Policy}`);
  if (drift) check(row.Drift.startsWith(drift), `the Drift cell starts with "${drift}": "${row.Drift}"`);
  for (const [label, n] of Object.entries(counts ?? {})) {
    check(seen.counts[label] === n, `the count "${label}" is ${n}: ${JSON.stringify(seen.counts)}`);
  }
  check(seen.shown === `${seen.rows.length} of ${seen.counts.all} stacks`, `the status line: ${seen.shown}`);
  await visited(page, name);
  log(`overview: ${JSON.stringify(row)} counts ${JSON.stringify(seen.counts)}`);
  return { row, counts: seen.counts };
}

/** From the overview, the stack's last run (its link in the row), until it settles. */
async function lastRun({ who, folder, expect = 'succeeded', name = 'run-from-overview' }) {
  const { page } = user(who);
  await page.goto('/');
  const row = page.getByRole('table', { name: 'Stacks' }).locator('tbody tr').filter({ has: page.locator(`th a[href$="/${folder}"]`) });
  const link = row.getByRole('link', { name: /^run \d+$/ });
  check((await link.count()) === 1, `the row of ${folder} links its last run`);
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), link.click()]);
  const id = Number(new URL(page.url()).pathname.split('/').pop());
  return followRun(page, { id, expect, live: false, name });
}

/** What the run page shows now; null while the page is between documents. */
async function runState(page) {
  try {
    return await page.evaluate(() => {
      const bar = document.getElementById('progress');
      return {
        doc: performance.timeOrigin,
        state: document.querySelector('h1 .badge')?.textContent.trim() ?? null,
        live: bar ? { value: bar.value, max: bar.max, label: document.getElementById('progress-label')?.textContent ?? '' } : null,
        samples: JSON.parse(sessionStorage.getItem('sg-progress') ?? '[]'),
      };
    });
  } catch {
    return null; // reloading: the old document is gone, the new one not there yet
  }
}

/** Records every change of the live page's progress in sessionStorage, which outlives the
 * page's own reload, so that the last update before it is not lost. */
async function recordProgress(page) {
  await page.evaluate(() => {
    sessionStorage.setItem('sg-progress', '[]');
    const bar = document.getElementById('progress');
    const label = document.getElementById('progress-label');
    const note = () => {
      const all = JSON.parse(sessionStorage.getItem('sg-progress') ?? '[]');
      all.push({ t: Date.now(), doc: performance.timeOrigin, value: bar.value, max: bar.max, label: label.textContent });
      sessionStorage.setItem('sg-progress', JSON.stringify(all));
    };
    new MutationObserver(note).observe(bar, { attributes: true, attributeFilter: ['value', 'max'] });
    new MutationObserver(note).observe(label, { childList: true, characterData: true, subtree: true });
  });
}

/** Follows a run page until it settles, without reloading it: the page does that itself. */
async function followRun(page, { id, expect, live, within = 120_000, name }) {
  const start = Date.now();
  const first = await runState(page);
  check(first, `the run page of ${id} did not load`);
  log(`run ${id} opened: ${first.state}${first.live ? `, progress ${first.live.value}/${first.live.max} "${first.live.label}"` : ''}`);
  if (live) {
    check(first.live, `run ${id} was not live when its page opened (state ${first.state}): ask the emulator to slow it down`);
    check(['queued', 'running'].includes(first.state), `a live run says queued or running: ${first.state}`);
    const region = page.locator('.live[role="status"]');
    check((await region.count()) === 1, 'the live progress is a status region');
    check((await page.getByLabel('Progress').count()) === 1, 'the progress bar has its label');
    await recordProgress(page);
    await axe(page, `run-${id}-live`);
    await shot(page, `run-${id}-live`);
  }
  let last = first;
  for (;;) {
    const s = await runState(page);
    if (s) {
      last = s;
      if (!s.live && s.state !== 'queued' && s.state !== 'running') break;
    }
    if (Date.now() - start > within) {
      fail(`run ${id} did not settle to ${expect} within ${within} ms; the page says ${JSON.stringify(last)}`);
    }
    await page.waitForTimeout(100);
  }
  check(last.state === expect, `run ${id} ended ${last.state}, not ${expect}`);
  const took = Date.now() - start;
  const result = { id, state: last.state, took_ms: took };
  if (live) {
    check(last.doc !== first.doc, `run ${id}'s page did not reload itself when the run ended`);
    const samples = last.samples.filter((x) => x.doc === first.doc);
    // The server-sent events moved the bar (a step, or resources counted) in the page that
    // was opened, before it reloaded itself.
    const key = (x) => `${x.value}/${x.max} ${x.label}`;
    const moved = samples.some((x) => key(x) !== key(first.live));
    check(moved, `run ${id}'s progress never moved from ${key(first.live)} while live: ${JSON.stringify(samples)}`);
    result.progress = [first.live, ...samples].map((x) => `${x.value}/${x.max} ${x.label}`);
    result.reloaded_itself = true;
    log(`run ${id} progress: ${result.progress.join(' -> ')}`);
  }
  check((await page.locator('#progress').count()) === 0, 'no progress bar once the run ended');
  result.sections = await page.locator('main h2').allTextContents();
  result.timeline_bars = await page.locator('figure.timeline rect.bar').count();
  result.changes = await page.locator('table[aria-label^="Change set of"] tbody tr').count();
  result.shot = await visited(page, name ?? `run-${id}`);
  log(`run ${id}: ${last.state} after ${took} ms; sections ${result.sections.join(', ')}; ${result.timeline_bars} timeline bar(s)`);
  return result;
}

/** Opens /runs/{id} and follows it. */
async function watchRun({ who, id, expect = 'succeeded', live = false, within, name }) {
  const { page } = user(who);
  const r = await page.goto(`/runs/${id}`);
  check(r.status() === 200, `GET /runs/${id} answered ${r.status()}`);
  return followRun(page, { id, expect, live, within, name });
}

/** Clicks a button of the stack page's actions; the form's POST must answer 303 to a run. */
async function clickAction(page, button, action) {
  const statuses = [];
  const onResponse = (r) => {
    if (r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith(`/${action}`)) {
      statuses.push(r.status());
    }
  };
  page.on('response', onResponse);
  try {
    await Promise.all([
      page.waitForURL(/\/runs\/\d+$/, { timeout: 20_000 }),
      page.getByRole('button', { name: button, exact: true }).click(),
    ]);
  } finally {
    page.off('response', onResponse);
  }
  check(statuses.length === 1 && statuses[0] === 303, `POST …/${action} answered ${JSON.stringify(statuses)}, not one 303`);
  return Number(new URL(page.url()).pathname.split('/').pop());
}

async function stackPage(page, repo, folder, name) {
  const r = await page.goto(`/stacks/${repo}/${folder}`);
  check(r.status() === 200, `GET /stacks/${repo}/${folder} answered ${r.status()}`);
  const h1 = (await page.getByRole('heading', { level: 1 }).textContent()).replace(/\s+/g, ' ').trim();
  check(h1.startsWith(`stacks/${folder} `), `the stack page's heading: ${h1}`);
  await visited(page, name);
}

/** As an operator: Redeploy on the stack page, then the new run's page until it succeeds. */
async function redeploy({ who, repo, folder }) {
  const { page } = user(who);
  await stackPage(page, repo, folder, `stack-${who}`);
  check((await page.getByRole('group', { name: 'Actions' }).count()) === 1, 'the operator sees the actions');
  const id = await clickAction(page, 'Redeploy', 'redeploy');
  log(`redeploy: run ${id}`);
  const run = await followRun(page, { id, expect: 'succeeded', live: false, name: `run-${id}-redeploy` });
  const trigger = await page.locator('dt:text-is("Triggered by") + dd').textContent();
  return { ...run, triggered_by: trigger.trim() };
}

/** As a viewer: no action on the stack page, and 403 on the actions' POSTs with her token. */
async function viewerStack({ who, repo, folder }) {
  const { page } = user(who);
  await stackPage(page, repo, folder, `stack-${who}`);
  for (const name of ['Redeploy', 'Check drift now']) {
    check((await page.getByRole('button', { name }).count()) === 0, `${who} sees a "${name}" button`);
  }
  check((await page.locator('form[method="post"][action*="/stacks/"]').count()) === 0, `${who} sees an action form`);
  const me = await getJson(page, '/auth/session');
  check(me.status === 200 && me.body.csrf, `${who}'s session: ${JSON.stringify(me)}`);
  check(JSON.stringify(me.body.roles).includes('viewer'), `${who} is a viewer: ${JSON.stringify(me.body.roles)}`);
  const answers = {};
  for (const action of ['redeploy', 'drift']) {
    // The form the operator gets, sent from her page with her session and her CSRF token.
    const a = await page.evaluate(
      async ({ url, csrf }) => {
        const r = await fetch(url, { method: 'POST', body: new URLSearchParams({ csrf }), redirect: 'manual' });
        return { status: r.status, body: await r.text() };
      },
      { url: `/stacks/${repo}/${folder}/${action}`, csrf: me.body.csrf },
    );
    check(a.status === 403, `${who}'s POST …/${action} answered ${a.status}, not 403: ${a.body}`);
    answers[action] = a;
  }
  check(answers.redeploy.body.includes('viewer'), `the 403 says why: ${answers.redeploy.body}`);
  log(`${who}: no actions shown; POST redeploy ${answers.redeploy.status}, drift ${answers.drift.status}: ${answers.redeploy.body.trim()}`);
  return { redeploy: answers.redeploy.status, drift: answers.drift.status, message: answers.redeploy.body.trim() };
}

/** As an operator: "Check drift now", then the check's run page until it succeeds. */
async function checkDrift({ who, repo, folder }) {
  const { page } = user(who);
  const r = await page.goto(`/stacks/${repo}/${folder}`);
  check(r.status() === 200, `GET the stack page: ${r.status()}`);
  const id = await clickAction(page, 'Check drift now', 'drift');
  log(`drift check: run ${id}`);
  const run = await followRun(page, { id, expect: 'succeeded', live: false, name: `run-${id}-drift` });
  const kind = await page.locator('dt:text-is("Kind") + dd').textContent();
  check(kind.trim() === 'drift', `the check's run is a drift job: ${kind}`);
  // The live finding: the policies judged the live state, port 22 open to the world.
  const findings = page.getByRole('table', { name: /^Policy findings of / }).locator('tbody tr');
  const rows = (await findings.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
  check(rows.some((r) => r.includes('AlbSecurityGroup') && r.includes('tcp port 22') && r.includes('0.0.0.0/0')), `a live finding on AlbSecurityGroup's port 22: ${JSON.stringify(rows)}`);
  return { ...run, findings: rows };
}

/** The axe results of every page; fails when any has a serious or critical violation. */
async function finish() {
  const bad = axeReport.flatMap((p) =>
    p.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ page: p.page, url: p.url, ...v })),
  );
  const all = axeReport.map((p) => ({ page: p.page, url: p.url, violations: p.violations.map((v) => `${v.impact} ${v.id} (${v.nodes.length})`) }));
  if (bad.length > 0) {
    fail(
      `axe: ${bad.length} serious or critical violation(s):\n` +
        bad
          .map((v) => `  ${v.page} ${v.url}: ${v.impact} ${v.id}: ${v.help}\n${v.nodes.map((n) => `      ${n.target}: ${n.html}\n      ${n.summary}`).join('\n')}`)
          .join('\n'),
    );
  }
  return { pages: all };
}

const STEPS = { login, overview, last_run: lastRun, watch_run: watchRun, redeploy, viewer_stack: viewerStack, check_drift: checkDrift, finish };

// ------------------------------------------------------------------ the loop
async function close() {
  await browser.close().catch(() => {});
}

const reply = (r) => process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let step = '?';
  try {
    const msg = JSON.parse(line);
    step = msg.step;
    const f = STEPS[step];
    if (!f) fail(`no step ${step}`);
    log(`step ${step} ${JSON.stringify(msg.args ?? {})}`);
    reply({ ok: true, data: (await f(msg.args ?? {})) ?? null });
  } catch (e) {
    const where = users.size ? [...users].map(([w, u]) => `${w} at ${u.page.url()}`).join(', ') : 'no page yet';
    reply({ ok: false, error: `${e instanceof StepError ? '' : `${e.name}: `}${e.message} (${where})` });
  }
}
await close();
