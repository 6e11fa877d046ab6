// The live state every widget renders from: one EventSource per page
// (shared by all widgets, the embeddable ones included), the JSON API
// read once at start, and the history ring for the trend graphs.
//
// Traffic per open page: the SSE stream, plus — only while a mounted
// widget needs it — one performance JSON read per snapshot (route table,
// slow requests) and one history read per history step. Nothing polls on
// its own timer except the configuration (thresholds), once a minute.

import { scoped, getScoped, fleetOn, setViewer, overlay } from './fleet.js';

export const PREFIX = new URL('../../', import.meta.url).pathname; // "/admin/responsiveness/"
const API = '/admin/api/';
const STREAM = API + 'performance/responsiveness/stream';

// AuthError is thrown by getJSON on 401/403 so callers can send the user
// to the login page (or, in an embedded widget, say so).
export class AuthError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function getJSON(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  return decode(r);
}

// postJSON sends a same-origin JSON POST (the admin API refuses anything
// else: cross-origin, or a form's Content-Type).
export async function postJSON(path, body) {
  const r = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
  });
  return decode(r);
}

async function decode(r) {
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (r.status === 401 || (r.status === 403 && body && /only loopback/i.test(body.error || ''))) {
    throw new AuthError(r.status, (body && body.error) || 'not signed in');
  }
  if (!r.ok) {
    const msg = body && body.error ? body.error + (body.details ? ': ' + body.details.join('; ') : '') : 'HTTP ' + r.status;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

// state is what widgets read. Fields are null until known.
export const state = {
  tickTime: null,   // time of the latest snapshot (Date ms)
  figures: {},      // figure name → value (see docs/ARCHITECTURE.md)
  levels: null,     // signal → ok|warning|critical (from the monitor)
  judgements: null, // figure name → {value, unit, level, warning, critical, window, label, of, why_not_measured} (the API's; never re-judged here)
  viewer: null,     // GET …/api/whoami: {can_write, name, via, token_configured, why_read_only}
  health: null,     // health verdict
  requests: null,   // 1-minute window
  backpressure: null,
  tasks: [],
  perf: null,       // full performance JSON (windows, routes, slow requests, probes)
  config: null,     // effective configuration (thresholds)
  alerts: new Map(), // active alerts by id
  alertHistory: null,
  fleet: null,      // fleet scope: GET …/performance/responsiveness?scope=fleet (fleet.js)
  connected: false,
  error: null,      // last error worth showing (AuthError included)
};

const subscribers = new Set();
const needs = { perf: 0, history: 0, alertHistory: 0 };
let source = null;
let started = false;
let configTimer = null;
let perfInFlight = false;

// subscribe registers fn(state, reason) and starts the live connection on
// first use. It returns an unsubscribe function. want lists optional data:
// 'perf', 'history', 'alertHistory'.
export function subscribe(fn, want = []) {
  subscribers.add(fn);
  for (const w of want) needs[w]++;
  start();
  if (state.tickTime || state.perf) queueMicrotask(() => fn(state, 'init'));
  if (want.includes('perf') && !state.perf) refreshPerf();
  if (want.includes('alertHistory') && !state.alertHistory) refreshAlertHistory();
  return () => {
    subscribers.delete(fn);
    for (const w of want) needs[w]--;
    if (subscribers.size === 0) stop();
  };
}

function notify(reason) {
  for (const fn of subscribers) {
    try {
      fn(state, reason);
    } catch (e) {
      console.warn('pulsegate widget failed to render', e); // eslint-disable-line no-console
    }
  }
}

function fail(e) {
  state.error = e;
  notify('error');
}

function start() {
  if (started) return;
  started = true;
  // whoami first: it says whether the fleet scope exists (fleet.js).
  getJSON(PREFIX + 'api/whoami').then((v) => { state.viewer = v; setViewer(v); }).then(() => Promise.all([
    getScoped(getJSON, API + 'health/responsiveness').then(applyHealth),
    getScoped(getJSON, API + 'alerts/responsiveness?state=active&limit=100').then((b) => setAlerts(b.alerts)),
    refreshConfig(),
    refreshPerf(), // once at start: the 1-minute figures and backpressure before the first snapshot
    fleetOn() ? refreshFleet() : null,
  ])).then(() => notify('init'), fail);
  connect();
  configTimer = setInterval(refreshConfig, 60000);
  document.addEventListener('visibilitychange', onVisible);
}

function stop() {
  started = false;
  if (source) source.close();
  source = null;
  clearInterval(configTimer);
  document.removeEventListener('visibilitychange', onVisible);
}

function onVisible() {
  if (document.visibilityState === 'visible' && needs.perf > 0) refreshPerf();
}

function connect() {
  source = new EventSource(STREAM, { withCredentials: true });
  source.addEventListener('open', () => {
    state.connected = true;
    notify('connection');
  });
  source.addEventListener('error', () => {
    state.connected = false;
    notify('connection');
    if (source && source.readyState === EventSource.CLOSED) {
      // The server refused the stream (e.g. the session expired): find out
      // why with a plain request, then retry later.
      getJSON(API + 'health/responsiveness').then(() => setTimeout(() => started && connect(), 3000), fail);
    }
  });
  source.addEventListener('snapshot', (ev) => {
    let t;
    try {
      t = JSON.parse(ev.data);
    } catch {
      return;
    }
    applyTick(t);
    notify('tick');
    if (needs.perf > 0) refreshPerf();
    if (fleetOn()) refreshFleet();
    if (needs.history > 0) maybeRefreshHistory();
  });
  for (const type of ['alert.firing', 'alert.acknowledged', 'alert.resolved', 'alert.escalated', 'alert.deescalated']) {
    source.addEventListener(type, (ev) => {
      let e;
      try {
        e = JSON.parse(ev.data);
      } catch {
        return;
      }
      applyAlert(e.alert);
      notify('alert');
      if (needs.alertHistory > 0) refreshAlertHistory();
    });
  }
}

function applyTick(t) {
  state.tickTime = new Date(t.time).getTime();
  state.figures = t.figures || {};
  state.levels = t.levels || null;
  // One source per page: where the performance JSON is re-read on every
  // snapshot, its judgements (taken with its windows) are the ones shown.
  if (t.judgements && needs.perf === 0) state.judgements = t.judgements;
  state.requests = t.requests || null;
  if (t.backpressure) state.backpressure = t.backpressure;
  state.tasks = t.tasks || [];
  state.connected = true;
  state.error = null;
  if (t.health && !fleetOn()) applyHealth(t.health);
  overlay(state);
}

function applyHealth(v) {
  state.health = v;
  if (!state.tickTime && v && v.metrics) {
    // Before the first snapshot: the verdict's metrics use figure names.
    for (const [k, val] of Object.entries(v.metrics)) if (val !== null) state.figures[k] = val;
    const bc = v.details && v.details.background_cleanup;
    if (!state.tasks.length && bc && Array.isArray(bc.tasks)) state.tasks = bc.tasks;
  }
  if (v && Array.isArray(v.alerts)) setAlerts(v.alerts, true);
}

// setAlerts replaces the active set. Acknowledgement only moves forward
// while an alert is active, so an acknowledgement this page already knows
// of survives a snapshot taken just before it.
function setAlerts(list, fromTick = false) {
  const next = new Map();
  for (const a of list || []) {
    if (!a || !a.id) continue;
    const known = state.alerts.get(a.id);
    if (fromTick && known && known.state === 'acknowledged' && a.state === 'firing') {
      next.set(a.id, { ...a, state: 'acknowledged', acknowledged_at: known.acknowledged_at, acknowledged_by: known.acknowledged_by, ack_note: known.ack_note });
    } else {
      next.set(a.id, a);
    }
  }
  state.alerts = next;
}

function applyAlert(a) {
  if (!a || !a.id) return;
  if (a.state === 'resolved') state.alerts.delete(a.id);
  else state.alerts.set(a.id, a);
}

export async function acknowledge(ids, note) {
  const body = await postJSON(API + 'alerts/responsiveness/acknowledge', { alert_ids: ids, note });
  for (const a of body.acknowledged || []) applyAlert(a);
  notify('alert');
  if (needs.alertHistory > 0) refreshAlertHistory();
  return body;
}

async function refreshConfig() {
  try {
    state.config = await getJSON(API + 'config/responsiveness');
    notify('config');
  } catch (e) {
    fail(e);
  }
}

async function refreshPerf() {
  if (perfInFlight) return;
  perfInFlight = true;
  try {
    state.perf = await getJSON(API + 'performance/responsiveness?top=25');
    if (state.perf.judgements) state.judgements = state.perf.judgements;
    overlay(state);
    if (!state.backpressure) state.backpressure = state.perf.backpressure;
    if (!state.tasks.length && state.perf.background_tasks) state.tasks = state.perf.background_tasks;
    notify('perf');
  } catch (e) {
    fail(e);
  } finally {
    perfInFlight = false;
  }
}

// refreshFleet reads the fleet's verdict and figures (fleet scope only):
// state.health is the fleet's, state.fleet the fleet performance answer.
let fleetInFlight = false;
async function refreshFleet() {
  if (fleetInFlight) return;
  fleetInFlight = true;
  try {
    const [v, perf] = await Promise.all([getJSON(scoped(API + 'health/responsiveness')), getJSON(scoped(API + 'performance/responsiveness'))]);
    state.fleet = perf;
    applyHealth(v);
    overlay(state);
    notify('perf');
  } catch (e) {
    fail(e);
  } finally {
    fleetInFlight = false;
  }
}

async function refreshAlertHistory() {
  try {
    const b = await getScoped(getJSON, API + 'alerts/responsiveness?limit=50');
    state.alertHistory = b.alerts || [];
    notify('alertHistory');
  } catch (e) {
    fail(e);
  }
}

// ---- history for the trend graphs

const history = new Map(); // range → {view, fetched}
const historyWaiters = new Map();

// getHistory returns the history view for range ("15m", "1h", "24h"),
// fetching it if this page has none yet.
export function getHistory(range) {
  const h = history.get(range);
  if (h) return Promise.resolve(h.view);
  return fetchHistory(range);
}

function fetchHistory(range) {
  if (historyWaiters.has(range)) return historyWaiters.get(range);
  const p = getJSON(scoped(PREFIX + 'api/history?range=' + encodeURIComponent(range)))
    .then((view) => {
      history.set(range, { view, fetched: Date.now() });
      return view;
    })
    .finally(() => historyWaiters.delete(range));
  historyWaiters.set(range, p);
  return p;
}

// maybeRefreshHistory refetches a range once a new step may have closed.
function maybeRefreshHistory() {
  for (const [range, h] of history) {
    if (Date.now() - h.fetched >= h.view.step_seconds * 1000) {
      fetchHistory(range).then(() => notify('history'), fail);
    }
  }
}
