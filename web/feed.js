// feed.js — the live feed: one EventSource on /events/stream.
//
// The browser's EventSource reconnects by itself after a dropped connection
// and resends the last "id:" it saw as Last-Event-ID, which the server
// resumes from, so no event is lost or repeated. When the server refuses the
// stream (EventSource then gives up: readyState CLOSED) we reconnect
// ourselves with ?after=<last seq>, backing off up to 15 s, and show why.

import { get, getKey, ApiError } from './api.js';

export const EVENT_TYPES = [
  'aml.customer.created',
  'aml.customer.updated',
  'aml.customer.risk',
  'aml.kyc.tasks.created',
  'aml.kyc.task.updated',
  'aml.transaction.ingested',
  'aml.alert.created',
  'aml.alert.updated',
  'aml.rule.changed',
  'aml.approval.proposed',
  'aml.approval.approved',
  'aml.approval.rejected',
];

export class Feed {
  // onEvent(cloudEvent) for every event in seq order; onState(state, detail)
  // with state 'connecting' | 'live' | 'reconnecting' | 'down'.
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.es = null;
    this.lastSeq = 0;
    this.retryMs = 1000;
    this.timer = null;
    this.stopped = true;
  }

  // Starts `backlog` events before the newest one, so the feed is not empty.
  async start(backlog = 30) {
    this.stopped = false;
    let last = 0;
    try {
      const ready = await fetch('/readyz', { cache: 'no-store' }).then((r) => r.json());
      last = Number(ready?.checks?.events?.last_seq ?? 0);
    } catch {
      last = 0;
    }
    this.lastSeq = Math.max(0, last - backlog);
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
    this.onState('down', 'signed out');
  }

  open() {
    if (this.stopped) return;
    const key = getKey();
    if (!key) return;
    this.onState('connecting');
    const url = `/events/stream?after=${this.lastSeq}&access_token=${encodeURIComponent(key)}`;
    const es = new EventSource(url);
    this.es = es;
    const handle = (msg) => {
      const seq = Number(msg.lastEventId);
      if (seq && seq <= this.lastSeq) return; // already seen (defensive)
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (seq) this.lastSeq = seq;
      ev.seq = ev.seq ?? seq;
      this.onEvent(ev);
    };
    for (const t of EVENT_TYPES) es.addEventListener(t, handle);
    es.onmessage = handle; // types added later still show up
    es.onopen = () => {
      this.retryMs = 1000;
      this.onState('live');
    };
    es.onerror = () => {
      if (es !== this.es) return;
      if (es.readyState === EventSource.CONNECTING) {
        this.onState('reconnecting', 'connection lost; resuming after seq ' + this.lastSeq);
        return;
      }
      // CLOSED: the server answered with an error status. Ask the same
      // question through fetch to learn (and show) why, then retry.
      es.close();
      this.es = null;
      this.explain().then((why) => {
        this.onState('down', why);
        if (this.stopped) return;
        this.timer = setTimeout(() => this.open(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 15000);
      });
    };
  }

  async explain() {
    try {
      await get(`/events?after=${this.lastSeq}&limit=1`);
      return `stream refused; retrying in ${Math.round(this.retryMs / 1000)} s`;
    } catch (e) {
      return e instanceof ApiError ? e.message : String(e);
    }
  }
}
