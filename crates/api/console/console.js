// The keyward console: a few screens over the JSON API, in plain JavaScript.
//
// Routing is by the URL's fragment (#/, #/new, #/clusters/<id>[/data|/monitoring]). Every call
// goes to the same API as the CLI, authenticated by the session cookie; every change carries the
// session's CSRF token in x-csrf-token. What changes by itself is polled every `poll_seconds`
// (the session says how many) while the page is visible. Text from the server is only ever set
// as text (textContent), never parsed as HTML.
'use strict';

const session = { csrf: null, org: null, pollSeconds: 2 };
let current = null; // the view shown: { refresh() } or null
let timer = null;
let generation = 0; // bumped on every route change, so a stale refresh drops its result

// ---- DOM helpers ---------------------------------------------------------------------------

/** An element: h('p', {class: 'x', onclick: f}, 'text', child...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function $(id) {
  return document.getElementById(id);
}

function when(ms) {
  if (!ms) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
}

function usd(micro) {
  return '$' + (micro / 1e6).toFixed(micro >= 1e6 ? 2 : 4);
}

/** A table whose cells carry their column name (stacked as cards on small screens). */
function table(caption, columns, rows, opts = {}) {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = h('tbody', { id: opts.bodyId || null });
  fillRows(body, columns, rows, opts.empty);
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'cards', id: opts.id || null }, h('caption', {}, caption), h('thead', {}, head), body));
}

function fillRows(body, columns, rows, empty) {
  body.replaceChildren();
  if (!rows.length) {
    body.append(h('tr', {}, h('td', { colspan: columns.length, 'data-label': 'Note' }, empty || 'None.')));
    return;
  }
  for (const row of rows) {
    body.append(h('tr', row.attrs || {}, columns.map((c, i) =>
      h('td', { 'data-label': c.label, class: c.num ? 'num' : null }, row.cells[i]))));
  }
}

function copyButton(label, text, describedBy) {
  const status = h('span', { role: 'status', class: 'hint' });
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    'aria-describedby': describedBy || null,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(typeof text === 'function' ? text() : text);
        status.textContent = 'Copied.';
      } catch (e) {
        status.textContent = 'Copying was refused by the browser: select the text and copy it.';
      }
      setTimeout(() => { status.textContent = ''; }, 4000);
    },
  }, label);
  return [button, status];
}

function downloadButton(label, filename, text) {
  return h('button', {
    type: 'button',
    class: 'secondary',
    onclick: () => {
      const blob = new Blob([typeof text === 'function' ? text() : text], { type: 'application/json' });
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    },
  }, label);
}

/** Shows `message` in the error slot of field `id` (or clears it) and marks the field. */
function fieldError(id, message) {
  const slot = $(id + '-error');
  if (slot) slot.textContent = message || '';
  const field = $(id);
  // aria-invalid belongs on the control itself (a fieldset's error is tied by aria-describedby).
  if (field && /^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName)) {
    if (message) field.setAttribute('aria-invalid', 'true');
    else field.removeAttribute('aria-invalid');
  }
}

// ---- the API ---------------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || 'the server answered ' + status);
    this.status = status;
    this.code = error.code || 'http_' + status;
    this.body = error;
  }
}

/** One call of the JSON API: the parsed answer, or throws ApiFailure. */
async function api(method, path, opts = {}) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['x-csrf-token'] = session.csrf;
  let body;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/octet-stream';
    body = opts.body;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiFailure(0, { error: { code: 'unreachable', message: 'the server cannot be reached: ' + e.message } });
  }
  const type = response.headers.get('content-type') || '';
  const data = type.startsWith('application/json') ? await response.json() : null;
  if (!response.ok) {
    if (response.status === 401 && path !== '/console/session') signedOut('Your session has ended: sign in again.');
    throw new ApiFailure(response.status, data);
  }
  return data;
}

function clusterPath(id, rest) {
  return '/v1/clusters/' + encodeURIComponent(id) + (rest || '');
}

// ---- session --------------------------------------------------------------------------------

function signedIn(body) {
  session.csrf = body.csrf_token;
  session.org = body.organization;
  session.pollSeconds = body.poll_seconds || 2;
  $('org-name').textContent = session.org.name + ' (' + session.org.id + ')';
  $('who').hidden = false;
  $('nav').hidden = false;
  $('live-note').textContent = 'Live: what changes by itself (key health, provisioning, re-wrap progress, alarms) '
    + 'is asked of the server again every ' + (session.pollSeconds === 1 ? 'second' : session.pollSeconds + ' seconds')
    + '; no need to reload.';
}

function signedOut(message) {
  generation += 1; // what was under way for the old session drops its result
  session.csrf = null;
  session.org = null;
  $('who').hidden = true;
  $('nav').hidden = true;
  stopPolling();
  showSignIn(message);
}

function showSignIn(message) {
  current = null;
  document.title = 'Sign in — keyward console';
  const form = h('form', { id: 'sign-in', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'token' }, 'Organization API token'),
      h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
        'aria-describedby': 'token-hint token-error' }),
      h('p', { id: 'token-hint', class: 'hint' },
        'The token starts with kw_. keyward up prints one; an administrator makes more with the API.'),
      h('p', { id: 'token-error', class: 'error', role: 'alert' })),
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fieldError('token', '');
    try {
      const body = await api('POST', '/console/session', { json: { token: $('token').value } });
      signedIn(body);
      route();
    } catch (e) {
      fieldError('token', e.message);
      $('token').focus();
    }
  });
  $('main').replaceChildren(
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'error', role: 'alert' }, message) : null,
    h('p', {}, 'Sign in with your organization\'s API token to manage its clusters.'),
    form);
  $('token').focus();
}

async function signOut() {
  try {
    await api('DELETE', '/console/session');
  } catch (e) {
    // Signed out either way: the page forgets the session.
  }
  location.hash = '#/';
  signedOut('You are signed out.');
}

// ---- polling --------------------------------------------------------------------------------

function stopPolling() {
  if (timer) clearInterval(timer);
  timer = null;
}

function startPolling() {
  stopPolling();
  timer = setInterval(() => {
    if (document.hidden || !current || !current.refresh) return;
    current.refresh().catch(() => {});
  }, session.pollSeconds * 1000);
}

// ---- routing --------------------------------------------------------------------------------

function route() {
  if (!session.csrf) return;
  generation += 1;
  const hash = location.hash || '#/';
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll('[data-nav]')) link.removeAttribute('aria-current');
  let view;
  if (parts.length === 0 || parts[0] === 'clusters' && parts.length === 1) {
    view = listView();
    markNav('list');
  } else if (parts[0] === 'new') {
    view = createView();
    markNav('new');
  } else if (parts[0] === 'clusters' && parts.length <= 3) {
    view = clusterView(parts[1], parts[2] || 'overview');
  } else {
    view = notFoundView('There is no such page in the console.');
  }
  current = view;
  startPolling();
  const main = $('main');
  main.focus();
  window.scrollTo(0, 0);
}

function markNav(name) {
  const link = document.querySelector('[data-nav="' + name + '"]');
  if (link) link.setAttribute('aria-current', 'page');
}

function notFoundView(message) {
  document.title = 'Not found — keyward console';
  $('main').replaceChildren(
    h('h1', {}, 'Not found'),
    h('p', { id: 'not-found', role: 'alert' }, message),
    h('p', {}, h('a', { href: '#/' }, 'Back to your clusters')));
  return null;
}

function viewError(e) {
  if (e.code === 'not_found') return notFoundView(e.message);
  $('main').replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
  return null;
}

// ---- health presentation --------------------------------------------------------------------

const REASONS = {
  disabled: {
    text: 'the key is disabled',
    fix: (arn) => 'Enable the key in your AWS account: aws kms enable-key --key-id ' + arn,
  },
  'pending-deletion': {
    text: 'the key is scheduled for deletion',
    fix: (arn) => 'Cancel the deletion before the window ends, then enable the key: aws kms cancel-key-deletion --key-id '
      + arn + ' && aws kms enable-key --key-id ' + arn,
  },
  'access-denied': {
    text: 'the cluster\'s role is denied access to the key',
    fix: () => 'Put back the two key-policy statements of step 2 for the cluster\'s role (kms:DescribeKey, '
      + 'kms:GenerateDataKey*, kms:Decrypt and kms:CreateGrant) and remove any Deny that names it.',
  },
  'not-found': {
    text: 'the key cannot be found',
    fix: () => 'Check that the key exists in the cluster\'s region and account, or associate another key.',
  },
  'kms-unreachable': {
    text: 'AWS KMS cannot be reached',
    fix: () => 'Nothing to do on the key: keyward keeps probing and recovers by itself when KMS answers again.',
  },
};

/** [label, tone] of a key health. */
function healthLabel(health) {
  switch (health && health.status) {
    case 'healthy': return ['Healthy', 'ok'];
    case 'key-inaccessible': return ['Key inaccessible', 'bad'];
    case 'key-deleted': return ['Key deleted', 'bad'];
    default: return ['Not checked yet', 'neutral'];
  }
}

function healthBadge(health) {
  const [label, tone] = healthLabel(health);
  const reason = health && health.reason ? ' (' + health.reason + ')' : '';
  return h('span', { class: 'badge ' + tone, 'data-health': health ? health.status : 'unknown' }, label + reason);
}

const STATES = {
  'awaiting-key': ['Awaiting key', 'warn'],
  provisioning: ['Provisioning', 'warn'],
  ready: ['Ready', 'ok'],
  rewrapping: ['Re-wrapping', 'warn'],
  deleting: ['Deleting', 'warn'],
  failed: ['Failed', 'bad'],
};

function stateBadge(state) {
  const [label, tone] = STATES[state] || [state, 'neutral'];
  return h('span', { class: 'badge ' + tone, 'data-state': state }, label);
}

/** How much a cluster needs attention, for sorting the list: lower first. */
function attention(c) {
  if (c.health && (c.health.status === 'key-inaccessible' || c.health.status === 'key-deleted')) return 0;
  if (c.state === 'failed') return 0;
  if (c.state !== 'ready') return 1;
  return 2;
}

// ---- cluster list ---------------------------------------------------------------------------

function listView() {
  document.title = 'Clusters — keyward console';
  const columns = [
    { label: 'Name' }, { label: 'Region' }, { label: 'Encryption' }, { label: 'State' },
    { label: 'Key health' }, { label: 'Key' },
  ];
  const filter = h('input', { type: 'checkbox', id: 'attention-only' });
  const summary = h('p', { id: 'summary', role: 'status' }, 'Loading…');
  const tableEl = table('Your clusters, those that need attention first', columns, [], { id: 'clusters', bodyId: 'cluster-rows' });
  $('main').replaceChildren(
    h('h1', {}, 'Clusters'),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/new' }, 'Create cluster'),
      h('label', { for: 'attention-only', class: 'inline' }, filter, ' Only those that need attention')),
    summary, tableEl);
  let last = null;
  const mine = generation;
  async function refresh() {
    const data = await api('GET', '/v1/clusters');
    if (mine !== generation) return;
    const text = JSON.stringify(data) + filter.checked;
    if (text === last) return;
    last = text;
    const clusters = data.clusters.slice().sort((a, b) => attention(a) - attention(b) || a.name.localeCompare(b.name));
    const bad = clusters.filter((c) => attention(c) === 0).length;
    const busy = clusters.filter((c) => attention(c) === 1).length;
    summary.textContent = clusters.length + ' cluster' + (clusters.length === 1 ? '' : 's') + ': '
      + bad + ' inaccessible or failed, ' + busy + ' not ready yet, '
      + (clusters.length - bad - busy) + ' ready and healthy.';
    const shown = filter.checked ? clusters.filter((c) => attention(c) < 2) : clusters;
    fillRows($('cluster-rows'), columns, shown.map((c) => ({
      attrs: { 'data-cluster': c.id },
      cells: [
        h('a', { href: '#/clusters/' + encodeURIComponent(c.id) }, c.name),
        h('span', { class: 'nowrap' }, c.region),
        c.encryption === 'external' ? 'External' : 'Internal',
        stateBadge(c.state),
        healthBadge(c.health),
        c.key_arn ? h('code', {}, c.key_arn) : '—',
      ],
    })), filter.checked ? 'No cluster needs attention.' : 'No clusters yet: create one.');
  }
  filter.addEventListener('change', () => refresh().catch(() => {}));
  refresh().catch((e) => { summary.textContent = e.message; });
  return { refresh };
}

// ---- create cluster -------------------------------------------------------------------------

const REGIONS = ['us-east-1', 'us-east-2', 'us-west-1', 'us-west-2', 'ca-central-1', 'eu-west-1', 'eu-west-2',
  'eu-west-3', 'eu-central-1', 'eu-north-1', 'ap-southeast-1', 'ap-southeast-2', 'ap-northeast-1', 'ap-south-1',
  'sa-east-1'];

function createView() {
  document.title = 'Create cluster — keyward console';
  const radio = (value, label, hint) => h('label', {},
    h('input', { type: 'radio', name: 'encryption', value, id: 'encryption-' + value }),
    h('span', {}, h('strong', {}, label), h('br'), h('span', { class: 'hint' }, hint)));
  const form = h('form', { id: 'create-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'name' }, 'Name'),
      h('input', { id: 'name', type: 'text', autocomplete: 'off', required: true, 'aria-describedby': 'name-hint name-error' }),
      h('p', { id: 'name-hint', class: 'hint' }, '1 to 64 letters, digits, "-", "_", "." and inner spaces.'),
      h('p', { id: 'name-error', class: 'error', role: 'alert' })),
    h('div', { class: 'field' },
      h('label', { for: 'region' }, 'Region'),
      h('input', { id: 'region', type: 'text', list: 'regions', autocomplete: 'off', 'aria-describedby': 'region-hint region-error' }),
      h('datalist', { id: 'regions' }, REGIONS.map((r) => h('option', { value: r }))),
      h('p', { id: 'region-hint', class: 'hint' },
        'Where the cluster runs, e.g. us-east-1; empty for the platform\'s default. Your KMS key must be in the same region.'),
      h('p', { id: 'region-error', class: 'error', role: 'alert' })),
    h('fieldset', { id: 'encryption', 'aria-describedby': 'encryption-error' },
      h('legend', {}, 'Encryption at rest'),
      radio('internal', 'Internal', 'The platform manages the key. Nothing to do in your AWS account.'),
      radio('external', 'External', 'Your own AWS KMS key: you create it, you keep control, you can revoke it.'),
      h('p', { id: 'encryption-error', class: 'error', role: 'alert' })),
    h('p', { id: 'create-error', class: 'error', role: 'alert' }),
    h('button', { type: 'submit' }, 'Create cluster'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const id of ['name', 'region', 'encryption', 'create']) fieldError(id, '');
    const chosen = form.querySelector('input[name="encryption"]:checked');
    const request = { name: $('name').value };
    if ($('region').value !== '') request.region = $('region').value;
    if (chosen) request.encryption = chosen.value;
    try {
      const cluster = await api('POST', '/v1/clusters', { json: request });
      location.hash = '#/clusters/' + encodeURIComponent(cluster.id);
    } catch (e) {
      // The API's own message, beside the field it is about.
      const m = e.message;
      const field = /cluster name|field `name`/.test(m) ? 'name'
        : /region/.test(m) ? 'region'
          : /encryption/.test(m) ? 'encryption' : 'create';
      fieldError(field, field === 'encryption' && !chosen ? 'Choose Internal or External. (' + m + ')' : m);
      const focus = field === 'encryption' ? $('encryption-internal') : $(field);
      if (focus) focus.focus();
    }
  });
  $('main').replaceChildren(
    h('h1', {}, 'Create cluster'),
    h('p', {}, 'Step 1 of the guide. With External encryption, the cluster\'s details then show the role ARN and the key-policy statements for your key.'),
    form);
  return null;
}

// ---- cluster details ------------------------------------------------------------------------

function clusterView(id, tab) {
  const tabs = [['overview', 'Key and encryption', ''], ['data', 'Documents, backups, disks', '/data'],
    ['monitoring', 'Alarms, audit, cost', '/monitoring']];
  if (!tabs.some(([name]) => name === tab)) return notFoundView('There is no such page in the console.');
  const heading = h('h1', { id: 'cluster-title' }, 'Cluster');
  const nav = h('nav', { class: 'tabs', 'aria-label': 'Cluster pages' }, h('ul', {}, tabs.map(([name, label, suffix]) =>
    h('li', {}, h('a', { href: '#/clusters/' + encodeURIComponent(id) + suffix, 'aria-current': name === tab ? 'page' : null }, label)))));
  const body = h('div', { id: 'cluster-body' }, h('p', {}, 'Loading…'));
  $('main').replaceChildren(h('p', {}, h('a', { href: '#/' }, '← All clusters')), heading, nav, body);
  const view = { refresh: async () => {} };
  const mine = generation;
  api('GET', clusterPath(id)).then((cluster) => {
    if (mine !== generation) return;
    heading.textContent = 'Cluster ' + cluster.name;
    document.title = cluster.name + ' — keyward console';
    const page = tab === 'overview' ? overviewPage : tab === 'data' ? dataPage : monitoringPage;
    const shown = page(id, cluster, body, mine);
    view.refresh = shown.refresh;
  }).catch((e) => { if (mine === generation) viewError(e); });
  return view;
}

/** The status block: state, health with reason and fix, key, re-wrap progress. */
function renderStatus(box, cluster) {
  const [label, tone] = healthLabel(cluster.health);
  const health = cluster.health || {};
  const reason = health.reason && REASONS[health.reason];
  const healthBox = h('div', { id: 'health', class: 'health-box ' + tone, 'data-status': health.status || 'unknown', 'data-reason': health.reason || '' },
    h('p', {}, h('strong', {}, 'Key health: ' + label), reason ? ' — ' + reason.text : ''),
    health.message ? h('p', { id: 'health-message' }, health.message) : null,
    reason ? h('p', { id: 'health-fix' }, h('strong', {}, 'Fix: '), reason.fix(cluster.key_arn || '<key-arn>')) : null,
    health.status === 'key-deleted' ? h('p', { id: 'health-fix' }, h('strong', {}, 'Final: '),
      'a deleted key cannot come back; data encrypted under it cannot be read again.') : null,
    cluster.state === 'ready' && health.status === 'key-inaccessible'
      ? h('p', {}, 'The cluster recovers by itself as soon as its role can use the key again.') : null,
    h('p', { class: 'hint' }, 'Last probe: ' + when(health.checked_at_ms)));
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'State'), h('dd', { id: 'cluster-state' }, stateBadge(cluster.state)),
    h('dt', {}, 'Cluster id'), h('dd', {}, h('code', {}, cluster.id)),
    h('dt', {}, 'Region'), h('dd', {}, cluster.region),
    h('dt', {}, 'Encryption at rest'), h('dd', {}, cluster.encryption === 'external' ? 'External (your AWS KMS key)' : 'Internal (platform-managed key)'),
    h('dt', {}, 'Key ARN'), h('dd', { id: 'applied-key' }, cluster.key_arn ? h('code', {}, cluster.key_arn) : 'None yet'),
    h('dt', {}, 'Created'), h('dd', {}, when(cluster.created_at_ms)));
  const parts = [healthBox, facts];
  if (cluster.failure) parts.push(h('p', { class: 'error' }, 'Failed: ' + cluster.failure));
  if (cluster.state === 'provisioning') {
    parts.push(h('p', { id: 'provisioning' }, 'Provisioning the four storage classes under the key…'));
  }
  if (cluster.rewrap) {
    const r = cluster.rewrap;
    parts.push(h('div', { id: 'rewrap' },
      h('label', { for: 'rewrap-progress' }, 'Key change: re-wrapping data keys under the new key'),
      h('progress', { id: 'rewrap-progress', max: Math.max(r.total, 1), value: r.done }),
      h('p', {}, r.done + ' of ' + r.total + ' re-wrapped, from ', h('code', {}, r.from_key_arn), ' to ', h('code', {}, r.to_key_arn))));
  }
  box.replaceChildren(...parts);
}

function fullPolicy(account, statements) {
  return {
    Version: '2012-10-17',
    Id: 'keyward-cluster-key',
    Statement: [{
      Sid: 'Enable IAM User Permissions',
      Effect: 'Allow',
      Principal: { AWS: 'arn:aws:iam::' + account + ':root' },
      Action: 'kms:*',
      Resource: '*',
    }, ...statements],
  };
}

function renderReport(list, report) {
  list.replaceChildren();
  if (!report || !report.checks) return;
  for (const check of report.checks) {
    const tone = check.result === 'passed' ? 'ok' : check.result === 'failed' ? 'bad' : 'neutral';
    const label = check.result === 'passed' ? 'Passed' : check.result === 'failed' ? 'Failed' : 'Skipped';
    list.append(h('li', { 'data-check': check.check, 'data-result': check.result },
      h('span', { class: 'badge ' + tone }, label), ' ', h('strong', {}, check.check),
      check.detail ? h('p', { class: 'why' }, h('strong', {}, 'Cause: '), check.detail) : null,
      check.fix ? h('p', { class: 'why' }, h('strong', {}, 'Fix: '), check.fix) : null,
      check.why ? h('p', { class: 'why' }, h('strong', {}, 'Why skipped: '), check.why) : null));
  }
}

const CLASS_NAMES = {
  documents: 'Documents', backups: 'Backups', 'engine-disk': 'Workflow engine disks', 'search-disk': 'Search engine disks',
};

function overviewPage(id, cluster, body, mine) {
  const statusBox = h('div', { id: 'status', 'aria-live': 'polite' });
  renderStatus(statusBox, cluster);
  const external = cluster.encryption === 'external';
  const statementsPre = h('pre', { id: 'statements', tabindex: '0', 'aria-label': 'Key-policy statements' }, 'Loading…');
  let statements = [];
  const fullPre = h('pre', { id: 'full-policy', tabindex: '0', 'aria-label': 'Whole key policy for a new key', hidden: true });
  const account = h('input', { id: 'account', type: 'text', inputmode: 'numeric', autocomplete: 'off', 'aria-describedby': 'account-hint account-error' });
  const fullText = () => JSON.stringify(fullPolicy(account.value.trim(), statements), null, 2);
  // The two statements as they go into a policy's Statement list.
  const statementsText = () => statements.map((st) => JSON.stringify(st, null, 2)).join(',\n');
  account.addEventListener('input', () => {
    const ok = /^\d{12}$/.test(account.value.trim());
    fieldError('account', ok || account.value === '' ? '' : 'An AWS account id is 12 digits.');
    fullPre.hidden = !ok;
    if (ok) fullPre.textContent = fullText();
    for (const b of document.querySelectorAll('.needs-account')) b.disabled = !ok;
  });
  const [copyStatements, copyStatus] = copyButton('Copy statements', statementsText);
  const [copyFull, copyFullStatus] = copyButton('Copy whole policy', fullText);
  copyFull.classList.add('needs-account');
  copyFull.disabled = true;
  const downloadFull = downloadButton('Download whole policy', 'key-policy.json', fullText);
  downloadFull.classList.add('needs-account');
  downloadFull.disabled = true;
  const [copyRole, copyRoleStatus] = copyButton('Copy role ARN', cluster.role_arn);

  const report = h('ol', { id: 'report', class: 'checks', 'aria-label': 'Validation report' });
  const keyForm = h('form', { id: 'key-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'key-arn' }, 'KMS key ARN'),
      h('input', { id: 'key-arn', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'key-arn-hint key-arn-error' }),
      h('p', { id: 'key-arn-hint', class: 'hint' }, 'The full ARN, arn:aws:kms:<region>:<account>:key/<id>, of a symmetric key in '
        + cluster.region + ' (not an alias).'),
      h('p', { id: 'key-arn-error', class: 'error', role: 'alert' })),
    h('button', { type: 'submit' }, 'Apply'),
    h('p', { id: 'key-applied', class: 'notice', role: 'status' }));
  keyForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    fieldError('key-arn', '');
    $('key-applied').textContent = '';
    report.replaceChildren();
    try {
      const answer = await api('PUT', clusterPath(id, '/key'), { json: { key_arn: $('key-arn').value.trim() } });
      renderReport(report, answer.report);
      $('key-applied').textContent = 'Every check passed: the key is applied. The operator now provisions the four storage classes under it.';
      await view.refresh();
    } catch (e) {
      fieldError('key-arn', e.message);
      renderReport(report, e.body && e.body.report);
      $('key-arn').focus();
    }
  });

  const verifyBody = h('tbody', { id: 'verification-rows' });
  const verifyColumns = [{ label: 'Storage class' }, { label: 'Encrypted' }, { label: 'Key ARN' }, { label: 'Count', num: true },
    { label: 'Last verified' }, { label: 'Not encrypted' }];
  const verifyNote = h('p', { id: 'verification-note', role: 'status' });
  async function verify() {
    verifyNote.textContent = 'Verifying…';
    try {
      const v = await api('GET', clusterPath(id, '/verification'));
      verifyNote.textContent = (v.all_encrypted ? 'All four storage classes are encrypted under ' : 'NOT every storage class is encrypted under ')
        + v.key_arn + ' (verified ' + when(v.verified_at_ms) + ').';
      verifyNote.dataset.allEncrypted = String(v.all_encrypted);
      fillRows(verifyBody, verifyColumns, v.classes.map((c) => ({
        attrs: { 'data-class': c.class, 'data-encrypted': String(c.encrypted) },
        cells: [CLASS_NAMES[c.class] || c.class,
          h('span', { class: 'badge ' + (c.encrypted ? 'ok' : 'bad') }, c.encrypted ? 'Encrypted' : 'Not encrypted'),
          c.key_arn ? h('code', {}, c.key_arn) : (c.key_arns || []).join(', ') || '—',
          String(c.count), when(c.verified_at_ms),
          c.offenders && c.offenders.length ? c.offenders.join(', ') : 'none'],
      })));
    } catch (e) {
      verifyNote.textContent = e.message;
      delete verifyNote.dataset.allEncrypted;
    }
  }
  const verifyButton = h('button', { type: 'button', id: 'verify-now', onclick: verify }, 'Verify now');
  const deleteConfirm = h('button', { type: 'button', class: 'danger', hidden: true, onclick: async () => {
    try {
      await api('DELETE', clusterPath(id));
      location.hash = '#/';
    } catch (e) {
      $('delete-error').textContent = e.message;
    }
  } }, 'Yes, delete ' + cluster.name + ' and its data');

  body.replaceChildren(
    h('section', { class: 'panel', 'aria-labelledby': 'status-h' }, h('h2', { id: 'status-h' }, 'Status'), statusBox),
    external ? h('section', { class: 'panel', 'aria-labelledby': 'role-h' },
      h('h2', { id: 'role-h' }, 'Step 1 — the cluster\'s role'),
      h('p', {}, 'This role, unique to the cluster, is who uses your key. Your key policy names it.'),
      h('p', {}, h('code', { id: 'role-arn' }, cluster.role_arn)),
      h('div', { class: 'actions' }, copyRole, copyRoleStatus)) : null,
    external ? h('section', { class: 'panel', 'aria-labelledby': 'policy-h' },
      h('h2', { id: 'policy-h' }, 'Step 2 — the key policy'),
      h('p', {}, 'Create a symmetric KMS key in ' + cluster.region + ' whose policy has these two statements (add them to an existing policy, or use the whole policy below for a new key). Restricting any of their actions breaks encryption.'),
      statementsPre,
      h('div', { class: 'actions' }, copyStatements, downloadButton('Download statements', 'key-policy-statements.json', statementsText), copyStatus),
      h('h3', {}, 'Whole policy for a new key'),
      h('div', { class: 'field' },
        h('label', { for: 'account' }, 'Your AWS account id (the key\'s)'),
        account,
        h('p', { id: 'account-hint', class: 'hint' }, 'Its root keeps administering the key, as in AWS\'s default key policy.'),
        h('p', { id: 'account-error', class: 'error', role: 'alert' })),
      fullPre,
      h('div', { class: 'actions' }, copyFull, downloadFull, copyFullStatus),
      h('p', { class: 'hint' }, 'Then, as yourself in AWS: ', h('code', {}, 'aws kms create-key --policy file://key-policy.json --region ' + cluster.region),
        ' and copy the key ARN it prints.')) : null,
    external ? h('section', { class: 'panel', 'aria-labelledby': 'key-h' },
      h('h2', { id: 'key-h' }, 'Step 3 — associate the key'),
      h('p', {}, 'Paste the key ARN and apply. keyward checks the key first, check by check; nothing changes unless every check passes. Applying another key later re-wraps every data key under it.'),
      keyForm, report) : null,
    h('section', { class: 'panel', 'aria-labelledby': 'verify-h' },
      h('h2', { id: 'verify-h' }, 'Step 4 — verification'),
      h('p', {}, 'What is stored in each storage class, read back from the storage itself: encrypted, and under which key.'),
      h('div', { class: 'actions' }, verifyButton), verifyNote,
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'verification' },
        h('caption', {}, 'Encryption per storage class'),
        h('thead', {}, h('tr', {}, verifyColumns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
        verifyBody))),
    h('section', { class: 'panel', 'aria-labelledby': 'delete-h' },
      h('h2', { id: 'delete-h' }, 'Delete the cluster'),
      h('p', {}, 'Deletes its documents and disks; its backups are kept for the retention period.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => { deleteConfirm.hidden = false; deleteConfirm.focus(); } }, 'Delete cluster…'),
        deleteConfirm),
      h('p', { id: 'delete-error', class: 'error', role: 'alert' })));

  if (external) {
    api('GET', clusterPath(id, '/key-policy')).then((p) => {
      statements = p.Statement;
      statementsPre.textContent = statementsText();
    }).catch((e) => { statementsPre.textContent = e.message; });
  }
  let last = JSON.stringify(cluster);
  let verifiedFor = null;
  const maybeVerify = (c) => {
    // Verified once the cluster is ready under a key (and again when the key changes).
    if (c.state === 'ready' && c.key_arn && verifiedFor !== c.key_arn) {
      verifiedFor = c.key_arn;
      verify();
    }
  };
  maybeVerify(cluster);
  if (!cluster.key_arn) fillRows(verifyBody, verifyColumns, [], 'No key yet: nothing to verify.');
  const view = {
    async refresh() {
      const c = await api('GET', clusterPath(id));
      if (mine !== generation) return;
      const text = JSON.stringify(c);
      if (text !== last) {
        last = text;
        renderStatus(statusBox, c);
      }
      maybeVerify(c);
    },
  };
  return view;
}

// ---- documents, backups, disks -------------------------------------------------------------

function dataPage(id, cluster, body, mine) {
  // Documents.
  const docColumns = [{ label: 'Name' }, { label: 'Stored size', num: true }, { label: 'Encrypted under' }, { label: 'Actions' }];
  const docBody = h('tbody', { id: 'document-rows' });
  const docError = h('p', { id: 'documents-error', class: 'error', role: 'alert' });
  async function listDocuments() {
    try {
      const data = await api('GET', clusterPath(id, '/documents'));
      docError.textContent = '';
      fillRows(docBody, docColumns, data.documents.map((d) => ({
        attrs: { 'data-document': d.name },
        cells: [d.name, bytes(d.size), h('code', {}, d.key_arn), h('div', { class: 'actions' },
          h('a', { class: 'button secondary', href: clusterPath(id, '/documents/' + d.name.split('/').map(encodeURIComponent).join('/')),
            download: d.name.split('/').pop(), 'aria-label': 'Download ' + d.name }, 'Download'),
          h('button', { type: 'button', class: 'secondary', 'aria-label': 'Delete ' + d.name, onclick: async () => {
            try {
              await api('DELETE', clusterPath(id, '/documents/' + d.name.split('/').map(encodeURIComponent).join('/')));
              await listDocuments();
            } catch (e) { docError.textContent = e.message; }
          } }, 'Delete'))],
      })), 'No documents.');
    } catch (e) {
      docError.textContent = e.message;
      fillRows(docBody, docColumns, [], 'Documents cannot be listed now.');
    }
  }
  const uploadForm = h('form', { id: 'upload-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'file' }, 'File'),
      h('input', { id: 'file', type: 'file', 'aria-describedby': 'file-error' }),
      h('p', { id: 'file-error', class: 'error', role: 'alert' })),
    h('div', { class: 'field' },
      h('label', { for: 'document-name' }, 'Name (empty: the file\'s name)'),
      h('input', { id: 'document-name', type: 'text', autocomplete: 'off', 'aria-describedby': 'document-name-error' }),
      h('p', { id: 'document-name-error', class: 'error', role: 'alert' })),
    h('button', { type: 'submit' }, 'Upload'),
    h('p', { id: 'upload-done', class: 'notice', role: 'status' }));
  uploadForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    fieldError('file', '');
    fieldError('document-name', '');
    $('upload-done').textContent = '';
    const file = $('file').files[0];
    if (!file) {
      fieldError('file', 'Choose a file to upload.');
      return;
    }
    const name = $('document-name').value || file.name;
    try {
      const info = await api('PUT', clusterPath(id, '/documents/' + name.split('/').map(encodeURIComponent).join('/')), { body: file });
      $('upload-done').textContent = 'Uploaded ' + info.name + ', encrypted under ' + info.key_arn + '.';
      await listDocuments();
    } catch (e) {
      fieldError(/name/.test(e.message) ? 'document-name' : 'file', e.message);
    }
  });

  // Backups.
  const backupColumns = [{ label: 'Backup' }, { label: 'Created' }, { label: 'Complete' }, { label: 'Size', num: true }, { label: 'Actions' }];
  const backupBody = h('tbody', { id: 'backup-rows' });
  const backupNote = h('p', { id: 'backups-note', role: 'status' });
  async function listBackups() {
    try {
      const data = await api('GET', clusterPath(id, '/backups'));
      fillRows(backupBody, backupColumns, data.backups.map((b) => ({
        attrs: { 'data-backup': b.id },
        cells: [h('code', {}, b.id), when(b.created_at_ms), b.complete ? 'Yes' : 'No', bytes(b.bytes),
          h('button', { type: 'button', class: 'secondary', 'aria-label': 'Restore ' + b.id + ' into a new cluster', onclick: async () => {
            backupNote.textContent = 'Restoring…';
            try {
              const restored = await api('POST', clusterPath(id, '/backups/' + encodeURIComponent(b.id) + '/restore'));
              backupNote.replaceChildren('Restored into a new cluster: ',
                h('a', { href: '#/clusters/' + encodeURIComponent(restored.id) }, restored.name + ' (' + restored.id + ')'), '.');
            } catch (e) { backupNote.textContent = e.message; }
          } }, 'Restore')],
      })), 'No backups.');
    } catch (e) {
      backupNote.textContent = e.message;
    }
  }
  const createBackup = h('button', { type: 'button', id: 'create-backup', onclick: async () => {
    backupNote.textContent = 'Backing up…';
    try {
      const b = await api('POST', clusterPath(id, '/backups'));
      backupNote.textContent = 'Backup ' + b.id + ' made.';
      await listBackups();
    } catch (e) { backupNote.textContent = e.message; }
  } }, 'Create backup');

  // Disks.
  const diskColumns = [{ label: 'Disk' }, { label: 'Class' }, { label: 'Size', num: true }, { label: 'Attached' }, { label: 'NBD URI' }];
  const diskBody = h('tbody', { id: 'disk-rows' });
  const diskNote = h('p', { id: 'disks-note', role: 'status' });
  let lastDisks = null;
  async function listDisks() {
    try {
      const data = await api('GET', clusterPath(id, '/disks'));
      const text = JSON.stringify(data);
      if (text === lastDisks) return;
      lastDisks = text;
      fillRows(diskBody, diskColumns, data.disks.map((d) => ({
        attrs: { 'data-disk': d.id },
        cells: [h('code', {}, d.id), CLASS_NAMES[d.class] || d.class, bytes(d.size_bytes), d.attached ? 'Yes' : 'No',
          d.nbd_uri ? h('code', {}, d.nbd_uri) : '—'],
      })), 'No disks.');
    } catch (e) {
      diskNote.textContent = e.message;
    }
  }
  const credsBox = h('div', { id: 'disk-credentials' });
  const credsButton = h('button', { type: 'button', id: 'make-credentials', class: 'secondary', onclick: async () => {
    try {
      const c = await api('POST', clusterPath(id, '/disk-credentials'));
      const file = (name, text, secret) => h('div', {},
        h('h3', {}, name + (secret ? ' (secret: keep it readable by its owner only)' : '')),
        h('pre', { tabindex: '0', 'aria-label': name }, text),
        h('div', { class: 'actions' }, downloadButton('Download ' + name, name, text)));
      credsBox.replaceChildren(
        h('p', {}, 'Save the three files in one directory (say ./creds), then attach a disk:'),
        h('pre', { tabindex: '0', 'aria-label': 'Client commands' },
          'nbdinfo "<nbd-uri>?tls-certificates=./creds"\n'
          + 'qemu-io --object tls-creds-x509,id=tls0,endpoint=client,dir=./creds \\\n'
          + '  --image-opts driver=nbd,server.type=inet,server.host=<host>,server.port=<port>,export=<disk-id>,tls-creds=tls0'),
        file('ca-cert.pem', c.ca_cert_pem), file('client-cert.pem', c.client_cert_pem), file('client-key.pem', c.client_key_pem, true));
    } catch (e) { diskNote.textContent = e.message; }
  } }, 'Make client credentials');

  body.replaceChildren(
    h('section', { class: 'panel', 'aria-labelledby': 'docs-h' },
      h('h2', { id: 'docs-h' }, 'Documents'),
      h('p', {}, 'Each document is encrypted under the cluster\'s key as it is uploaded and decrypted as it is downloaded.'),
      uploadForm, docError,
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'documents' }, h('caption', {}, 'Documents'),
        h('thead', {}, h('tr', {}, docColumns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))), docBody))),
    h('section', { class: 'panel', 'aria-labelledby': 'backups-h' },
      h('h2', { id: 'backups-h' }, 'Backups'),
      h('p', {}, 'A backup holds the documents and disks, encrypted under the same key. Restoring makes a new cluster.'),
      h('div', { class: 'actions' }, createBackup), backupNote,
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'backups' }, h('caption', {}, 'Backups'),
        h('thead', {}, h('tr', {}, backupColumns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))), backupBody))),
    h('section', { class: 'panel', 'aria-labelledby': 'disks-h' },
      h('h2', { id: 'disks-h' }, 'Disks'),
      h('p', {}, 'The workflow and search engines\' disks, served over NBD with mutual TLS. A client needs the disk\'s NBD URI and client credentials of the cluster\'s own certificate authority.'),
      diskNote,
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'disks' }, h('caption', {}, 'Disks'),
        h('thead', {}, h('tr', {}, diskColumns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))), diskBody)),
      h('div', { class: 'actions' }, credsButton), credsBox));
  listDocuments();
  listBackups();
  listDisks();
  return { refresh: async () => { if (mine === generation) await listDisks(); } };
}

// ---- alarms, audit, usage -------------------------------------------------------------------

function monitoringPage(id, cluster, body, mine) {
  const alarmColumns = [{ label: 'Alarm' }, { label: 'State' }, { label: 'Reason' }, { label: 'Since' }];
  const alarmBody = h('tbody', { id: 'alarm-rows' });
  const historyColumns = [{ label: 'Time' }, { label: 'Alarm' }, { label: 'Change' }, { label: 'Reason' }];
  const historyBody = h('tbody', { id: 'alarm-history-rows' });
  let lastAlarms = null;
  async function alarms() {
    const [now, history] = await Promise.all([api('GET', clusterPath(id, '/alarms')), api('GET', clusterPath(id, '/alarms/history?limit=50'))]);
    if (mine !== generation) return;
    const text = JSON.stringify([now, history]);
    if (text === lastAlarms) return;
    lastAlarms = text;
    fillRows(alarmBody, alarmColumns, now.alarms.map((a) => ({
      attrs: { 'data-alarm': a.kind, 'data-state': a.state },
      cells: [a.kind, h('span', { class: 'badge ' + (a.state === 'OK' ? 'ok' : a.state === 'ALARM' ? 'bad' : 'neutral') }, a.state), a.reason, when(a.since_ms)],
    })), 'No alarms evaluated yet.');
    fillRows(historyBody, historyColumns, history.transitions.map((t) => ({
      cells: [when(t.at_ms), t.kind, t.from + ' → ' + t.to, t.reason],
    })), 'No alarm has changed state.');
  }

  const auditColumns = [{ label: 'Time' }, { label: 'Operation' }, { label: 'Result' }, { label: 'Error' }, { label: 'Principal' },
    { label: 'Kind' }, { label: 'Latency', num: true }];
  const auditBody = h('tbody', { id: 'audit-rows' });
  const auditNote = h('p', { id: 'audit-note', role: 'status' });
  const auditForm = h('form', { id: 'audit-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'audit-operation' }, 'Operation'),
      h('input', { id: 'audit-operation', type: 'text', list: 'operations', autocomplete: 'off', 'aria-describedby': 'audit-operation-error' }),
      h('datalist', { id: 'operations' }, ['Decrypt', 'Encrypt', 'GenerateDataKey', 'DescribeKey', 'CreateGrant', 'ReEncrypt'].map((o) => h('option', { value: o }))),
      h('p', { id: 'audit-operation-error', class: 'error', role: 'alert' })),
    h('div', { class: 'field' }, h('label', { for: 'audit-result' }, 'Result'),
      h('select', { id: 'audit-result' }, h('option', { value: '' }, 'Any'), h('option', { value: 'success' }, 'Success'),
        h('option', { value: 'error' }, 'Error'), h('option', { value: 'unreachable' }, 'Unreachable'))),
    h('div', { class: 'field' }, h('label', { for: 'audit-since' }, 'Since'),
      h('select', { id: 'audit-since' }, h('option', { value: '3600000' }, 'The last hour'), h('option', { value: '86400000' }, 'The last day'),
        h('option', { value: '604800000' }, 'The last 7 days'), h('option', { value: '' }, 'Any time'))),
    h('div', { class: 'field' }, h('label', { for: 'audit-limit' }, 'Records'),
      h('select', { id: 'audit-limit' }, ['25', '100', '1000'].map((n) => h('option', { value: n }, 'The newest ' + n)))),
    h('div', { class: 'field' }, h('label', { for: 'audit-probes' }, h('input', { id: 'audit-probes', type: 'checkbox' }), ' Hide probes')),
    h('button', { type: 'submit' }, 'Show'));
  const cloudtrail = h('a', { class: 'button secondary', id: 'audit-cloudtrail', download: 'cloudtrail-' + id + '.json' }, 'Download as CloudTrail records');
  function auditQuery() {
    const q = new URLSearchParams();
    if ($('audit-operation').value.trim()) q.set('operation', $('audit-operation').value.trim());
    if ($('audit-result').value) q.set('result', $('audit-result').value);
    if ($('audit-since').value) q.set('from', String(Date.now() - Number($('audit-since').value)));
    q.set('limit', $('audit-limit').value);
    return q;
  }
  async function audit() {
    fieldError('audit-operation', '');
    const q = auditQuery();
    const cq = new URLSearchParams(q);
    cq.set('format', 'cloudtrail');
    cloudtrail.setAttribute('href', clusterPath(id, '/audit?' + cq.toString()));
    try {
      const data = await api('GET', clusterPath(id, '/audit?' + q.toString()));
      const hide = $('audit-probes').checked;
      const records = data.records.filter((r) => !hide || !r.probe);
      auditNote.textContent = records.length + ' record' + (records.length === 1 ? '' : 's') + ' (newest first).'
        + (data.dropped ? ' ' + data.dropped + ' records were dropped by the server under load.' : '');
      fillRows(auditBody, auditColumns, records.map((r) => ({
        attrs: { 'data-operation': r.operation, 'data-result': r.result },
        cells: [when(r.time_ms), r.operation, h('span', { class: 'badge ' + (r.result === 'success' ? 'ok' : 'bad') }, r.result),
          r.error_code || '—', h('code', {}, r.principal), r.probe ? 'probe' : 'data', r.latency_ms + ' ms'],
      })), 'No KMS requests match.');
    } catch (e) {
      fieldError('audit-operation', e.message);
    }
  }
  auditForm.addEventListener('submit', (event) => { event.preventDefault(); audit(); });

  const usageBox = h('div', { id: 'usage' }, 'Loading…');
  async function usage() {
    try {
      const u = await api('GET', clusterPath(id, '/usage'));
      const ops = u.operations.map((o) => ({ cells: [o.operation, String(o.data), String(o.probe)] }));
      const charges = (u.charges && u.charges.periods) || [];
      const chargeColumns = [{ label: 'Month' }, { label: 'AWS account' }, { label: 'Cluster requests', num: true },
        { label: 'Billable requests', num: true }, { label: 'Requests', num: true }, { label: 'Keys', num: true }];
      usageBox.replaceChildren(
        h('p', {}, 'From ' + u.from + ' to ' + u.to + ' (UTC): ' + u.total.data + ' data requests and ' + u.total.probe + ' probe requests.'),
        table('KMS requests per operation', [{ label: 'Operation' }, { label: 'Data', num: true }, { label: 'Probe', num: true }], ops,
          { empty: 'No KMS requests in this period.', id: 'usage-operations' }),
        table('Estimated KMS charges, billed to the key\'s AWS account', chargeColumns, charges.map((p) => ({
          cells: [p.month, p.account, String(p.cluster_requests), String(p.billable_requests), usd(p.requests_micro_usd),
            usd(p.keys_micro_usd)],
        })), { empty: 'No charges in this period.', id: 'usage-charges' }),
        u.charges ? h('p', { id: 'usage-total' }, h('strong', {}, 'Estimated KMS cost: ' + usd(u.charges.total_micro_usd))) : null,
        u.charges && u.charges.prices ? h('p', { class: 'hint' }, 'At AWS\'s public prices: ' + usd(u.charges.prices.key_month_micro_usd)
          + ' per key and month, ' + usd(u.charges.prices.per_10k_requests_micro_usd) + ' per 10,000 requests past '
          + u.charges.prices.free_requests_per_month + ' free requests a month per account.') : null);
    } catch (e) {
      usageBox.textContent = e.message;
    }
  }

  body.replaceChildren(
    h('section', { class: 'panel', 'aria-labelledby': 'alarms-h' },
      h('h2', { id: 'alarms-h' }, 'Alarms'),
      h('p', {}, 'Evaluated by keyward: the key disabled, scheduled for deletion or deleted, access denied, the cluster\'s key inaccessible.'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'alarms', 'aria-live': 'polite' }, h('caption', {}, 'Alarms now'),
        h('thead', {}, h('tr', {}, alarmColumns.map((c) => h('th', { scope: 'col' }, c.label)))), alarmBody)),
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'alarm-history' }, h('caption', {}, 'Alarm history, newest first'),
        h('thead', {}, h('tr', {}, historyColumns.map((c) => h('th', { scope: 'col' }, c.label)))), historyBody))),
    h('section', { class: 'panel', 'aria-labelledby': 'audit-h' },
      h('h2', { id: 'audit-h' }, 'KMS audit'),
      h('p', {}, 'Every KMS request made for this cluster, allowed or refused, in the shape of CloudTrail\'s records. Refused requests are here even though your own CloudTrail never shows them.'),
      auditForm, h('div', { class: 'actions' }, cloudtrail), auditNote,
      h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'audit' }, h('caption', {}, 'KMS requests'),
        h('thead', {}, h('tr', {}, auditColumns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))), auditBody))),
    h('section', { class: 'panel', 'aria-labelledby': 'usage-h' },
      h('h2', { id: 'usage-h' }, 'KMS usage and estimated cost'),
      h('p', {}, 'This month so far. The key and its requests are billed to your AWS account; probes are keyward checking the key\'s health.'),
      usageBox));
  alarms().catch(() => {});
  audit();
  usage();
  return { refresh: async () => { await alarms(); } };
}

// ---- start ----------------------------------------------------------------------------------

async function start() {
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  try {
    const body = await api('GET', '/console/session');
    signedIn(body);
    route();
  } catch (e) {
    showSignIn(null);
  }
}

document.addEventListener('DOMContentLoaded', start);
