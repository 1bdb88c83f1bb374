// The guide, walked in keyward's console in headless Chromium (Debian's chromium, driven by
// playwright-core), with the aws CLI as the customer. Run by the keyward crate's CLI test
// `console::the_console_walks_the_guide_in_headless_chromium`, which starts `keyward up` and
// passes:
//   KEYWARD_UP_JSON   the up.json of that `keyward up` (API URL, tokens, the customer's keys)
//   CHROMIUM          the Chromium binary
//   SCREENSHOTS       where to write the screenshots (docs/console with scripts/screenshots)
// Any failed expectation throws: the process exits non-zero and the Rust test fails.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const up = JSON.parse(readFileSync(must('KEYWARD_UP_JSON'), 'utf8'));
const BASE = up.api_url;
const PROBE_MS = up.probe_interval_ms;
// The guide's bound: a change of the key shows within two probe intervals (plus a second for the
// page's own request and rendering on a busy machine), without reloading the page.
const WITHIN_MS = 2 * PROBE_MS + 1000;
const SHOTS = process.env.SCREENSHOTS || mkdtempSync(join(tmpdir(), 'keyward-console-shots-'));
mkdirSync(SHOTS, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'keyward-console-'));

function must(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function log(...args) {
  console.log('console-guide:', ...args);
}

function assert(condition, message) {
  if (!condition) throw new Error('expectation failed: ' + message);
}

/** The aws CLI as the customer (the admin user of the customer's account): parsed JSON. */
function aws(...args) {
  const out = execFileSync('aws', [...args, '--output', 'json'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME || work,
      AWS_ACCESS_KEY_ID: up.customer.access_key_id,
      AWS_SECRET_ACCESS_KEY: up.customer.secret_access_key,
      AWS_DEFAULT_REGION: up.region,
      AWS_REGION: up.region,
      AWS_ENDPOINT_URL: up.kms_endpoint,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
    encoding: 'utf8',
  });
  return out.trim() ? JSON.parse(out) : null;
}

/** The JSON API with a bearer token, from outside the browser: to check what the page did. */
async function apiAs(token, method, path, body) {
  const response = await fetch(BASE + path, {
    method,
    headers: { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

const api = (method, path, body) => apiAs(up.token, method, path, body);

async function clusters() {
  const answer = await api('GET', '/v1/clusters');
  assert(answer.status === 200, 'list clusters: ' + answer.status);
  return answer.json.clusters;
}

/** A screenshot of the element `target`, of the whole page (`'page'`) or of the screen (`'screen'`). */
async function shot(page, name, target = 'page') {
  const path = join(SHOTS, name + '.png');
  if (target === 'page' || target === 'screen') await page.screenshot({ path, fullPage: target === 'page' });
  else await page.locator(target).screenshot({ path });
  log('screenshot', path);
}

/** axe-core in the page: no serious or critical violation. */
async function axe(page, what) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const summary = bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert(bad.length === 0, `axe on ${what}: ${summary.join('; ')}`);
  log(`axe on ${what}: ${result.passes.length} rules pass, no serious or critical violation`
    + (result.violations.length ? ` (${result.violations.length} minor: ${result.violations.map((v) => v.id).join(', ')})` : ''));
}

/** The text of an element once it is not empty. */
async function textOf(page, selector) {
  const locator = page.locator(selector);
  await locator.filter({ hasText: /\S/ }).first().waitFor({ timeout: 15000 });
  return (await locator.textContent()).trim();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: must('CHROMIUM'),
    headless: true,
    // As root (a container, CI) Chromium's sandbox cannot start.
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    const text = message.text();
    // A refused API call (4xx the test provokes) is logged by Chromium as a failed resource.
    if (message.type() === 'error' && !text.startsWith('Failed to load resource')) problems.push(text);
  });
  page.on('pageerror', (error) => problems.push('page error: ' + error.message));
  try {
    await walk(page, context);
  } finally {
    await browser.close();
  }
  assert(problems.length === 0, 'the page logged errors (CSP violations among them): ' + problems.join(' | '));
  log('passed');
}

async function walk(page, context) {
  // The headers of the page: a strict CSP, no framing, no sniffing.
  const response = await page.goto(BASE + '/');
  assert(page.url() === BASE + '/console/', '/ leads to the console: ' + page.url());
  const headers = response.headers();
  assert(headers['content-security-policy'].includes("default-src 'self'"), 'CSP: ' + headers['content-security-policy']);
  assert(headers['content-security-policy'].includes("frame-ancestors 'none'"), 'frame-ancestors');
  assert(!/unsafe-inline|unsafe-eval/.test(headers['content-security-policy']), 'no unsafe-inline');
  assert(headers['x-frame-options'] === 'DENY', 'x-frame-options');
  assert(headers['x-content-type-options'] === 'nosniff', 'nosniff');

  // Sign in: a wrong token is refused beside the field; the organization's token signs in with
  // the keyboard alone.
  await page.locator('#token').waitFor();
  await axe(page, 'sign-in');
  await page.fill('#token', 'kw_' + 'A'.repeat(43));
  await page.keyboard.press('Enter');
  const refused = await textOf(page, '#token-error');
  assert(/token/i.test(refused), 'a wrong token is refused: ' + refused);
  await page.fill('#token', up.token);
  await shot(page, '01-sign-in');
  await page.keyboard.press('Enter');
  await page.locator('#clusters').waitFor();
  const cookies = await context.cookies(BASE);
  const cookie = cookies.find((c) => c.name === 'keyward_session');
  assert(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'HttpOnly SameSite=Strict cookie: ' + JSON.stringify(cookies.map((c) => c.name)));
  assert(await page.evaluate(() => !document.cookie.includes('keyward_session')), 'the script cannot read the cookie');

  // Another cluster of the organization, internal, so the list has more than one.
  assert((await api('POST', '/v1/clusters', { name: 'analytics', encryption: 'internal' })).status === 201, 'an internal cluster');

  // Step 1, bad input first: empty name and no choice of encryption, then a bad region. The
  // API's message shows beside the field and nothing is created.
  const before = (await clusters()).length;
  await page.click('a[data-nav="new"]');
  await page.locator('#create-form').waitFor();
  await axe(page, 'create cluster');
  await page.click('#create-form button[type="submit"]');
  const encryptionError = await textOf(page, '#encryption-error');
  assert(/encryption/.test(encryptionError), 'no encryption chosen: ' + encryptionError);
  await page.check('#encryption-external');
  await page.click('#create-form button[type="submit"]');
  const nameError = await textOf(page, '#name-error');
  assert(/name/.test(nameError), 'empty name: ' + nameError);
  assert(await page.getAttribute('#name', 'aria-invalid') === 'true', 'the name is marked invalid');
  await page.fill('#name', 'guide');
  await page.fill('#region', 'nowhere');
  await page.click('#create-form button[type="submit"]');
  const regionError = await textOf(page, '#region-error');
  assert(/not an AWS region/.test(regionError), 'bad region: ' + regionError);
  assert((await clusters()).length === before, 'nothing created by the refused forms');
  log('create form refusals:', JSON.stringify([nameError, encryptionError, regionError]));

  // Step 1 with the keyboard: name, region, External, Enter.
  await page.fill('#name', '');
  await page.focus('#name');
  await page.keyboard.type('guide');
  await page.keyboard.press('Tab');
  await page.fill('#region', '');
  await page.keyboard.type(up.region);
  await page.check('#encryption-external');
  await shot(page, '02-create-cluster');
  await page.focus('#encryption-external');
  await page.keyboard.press('Enter');
  await page.locator('#role-arn').waitFor();
  const id = decodeURIComponent(page.url().split('#/clusters/')[1]);
  const roleArn = (await page.textContent('#role-arn')).trim();
  assert(roleArn === `arn:aws:iam::${up.platform.account_id}:role/keyward/keyward-cluster-${id}`, 'role ARN: ' + roleArn);
  assert((await page.getAttribute('#health', 'data-status')) !== null, 'the health box');
  assert(/Awaiting key/.test(await page.textContent('#cluster-state')), 'awaiting key');

  // Step 2: the statements, and the whole policy for a new key: copied and downloaded.
  await page.locator('#statements', { hasText: 'kms:CreateGrant' }).waitFor();
  const statementsText = await page.textContent('#statements');
  assert(statementsText.includes(roleArn) && statementsText.includes('kms:GenerateDataKey*'), 'the statements name the role');
  await page.fill('#account', '12345');
  assert(/12 digits/.test(await textOf(page, '#account-error')), 'a short account id is refused');
  await page.fill('#account', up.customer.account_id);
  await page.click('text=Copy whole policy');
  await page.locator('text=Copied.').first().waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const policy = JSON.parse(copied);
  assert(policy.Statement.length === 3, 'root + the two statements');
  assert(policy.Statement[1].Principal.AWS === roleArn && policy.Statement[2].Action.includes('kms:CreateGrant'), 'the statements');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('text=Download whole policy')]);
  const downloaded = readFileSync(await download.path(), 'utf8');
  assert(download.suggestedFilename() === 'key-policy.json', 'download name');
  assert(JSON.stringify(JSON.parse(downloaded)) === JSON.stringify(policy), 'the download is the copied policy');
  await axe(page, 'cluster awaiting its key');
  await shot(page, '03-role-and-policy', 'section[aria-labelledby="policy-h"]');

  // Step 2 as the customer: the key, created with the copied policy.
  const policyFile = join(work, 'key-policy.json');
  writeFileSync(policyFile, copied);
  const key = aws('kms', 'create-key', '--description', 'console guide', '--policy', 'file://' + policyFile);
  const keyArn = key.KeyMetadata.Arn;
  log('customer key', keyArn);

  // Step 3, bad input first: empty, malformed, an alias, a key in another region. Each shows
  // the API's error beside the field and its report; nothing is applied.
  const otherRegion = keyArn.replace(':' + up.region + ':', ':eu-west-1:');
  for (const [value, expected] of [['', /association_failed|ARN|arn/i], ['not-an-arn', /ARN|arn/], ['alias/customer-key', /alias/i],
    [otherRegion, /region/i]]) {
    await page.fill('#key-arn', value);
    await page.click('#key-form button[type="submit"]');
    const error = await textOf(page, '#key-arn-error');
    assert(expected.test(error), `key ${JSON.stringify(value)}: ${error}`);
    assert(await page.getAttribute('#key-arn', 'aria-invalid') === 'true', 'the field is marked invalid');
    const failed = await page.locator('#report li[data-result="failed"]').count();
    assert(failed >= 1, `key ${JSON.stringify(value)}: the report shows the failed check`);
    const shown = await api('GET', '/v1/clusters/' + id);
    assert(shown.json.key_arn === null || shown.json.key_arn === undefined, 'nothing applied');
    log(`key ${JSON.stringify(value)} refused:`, error);
    if (value === 'alias/customer-key') await shot(page, '04-key-refused', 'section[aria-labelledby="key-h"]');
  }

  // Step 3: the key ARN pasted and applied; the report passes check by check.
  await page.fill('#key-arn', keyArn);
  await page.click('#key-form button[type="submit"]');
  await page.locator('#key-applied', { hasText: 'applied' }).waitFor();
  const checks = await page.locator('#report li').count();
  const passed = await page.locator('#report li[data-result="passed"]').count();
  assert(checks > 5 && passed === checks, `every check passed: ${passed}/${checks}`);
  await shot(page, '05-validation-report', 'section[aria-labelledby="key-h"]');

  // Step 4: ready, and the four storage classes encrypted under the key (the page updates
  // itself and verifies once ready).
  await page.locator('#verification-note[data-all-encrypted="true"]').waitFor({ timeout: 60000 });
  const classes = await page.locator('#verification-rows tr[data-encrypted="true"]').count();
  assert(classes === 4, 'four classes encrypted: ' + classes);
  for (const cls of ['documents', 'backups', 'engine-disk', 'search-disk']) {
    assert((await page.textContent(`#verification-rows tr[data-class="${cls}"]`)).includes(keyArn), cls + ' under the key');
  }
  assert(/Ready/.test(await page.textContent('#cluster-state')), 'ready');
  await axe(page, 'cluster ready');
  await shot(page, '06-verified');

  // Documents: upload, download (the same bytes), delete.
  await page.click('text=Documents, backups, disks');
  await page.locator('#upload-form').waitFor();
  const body = 'quarterly numbers, encrypted at rest\n';
  await page.setInputFiles('#file', { name: 'q1.txt', mimeType: 'text/plain', buffer: Buffer.from(body) });
  await page.fill('#document-name', 'reports/q1.txt');
  await page.click('#upload-form button[type="submit"]');
  await page.locator('#upload-done', { hasText: 'Uploaded reports/q1.txt' }).waitFor();
  await page.locator('tr[data-document="reports/q1.txt"]').waitFor();
  const [docDownload] = await Promise.all([page.waitForEvent('download'), page.click('a[aria-label="Download reports/q1.txt"]')]);
  assert(readFileSync(await docDownload.path(), 'utf8') === body, 'the document downloads as uploaded');
  await page.setInputFiles('#file', { name: 'scratch.txt', mimeType: 'text/plain', buffer: Buffer.from('scratch') });
  await page.fill('#document-name', '');
  await page.click('#upload-form button[type="submit"]');
  await page.locator('tr[data-document="scratch.txt"]').waitFor();
  await page.click('button[aria-label="Delete scratch.txt"]');
  await page.locator('tr[data-document="scratch.txt"]').waitFor({ state: 'detached' });
  const docs = await api('GET', `/v1/clusters/${id}/documents`);
  assert(JSON.stringify(docs.json.documents.map((d) => d.name)) === '["reports/q1.txt"]', 'one document left');
  // A backup, listed.
  await page.click('#create-backup');
  await page.locator('#backups-note', { hasText: 'made' }).waitFor({ timeout: 60000 });
  assert(await page.locator('#backup-rows tr[data-backup]').count() === 1, 'the backup is listed');
  await page.locator('#disk-rows tr[data-disk]').first().waitFor();
  assert(await page.locator('#disk-rows tr[data-disk]').count() === 6, 'six disks');
  await shot(page, '07-data');
  // Client credentials for the disks (after the screenshot: the key is a secret).
  await page.click('#make-credentials');
  await page.locator('#disk-credentials pre', { hasText: 'BEGIN CERTIFICATE' }).first().waitFor();
  await page.locator('#disk-credentials pre', { hasText: 'BEGIN PRIVATE KEY' }).waitFor();
  await axe(page, 'documents, backups and disks');

  // The key disabled by the customer: the details page turns inaccessible, with the reason and
  // the fix, within two probe intervals and without a reload.
  await page.click('text=Key and encryption');
  await page.locator('#health[data-status="healthy"]').waitFor({ timeout: 30000 });
  await page.evaluate(() => { window.keywardNotReloaded = true; });
  const disabledAt = Date.now();
  aws('kms', 'disable-key', '--key-id', keyArn);
  await page.locator('#health[data-status="key-inaccessible"][data-reason="disabled"]').waitFor({ timeout: WITHIN_MS + 10000 });
  const seenAfter = Date.now() - disabledAt;
  log(`disabled key shown ${seenAfter} ms after disable-key returned (bound ${WITHIN_MS} ms, probe ${PROBE_MS} ms)`);
  assert(seenAfter <= WITHIN_MS, `inaccessible shown after ${seenAfter} ms, more than two probe intervals`);
  assert(await page.evaluate(() => window.keywardNotReloaded === true), 'the page was not reloaded');
  const message = await page.textContent('#health');
  assert(message.includes('disabled') && message.includes(keyArn), 'the reason names the key: ' + message);
  assert((await page.textContent('#health-fix')).includes('aws kms enable-key --key-id ' + keyArn), 'the fix');
  // The key-disabled alarm fires (evaluated by the operator every probe interval).
  for (let tries = 0; ; tries += 1) {
    const alarms = await api('GET', `/v1/clusters/${id}/alarms`);
    if (alarms.json.alarms.some((a) => a.kind === 'key-disabled' && a.state === 'ALARM')) break;
    assert(tries < 150, 'the key-disabled alarm never fired: ' + JSON.stringify(alarms.json));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await axe(page, 'key inaccessible');
  await shot(page, '08-key-inaccessible', 'section[aria-labelledby="status-h"]');
  // The list shows it at a glance, first.
  await page.click('a[data-nav="list"]');
  await page.locator(`tr[data-cluster="${id}"] [data-health="key-inaccessible"]`).waitFor();
  assert(/1 inaccessible/.test(await page.textContent('#summary')), 'the summary counts it');
  await shot(page, '09-clusters-inaccessible');

  // Enabled again: the cluster recovers by itself, seen without reload.
  await page.click(`tr[data-cluster="${id}"] a`);
  await page.locator('#health').waitFor();
  await page.evaluate(() => { window.keywardNotReloaded = true; });
  const enabledAt = Date.now();
  aws('kms', 'enable-key', '--key-id', keyArn);
  await page.locator('#health[data-status="healthy"]').waitFor({ timeout: WITHIN_MS + 10000 });
  const recoveredAfter = Date.now() - enabledAt;
  log(`recovery shown ${recoveredAfter} ms after enable-key returned`);
  assert(recoveredAfter <= WITHIN_MS, `recovery shown after ${recoveredAfter} ms, more than two probe intervals`);
  assert(await page.evaluate(() => window.keywardNotReloaded === true), 'the page was not reloaded');
  await shot(page, '10-recovered', 'section[aria-labelledby="status-h"]');

  // Alarms with their history, the audit (filtered), usage and cost.
  await page.click('text=Alarms, audit, cost');
  await page.locator('#alarm-rows tr[data-alarm="key-disabled"]').waitFor({ timeout: 30000 });
  await page.locator('#alarm-history-rows', { hasText: 'key-disabled' }).waitFor({ timeout: 30000 });
  await page.locator('#audit-rows tr[data-operation]').first().waitFor();
  await page.fill('#audit-operation', 'Decrypt');
  await page.selectOption('#audit-result', 'success');
  await page.click('#audit-form button[type="submit"]');
  // The filtered answer replaces the rows shown before.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#audit-rows tr[data-operation]')];
    return rows.length > 0 && rows.every((r) => r.dataset.operation === 'Decrypt' && r.dataset.result === 'success');
  }, null, { timeout: 15000 });
  const operations = await page.locator('#audit-rows tr[data-operation]').evaluateAll((rows) => rows.map((r) => r.dataset.operation + '/' + r.dataset.result));
  assert(operations.length > 0 && operations.every((o) => o === 'Decrypt/success'), 'the filter: ' + operations);
  await page.fill('#audit-operation', 'not an operation!');
  await page.click('#audit-form button[type="submit"]');
  assert(/operation must be/.test(await textOf(page, '#audit-operation-error')), 'a bad filter shows the API error');
  await page.fill('#audit-operation', '');
  await page.selectOption('#audit-result', '');
  await page.click('#audit-form button[type="submit"]');
  await page.locator('#usage-operations').waitFor();
  assert((await page.textContent('#usage')).includes('GenerateDataKey'), 'usage per operation');
  assert(/Estimated KMS cost: \$\d/.test(await page.textContent('#usage-total')), 'the estimated cost');
  await axe(page, 'alarms, audit and cost');
  await shot(page, '11-alarms', 'section[aria-labelledby="alarms-h"]');
  await shot(page, '12-audit', 'section[aria-labelledby="audit-h"]');
  await shot(page, '13-usage', 'section[aria-labelledby="usage-h"]');

  // Another organization's cluster: not found, in the page and for its URL.
  const admin = up.admin_token;
  const other = await apiAs(admin, 'POST', '/v1/organizations', { name: 'other' });
  assert(other.status === 201, 'another organization');
  const otherCluster = await apiAs(other.json.token, 'POST', '/v1/clusters', { name: 'theirs', encryption: 'internal' });
  assert(otherCluster.status === 201, 'their cluster');
  await page.goto(BASE + '/console/#/clusters/' + otherCluster.json.id);
  const notFound = await textOf(page, '#not-found');
  assert(/not found|no cluster/i.test(notFound), 'another organization\'s cluster is not found: ' + notFound);
  const theirs = await page.evaluate(async (otherId) => (await fetch('/v1/clusters/' + otherId)).status, otherCluster.json.id);
  assert(theirs === 404, 'the API says 404 to the session too: ' + theirs);

  // A state change without the CSRF token, or with a wrong one, changes nothing: 403.
  const count = (await clusters()).length;
  const forged = await page.evaluate(async (clusterId) => {
    const out = [];
    const create = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'forged', encryption: 'internal' }) };
    out.push(await fetch('/v1/clusters', create).then(async (r) => [r.status, (await r.json()).error.code]));
    out.push(await fetch('/v1/clusters', { ...create, headers: { ...create.headers, 'x-csrf-token': 'wrong' } }).then((r) => r.status));
    out.push(await fetch('/v1/clusters/' + clusterId, { method: 'DELETE' }).then((r) => r.status));
    out.push(await fetch('/v1/clusters/' + clusterId + '/documents/reports/q1.txt', { method: 'DELETE' }).then((r) => r.status));
    out.push(await fetch('/console/session', { method: 'DELETE' }).then((r) => r.status));
    return out;
  }, id);
  assert(JSON.stringify(forged) === JSON.stringify([[403, 'forbidden'], 403, 403, 403, 403]), 'forged changes: ' + JSON.stringify(forged));
  assert((await clusters()).length === count, 'no cluster created or deleted');
  assert((await api('GET', `/v1/clusters/${id}/documents`)).json.documents.length === 1, 'the document is still there');
  log('forged changes refused:', JSON.stringify(forged));

  // 360 px wide: nothing wider than the screen, and accessible there too.
  await page.setViewportSize({ width: 360, height: 800 });
  for (const [hash, name] of [['#/', 'clusters'], ['#/clusters/' + id, 'cluster'], ['#/clusters/' + id + '/data', 'data']]) {
    await page.goto(BASE + '/console/' + hash);
    await page.locator('h1').first().waitFor();
    await page.locator('.table-wrap table tbody tr').first().waitFor();
    if (name === 'cluster') await page.locator('#verification-note[data-all-encrypted="true"]').waitFor({ timeout: 30000 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 360, `${name} at 360 px is ${width} px wide`);
    await axe(page, name + ' at 360 px');
    if (name === 'cluster') await shot(page, '14-cluster-360px', 'screen');
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  // Sign out: the session is gone for the API too.
  await page.goto(BASE + '/console/#/');
  await page.locator('#clusters').waitFor();
  await page.click('#sign-out');
  await page.locator('#token').waitFor();
  const after = await page.evaluate(async () => (await fetch('/v1/clusters')).status);
  assert(after === 401, 'signed out: ' + after);
  assert(!(await context.cookies(BASE)).some((c) => c.name === 'keyward_session'), 'the cookie is cleared');
  // The bearer API is as it was.
  assert((await clusters()).some((c) => c.id === id), 'bearer tokens still work');
}

main().catch((error) => {
  console.error('console-guide: FAILED:', error.stack || error);
  process.exit(1);
});
