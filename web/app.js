// app.js — the dashboard's shell: sign-in, hash routing, the live feed
// panel, the connection indicator and keyboard shortcuts. Views live in
// alerts.js, customers.js and system.js; each is a function(root, ...)
// returning {onEvent?, key?, destroy?}.

import { get, getKey, setKey, onUnauthorized, ApiError } from './api.js';
import { Feed } from './feed.js';
import { h, clear, fmtTime, fmtAmount, short } from './dom.js';
import { alertQueue, alertPage } from './alerts.js';
import { customerList, customerPage } from './customers.js';
import { systemPage } from './system.js';

const $ = (id) => document.getElementById(id);
const FEED_MAX = 300;

let view = null;
let feed = null;
let paused = false;
let held = [];
let rulesCache = null;
const names = new Map();

// Shared services for the views.
const app = {
  navigate(hash, replace) {
    if (replace) history.replaceState(null, '', hash);
    else if (location.hash !== hash) {
      location.hash = hash;
      return; // hashchange routes
    }
    route();
  },
  rules() {
    if (!rulesCache)
      rulesCache = get('/rules').then(
        (r) => (Array.isArray(r) ? r : r.items || []),
        () => {
          rulesCache = null;
          return [];
        },
      );
    return rulesCache;
  },
  // A customer's name for display, fetched once; '' when it cannot be read.
  customerName(id) {
    if (!names.has(id)) names.set(id, get(`/customers/${id}`).then((c) => c.full_name, () => ''));
    return names.get(id);
  },
};

// ---- sign-in --------------------------------------------------------------

function showSignin(message) {
  $('app').hidden = true;
  $('nav').hidden = $('signout').hidden = $('help-btn').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('key').focus();
}

async function signin(key) {
  setKey(key);
  try {
    await get('/alerts?limit=1'); // proves the key reads data
  } catch (e) {
    setKey(null);
    throw e;
  }
  start();
}

function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('nav').hidden = $('signout').hidden = $('help-btn').hidden = false;
  feed = new Feed(onEvent, setConn);
  feed.start();
  route();
}

function signout(message) {
  setKey(null);
  if (feed) feed.stop();
  feed = null;
  if (view?.destroy) view.destroy();
  view = null;
  clear($('feed'));
  rulesCache = null;
  names.clear();
  showSignin(message);
}

// ---- live feed panel ------------------------------------------------------

function setConn(state, detail) {
  const el = $('conn');
  el.className = `conn ${state}`;
  el.dataset.state = state;
  $('conn-text').textContent = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', down: 'disconnected' }[state] || state;
  el.title = detail ? `Live feed: ${detail}` : 'Live feed (/events/stream)';
}

function kindOf(type) {
  if (type.startsWith('aml.alert.')) return 'alert';
  if (type.startsWith('aml.transaction.')) return 'transaction';
  if (type === 'aml.customer.risk') return 'risk';
  if (type.startsWith('aml.kyc.')) return 'kyc';
  return 'other';
}

// One line saying what happened, with a link to where to look.
function describe(ev) {
  const d = ev.data || {};
  const cust = (id, text) => {
    const a = h('a', { href: `#/customers/${id}`, text: text || short(id) });
    if (!text && id)
      app.customerName(id).then((n) => {
        if (n) a.textContent = n;
      });
    return a;
  };
  switch (ev.type) {
    case 'aml.alert.created':
      return [h('a', { href: `#/alerts/${d.id}`, class: 'strong', text: `${d.rule_id}` }), ` ${d.severity} alert · `, cust(d.customer_id)];
    case 'aml.alert.updated':
      return [h('a', { href: `#/alerts/${d.id}`, text: d.rule_id }), ` ${d.previous_status || ''} → ${d.status}${d.disposition ? ` (${d.disposition})` : ''}`];
    case 'aml.transaction.ingested':
      return [`${fmtAmount(d.amount, d.currency)} ${d.direction} ${d.channel} · `, cust(d.customer_id)];
    case 'aml.customer.risk':
      return [`risk ${d.score} ${d.level} (v${d.version}) · `, cust(d.customer_id)];
    case 'aml.kyc.tasks.created':
      return [`${(d.tasks || []).length} KYC task(s) opened · `, cust(d.customer_id)];
    case 'aml.kyc.task.updated':
      return [`KYC ${d.kind} ${d.previous_status || ''} → ${d.status} · `, cust(d.customer_id)];
    case 'aml.customer.created':
      return ['new customer ', cust(d.id, d.full_name)];
    case 'aml.customer.updated':
      return ['customer updated ', cust(d.id, d.full_name)];
    case 'aml.approval.proposed':
    case 'aml.approval.approved':
    case 'aml.approval.rejected':
      return [`${d.kind || 'change'} ${d.status} · ${d.status === 'pending' ? 'by ' + (d.proposed_by || '?') : 'by ' + (d.decided_by || '?')}`];
    case 'aml.rule.changed':
      return [`rule ${d.id} now v${d.version} (${d.mode})`];
    default:
      return [ev.type];
  }
}

const LABEL = { alert: 'ALERT', transaction: 'TX', risk: 'RISK', kyc: 'KYC', other: 'EVT' };

function feedItem(ev) {
  const kind = kindOf(ev.type);
  const li = h(
    'li',
    { class: `ev k-${kind}${ev.type === 'aml.alert.created' ? ' hot' : ''}`, dataset: { kind, type: ev.type, seq: ev.seq } },
    h('span', { class: 'ev-time mono', text: fmtTime(ev.time).slice(11), title: `${ev.type} · seq ${ev.seq} · ${ev.time}` }),
    h('span', { class: 'ev-kind', text: LABEL[kind] }),
    h('span', { class: 'ev-text' }, describe(ev)),
  );
  li.hidden = !document.querySelector(`.feed-filters input[data-kind="${kind}"]`)?.checked;
  return li;
}

function onEvent(ev) {
  $('feed-seq').textContent = `seq ${ev.seq}`;
  if (paused) {
    held.push(ev);
    $('feed-pause').textContent = `Resume (${held.length})`;
  } else addToFeed(ev);
  if (ev.type === 'aml.rule.changed') rulesCache = null;
  if (ev.type === 'aml.customer.updated' && ev.data) names.set(ev.data.id, Promise.resolve(ev.data.full_name));
  if (view?.onEvent) view.onEvent(ev);
}

function addToFeed(ev) {
  const list = $('feed');
  list.prepend(feedItem(ev));
  while (list.childElementCount > FEED_MAX) list.lastElementChild.remove();
}

function togglePause() {
  paused = !paused;
  $('feed-pause').textContent = paused ? 'Resume' : 'Pause';
  if (!paused) {
    held.forEach(addToFeed);
    held = [];
  }
}

// ---- routing --------------------------------------------------------------

function route() {
  if (!getKey()) return showSignin();
  if (view?.destroy) view.destroy();
  // Each view gets a fresh container: a request of the previous view that
  // completes late renders into a detached element, never over this one.
  const root = h('div', { class: 'view-root' });
  clear($('view')).append(root);
  const [path, query] = (location.hash.slice(1) || '/alerts').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const section = parts[0] || 'alerts';
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === section);
  if (section === 'alerts' && parts[1]) view = alertPage(root, parts[1], app);
  else if (section === 'customers' && parts[1]) view = customerPage(root, parts[1], app);
  else if (section === 'customers') view = customerList(root, params, app);
  else if (section === 'system') view = systemPage(root, params, app);
  else view = alertQueue(root, params, app);
  document.title = `Vigil · ${section}`;
  $('view').focus({ preventScroll: true });
}

// ---- keyboard -------------------------------------------------------------

let gPending = false;
function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || $('app').hidden) return;
  const t = e.target;
  const typing = t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable;
  if (typing) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (gPending) {
    gPending = false;
    const to = { a: '#/alerts', c: '#/customers', s: '#/system' }[e.key];
    if (to) {
      e.preventDefault();
      app.navigate(to);
      return;
    }
  }
  if (e.key === 'g') {
    gPending = true;
    setTimeout(() => (gPending = false), 1200);
    return;
  }
  if (e.key === '?') {
    $('help').showModal();
    return;
  }
  if (e.key === 'p') {
    togglePause();
    return;
  }
  if (view?.key && view.key(e)) e.preventDefault();
}

// ---- start ----------------------------------------------------------------

function showBanner(text) {
  $('banner-text').textContent = text;
  $('banner').hidden = false;
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('key').value.trim();
    $('signin-submit').disabled = true;
    try {
      await signin(key);
      $('key').value = '';
    } catch (err) {
      $('signin-error').textContent = err instanceof ApiError ? err.message : String(err);
    } finally {
      $('signin-submit').disabled = false;
    }
  });
  $('signout').addEventListener('click', () => signout());
  $('help-btn').addEventListener('click', () => $('help').showModal());
  $('feed-pause').addEventListener('click', togglePause);
  $('banner-close').addEventListener('click', () => ($('banner').hidden = true));
  for (const cb of document.querySelectorAll('.feed-filters input'))
    cb.addEventListener('change', () => {
      for (const li of document.querySelectorAll(`#feed li[data-kind="${cb.dataset.kind}"]`)) li.hidden = !cb.checked;
    });
  onUnauthorized((p) => signout(p?.detail || 'The key was refused; sign in again.'));
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', onKey);
  window.addEventListener('unhandledrejection', (e) => showBanner(`Unexpected error: ${e.reason?.message || e.reason}`));
  if (getKey()) start();
  else showSignin();
});
