// dom.js — building elements and formatting values, shared by the views.
// Text always goes in through textContent (never innerHTML), so data from
// the API can never become markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// "2026-11-27 23:41:28" (UTC, as the API stores it); '' for nothing.
export function fmtTime(iso) {
  if (!iso) return '';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '');
}

export function ago(iso) {
  if (!iso) return '';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

// Decimal strings stay strings: group the integer part, keep the digits.
export function fmtAmount(s, currency) {
  if (s === undefined || s === null) return '';
  const [i, f] = String(s).split('.');
  const neg = i.startsWith('-');
  const digits = neg ? i.slice(1) : i;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = f !== undefined ? '.' + f.replace(/0+$/, '').padEnd(2, '0') : '';
  return `${neg ? '-' : ''}${grouped}${frac}${currency ? ' ' + currency : ''}`;
}

export const short = (id) => (id ? String(id).slice(0, 8) : '');

export function badge(value, kind) {
  return h('span', { class: `badge ${kind || ''} v-${String(value).replace(/[^a-z_]/gi, '')}`, text: value ?? '—' });
}

// A problem+json error as the analyst sees it: the server's detail, the
// field it names, and the request id to quote to an operator.
export function errorBox(err, what) {
  const parts = [what ? `${what}: ` : '', err.message || String(err)];
  if (err.field) parts.push(` (field: ${err.field})`);
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('strong', { text: err.status ? `${err.status} ` : '' }),
    parts.join(''),
    err.requestId || err.problem?.request_id
      ? h('span', { class: 'muted mono', text: ` request ${err.requestId || err.problem.request_id}` })
      : null,
  );
}

export function kv(pairs) {
  return h(
    'dl',
    { class: 'kv' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v ?? '—')]),
  );
}

export function table(headers, rows, attrs) {
  return h(
    'table',
    { class: 'grid', ...(attrs || {}) },
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { text: x })))),
    rows instanceof HTMLTableSectionElement ? rows : h('tbody', {}, rows),
  );
}

export function jsonValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', { text: title }), ...children);
}

// Runs fn over items with at most n in flight; results in order.
export async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (e) {
        out[i] = e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}
