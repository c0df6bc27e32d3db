// customers.js — the customer list (#/customers) and a customer's page
// (#/customers/ID): risk score, level, factors and history (a chart),
// transactions, alerts and KYC tasks, refreshed by the live feed.

import { get, getAll, patch, qs } from './api.js';
import { h, clear, fmtTime, fmtAmount, short, badge, errorBox, kv, table, section } from './dom.js';
import { lineChart } from './charts.js';
import { txTable } from './alerts.js';

// "aml.alert.created 3e16162b-…" → "aml.alert.created 3e16162b" (the full id is in the title)
const shortIds = (s) => (s || '').replace(/([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '$1');

const LEVEL_COLOR = { low: '#2e9e6b', medium: '#d99a1e', high: '#d64545' };

export function customerList(root, params, app) {
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true, text: 'Load more' });
  const msg = h('div');
  let after = null;
  const goIn = h('input', { id: 'c-go', type: 'search', placeholder: 'customer id', size: 38, spellcheck: 'false', 'aria-label': 'Customer id' });
  goIn.onkeydown = (e) => {
    if (e.key === 'Enter' && goIn.value.trim()) app.navigate(`#/customers/${goIn.value.trim()}`);
  };
  clear(root).append(
    h('div', { class: 'view-head' }, h('h1', { text: 'Customers' }), h('div', { class: 'filters' }, goIn, h('span', { class: 'muted', text: 'Enter opens a customer by id' }))),
    msg,
    table(['Created (UTC)', 'Name', 'External id', 'Country', 'Type', 'PEP', 'Risk'], body, { id: 'customers' }),
    more,
  );
  async function page() {
    try {
      const r = await get('/customers' + qs({ limit: 100, after }));
      for (const c of r.items)
        body.append(
          h(
            'tr',
            { class: 'row', dataset: { id: c.id }, onclick: () => app.navigate(`#/customers/${c.id}`) },
            h('td', { class: 'mono', text: fmtTime(c.created_at) }),
            h('td', {}, h('a', { href: `#/customers/${c.id}`, text: c.full_name })),
            h('td', { class: 'mono', text: c.external_id || '—' }),
            h('td', { text: c.country || '—' }),
            h('td', { text: c.customer_type }),
            h('td', { text: c.pep ? 'PEP' : '' }),
            h('td', {}, `${c.risk?.score ?? '—'} `, badge(c.risk?.level, 'level')),
          ),
        );
      after = r.next;
      more.hidden = !after;
    } catch (e) {
      clear(msg).append(errorBox(e, 'Cannot load customers'));
    }
  }
  more.onclick = page;
  page();
  let selected = -1;
  return {
    key(e) {
      const rows = body.querySelectorAll('tr.row');
      if (e.key === 'j' || e.key === 'k') {
        rows[selected]?.classList.remove('sel');
        selected = Math.max(0, Math.min(rows.length - 1, selected + (e.key === 'j' ? 1 : -1)));
        rows[selected]?.classList.add('sel');
        rows[selected]?.scrollIntoView({ block: 'nearest' });
      } else if (e.key === 'Enter' && rows[selected]) app.navigate(`#/customers/${rows[selected].dataset.id}`);
      else if (e.key === '/') goIn.focus();
      else return false;
      return true;
    },
  };
}

// `outcomes` (task id -> element) keeps a refusal on screen across the
// page's live reloads; the task's next action replaces it.
function kycActions(task, reload, outcomes) {
  const next = { open: [['in_progress', 'Start']], in_progress: [['completed', 'Complete'], ['rejected', 'Reject']] }[task.status] || [];
  const out = h('span', { class: 'kyc-out' });
  if (outcomes.has(task.id)) out.append(outcomes.get(task.id));
  return h(
    'span',
    {},
    next.map(([s, label]) =>
      h('button', {
        type: 'button',
        class: 'small',
        text: label,
        onclick: async () => {
          outcomes.delete(task.id);
          try {
            await patch(`/kyc/tasks/${task.id}`, { status: s });
            reload();
          } catch (e) {
            outcomes.set(task.id, errorBox(e));
            clear(out).append(outcomes.get(task.id));
          }
        },
      }),
    ),
    out,
  );
}

export function customerPage(root, id, app) {
  let timer = null;
  let canvas = null;
  let history = [];

  function drawChart() {
    if (!canvas || !history.length) return;
    const pts = history.map((r) => [Date.parse(r.assessed_at), r.score, r.level]);
    lineChart(canvas, [{ label: 'risk score', color: '#4a7bd0', step: true, points: pts, dots: (p) => LEVEL_COLOR[p[2]] || '#888' }], {
      yMax: 100,
      xMax: Date.now(),
      legend: true,
    });
  }

  // Loads overlap (a burst of events, a KYC action): only the newest renders.
  let loadGen = 0;
  const kycOutcomes = new Map();

  async function load() {
    const gen = ++loadGen;
    let c, risk, txs, alerts, kyc;
    try {
      [c, risk, txs, alerts, kyc] = await Promise.all([
        get(`/customers/${encodeURIComponent(id)}`),
        get(`/customers/${encodeURIComponent(id)}/risk`),
        getAll('/transactions', { customer_id: id }, 1000),
        getAll('/alerts', { customer_id: id }, 1000),
        getAll('/kyc/tasks', { customer_id: id }, 1000),
      ]);
    } catch (e) {
      if (gen !== loadGen) return;
      clear(root).append(h('p', {}, h('a', { href: '#/customers', text: '← Customers' })), errorBox(e, 'Cannot load the customer'));
      return;
    }
    if (gen !== loadGen) return;
    history = risk.items || [];
    const r = c.risk || {};
    canvas = h('canvas', { class: 'chart', id: 'risk-chart', 'aria-label': 'Risk score history' });
    const txRows = [...txs.items].sort((a, b) => (a.occurred_at < b.occurred_at ? 1 : -1));
    const alertRows = [...alerts.items].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));

    clear(root).append(
      h('p', { class: 'crumbs' }, h('a', { href: '#/customers', text: '← Customers' })),
      h('div', { class: 'view-head' }, h('h1', {}, c.full_name, ' ', badge(r.level, 'level')), h('span', { class: 'muted mono', text: `customer ${c.id}` })),
      h(
        'div',
        { class: 'cols' },
        h(
          'div',
          { class: 'col-main' },
          section(
            'Risk',
            h(
              'div',
              { class: 'risk-head' },
              h('div', { class: `score v-${r.level}`, id: 'risk-score', text: r.score ?? '—' }),
              h('div', {}, h('div', {}, badge(r.level, 'level'), r.version ? h('span', { class: 'muted', text: ` assessment v${r.version}` }) : null), h('div', { class: 'muted', title: r.reason || '', text: r.reason ? `${shortIds(r.reason)} · ${fmtTime(r.assessed_at)}` : '' })),
            ),
            table(
              ['Factor', 'Points', 'Detail'],
              (r.factors || []).map((fa) =>
                h('tr', {}, h('td', { text: fa.name }), h('td', { class: 'num' }, h('span', { class: 'bar', dataset: { w: fa.contribution } }), ` ${fa.contribution}`), h('td', { class: 'muted', text: fa.detail })),
              ),
            ),
            h('h3', { text: `History (${history.length} assessments)` }),
            canvas,
          ),
          section(`Transactions (${txRows.length}${txs.more ? '+' : ''}, newest first)`, txTable(txRows)),
        ),
        h(
          'div',
          { class: 'col-side' },
          section(
            'Customer',
            kv([
              ['External id', c.external_id],
              ['Email', c.email],
              ['Country', c.country],
              ['Date of birth', c.date_of_birth],
              ['Type', c.customer_type],
              ['PEP', c.pep ? 'yes' : 'no'],
              ['Created', fmtTime(c.created_at)],
            ]),
          ),
          section(
            `Alerts (${alertRows.length})`,
            table(
              ['Created', 'Rule', 'Status'],
              alertRows.map((a) =>
                h('tr', { class: 'row', onclick: () => app.navigate(`#/alerts/${a.id}`) }, h('td', { class: 'mono', text: fmtTime(a.created_at) }), h('td', {}, h('a', { href: `#/alerts/${a.id}`, text: a.rule_id }), ' ', badge(a.severity, 'sev')), h('td', {}, badge(a.status, 'status'))),
              ),
            ),
          ),
          section(
            `KYC tasks (${kyc.items.length})`,
            table(
              ['Task', 'Due', 'Status', ''],
              kyc.items.map((k) => h('tr', { dataset: { id: k.id, status: k.status } }, h('td', { text: k.kind, title: k.reason || '' }), h('td', { class: 'mono', text: (k.due_at || '').slice(0, 10) }), h('td', {}, badge(k.status, 'status')), h('td', {}, kycActions(k, load, kycOutcomes)))),
            ),
          ),
          section(
            'Risk history',
            table(
              ['v', 'Score', 'Level', 'Reason', 'When'],
              history.map((x) => h('tr', {}, h('td', { text: x.version }), h('td', { class: 'num', text: x.score }), h('td', {}, badge(x.level, 'level')), h('td', { class: 'muted', title: x.reason || '', text: shortIds(x.reason) }), h('td', { class: 'mono', text: fmtTime(x.assessed_at) }))),
            ),
          ),
        ),
      ),
    );
    // factor bars: widths through the CSSOM (the CSP forbids style attributes)
    for (const b of root.querySelectorAll('.bar')) b.style.width = `${Math.min(100, Number(b.dataset.w)) * 1.2}px`;
    drawChart();
  }

  const onResize = () => drawChart();
  window.addEventListener('resize', onResize);
  load();
  return {
    onEvent(ev) {
      const d = ev.data || {};
      if (ev.subject === id || d.customer_id === id) {
        clearTimeout(timer);
        timer = setTimeout(load, 400); // one reload for a burst of events
      }
    },
    destroy() {
      clearTimeout(timer);
      window.removeEventListener('resize', onResize);
    },
    key(e) {
      if (e.key === 'Escape') window.history.back();
      else return false;
      return true;
    },
  };
}
