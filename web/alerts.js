// alerts.js — the alert queue (#/alerts) and an alert's page (#/alerts/ID).
//
// The queue loads every alert matching the filters (up to 1,000, newest
// first) and then stays current from the live feed: a new alert that matches
// is put on top and highlighted, an updated one changes in place.

import { call, get, getAll, patch, qs } from './api.js';
import { h, clear, fmtTime, ago, fmtAmount, short, badge, errorBox, kv, table, jsonValue, section, pool } from './dom.js';

const QUEUE_MAX = 1000;
const DISPOSITIONS = [
  ['false_positive', 'False positive'],
  ['no_action', 'No action needed'],
  ['escalated', 'Escalated'],
  ['sar_filed', 'SAR filed'],
];

function aggSummary(a) {
  const g = a.aggregates || {};
  const parts = [];
  if (g.count !== undefined) parts.push(`${g.count} tx`);
  if (g.sum !== undefined) parts.push(fmtAmount(g.sum, 'USD'));
  else if (g.amount !== undefined) parts.push(fmtAmount(g.amount, 'USD'));
  if (!parts.length) {
    const first = Object.entries(g).slice(0, 2);
    for (const [k, v] of first) parts.push(`${k.replace(/_/g, ' ')} ${aggValue(k, v)}`);
  }
  return parts.join(' · ');
}

// Sums are in the base currency (USD); times are shown like every other time.
function aggValue(k, v) {
  if (/sum|amount|total|inflow|outflow/.test(k) && /^-?\d+(\.\d+)?$/.test(String(v))) return fmtAmount(v, 'USD');
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) return v.join(', ');
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
  return jsonValue(v);
}

export function alertQueue(root, params, app) {
  const f = {
    status: params.get('status') ?? 'open',
    rule_id: params.get('rule_id') || '',
    customer_id: params.get('customer_id') || '',
    severity: params.get('severity') || '',
  };
  if (f.status === 'all') f.status = '';
  let alerts = [];
  let truncated = false;
  let selected = 0;
  const body = h('tbody', { id: 'queue-body' });
  const count = h('span', { class: 'muted', id: 'queue-count' });
  const msg = h('div', { id: 'queue-msg' });

  const ruleSel = h('select', { id: 'f-rule', 'aria-label': 'Rule' }, h('option', { value: '', text: 'any rule' }));
  const statusSel = h(
    'select',
    { id: 'f-status', 'aria-label': 'Status' },
    ['open', 'investigating', 'closed', ''].map((s) =>
      h('option', { value: s, text: s || 'any status', selected: s === f.status }),
    ),
  );
  const sevSel = h(
    'select',
    { id: 'f-severity', 'aria-label': 'Severity' },
    ['', 'high', 'medium', 'low'].map((s) => h('option', { value: s, text: s || 'any severity', selected: s === f.severity })),
  );
  const custIn = h('input', {
    id: 'f-customer',
    type: 'search',
    placeholder: 'customer id',
    value: f.customer_id,
    size: 38,
    spellcheck: 'false',
    'aria-label': 'Customer id',
  });
  const apply = () => {
    app.navigate(
      '#/alerts' +
        qs({ status: statusSel.value || 'all', rule_id: ruleSel.value, customer_id: custIn.value.trim(), severity: sevSel.value }),
      true,
    );
  };
  statusSel.onchange = ruleSel.onchange = sevSel.onchange = apply;
  custIn.onkeydown = (e) => {
    if (e.key === 'Enter') apply();
  };

  app.rules().then((rules) => {
    for (const r of rules) ruleSel.append(h('option', { value: r.id, text: r.name || r.id, selected: r.id === f.rule_id }));
  });

  clear(root).append(
    h(
      'div',
      { class: 'view-head' },
      h('h1', {}, 'Alert queue ', count),
      h('div', { class: 'filters', role: 'search' }, statusSel, ruleSel, sevSel, custIn, h('button', { type: 'button', onclick: apply, text: 'Filter' })),
    ),
    msg,
    table(['Created (UTC)', 'Age', 'Severity', 'Rule', 'Customer', 'Why', 'Status', ''], body, { id: 'queue' }),
  );

  const matches = (a) =>
    (!f.status || a.status === f.status) &&
    (!f.rule_id || a.rule_id === f.rule_id) &&
    (!f.customer_id || a.customer_id === f.customer_id) &&
    (!f.severity || a.severity === f.severity);

  function row(a, fresh) {
    const cust = h('a', { href: `#/customers/${a.customer_id}`, class: 'mono', text: short(a.customer_id) });
    app.customerName(a.customer_id).then((n) => {
      if (!n) return;
      cust.textContent = n;
      cust.classList.remove('mono');
    });
    const tr = h(
      'tr',
      {
        class: `row${fresh ? ' fresh' : ''}${matches(a) ? '' : ' stale'}`,
        dataset: { id: a.id, status: a.status, customer: a.customer_id },
        onclick: (e) => {
          if (e.target.tagName !== 'A') app.navigate(`#/alerts/${a.id}`);
        },
      },
      h('td', { class: 'mono', text: fmtTime(a.created_at) }),
      h('td', { class: 'muted', text: ago(a.created_at) }),
      h('td', {}, badge(a.severity, 'sev')),
      h('td', {}, h('a', { href: `#/alerts/${a.id}`, class: 'alert-link', text: a.rule_id })),
      h('td', {}, cust),
      h('td', { class: 'muted', text: aggSummary(a) }),
      h('td', {}, badge(a.status, 'status'), a.disposition ? h('span', { class: 'muted', text: ` ${a.disposition}` }) : null),
      h('td', { class: 'mono muted', text: `v${a.rule_version}` }),
    );
    return tr;
  }

  function render() {
    clear(body);
    alerts.forEach((a) => body.append(row(a, a._fresh)));
    if (!alerts.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'No alerts match these filters. New ones appear here as they fire.' })));
    count.textContent = `${alerts.length}${truncated ? '+' : ''} ${f.status || ''}`.trim();
    select(Math.min(selected, alerts.length - 1));
  }

  function select(i) {
    const rows = body.querySelectorAll('tr.row');
    rows.forEach((r) => r.classList.remove('sel'));
    if (i < 0 || !rows[i]) return;
    selected = i;
    rows[i].classList.add('sel');
    rows[i].scrollIntoView({ block: 'nearest' });
  }

  // The API's answer can predate an alert (or a change) that the live feed
  // delivers while load() waits for it: those are kept in `live` and merged
  // into the answer, so no alert that fired meanwhile is missing from the
  // queue and no status goes back in time.
  let live = null;
  const newer = (a, b) => Date.parse(a.updated_at) >= Date.parse(b.updated_at);

  async function load() {
    clear(msg).append(h('p', { class: 'muted', text: 'Loading…' }));
    live = new Map();
    try {
      const r = await getAll('/alerts', { status: f.status, rule_id: f.rule_id, customer_id: f.customer_id }, QUEUE_MAX);
      const byId = new Map(r.items.map((a) => [a.id, a]));
      for (const a of live.values()) {
        const had = byId.get(a.id);
        if (had ? newer(a, had) : matches(a)) byId.set(a.id, a);
      }
      live = null;
      alerts = [...byId.values()].filter((a) => a._fresh || matches(a)).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
      truncated = r.more;
      clear(msg);
      if (truncated) msg.append(h('p', { class: 'muted', text: `Showing the first ${QUEUE_MAX} matches; narrow the filters to see the rest.` }));
      render();
    } catch (e) {
      live = null;
      clear(msg).append(errorBox(e, 'Cannot load the alerts'));
    }
  }
  load();

  return {
    onEvent(ev) {
      if (live && (ev.type === 'aml.alert.created' || ev.type === 'aml.alert.updated')) live.set(ev.data.id, { ...ev.data, _fresh: true });
      if (ev.type === 'aml.alert.created' && matches(ev.data) && !alerts.some((a) => a.id === ev.data.id)) {
        alerts.unshift({ ...ev.data, _fresh: true });
        selected++;
        render();
      } else if (ev.type === 'aml.alert.updated') {
        const i = alerts.findIndex((a) => a.id === ev.data.id);
        if (i >= 0) {
          alerts[i] = { ...ev.data, _fresh: true };
          render();
        }
      }
    },
    key(e) {
      const n = body.querySelectorAll('tr.row').length;
      if (e.key === 'j') select(Math.min(selected + 1, n - 1));
      else if (e.key === 'k') select(Math.max(selected - 1, 0));
      else if (e.key === 'Enter' && alerts[selected]) app.navigate(`#/alerts/${alerts[selected].id}`);
      else if (e.key === '/') {
        statusSel.focus();
      } else return false;
      return true;
    },
  };
}

function txTable(txs) {
  return table(
    ['Occurred (UTC)', 'Amount', 'Base (USD)', 'Dir', 'Channel', 'Counterparty', 'External id'],
    txs.map((t) =>
      t instanceof Error
        ? h('tr', {}, h('td', { colspan: 7 }, errorBox(t)))
        : h(
            'tr',
            {},
            h('td', { class: 'mono', text: fmtTime(t.occurred_at) }),
            h('td', { class: 'num', text: fmtAmount(t.amount, t.currency) }),
            h('td', { class: 'num', text: fmtAmount(t.amount_base) }),
            h('td', { text: t.direction }),
            h('td', { text: t.channel }),
            h('td', { text: t.counterparty ? [t.counterparty.name, t.counterparty.account, t.counterparty.country].filter(Boolean).join(' · ') : '—' }),
            h('td', { class: 'mono', text: t.external_id }),
          ),
    ),
  );
}
export { txTable };

export function alertPage(root, id, app) {
  let alert = null;
  // The page re-renders whenever the alert changes: after the analyst's own
  // PATCH, and on every live aml.alert.updated (which can arrive before or
  // after the PATCH's response). Two rules keep that from eating what the
  // analyst sees: only the newest load() renders (loadGen), and the outcome
  // of the last action (a refusal, a confirmation) and a half-filled form
  // (disposition, note) survive a re-render while the alert's status is the
  // same. The outcome is replaced by the next action.
  // An action that completes after a later one was started leaves the later
  // one's outcome in place (actionSeq). wf.dataset.renders counts renders
  // (the end-to-end test waits on it).
  let loadGen = 0;
  let outcome = null;
  let actionSeq = 0;
  let renders = 0;
  const wf = h('section', { class: 'card workflow', id: 'workflow' });
  const approvals = h('section', { class: 'card', id: 'approvals', hidden: true });

  // Four eyes: closing as escalated or sar_filed is a proposal that another
  // person approves or rejects. Shown only when the alert has proposals.
  async function loadApprovals() {
    let list;
    try {
      list = (await get(`/approvals${qs({ target_id: id, kind: 'alert_close', limit: 20 })}`)).items || [];
    } catch (e) {
      clear(approvals).append(h('h2', { text: 'Approvals' }), errorBox(e, 'Cannot load approvals'));
      approvals.hidden = false;
      return;
    }
    approvals.hidden = list.length === 0;
    const out = h('div', { 'aria-live': 'polite' });
    const note = h('input', { type: 'text', placeholder: 'note (required to reject)', 'aria-label': 'Decision note' });
    const decide = async (p, verb) => {
      try {
        const r = await call('POST', `/approvals/${p.id}/${verb}`, note.value.trim() ? { note: note.value.trim() } : undefined);
        clear(out).append(h('div', { class: 'notice ok', role: 'status', text: `Proposal ${verb === 'approve' ? 'approved' : 'rejected'}.` }));
        if (r.body?.result?.id) alert = r.body.result;
        load();
      } catch (e) {
        clear(out).append(errorBox(e, 'Refused'));
      }
    };
    clear(approvals).append(
      h('h2', { text: 'Approvals (four eyes)' }),
      ...list.map((p) =>
        h(
          'div',
          { class: 'approval', dataset: { id: p.id, status: p.status } },
          h('div', {}, badge(p.status, 'status'), ` close as ${p.payload?.disposition || '?'} · proposed by ${p.proposed_by} · ${fmtTime(p.proposed_at)}`),
          p.payload?.note ? h('div', { class: 'muted', text: `“${p.payload.note}”` }) : null,
          p.decided_by ? h('div', { class: 'muted', text: `${p.status} by ${p.decided_by} · ${fmtTime(p.decided_at)}${p.decision_note ? ' — ' + p.decision_note : ''}` }) : null,
          p.status === 'pending'
            ? h('div', { class: 'filters' }, h('button', { type: 'button', class: 'primary small', text: 'Approve', onclick: () => decide(p, 'approve') }), h('button', { type: 'button', class: 'small', text: 'Reject', onclick: () => decide(p, 'reject') }))
            : null,
        ),
      ),
      list.some((p) => p.status === 'pending') ? note : '',
      out,
    );
  }

  async function load() {
    const gen = ++loadGen;
    let a;
    try {
      a = await get(`/alerts/${encodeURIComponent(id)}`);
    } catch (e) {
      if (gen !== loadGen) return;
      clear(root).append(h('p', {}, h('a', { href: '#/alerts', text: '← Alert queue' })), errorBox(e, 'Cannot load the alert'));
      return;
    }
    const [rules, customer, txs] = await Promise.all([
      app.rules(),
      get(`/customers/${a.customer_id}`).catch((e) => e),
      pool((a.transaction_ids || []).slice(0, 200), 6, (t) => get(`/transactions/${t}`)),
    ]);
    if (gen !== loadGen) return; // a newer load renders instead
    alert = a;
    const rule = rules.find((r) => r.id === a.rule_id);
    const custLink = h('a', { href: `#/customers/${a.customer_id}`, id: 'alert-customer' }, customer instanceof Error ? short(a.customer_id) : customer.full_name);

    clear(root).append(
      h('p', { class: 'crumbs' }, h('a', { href: '#/alerts', text: '← Alert queue' })),
      h(
        'div',
        { class: 'view-head' },
        h('h1', {}, rule?.name || a.rule_id, ' ', badge(a.severity, 'sev'), ' ', h('span', { id: 'alert-status' }, badge(a.status, 'status')), a.disposition ? h('span', { class: 'muted', id: 'alert-disposition', text: ` ${a.disposition}` }) : null),
        h('span', { class: 'muted mono', text: `alert ${a.id}` }),
      ),
      h(
        'div',
        { class: 'cols' },
        h(
          'div',
          { class: 'col-main' },
          section(
            'Why it fired',
            rule?.description ? h('p', { text: rule.description }) : null,
            kv([
              ['Rule', h('span', { class: 'mono', text: a.rule_id })],
              ['Rule version', `v${a.rule_version}` + (rule && rule.version !== a.rule_version ? ` (the rule is now v${rule.version})` : '')],
              ['Window end', fmtTime(a.window_end)],
              ['Customer', custLink],
              customer instanceof Error ? null : ['Customer risk', h('span', {}, `${customer.risk?.score ?? '—'} `, badge(customer.risk?.level, 'level'))],
            ]),
            h('h3', { text: 'Parameters in force' }),
            kv(Object.entries(a.params || {}).map(([k, v]) => [k, h('span', { class: 'mono', text: jsonValue(v) })])),
            h('h3', { text: 'Aggregates' }),
            kv(Object.entries(a.aggregates || {}).map(([k, v]) => [k, h('span', { class: 'mono', text: aggValue(k, v) })])),
          ),
          section(`Contributing transactions (${(a.transaction_ids || []).length})`, txTable(txs)),
        ),
        h('div', { class: 'col-side' }, wf, approvals),
      ),
    );
    renderWorkflow();
    loadApprovals();
  }

  function renderWorkflow() {
    const a = alert;
    const kept = wf.dataset.status === a.status ? { disposition: wf.querySelector('#wf-disposition')?.value, note: wf.querySelector('#wf-note')?.value } : {};
    wf.dataset.status = a.status;
    wf.dataset.renders = String(++renders);
    clear(wf).append(h('h2', { text: 'Workflow' }));
    wf.append(
      kv([
        ['Status', badge(a.status, 'status')],
        ['Disposition', a.disposition || '—'],
        ['Last by', a.actor || '—'],
        ['Updated', fmtTime(a.updated_at)],
        ['Note', a.note || '—'],
      ]),
    );
    const out = h('div', { id: 'wf-outcome', 'aria-live': 'polite' });
    if (outcome) out.append(outcome);
    const note = h('textarea', { id: 'wf-note', rows: 3, placeholder: 'note (optional)', 'aria-label': 'Note' });
    if (kept.note) note.value = kept.note;
    if (a.status === 'open') {
      wf.append(
        h('label', { for: 'wf-note', text: 'Note' }),
        note,
        h('button', { type: 'button', id: 'wf-investigate', class: 'primary', onclick: () => send({ status: 'investigating' }, note), title: 'i' }, 'Start investigating ', h('kbd', { text: 'i' })),
      );
    } else if (a.status === 'investigating') {
      const disp = h(
        'select',
        { id: 'wf-disposition', 'aria-label': 'Disposition' },
        h('option', { value: '', text: 'choose a disposition…' }),
        DISPOSITIONS.map(([v, t]) => h('option', { value: v, text: t })),
      );
      if (kept.disposition) disp.value = kept.disposition;
      wf.append(
        h('label', { for: 'wf-disposition', text: 'Disposition' }),
        disp,
        h('label', { for: 'wf-note', text: 'Note' }),
        note,
        h(
          'button',
          {
            type: 'button',
            id: 'wf-close',
            class: 'primary',
            onclick: () => send({ status: 'closed', disposition: disp.value || undefined }, note),
          },
          'Close alert ',
          h('kbd', { text: 'x' }),
        ),
      );
    } else {
      wf.append(h('p', { class: 'muted', text: 'Closed alerts are final.' }));
    }
    wf.append(out);
  }

  async function send(body, note) {
    if (note && note.value.trim()) body.note = note.value.trim();
    const buttons = wf.querySelectorAll('button');
    buttons.forEach((b) => (b.disabled = true));
    const seq = ++actionSeq;
    outcome = null;
    try {
      const r = await patch(`/alerts/${alert.id}`, body);
      if (seq !== actionSeq) {
        // A later action was started meanwhile: its outcome stays. The alert
        // still changed, so show it as it is now.
        await load();
        return;
      }
      delete wf.dataset.status; // accepted: the form starts empty again
      if (r.status === 202) {
        // e.g. four-eyes: the change waits for a second analyst.
        const p = r.body && typeof r.body === 'object' ? r.body : {};
        outcome = h(
          'div',
          { class: 'notice', role: 'status', id: 'wf-pending' },
          h('strong', { text: 'Submitted for approval. ' }),
          p.id
            ? `Proposal ${short(p.id)} (${p.status || 'pending'}) by ${p.proposed_by || 'you'}: the alert changes when a second analyst approves it.`
            : String(r.body || ''),
        );
        renderWorkflow();
        loadApprovals();
        return;
      }
      if (r.body && r.body.id) alert = r.body;
      outcome = h('div', { class: 'notice ok', role: 'status', text: `Alert is now ${alert.status}${alert.disposition ? ' (' + alert.disposition + ')' : ''}.` });
      await load();
    } catch (e) {
      buttons.forEach((b) => (b.disabled = false));
      if (seq !== actionSeq) return;
      outcome = errorBox(e, e.status === 409 ? 'Conflict' : 'Refused');
      clear(wf.querySelector('#wf-outcome')).append(outcome);
    }
  }

  load();
  return {
    onEvent(ev) {
      if (ev.type === 'aml.alert.updated' && ev.subject === id && alert && ev.data.updated_at !== alert.updated_at) {
        alert = ev.data;
        load();
      } else if (ev.type.startsWith('aml.approval.') && ev.data?.target_id === id) {
        loadApprovals();
      }
    },
    key(e) {
      if (e.key === 'i') wf.querySelector('#wf-investigate')?.click();
      else if (e.key === 'x') wf.querySelector('#wf-disposition')?.focus();
      else if (e.key === 'u' && alert) app.navigate(`#/customers/${alert.customer_id}`);
      else if (e.key === 'Escape') app.navigate('#/alerts');
      else return false;
      return true;
    },
  };
}
