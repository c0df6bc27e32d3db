// api.js — the authenticated API as the dashboard uses it.
//
// The key lives in sessionStorage only (gone when the tab closes). Every
// call sends "Authorization: Bearer KEY"; a failure becomes an ApiError
// carrying the problem+json detail, which the views show as it is.

const KEY = 'vigil.key';

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem, fallback) {
    const detail = problem && (problem.detail || problem.title);
    super(detail || fallback || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || null;
    this.field = problem && problem.field;
  }
}

// Listeners told when the key stops working (401), to show the sign-in.
const unauthorized = new Set();
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

// fetch() with the key; returns {status, body} for 2xx (body parsed when
// JSON, text otherwise), throws ApiError for anything else.
export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, null, `cannot reach the server (${e.message})`);
  }
  const type = r.headers.get('Content-Type') || '';
  let parsed = null;
  const text = await r.text();
  if (type.includes('json') && text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (r.ok) return { status: r.status, body: parsed ?? text };
  if (r.status === 401) for (const fn of unauthorized) fn(parsed);
  const err = new ApiError(r.status, parsed, text.slice(0, 200));
  err.requestId = r.headers.get('X-Request-Id');
  throw err;
}

export const get = async (path) => (await call('GET', path)).body;
export const patch = (path, body) => call('PATCH', path, body);

// Query string from an object, leaving out empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
}

// Every item of a keyset-paged list, up to `max` items.
export async function getAll(path, params, max = 2000) {
  const items = [];
  let after;
  for (;;) {
    const page = await get(path + qs({ ...params, limit: 100, after }));
    items.push(...page.items);
    if (!page.next || items.length >= max) return { items, more: Boolean(page.next) };
    after = page.next;
  }
}
