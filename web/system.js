// system.js — the system page (#/system): the event pipeline and the
// consumers as an operator watches them. GET /metrics (Prometheus text) is
// sampled every few seconds while the page is open; rates are the change of
// a counter between two samples. Dead letters come from GET /dead-letters.

import { get, call } from './api.js';
import { h, clear, fmtTime, short, errorBox, kv, table, section } from './dom.js';
import { lineChart } from './charts.js';

const SAMPLE_MS = 3000;
const KEEP = 200; // samples: 10 minutes

// Prometheus text format → [{name, labels: {}, value}]
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function one(ms, name) {
  const m = ms.find((x) => x.name === name);
  return m ? m.value : undefined;
}

function byConsumer(ms, name) {
  const o = {};
  for (const m of ms) if (m.name === name && m.labels.consumer) o[m.labels.consumer] = m.value;
  return o;
}

// Keeps its samples across visits to the page (module state), so the
// charts are not empty when the analyst comes back.
const samples = [];

export function systemPage(root, params, app) {
  const tiles = h('div', { class: 'tiles', id: 'tiles' });
  const lagCanvas = h('canvas', { class: 'chart', id: 'lag-chart' });
  const rateCanvas = h('canvas', { class: 'chart', id: 'rate-chart' });
  const pendCanvas = h('canvas', { class: 'chart', id: 'pending-chart' });
  const consumers = h('div');
  const dead = h('div');
  const msg = h('div');
  const ready = h('div');
  clear(root).append(
    h('div', { class: 'view-head' }, h('h1', { text: 'System' }), h('span', { class: 'muted', text: `GET /metrics every ${SAMPLE_MS / 1000} s (this instance)` })),
    msg,
    tiles,
    h(
      'div',
      { class: 'charts' },
      section('Publish lag (events not yet in JetStream)', lagCanvas),
      section('Event rate (events/s)', rateCanvas),
      section('Consumer backlog (pending events)', pendCanvas),
    ),
    h('div', { class: 'cols' }, h('div', { class: 'col-main' }, section('Consumers', consumers), section('Dead letters', dead)), h('div', { class: 'col-side' }, section('Readiness (/readyz)', ready))),
  );

  function tile(label, value, warn, title) {
    return h('div', { class: `tile${warn ? ' warn' : ''}`, title: title || '' }, h('div', { class: 'tile-v', text: value ?? '—' }), h('div', { class: 'tile-l', text: label }));
  }

  function rate(name, i) {
    const a = samples[i - 1], b = samples[i];
    const va = one(a.m, name), vb = one(b.m, name);
    if (va === undefined || vb === undefined) return null;
    return Math.max(0, (vb - va) / ((b.t - a.t) / 1000));
  }

  function render() {
    const s = samples[samples.length - 1];
    if (!s) return;
    const m = s.m;
    const lag = one(m, 'vigil_publish_lag_events');
    const dl = Object.values(byConsumer(m, 'vigil_dead_letters')).reduce((x, y) => x + y, 0);
    const pubRate = samples.length > 1 ? rate('vigil_published_seq', samples.length - 1) : null;
    clear(tiles).append(
      tile('last event seq', one(m, 'vigil_event_log_last_seq')),
      tile('published seq', one(m, 'vigil_published_seq')),
      tile('publish lag (events)', lag, lag > 1000),
      tile('publish lag (s)', one(m, 'vigil_publish_lag_seconds')?.toFixed(1), one(m, 'vigil_publish_lag_seconds') > 10),
      tile('publish rate (ev/s)', pubRate === null ? '…' : pubRate.toFixed(1)),
      tile('outbox pending', one(m, 'vigil_outbox_pending'), one(m, 'vigil_outbox_pending') > 1000),
      tile('NATS', one(m, 'vigil_nats_connected') === 1 ? 'connected' : one(m, 'vigil_nats_connected') === 0 ? 'down' : '—', one(m, 'vigil_nats_connected') === 0),
      tile('stream', one(m, 'vigil_stream_ok') === 1 ? 'ok' : one(m, 'vigil_stream_ok') === 0 ? 'problem' : '—', one(m, 'vigil_stream_ok') === 0),
      tile('leader roles', [one(m, 'vigil_sequencer_leader') ? 'sequencer' : '', one(m, 'vigil_publisher_leader') ? 'publisher' : ''].filter(Boolean).join(', ') || 'none here'),
      tile('event streams', one(m, 'vigil_sse_clients')),
      tile('dead letters', dl, dl > 0),
    );
    const now = Date.now();
    lineChart(lagCanvas, [{ label: 'lag (events)', color: '#d99a1e', points: samples.map((x) => [x.t, one(x.m, 'vigil_publish_lag_events') ?? 0]) }], { legend: true, xMax: now });
    const seqPts = [], pubPts = [];
    for (let i = 1; i < samples.length; i++) {
      const a = rate('vigil_event_log_last_seq', i), b = rate('vigil_published_seq', i);
      if (a !== null) seqPts.push([samples[i].t, a]);
      if (b !== null) pubPts.push([samples[i].t, b]);
    }
    lineChart(rateCanvas, [{ label: 'sequenced', color: '#4a7bd0', points: seqPts }, { label: 'published', color: '#2e9e6b', points: pubPts }], { xMax: now, empty: 'needs two samples' });
    const names = Object.keys(byConsumer(m, 'vigil_consumer_pending'));
    const palette = ['#4a7bd0', '#2e9e6b', '#d99a1e', '#d64545', '#8e5cc4', '#3aa6b9'];
    lineChart(pendCanvas, names.map((n, i) => ({ label: n, color: palette[i % palette.length], points: samples.map((x) => [x.t, byConsumer(x.m, 'vigil_consumer_pending')[n] ?? 0]) })), { xMax: now, legend: true, empty: 'no consumers in this instance' });

    const cols = ['vigil_consumer_pending', 'vigil_consumer_processed_total', 'vigil_consumer_failures_total', 'vigil_consumer_redeliveries_total', 'vigil_consumer_duplicates_total', 'vigil_dead_letters'];
    const vals = cols.map((c) => byConsumer(m, c));
    clear(consumers).append(
      names.length
        ? table(
            ['Consumer', 'Pending', 'Processed', 'Failures', 'Redeliveries', 'Duplicates', 'Dead letters'],
            names.map((n) => h('tr', {}, h('td', { class: 'mono', text: n }), vals.map((v, i) => h('td', { class: `num${i === 5 && v[n] > 0 ? ' bad' : ''}`, text: v[n] ?? '—' })))),
            { id: 'consumers' },
          )
        : h('p', { class: 'muted', text: 'No consumers run in this instance (VIGIL_ROLES).' }),
    );
  }

  async function sample() {
    try {
      const r = await call('GET', '/metrics');
      samples.push({ t: Date.now(), m: parseMetrics(String(r.body)) });
      if (samples.length > KEEP) samples.shift();
      clear(msg);
      render();
    } catch (e) {
      clear(msg).append(errorBox(e, 'Cannot read /metrics'));
    }
  }

  async function loadSlow() {
    try {
      const d = await get('/dead-letters?status=dead&limit=100');
      clear(dead).append(
        d.items.length
          ? table(
              ['Since (UTC)', 'Consumer', 'Event', 'Seq', 'Error'],
              d.items.map((x) => h('tr', {}, h('td', { class: 'mono', text: fmtTime(x.created_at) }), h('td', { class: 'mono', text: x.consumer }), h('td', { class: 'mono', text: x.event_type || short(x.event_id) }), h('td', { class: 'num', text: x.seq ?? '' }), h('td', { class: 'bad', text: x.error || x.last_error || '' }))),
              { id: 'dead-letters' },
            )
          : h('p', { class: 'muted', id: 'dead-letters-none', text: 'None. Every event was applied.' }),
      );
    } catch (e) {
      clear(dead).append(errorBox(e, 'Cannot load dead letters'));
    }
    try {
      const r = await fetch('/readyz', { cache: 'no-store' });
      const j = await r.json();
      const ev = j.checks?.events || {};
      clear(ready).append(
        kv([
          ['Status', `${j.status} (${r.status})`],
          ['Database', j.checks?.database?.ok ? 'ok' : j.checks?.database?.detail || 'down'],
          ['Schema', j.checks?.schema ? (j.checks.schema.ok ? 'current' : `${j.checks.schema.pending_migrations} pending`) : '—'],
          ['Publisher', ev.publisher || 'another instance'],
          ['Outbox pending', ev.outbox_pending],
          ['Publish lag', ev.publish_lag],
          ev.last_error ? ['Last error', h('span', { class: 'bad', text: ev.last_error })] : null,
        ]),
      );
    } catch (e) {
      clear(ready).append(errorBox(e, 'Cannot read /readyz'));
    }
  }

  sample();
  loadSlow();
  const t1 = setInterval(sample, SAMPLE_MS);
  const t2 = setInterval(loadSlow, 10000);
  const onResize = () => render();
  window.addEventListener('resize', onResize);
  return {
    destroy() {
      clearInterval(t1);
      clearInterval(t2);
      window.removeEventListener('resize', onResize);
    },
  };
}
