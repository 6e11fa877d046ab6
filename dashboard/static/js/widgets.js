// The dashboard's widgets. mount(kind, element, options) renders one into
// element (a page section or a <pulsegate-widget>'s shadow root) and keeps
// it live; it returns a function that stops it.
//
// Everything shown is read from the admin API and its event stream. Data
// reaches the DOM only as text (util.js h/replace), never as markup.
//
// Levels and colours come only from the API's judgements (state.judgements,
// one per figure, judged against the configured thresholds): nothing here
// compares a figure with a threshold. A figure that is not measured is
// neutral and says why, and what to set.
//
// Request figures shown together come from one performance JSON read, so
// every tile, table cell and footnote that names the same window shows the
// same number; each says its window ("last 1 min", "latest probe").

import {
  h, replace, isNum, fmtSeconds, fmtPct, fmtRate, fmtNum, fmtApdex, fmtAgo, fmtClock,
  levelClass, pill, humanize, judgement, measured, fmtUnit, windowText, secondsAxis, pctAxis, numAxis, NB,
} from './util.js';
import { state, subscribe, acknowledge, getHistory, AuthError, PREFIX } from './live.js';
import { lineChart, RANGES, RANGE_WORDS, plural } from './chart.js';
import { instancesWidget, withScope, fleetOn } from './fleet.js';

// kinds maps a widget name to its factory; the embeddable element accepts
// the product's five kinds (resources, performance, health, tasks,
// backpressure).
const kinds = {
  health: healthWidget,
  figures: figuresWidget,
  performance: figuresWidget,
  windows: windowsWidget,
  routes: routesWidget,
  slow: slowWidget,
  resources: resourcesWidget,
  backpressure: backpressureWidget,
  tasks: tasksWidget,
  trends: trendsWidget,
  'alert-history': alertHistoryWidget,
  instances: instancesWidget, // fleet.js
};

export const EMBEDDABLE = ['resources', 'performance', 'health', 'tasks', 'backpressure'];

// registerWidget adds a page's own widget kinds (route.js: the route page).
export function registerWidget(kind, factory) {
  kinds[kind] = factory;
}

// mount renders widget kind into root. options: {embedded, compact, charts}.
export function mount(kind, root, options = {}) {
  const make = kinds[kind];
  if (!make) {
    replace(root, h('p', { class: 'msg' }, `unknown pulsegate widget kind "${kind}"`));
    return () => {};
  }
  const w = make(options);
  const card = h('div', { class: 'widget', dataset: { kind } });
  const title = h('h2', null, w.title);
  const tools = h('div', { class: 'tools' });
  const banner = h('p', { class: 'banner', role: 'alert', hidden: true });
  const body = h('div', { class: 'body' });
  card.append(h('header', null, title, tools), banner, body);
  replace(root, card);
  if (w.tools) w.tools(tools);
  const render = (st, reason) => {
    showBanner(banner, st, options);
    if (st.error instanceof AuthError) {
      // Signed out: no figures at all (not "not measured", which would be
      // a claim about the app); the banner says to sign in.
      tools.hidden = true;
      replace(body);
      return;
    }
    tools.hidden = false;
    if (reason === 'error') return;
    if (!st.tickTime && !st.perf && !st.health) return;
    w.render(body, st, reason);
  };
  const stop = subscribe(render, w.want || []);
  if (!state.tickTime && !state.perf) replace(body, h('p', { class: 'muted' }, 'waiting for the first figures…'));
  return () => {
    stop();
    if (w.stop) w.stop();
  };
}

function showBanner(banner, st, options) {
  const e = st.error;
  if (e instanceof AuthError) {
    banner.hidden = false;
    replace(banner, 'Not signed in to pulsegate. ', h('a', { href: PREFIX + 'login?next=' + encodeURIComponent(location.pathname) }, 'Sign in'),
      ' to see the figures.');
    if (!options.embedded) {
      location.assign(PREFIX + 'login?next=' + encodeURIComponent(location.pathname));
    }
    return;
  }
  if (e) {
    banner.hidden = false;
    replace(banner, 'Could not load figures: ' + e.message);
    return;
  }
  banner.hidden = true;
}

// levelOfJ is the level a judgement reports ("unknown" without one).
function levelOfJ(j) {
  return j ? j.level : 'unknown';
}

// thrOf lists a judgement's configured thresholds for a chart.
function thrOf(j) {
  if (!j) return [];
  return [{ value: j.warning, level: 'warning' }, { value: j.critical, level: 'critical' }].filter((t) => isNum(t.value));
}

// thrText says a judgement's thresholds in words ("warning above 80% ·
// critical above 90%"), or '' when none is set.
function thrText(j) {
  if (!j) return '';
  const word = j.bad_when === 'below' ? 'below' : 'above';
  const parts = [];
  if (isNum(j.warning)) parts.push(`warning ${word} ${fmtUnit(j.unit, j.warning)}`);
  if (isNum(j.critical)) parts.push(`critical ${word} ${fmtUnit(j.unit, j.critical)}`);
  return parts.join(' · ');
}

// notMeasuredText says why a judgement has no value and what to set.
function notMeasuredText(j) {
  if (!j) return 'not reported by this pulsegate';
  if (j.why_not_measured) return j.why_not_measured;
  return j.level === 'disabled' ? 'disabled in the configuration' : 'no measurement yet';
}

// requestsOf is the 1-minute request window: from the performance JSON
// when the page reads it (so tiles, the windows table and the footnote
// show the same numbers), else from the latest snapshot.
function requestsOf(st) {
  return st.fleetRequests || (st.perf && st.perf.windows && st.perf.windows['1m']) || st.requests || null;
}

// stat is one tile: a label, a value and, under it, what the value is (its
// window and qualifier) as visible text, never only a hover title.
function stat(label, value, { level, figure, sub } = {}) {
  return h('div', { class: 'stat ' + (level ? levelClass(level) : ''), dataset: figure ? { figure, level: level || 'none' } : undefined },
    h('span', { class: 'label' }, label), h('span', { class: 'value' }, value),
    sub ? h('span', { class: 'sub' }, sub) : null);
}

// scroll wraps a table so a narrow card scrolls it instead of overflowing,
// with a visible cue when columns are hidden to the right.
function scroll(table) {
  const cue = h('p', { class: 'scroll-cue small muted', hidden: true }, 'more columns → swipe or scroll sideways');
  const box = h('div', { class: 'scroll' }, table);
  const check = () => {
    cue.hidden = box.scrollWidth <= box.clientWidth + 2 || box.scrollLeft + box.clientWidth >= box.scrollWidth - 2;
  };
  box.addEventListener('scroll', check, { passive: true });
  requestAnimationFrame(check);
  return [cue, box];
}

function alertsFor(st, metric) {
  return [...st.alerts.values()].filter((a) => a.metric === metric);
}

function canWrite(st) {
  return !!(st.viewer && st.viewer.can_write);
}

// ------------------------------------------------------------ health

function healthWidget(options) {
  const rows = new Map(); // alert id → {li, update}
  return {
    title: 'Health status',
    render(body, st) {
      const v = st.health;
      if (!v) return;
      if (!body.firstChild || !body.querySelector('.alerts')) {
        replace(body,
          h('div', { class: 'verdict' }),
          h('ul', { class: 'components' }),
          h('ul', { class: 'reasons muted' }),
          h('h3', null, 'Active alerts'),
          h('p', { class: 'read-only small muted', hidden: true }),
          h('ul', { class: 'alerts' }));
        rows.clear();
      }
      const ago = v.last_check ? fmtAgo(v.last_check) : 'not yet';
      replace(body.querySelector('.verdict'),
        h('span', { class: 'pill big ' + levelClass(v.status), dataset: { verdict: v.status } }, v.status),
        h('span', { class: 'muted' }, ' last check ', h('time', { datetime: v.last_check || '' }, v.last_check ? fmtClock(v.last_check) : '–'), ` (${ago})`));
      const reasons = v.reasons || [];
      const used = new Set();
      const comps = Object.entries(v.components || {}).sort(([a], [b]) => a.localeCompare(b));
      replace(body.querySelector('.components'), comps.map(([name, level]) => {
        const mine = reasons.filter((r) => r.startsWith(name + ' '));
        mine.forEach((r) => used.add(r));
        return h('li', { dataset: { component: name } }, pill(level), ' ', h('b', null, humanize(name)),
          options.compact ? null : mine.map((r) => h('div', { class: 'reason' }, r.slice(name.length + 1))));
      }));
      replace(body.querySelector('.reasons'), options.compact ? [] : reasons.filter((r) => !used.has(r)).map((r) => h('li', null, r)));
      // Write controls only for a viewer who can write; everyone else is
      // told why not and what would change it, once, not per alert.
      const ro = body.querySelector('.read-only');
      const writer = canWrite(st);
      ro.hidden = writer || st.alerts.size === 0 || !st.viewer;
      replace(ro, st.viewer && !writer ? 'Read-only: ' + (st.viewer.why_read_only || 'this viewer cannot acknowledge alerts') : '');
      renderAlerts(body.querySelector('.alerts'), rows, st, options);
    },
  };
}

function renderAlerts(ul, rows, st, options) {
  const alerts = [...st.alerts.values()].sort((a, b) => sevRank(b) - sevRank(a) || String(a.first_seen).localeCompare(String(b.first_seen)));
  const seen = new Set();
  for (const a of alerts) {
    seen.add(a.id);
    let row = rows.get(a.id);
    if (!row) {
      row = alertRow(a, options);
      rows.set(a.id, row);
    }
    row.update(a, canWrite(st), st);
    ul.append(row.li); // moves it into sorted position
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.li.remove();
      rows.delete(id);
    }
  }
  let empty = ul.querySelector('.none');
  if (alerts.length === 0 && !empty) ul.append(h('li', { class: 'none muted' }, 'No active alerts.'));
  if (alerts.length > 0 && empty) empty.remove();
}

function sevRank(a) {
  return a.severity === 'critical' ? 2 : a.severity === 'warning' ? 1 : 0;
}

function alertRow(a, options) {
  const sev = h('span');
  const msg = h('span', { class: 'message' });
  const meta = h('div', { class: 'muted meta' });
  const rec = h('div', { class: 'recommendation' });
  const runbook = h('div', { class: 'runbook small' });
  const ackInfo = h('div', { class: 'ack-info' });
  const note = h('input', { type: 'text', class: 'note', maxlength: 1000, placeholder: 'note (optional)', 'aria-label': 'Acknowledgement note' });
  const button = h('button', { type: 'button', class: 'ack' }, 'Acknowledge');
  const status = h('span', { class: 'ack-status', role: 'status' });
  const form = h('div', { class: 'ack-form' }, note, button, status);
  const li = h('li', { class: 'alert', dataset: { alertId: a.id } }, h('div', { class: 'head' }, sev, ' ', msg), meta, rec, runbook, ackInfo, form);
  button.addEventListener('click', async () => {
    button.disabled = true;
    replace(status, 'acknowledging…');
    try {
      await acknowledge([li.dataset.alertId], note.value);
      replace(status, '');
      note.value = '';
    } catch (e) {
      if (e instanceof AuthError && !options.embedded) {
        location.assign(PREFIX + 'login?next=' + encodeURIComponent(location.pathname));
        return;
      }
      replace(status, 'not acknowledged: ' + e.message);
      button.disabled = false;
    }
  });
  return {
    li,
    update(a, writer, st) {
      const f = (v) => fmtFig(a.metric, v, st);
      li.dataset.state = a.state;
      li.dataset.rule = a.rule;
      replace(sev, pill(a.severity));
      replace(msg, a.message || a.rule);
      replace(meta, `rule ${a.rule}${a.subject ? ' · ' + a.subject : ''} · value ${f(a.value)} vs ${a.severity} threshold ${f(a.threshold)} · since ${fmtClock(a.first_seen)} (${fmtAgo(a.first_seen)})`);
      li.dataset.severity = a.severity;
      replace(rec, a.recommendation ? 'Recommendation: ' + a.recommendation : '');
      replace(runbook, safeURL(a.runbook_url) ? h('a', { href: a.runbook_url, target: '_blank', rel: 'noopener noreferrer' }, `Runbook: what ${a.rule} means and what to do`) : '');
      if (a.state === 'acknowledged') {
        replace(ackInfo, `Acknowledged by ${a.acknowledged_by || 'unknown'} at ${fmtClock(a.acknowledged_at)}`, a.ack_note ? ': ' : '', a.ack_note ? h('q', { class: 'ack-note' }, a.ack_note) : '');
        form.hidden = true;
      } else {
        replace(ackInfo, '');
        form.hidden = !writer;
        if (writer) button.disabled = false;
      }
    },
  };
}

// safeURL accepts only http(s) links (a runbook URL comes from the
// configuration; never a javascript: URL).
function safeURL(u) {
  try {
    const x = new URL(u, location.href);
    return x.protocol === 'https:' || x.protocol === 'http:';
  } catch {
    return false;
  }
}

// fmtFig formats a figure by its name.
export function fmtFig(name, v, st) {
  if (!isNum(v)) return '–';
  const j = judgement(st, name);
  if (j && j.unit) return fmtUnit(j.unit, v);
  if (/usage|utilization|error_rate|fraction/.test(name || '')) return fmtPct(v);
  if (/latency|response_time|_time$|duration/.test(name || '')) return fmtSeconds(v);
  if (/rps|per_sec/.test(name || '')) return fmtRate(v);
  return fmtNum(v, Number.isInteger(v) ? 0 : 2);
}

function alertHistoryWidget() {
  return {
    title: 'Alert history',
    want: ['alertHistory'],
    render(body, st) {
      const list = st.alertHistory;
      if (!list) return;
      if (list.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No alerts yet.'));
        return;
      }
      replace(body, ...scroll(h('table', { class: 'table history' },
        h('thead', null, h('tr', null, ['Severity', 'Alert', 'State', 'First seen', 'Resolved', 'Acknowledged', 'Note'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, list.map((a) => h('tr', { dataset: { alertId: a.id } },
          h('td', null, pill(a.peak_severity || a.severity)),
          h('td', null, a.message || a.rule),
          h('td', null, a.state),
          h('td', null, fmtClock(a.first_seen)),
          h('td', null, a.resolved_at ? fmtClock(a.resolved_at) : '–'),
          h('td', null, a.acknowledged_at ? `${fmtClock(a.acknowledged_at)} by ${a.acknowledged_by}` : '–'),
          h('td', { class: 'ack-note' }, a.ack_note || '')))))));
    },
  };
}

// ------------------------------------------------------------ performance

// cfgOf reads a nested configuration value ('proxy.apdex_threshold').
function cfgOf(st, path) {
  let v = st.config;
  for (const k of path.split('.')) v = v && v[k];
  return v;
}

function figuresWidget() {
  return {
    title: 'What clients felt · last 1 min',
    want: ['perf'],
    render(body, st) {
      const r = requestsOf(st);
      if (!r) return;
      const lv = (name) => levelOfJ(judgement(st, name));
      const slowT = cfgOf(st, 'responsiveness.slow_request_threshold');
      const apdexT = cfgOf(st, 'proxy.apdex_threshold');
      const db = judgement(st, 'db_latency');
      const failed = isNum(r.error_rate) ? fmtPct(r.error_rate, 2) : '–';
      const appRate = isNum(r.app_error_rate) ? fmtPct(r.app_error_rate, 2) : '–';
      const rejected = isNum(r.rejections) ? r.rejections : null;
      const apdexJ = judgement(st, 'apdex');
      replace(body,
        h('div', { class: 'stats headline' },
          stat('Failed for clients', failed, {
            level: lv('error_rate'), figure: 'error_rate',
            sub: `incl. rejections, last 1${NB}min`,
          }),
          stat('App errors', appRate, {
            level: lv('app_error_rate'), figure: 'app_error_rate',
            sub: `5xx, 502, 504 of the requests the app got, last 1${NB}min`,
          })),
        h('div', { class: 'stats' },
          stat('Avg response', fmtSeconds(r.avg_response_time), { level: lv('avg_response_time'), figure: 'avg_response_time', sub: `last 1${NB}min` }),
          stat('p95', fmtSeconds(r.p95), { level: lv('p95_response_time'), figure: 'p95_response_time', sub: `last 1${NB}min` }),
          stat('p99', fmtSeconds(r.p99), { level: lv('p99_response_time'), figure: 'p99_response_time', sub: `last 1${NB}min` }),
          stat('Throughput', fmtRate(r.throughput_rps), { level: lv('throughput_rps'), figure: 'throughput_rps', sub: `requests per second, last 1${NB}min` }),
          stat('Apdex', fmtApdex(r.apdex), {
            level: lv('apdex'), figure: 'apdex',
            sub: (isNum(apdexT) ? `satisfied within ${fmtSeconds(apdexT)}` : 'score 0–1') + (apdexJ && isNum(apdexJ.warning) ? `, warning below ${fmtApdex(apdexJ.warning)}` : ''),
          }),
          stat('Slow requests', fmtNum(r.slow_requests), { level: lv('slow_requests'), figure: 'slow_requests', sub: isNum(slowT) ? `slower than ${fmtSeconds(slowT)}, last 1${NB}min` : `last 1${NB}min` }),
          measured(db)
            ? stat('DB query time', fmtSeconds(db.value), { level: db.level, figure: 'db_latency', sub: windowText(db.window) || 'latest probe' })
            : stat('DB query time', db && db.level === 'disabled' ? 'disabled' : 'not measured', { level: levelOfJ(db), figure: 'db_latency', sub: notMeasuredText(db) })),
        h('p', { class: 'muted small foot-note', dataset: { asOf: (st.perf && st.perf.timestamp) || '' } }, `last 1${NB}min: ${fmtNum(r.requests)} requests, ${fmtNum(r.errors)} failed for their clients` +
          (rejected !== null ? ` (${fmtNum(rejected)} rejected by pulsegate's backpressure` + (isNum(r.app_errors) ? `, ${fmtNum(r.app_errors)} app errors)` : ')') : '') +
          (st.tickTime ? ` · updated ${fmtClock(st.tickTime)}` : '')),
        timingSplit(r.timing_split));
    },
  };
}

function timingSplit(ts) {
  if (!ts) return null;
  const total = (ts.queue_wait || 0) + (ts.upstream_ttfb || 0) + (ts.transfer || 0);
  return h('div', { class: 'split-wrap' },
    h('span', { class: 'muted small' }, `Average request, last 1${NB}min: `),
    splitBar(ts.queue_wait, ts.upstream_ttfb, ts.transfer, total),
    h('span', { class: 'small split-legend' },
      h('span', { class: 'key q' }), `waiting in pulsegate's queue ${fmtSeconds(ts.queue_wait)} `,
      h('span', { class: 'key u' }), `app ${fmtSeconds(ts.upstream_ttfb)} `,
      h('span', { class: 'key t' }), `sending the response ${fmtSeconds(ts.transfer)}`));
}

function splitBar(q, u, t, total) {
  const pct = (v) => (total > 0 && isNum(v) ? Math.max(0, (v / total) * 100).toFixed(2) + '%' : '0%');
  return h('span', { class: 'split', role: 'img', 'aria-label': `queue wait ${fmtSeconds(q)}, app ${fmtSeconds(u)}, transfer ${fmtSeconds(t)}` },
    h('span', { class: 'q', style: { width: pct(q) } }),
    h('span', { class: 'u', style: { width: pct(u) } }),
    h('span', { class: 't', style: { width: pct(t) } }));
}

const WINDOW_NAMES = { '1m': `last 1${NB}min`, '5m': `last 5${NB}min`, '15m': `last 15${NB}min` };

function windowsWidget() {
  return {
    title: 'Windows',
    want: ['perf'],
    render(body, st) {
      const ws = st.perf && st.perf.windows;
      if (!ws) return;
      const names = ['1m', '5m', '15m'].filter((n) => ws[n]);
      const row = (label, key, f) => h('tr', { dataset: { row: key } }, h('th', { scope: 'row' }, label), names.map((n) => h('td', { class: 'num', dataset: { window: n } }, f(ws[n]))));
      replace(body, ...scroll(h('table', { class: 'table windows', dataset: { asOf: st.perf.timestamp || '' } },
        h('thead', null, h('tr', null, h('th', null, h('span', { class: 'visually-hidden' }, 'Figure')), names.map((n) => h('th', { scope: 'col', class: 'num' }, WINDOW_NAMES[n] || n)))),
        h('tbody', null,
          row('Requests', 'requests', (w) => fmtNum(w.requests)),
          row('Throughput', 'throughput_rps', (w) => fmtRate(w.throughput_rps)),
          row('Failed for clients', 'error_rate', (w) => fmtPct(w.error_rate, 2)),
          row('App errors', 'app_error_rate', (w) => (isNum(w.app_error_rate) ? fmtPct(w.app_error_rate, 2) : '–')),
          row('Rejected by pulsegate', 'rejections', (w) => (isNum(w.rejections) ? fmtNum(w.rejections) : '–')),
          row('Avg', 'avg_response_time', (w) => fmtSeconds(w.avg_response_time)),
          row('p50', 'p50', (w) => fmtSeconds(w.p50)),
          row('p95', 'p95', (w) => fmtSeconds(w.p95)),
          row('p99', 'p99', (w) => fmtSeconds(w.p99)),
          row('Apdex', 'apdex', (w) => fmtApdex(w.apdex)),
          row('Slow', 'slow_requests', (w) => fmtNum(w.slow_requests))))),
      h('p', { class: 'muted small' }, `${fmtNum(st.perf.total_requests)} requests since ${started()} ${fmtDuration(st.perf.uptime_seconds)} ago`));
    },
  };
}

// started names whose start a "since … started" total counts from: in
// fleet scope such a card is this instance's (its tag says so), not the
// fleet's.
const started = () => (fleetOn() ? 'this sidecar started' : 'pulsegate started');

// fmtDuration: 7384 s → "2 h 3 min".
function fmtDuration(sec) {
  if (!isNum(sec)) return '–';
  if (sec < 60) return `${Math.round(sec)}${NB}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}${NB}min`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}${NB}h ${Math.floor((sec % 3600) / 60)}${NB}min`;
  return `${Math.floor(sec / 86400)}${NB}d ${Math.floor((sec % 86400) / 3600)}${NB}h`;
}

// The default sort column (p95) comes right after the route, so it is
// on screen on a phone too.
const routeCols = [
  { key: 'route', label: 'Route', fmt: (v) => v, text: true },
  { key: 'p95', label: 'p95', fmt: fmtSeconds },
  { key: 'requests', label: 'Requests', fmt: (v) => fmtNum(v) },
  { key: 'error_rate', label: 'Failed for clients', fmt: (v) => fmtPct(v, 2) },
  { key: 'rejections', label: 'Rejections', fmt: (v) => (isNum(v) ? fmtNum(v) : '–') },
  { key: 'app_error_rate', label: 'App errors', fmt: (v) => (isNum(v) ? fmtPct(v, 2) : '–') },
  { key: 'throughput_rps', label: 'Throughput', fmt: fmtRate },
  { key: 'avg_response_time', label: 'Avg', fmt: fmtSeconds },
  { key: 'p99', label: 'p99', fmt: fmtSeconds },
];

// routeHref is a route's own page (route.html, route.js), in the page's
// scope: from a page in fleet scope it opens with ?scope=fleet.
export function routeHref(route) {
  return withScope(PREFIX + 'route?route=' + encodeURIComponent(route));
}

function routesWidget() {
  const sort = { key: 'p95', dir: -1 };
  let rerender = () => {};
  return {
    title: 'Routes · last 5 min',
    want: ['perf'],
    render(body, st) {
      rerender = () => this.render(body, st);
      const routes = st.perf && st.perf.routes;
      if (!routes) return;
      const byName = new Map();
      for (const list of [routes.by_volume, routes.by_p95, routes.by_error_rate]) {
        for (const r of list || []) byName.set(r.route, r);
      }
      const all = [...byName.values()];
      if (all.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No requests in the last 5 minutes: routes appear here once traffic goes through the proxy port.'));
        return;
      }
      const rows = all.sort((a, b) => {
        const x = a[sort.key];
        const y = b[sort.key];
        if (typeof x === 'string' || typeof y === 'string') return sort.dir * String(x).localeCompare(String(y));
        return sort.dir * ((isNum(x) ? x : -Infinity) - (isNum(y) ? y : -Infinity));
      });
      const head = h('tr', null, routeCols.map((c) => {
        const active = sort.key === c.key;
        return h('th', { scope: 'col', class: c.text ? 'route-col' : 'num', 'aria-sort': active ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none' },
          h('button', {
            type: 'button', class: 'sort', dataset: { sort: c.key },
            onclick: () => {
              if (sort.key === c.key) sort.dir = -sort.dir;
              else {
                sort.key = c.key;
                sort.dir = c.text ? 1 : -1;
              }
              rerender();
            },
          }, c.label, active ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''));
      }));
      const tbody = h('tbody', null, rows.map((r) => h('tr', null, routeCols.map((c) =>
        c.text ? h('th', { scope: 'row', class: 'route' }, h('a', { href: routeHref(r.route), dataset: { routeLink: '1' } }, c.fmt(r[c.key]))) : h('td', { class: 'num', dataset: { col: c.key } }, c.fmt(r[c.key]))))));
      replace(body, ...scroll(h('table', { class: 'table routes' }, h('thead', null, head), tbody)),
        h('p', { class: 'muted small' }, `Each figure covers the last 5${NB}min. "Failed for clients" counts every request that failed for its client, pulsegate's rejections (429/503) included; "App errors" only what the app caused. ` +
          `${fmtNum(st.perf.routes_tracked)} routes tracked (cap ${fmtNum(st.perf.route_cap)}); showing the top by volume, p95 and error rate. ` +
          'A route opens its page: p50/p95/p99, throughput and errors over up to a year, and its releases compared.'));
    },
  };
}

function slowWidget() {
  return {
    title: 'Recent slow requests · newest first',
    want: ['perf'],
    render(body, st) {
      const list = st.perf && st.perf.recent_slow_requests;
      if (!list) return;
      const slowT = cfgOf(st, 'responsiveness.slow_request_threshold');
      const what = isNum(slowT) ? `slower than ${fmtSeconds(slowT)} (responsiveness.slow_request_threshold)` : 'slower than the slow-request threshold';
      if (list.length === 0) {
        replace(body, h('p', { class: 'muted' }, `No request ${what} since ${started()}.`));
        return;
      }
      const rows = list.slice().sort((a, b) => new Date(b.time) - new Date(a.time)).slice(0, 30);
      const max = Math.max(...rows.map((r) => r.duration || 0));
      replace(body, h('p', { class: 'muted small' }, `Requests ${what}.`),
        ...scroll(h('table', { class: 'table slow' },
          h('thead', null, h('tr', null, ['Time', 'Duration', 'Status', 'Request', 'Route', 'Queue · app · transfer'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, rows.map((r) => h('tr', null,
            h('td', { class: 'num' }, h('time', { datetime: r.time }, fmtClock(r.time))),
            h('td', { class: 'num' }, fmtSeconds(r.duration)),
            h('td', { class: 'num' }, r.status),
            h('td', { class: 'route' }, `${r.method}${NB}${r.path}`),
            h('td', { class: 'route' }, r.route),
            h('td', { class: 'split-cell' }, splitBar(r.queue_wait, r.upstream_ttfb, r.transfer, max),
              h('span', { class: 'small muted nowrap' }, ` ${fmtSeconds(r.queue_wait)} · ${fmtSeconds(r.upstream_ttfb)} · ${fmtSeconds(r.transfer)}`))))))));
    },
  };
}

// ------------------------------------------------------------ resources

const gauges = [
  { fig: 'memory_usage', label: 'Memory' },
  { fig: 'cpu_usage', label: 'CPU' },
  { fig: 'disk_usage', label: 'Disk' },
  { fig: 'connection_pool_utilization', label: 'DB pool' },
];

function resourcesWidget(options) {
  const trends = options.embedded ? trendsWidget({ ...options, charts: 'mini' }) : null;
  let trendBody = null;
  return {
    title: 'Resource monitoring',
    want: trends ? ['history'] : [],
    tools: trends ? (el) => trends.tools(el) : undefined,
    stop: trends ? () => trends.stop() : undefined,
    render(body, st, reason) {
      if (!body.querySelector('.gauges')) {
        trendBody = trends ? h('div', { class: 'mini-trends' }) : null;
        replace(body, h('div', { class: 'gauges' }), h('p', { class: 'muted small when' }), trendBody);
      }
      replace(body.querySelector('.gauges'), gauges.map((g) => {
        const j = judgement(st, g.fig);
        const v = j ? j.value : st.figures[g.fig];
        const ok = j ? measured(j) : isNum(v);
        const level = ok ? levelOfJ(j) : (j ? j.level : 'unknown');
        const alerts = alertsFor(st, g.fig);
        const pos = (x) => Math.min(100, Math.max(0, x * 100)).toFixed(1) + '%';
        const of = j && j.of ? ' ' + j.of : '';
        return h('div', { class: 'gauge ' + levelClass(level), dataset: { figure: g.fig, level } },
          h('div', { class: 'gauge-head' }, h('span', { class: 'label' }, (j && j.label) || g.label),
            h('span', { class: 'value' }, ok ? fmtPct(v) + of : (j && j.level === 'disabled' ? 'disabled' : 'not measured')),
            alerts.map((a) => h('span', { class: 'alert-flag ' + levelClass(a.severity) }, a.state === 'acknowledged' ? '⚑ alert acknowledged' : '⚠ alert firing'))),
          h('div', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': ok ? (v * 100).toFixed(1) : 0, 'aria-label': g.label },
            h('span', { class: 'fill', style: { width: ok ? pos(v) : '0%' } }),
            j && isNum(j.warning) ? h('span', { class: 'marker warning', style: { left: pos(j.warning) } }) : null,
            j && isNum(j.critical) ? h('span', { class: 'marker critical', style: { left: pos(j.critical) } }) : null),
          h('div', { class: 'small muted' }, ok ? [windowText(j && j.window) || 'latest probe', thrText(j)].filter(Boolean).join(' · ') : notMeasuredText(j)));
      }));
      const extra = [];
      for (const [name, label] of [['db_latency', 'DB round trip'], ['redis_latency', 'Redis round trip']]) {
        const j = judgement(st, name);
        if (measured(j)) extra.push(`${label} ${fmtSeconds(j.value)} (${windowText(j.window) || 'latest probe'})`);
        else if (j) extra.push(`${label}: ${notMeasuredText(j)}`);
        else if (isNum(st.figures[name])) extra.push(`${label} ${fmtSeconds(st.figures[name])}`);
      }
      if (isNum(st.figures.redis_memory_usage)) extra.push(`Redis memory ${fmtPct(st.figures.redis_memory_usage)} of its maxmemory`);
      if (isNum(st.figures.session_count)) extra.push(`${fmtNum(st.figures.session_count)} sessions`);
      if (st.tickTime) extra.push(`updated ${fmtClock(st.tickTime)}`);
      replace(body.querySelector('.when'), extra.join(' · '));
      if (trends) trends.render(trendBody, st, reason);
    },
  };
}

// ------------------------------------------------------------ backpressure

const REJECTION_REASONS = {
  queue_full: 'the queue was full: 503',
  queue_timeout: 'waited in the queue too long: 503',
  rate: 'over the rate limit: 429',
  rate_client: 'one client over its own rate limit: 429',
};

function rejectionText(k) {
  if (REJECTION_REASONS[k]) return REJECTION_REASONS[k];
  if (k.startsWith('overload:')) return `shed while ${humanize(k.slice(9))} was under pressure: 503`;
  return '';
}

function backpressureWidget() {
  return {
    title: 'Backpressure',
    render(body, st) {
      const b = st.backpressure;
      if (!b) return;
      const low = b.low_priority_routes || [];
      // What pulsegate turns away now, as the figures say: a "shedding"
      // mode that sheds nothing (low-priority shedding with no low-priority
      // routes) is shown as pressure, not as shedding.
      const shedsNormal = b.shed_fraction > 0;
      const shedsLow = b.shed_low_priority_fraction > 0 && low.length > 0;
      let badge = b.mode;
      let badgeLevel = { 'dry-run': 'warning', enforcing: 'ok', off: 'unknown' }[b.mode] || 'unknown';
      let why = b.why || '';
      if (b.mode === 'shedding') {
        if (shedsNormal || shedsLow) {
          badgeLevel = 'critical';
          why = `turning away ${shedsNormal ? fmtPct(b.shed_fraction, 0) + ' of new requests' : ''}${shedsNormal && shedsLow ? ' and ' : ''}${shedsLow ? fmtPct(b.shed_low_priority_fraction, 0) + ' of low-priority requests' : ''}` +
            (b.shed_reason ? ` (${b.shed_reason})` : '');
        } else {
          badge = 'under pressure';
          badgeLevel = 'warning';
          why = `under pressure${b.shed_reason ? ' (' + b.shed_reason + ')' : ''}, but nothing is shed now: it would shed low-priority routes first and none are configured (RESPONSIVENESS_BACKPRESSURE_LOW_PRIORITY_ROUTES)`;
        }
      }
      const rej = Object.entries(b.rejections || {}).filter(([, n]) => n > 0).sort((x, y) => y[1] - x[1]);
      const would = Object.entries(b.dry_run_would_reject || {}).filter(([, n]) => n > 0);
      const qj = judgement(st, 'queue_depth');
      const uptime = st.perf && st.perf.uptime_seconds;
      const w1 = requestsOf(st);
      replace(body,
        h('div', { class: 'verdict' }, h('span', { class: 'pill big ' + levelClass(badgeLevel), dataset: { mode: b.mode } }, badge), ' ', h('span', { class: 'muted why' }, why)),
        h('div', { class: 'stats' },
          stat('Limit', b.limit > 0 ? fmtNum(b.limit) : 'none', { figure: 'limit', sub: b.limit > 0 ? 'requests at the app at once' : 'no concurrency limit set' }),
          stat('In flight', fmtNum(b.in_flight), { figure: 'in_flight', sub: 'at the app now' }),
          stat('Queued', `${fmtNum(b.queued)}${NB}/${NB}${fmtNum(b.queue_limit)}`, { level: qj ? qj.level : undefined, figure: 'queued', sub: 'waiting for a slot now / queue size' }),
          stat('Shedding', fmtPct(b.shed_fraction, 0), { figure: 'shed_fraction', sub: 'of new requests turned away now' }),
          low.length > 0
            ? stat('Low-priority shed', fmtPct(b.shed_low_priority_fraction, 0), { figure: 'shed_low_priority_fraction', sub: `of requests to ${low.join(', ')} turned away now (they go first)` })
            : null,
          stat('Drain rate', fmtRate(b.drain_per_second), { figure: 'drain_per_second', sub: ['requests finishing per second; sets ', h('span', { class: 'nowrap' }, 'Retry-After')] }),
          stat('Left the queue', fmtNum(b.queue_abandoned), { figure: 'queue_abandoned', sub: 'clients that gave up while queued, since start' })),
        h('h3', null, `Rejections since ${started()}` + (isNum(uptime) ? ` (${fmtDuration(uptime)} ago)` : '')),
        w1 && isNum(w1.rejections) ? h('p', { class: 'small' }, `last 1${NB}min: ${fmtNum(w1.rejections)} rejected`) : null,
        rej.length === 0 ? h('p', { class: 'muted' }, 'none') :
          h('ul', { class: 'rejections' }, rej.map(([k, n]) => h('li', { dataset: { reason: k } }, h('code', null, k), ' ', h('b', null, fmtNum(n)),
            rejectionText(k) ? h('span', { class: 'small muted' }, ` (${rejectionText(k)})`) : null))),
        b.dry_run ? h('p', null, 'Dry run: would have rejected ', would.length ? would.map(([k, n]) => `${k} ${n}`).join(', ') : 'nothing') : null,
        b.rate_limit && b.rate_limit.rps > 0 ? h('p', { class: 'small muted' }, `rate limit ${b.rate_limit.rps}/s, burst ${b.rate_limit.burst}`) : null);
    },
  };
}

// ------------------------------------------------------------ tasks

function taskHealth(t, st) {
  if (t.stuck) return ['critical', `stuck ${fmtSeconds(t.stuck_for_seconds)} past its deadline`];
  if (t.consecutive_failures >= 3) return ['critical', `${t.consecutive_failures} failures in a row`];
  const comp = t.task_id.startsWith('probe:') && st.health && st.health.components ? st.health.components[t.task_id.slice(6)] : null;
  if (t.consecutive_failures > 0) return ['warning', 'last run failed'];
  if (t.error_rate > 0) return ['warning', `${fmtPct(t.error_rate, 0)} of recent runs failed`];
  if (comp && comp !== 'healthy') return [comp, 'runs fine; it reports ' + comp];
  return ['ok', t.runs > 0 ? 'healthy' : 'no run yet'];
}

function tasksWidget(options) {
  // compact (overview, embedded): the columns that say whether to worry.
  const cols = [
    ['Task', (t) => [humanize(t.task_id), t.task_id.startsWith('probe:') ? h('span', { class: 'muted small' }, ' probe') : null]],
    ['Health', (t, lv, why) => [pill(lv), ' ', h('span', { class: 'small muted' }, why)]],
    ['Running', (t) => (t.running ? 'yes' : 'no'), true],
    ['Last run', (t) => (t.last_end ? fmtAgo(t.last_end) : 'never')],
    ['Duration', (t) => fmtSeconds(t.last_duration_seconds), true, 'num'],
    ['Runs', (t) => `${fmtNum(t.runs)} (${fmtNum(t.failures)} failed)`, true, 'num'],
    ['Failed runs', (t) => fmtPct(t.error_rate, 0), false, 'num'],
    ['Recoveries', (t) => fmtNum(t.recoveries), false, 'num'],
    ['Last error', (t) => t.last_error || '', true, 'small'],
  ].filter((c) => !(options.compact && c[2]));
  return {
    title: 'Background tasks',
    render(body, st) {
      const tasks = st.tasks || [];
      if (tasks.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No background tasks reported (task monitoring off, or none has run yet).'));
        return;
      }
      replace(body, ...scroll(h('table', { class: 'table tasks' },
        h('thead', null, h('tr', null, cols.map(([label, , , cls]) => h('th', { scope: 'col', class: cls === 'num' ? 'num' : undefined }, label)))),
        h('tbody', null, tasks.map((t) => {
          const [lv, why] = taskHealth(t, st);
          return h('tr', { dataset: { task: t.task_id } }, cols.map(([, cell, , cls]) => h('td', { class: cls }, cell(t, lv, why))));
        })))));
    },
  };
}

// ------------------------------------------------------------ trends

const pct0 = (v) => fmtPct(v, v < 0.1 ? 1 : 0);
const count = (v) => fmtNum(v, v < 10 && !Number.isInteger(v) ? 1 : 0);

// Each chart names its series; thresholds come from the judgement named
// by thr (the configured levels), never from a constant here.
const chartSets = {
  overview: [
    { title: 'Response time', series: [['avg_response_time', 'avg'], ['p95_response_time', 'p95'], ['p99_response_time', 'p99']], fmt: fmtSeconds, axis: secondsAxis, unit: 'seconds', thr: 'avg_response_time' },
    { title: 'Throughput', series: [['throughput_rps', 'requests/s'], ['rejections_rps', 'rejected by pulsegate']], fmt: fmtRate, axis: numAxis, unit: 'requests per second' },
    { title: 'Failed for clients', series: [['error_rate', 'failed for clients'], ['app_error_rate', 'app errors']], fmt: (v) => fmtPct(v, 1), axis: pctAxis, thr: 'error_rate', unit: '% of requests' },
    { title: 'CPU and memory', series: [['cpu_usage', 'CPU'], ['memory_usage', 'memory']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'cpu_usage', yMax: 1 },
  ],
  performance: [
    { title: 'Response time', series: [['avg_response_time', 'avg'], ['p50_response_time', 'p50'], ['p95_response_time', 'p95'], ['p99_response_time', 'p99']], fmt: fmtSeconds, axis: secondsAxis, unit: 'seconds', thr: 'avg_response_time' },
    { title: 'Throughput', series: [['throughput_rps', 'requests/s'], ['rejections_rps', 'rejected by pulsegate']], fmt: fmtRate, axis: numAxis, unit: 'requests per second' },
    { title: 'Failed for clients', series: [['error_rate', 'failed for clients'], ['app_error_rate', 'app errors']], fmt: (v) => fmtPct(v, 1), axis: pctAxis, thr: 'error_rate', unit: '% of requests' },
    { title: 'Queue and in flight', series: [['queue_depth', 'queued'], ['in_flight', 'in flight']], fmt: count, axis: numAxis, thr: 'queue_depth', unit: 'requests' },
    // pulsegate's own 429/503s by cause (the history's rejection series;
    // the fleet's history carries them from schema version 5 on: drawn only
    // when the answer has them).
    { title: 'Rejected by pulsegate', series: [['rejections_rps', 'all'], ['rejections_rate_limit_rps', 'rate limit'], ['rejections_queue_rps', 'queue full or timed out'], ['rejections_shed_rps', 'shed']],
      fmt: fmtRate, axis: numAxis, unit: 'requests answered 429/503 per second', onlyWith: 'rejections_rps' },
    { title: 'Apdex', series: [['apdex', 'Apdex']], fmt: fmtApdex, axis: (t) => t.map((v) => String(Number(v.toFixed(2)))), thr: 'apdex', yMax: 1, unit: 'score 0–1 (1 = all satisfied)' },
    { title: 'Slow requests', series: [['slow_requests', 'slow']], fmt: count, axis: numAxis, unit: 'requests per minute' },
  ],
  resources: [
    { title: 'Memory', series: [['memory_usage', 'memory']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'memory_usage', yMax: 1 },
    { title: 'CPU', series: [['cpu_usage', 'CPU']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'cpu_usage', yMax: 1 },
    { title: 'Disk', series: [['disk_usage', 'disk']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'disk_usage', yMax: 1 },
    { title: 'DB connection pool', series: [['connection_pool_utilization', 'in use']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'connection_pool_utilization', yMax: 1 },
    { title: 'DB and Redis round trip', series: [['db_latency', 'DB'], ['redis_latency', 'Redis']], fmt: fmtSeconds, axis: secondsAxis, unit: 'seconds', thr: 'db_latency' },
    { title: 'Queue depth', series: [['queue_depth', 'queued'], ['in_flight', 'in flight']], fmt: count, axis: numAxis, thr: 'queue_depth', unit: 'requests' },
  ],
  mini: [
    { title: 'CPU and memory', series: [['cpu_usage', 'CPU'], ['memory_usage', 'memory']], fmt: pct0, axis: pctAxis, unit: '% used', thr: 'cpu_usage', yMax: 1 },
  ],
};

// whyEmpty explains a graph with no data when its figures are not
// measured (probe off): the reasons from the judgements, once each.
function whyEmpty(st, keys) {
  const why = [...new Set(keys.map((k) => judgement(st, k)).filter((j) => j && !measured(j)).map(notMeasuredText))];
  return why.length ? 'not measured: ' + why.join('; ') : undefined;
}

// runbookOf is an alert rule's runbook, as the alerts API links it:
// alerts.runbook_base_url + "/" + rule + ".md" ('' when no base is set).
export function runbookOf(st, rule) {
  const base = String(cfgOf(st, 'alerts.runbook_base_url') || '').replace(/\/+$/, '');
  const url = base && rule ? base + '/' + encodeURIComponent(rule) + '.md' : '';
  return url && safeURL(url) ? url : '';
}

// seriesLabel adds what a memory figure is a share of (from the API).
function seriesLabel(st, key, label) {
  const j = judgement(st, key);
  return j && j.of ? `${label} (${j.of})` : label;
}

function trendsWidget(options) {
  let range = '15m';
  let view = null;
  let viewRange = null; // the range view was fetched for
  let target = null;
  let lastState = null;
  let charts = [];
  const buttons = [];
  const keeps = new Map(); // chart title → what its graph keeps across redraws (an opened event)
  const keepOf = (title) => {
    if (!keeps.has(title)) keeps.set(title, {});
    return keeps.get(title);
  };
  const set = chartSets[options.charts] || chartSets.overview;
  const clear = () => {
    for (const c of charts) c.destroy();
    charts = [];
  };
  // fetch reads range's history; an answer for a range the viewer has since
  // left (a slower 1h answer after a click on 24h) is dropped.
  const fetchView = (r) => getHistory(r).then((v) => {
    if (r !== range) return false;
    view = v;
    viewRange = r;
    return true;
  });
  const load = () => fetchView(range).then((fresh) => {
    if (fresh && target && lastState) draw(target, lastState);
  }, (e) => {
    if (target && !(e instanceof AuthError)) replace(target, h('p', { class: 'msg' }, 'history unavailable: ' + e.message));
  });
  const draw = (body, st) => {
    clear();
    const have = (key) => !view || !view.series || key in view.series;
    const shownRange = viewRange || range;
    charts = set.filter((c) => !c.onlyWith || (view && view.series && c.onlyWith in view.series)).map((c) => lineChart({
      title: c.title,
      window: RANGE_WORDS[shownRange],
      unit: c.unit,
      runbook: (rule) => runbookOf(st, rule),
      keep: keepOf(c.title),
      series: c.series.filter(([key]) => have(key)).map(([key, label]) => ({ key, label: seriesLabel(st, key, label) })),
      fmt: c.fmt,
      axisFmt: c.axis,
      yMax: c.yMax,
      thresholds: c.thr ? thrOf(judgement(st, c.thr)) : [],
      view,
      why: whyEmpty(st, c.series.map(([key]) => key)),
    }));
    const evN = view && view.events ? view.events.length : 0;
    // In fleet scope: where the graphs come from, and how many instances
    // reported in the range (the answer's own count).
    const fleet = view && view.scope === 'fleet'
      ? ` of the whole fleet, merged from its shared store (store.dsn)${isNum(view.instances) ? `: ${plural(view.instances, 'instance')} reported in this range` : ''}`
      : '';
    replace(body, h('p', { class: 'muted small trends-summary', dataset: { scope: fleet ? 'fleet' : 'instance' } }, `${RANGE_WORDS[shownRange]}${fleet}; hover over (or tap) a graph to read every series at that moment.` +
      (evN ? ` Alerts (shaded, ▲ fired, ✓ resolved) and configuration changes (⚙, dotted line) of the range are marked on every graph: point at or tap a mark for what changed and who.` : ' No alert or configuration change in this range.')),
      h('div', { class: 'charts' }, charts.map((c) => c.fig)));
    body.dataset.range = viewRange || range; // the range the graphs show, for tests and tools
  };
  return {
    title: 'Trends',
    want: ['history'],
    stop: clear,
    tools(el) {
      const group = h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' });
      for (const r of RANGES) {
        const b = h('button', { type: 'button', 'aria-pressed': r === range ? 'true' : 'false', dataset: { range: r }, 'aria-label': RANGE_WORDS[r] }, r);
        b.addEventListener('click', () => {
          range = r;
          for (const x of buttons) x.setAttribute('aria-pressed', x.dataset.range === r ? 'true' : 'false');
          load();
        });
        buttons.push(b);
        group.append(b);
      }
      el.append(group);
    },
    render(body, st, reason) {
      target = body;
      lastState = st;
      if (!view) {
        load();
        return;
      }
      if (reason === 'history') {
        fetchView(range).then((fresh) => {
          if (fresh) draw(body, st);
        }, () => {});
        return;
      }
      // Thresholds come with the judgements: redraw when they first arrive.
      const hadJ = body.dataset.judged === '1';
      const hasJ = !!st.judgements;
      if (reason === 'config' || reason === 'init' || !body.querySelector('.charts') || hadJ !== hasJ) {
        body.dataset.judged = hasJ ? '1' : '0';
        draw(body, st);
      }
    },
  };
}
