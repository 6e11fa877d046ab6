// The dashboard's widgets. mount(kind, element, options) renders one into
// element (a page section or a <pulsegate-widget>'s shadow root) and keeps
// it live; it returns a function that stops it.
//
// Everything shown is read from the admin API and its event stream. Data
// reaches the DOM only as text (util.js h/replace), never as markup.

import {
  h, replace, isNum, fmtSeconds, fmtPct, fmtRate, fmtNum, fmtApdex, fmtAgo, fmtClock,
  levelClass, levelOf, pill, humanize,
} from './util.js';
import { state, subscribe, acknowledge, getHistory, AuthError, PREFIX } from './live.js';
import { lineChart } from './chart.js';

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
};

export const EMBEDDABLE = ['resources', 'performance', 'health', 'tasks', 'backpressure'];

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
    if (reason === 'error' || reason === 'connection') {
      showBanner(banner, st, options);
      if (reason === 'error') return;
    } else {
      showBanner(banner, st, options);
    }
    w.render(body, st, reason);
  };
  const stop = subscribe(render, w.want || []);
  if (!state.tickTime && !state.perf) replace(body, h('p', { class: 'muted' }, 'waiting for the first figures…'));
  return stop;
}

function showBanner(banner, st, options) {
  const e = st.error;
  if (e instanceof AuthError) {
    banner.hidden = false;
    replace(banner, 'Not signed in to pulsegate. ', h('a', { href: PREFIX + 'login?next=' + encodeURIComponent(location.pathname) }, 'Sign in'));
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

// thresholds reads the warning/critical pairs from the live configuration.
export function thresholds(cfg) {
  const r = (cfg && cfg.responsiveness) || {};
  const t = (cfg && cfg.thresholds) || {};
  return {
    memory_usage: [r.memory_warning_threshold, r.memory_critical_threshold],
    cpu_usage: [r.cpu_warning_threshold, r.cpu_critical_threshold],
    disk_usage: [t.disk_warning, t.disk_critical],
    connection_pool_utilization: [r.db_connection_warning_threshold, r.db_connection_critical_threshold],
    avg_response_time: [t.response_time_warning, t.response_time_critical],
    error_rate: [t.error_rate_warning, t.error_rate_critical],
    queue_depth: [t.queue_warning, t.queue_critical],
    db_latency: [t.db_query_warning, t.db_query_critical],
    slow_request_threshold: r.slow_request_threshold,
  };
}

function thrList(pair) {
  if (!pair) return [];
  return [{ value: pair[0], level: 'warning' }, { value: pair[1], level: 'critical' }];
}

function requestsOf(st) {
  return st.requests || (st.perf && st.perf.windows && st.perf.windows['1m']) || null;
}

function stat(label, value, { level, figure, hint } = {}) {
  return h('div', { class: 'stat ' + (level ? levelClass(level) : ''), dataset: figure ? { figure } : undefined, title: hint },
    h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
}

// scroll wraps a table so a narrow card scrolls it instead of overflowing.
function scroll(table) {
  return h('div', { class: 'scroll' }, table);
}

function alertsFor(st, metric) {
  return [...st.alerts.values()].filter((a) => a.metric === metric);
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
    row.update(a);
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
  const ackInfo = h('div', { class: 'ack-info' });
  const note = h('input', { type: 'text', class: 'note', maxlength: 1000, placeholder: 'note (optional)', 'aria-label': 'Acknowledgement note' });
  const button = h('button', { type: 'button', class: 'ack' }, 'Acknowledge');
  const status = h('span', { class: 'ack-status', role: 'status' });
  const form = h('div', { class: 'ack-form' }, note, button, status);
  const li = h('li', { class: 'alert', dataset: { alertId: a.id } }, h('div', { class: 'head' }, sev, ' ', msg), meta, rec, ackInfo, form);
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
    update(a) {
      li.dataset.state = a.state;
      replace(sev, pill(a.severity));
      replace(msg, a.message || a.rule);
      replace(meta, `rule ${a.rule}${a.subject ? ' · ' + a.subject : ''} · value ${fmtFig(a.metric, a.value)} vs ${a.severity} threshold ${fmtFig(a.metric, a.threshold)} · since ${fmtClock(a.first_seen)} (${fmtAgo(a.first_seen)})`);
      replace(rec, a.recommendation ? 'Recommendation: ' + a.recommendation : '');
      if (a.state === 'acknowledged') {
        replace(ackInfo, `Acknowledged by ${a.acknowledged_by || 'unknown'} at ${fmtClock(a.acknowledged_at)}`, a.ack_note ? ': ' : '', a.ack_note ? h('q', { class: 'ack-note' }, a.ack_note) : '');
        form.hidden = true;
      } else {
        replace(ackInfo, '');
        form.hidden = false;
        button.disabled = false;
      }
    },
  };
}

// fmtFig formats a figure by its name.
export function fmtFig(name, v) {
  if (!isNum(v)) return '–';
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
      replace(body, scroll(h('table', { class: 'table' },
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

function figuresWidget() {
  return {
    title: 'Performance metrics',
    render(body, st) {
      const r = requestsOf(st);
      if (!r) return;
      const lv = st.levels || {};
      const thr = thresholds(st.config);
      const slowT = thr.slow_request_threshold;
      replace(body,
        h('div', { class: 'stats' },
          stat('Avg response', fmtSeconds(r.avg_response_time), { level: lv.response_time, figure: 'avg_response_time' }),
          stat('p95', fmtSeconds(r.p95), { figure: 'p95_response_time' }),
          stat('p99', fmtSeconds(r.p99), { figure: 'p99_response_time' }),
          stat('Slow requests', fmtNum(r.slow_requests), { figure: 'slow_requests', hint: isNum(slowT) ? `slower than ${fmtSeconds(slowT)} in the last minute` : undefined }),
          stat('Throughput', fmtRate(r.throughput_rps), { figure: 'throughput_rps' }),
          stat('Error rate', fmtPct(r.error_rate, 2), { level: lv.error_rate, figure: 'error_rate' }),
          stat('Apdex', fmtApdex(r.apdex), { level: isNum(r.apdex) ? (r.apdex < 0.7 ? 'critical' : r.apdex < 0.85 ? 'warning' : 'ok') : undefined, figure: 'apdex' }),
          stat('DB query time', fmtSeconds(st.figures.db_latency), { level: lv.db_query, figure: 'db_latency' })),
        h('p', { class: 'muted small' }, `last minute: ${fmtNum(r.requests)} requests, ${fmtNum(r.errors)} errors` + (st.tickTime ? ` · updated ${fmtClock(st.tickTime)}` : '')),
        timingSplit(r.timing_split));
    },
  };
}

function timingSplit(ts) {
  if (!ts) return null;
  const total = (ts.queue_wait || 0) + (ts.upstream_ttfb || 0) + (ts.transfer || 0);
  return h('div', { class: 'split-wrap' },
    h('span', { class: 'muted small' }, 'Average request: '),
    splitBar(ts.queue_wait, ts.upstream_ttfb, ts.transfer, total),
    h('span', { class: 'small' }, ` queue ${fmtSeconds(ts.queue_wait)} · app ${fmtSeconds(ts.upstream_ttfb)} · transfer ${fmtSeconds(ts.transfer)}`));
}

function splitBar(q, u, t, total) {
  const pct = (v) => (total > 0 && isNum(v) ? Math.max(0, (v / total) * 100).toFixed(2) + '%' : '0%');
  return h('span', { class: 'split', title: `queue wait ${fmtSeconds(q)}, upstream ${fmtSeconds(u)}, transfer ${fmtSeconds(t)}` },
    h('span', { class: 'q', style: { width: pct(q) } }),
    h('span', { class: 'u', style: { width: pct(u) } }),
    h('span', { class: 't', style: { width: pct(t) } }));
}

function windowsWidget() {
  return {
    title: 'Windows',
    want: ['perf'],
    render(body, st) {
      const ws = st.perf && st.perf.windows;
      if (!ws) return;
      const names = ['1m', '5m', '15m'].filter((n) => ws[n]);
      const row = (label, f) => h('tr', null, h('th', { scope: 'row' }, label), names.map((n) => h('td', { class: 'num' }, f(ws[n]))));
      replace(body, scroll(h('table', { class: 'table' },
        h('thead', null, h('tr', null, h('th'), names.map((n) => h('th', { scope: 'col', class: 'num' }, n)))),
        h('tbody', null,
          row('Requests', (w) => fmtNum(w.requests)),
          row('Throughput', (w) => fmtRate(w.throughput_rps)),
          row('Error rate', (w) => fmtPct(w.error_rate, 2)),
          row('Avg', (w) => fmtSeconds(w.avg_response_time)),
          row('p50', (w) => fmtSeconds(w.p50)),
          row('p95', (w) => fmtSeconds(w.p95)),
          row('p99', (w) => fmtSeconds(w.p99)),
          row('Apdex', (w) => fmtApdex(w.apdex)),
          row('Slow', (w) => fmtNum(w.slow_requests))))),
      h('p', { class: 'muted small' }, `${fmtNum(st.perf.total_requests)} requests since start · uptime ${fmtSeconds(st.perf.uptime_seconds)}`));
    },
  };
}

const routeCols = [
  { key: 'route', label: 'Route', fmt: (v) => v, text: true },
  { key: 'requests', label: 'Requests', fmt: (v) => fmtNum(v) },
  { key: 'throughput_rps', label: 'Throughput', fmt: fmtRate },
  { key: 'error_rate', label: 'Error rate', fmt: (v) => fmtPct(v, 2) },
  { key: 'avg_response_time', label: 'Avg', fmt: fmtSeconds },
  { key: 'p95', label: 'p95', fmt: fmtSeconds },
  { key: 'p99', label: 'p99', fmt: fmtSeconds },
];

function routesWidget() {
  const sort = { key: 'p95', dir: -1 };
  let last = null;
  let rerender = () => {};
  return {
    title: 'Routes (last 5 minutes)',
    want: ['perf'],
    render(body, st) {
      rerender = () => this.render(body, st);
      const routes = st.perf && st.perf.routes;
      if (!routes) return;
      const byName = new Map();
      for (const list of [routes.by_volume, routes.by_p95, routes.by_error_rate]) {
        for (const r of list || []) byName.set(r.route, r);
      }
      last = [...byName.values()];
      const rows = last.slice().sort((a, b) => {
        const x = a[sort.key];
        const y = b[sort.key];
        if (typeof x === 'string' || typeof y === 'string') return sort.dir * String(x).localeCompare(String(y));
        return sort.dir * ((isNum(x) ? x : -Infinity) - (isNum(y) ? y : -Infinity));
      });
      const head = h('tr', null, routeCols.map((c) => {
        const active = sort.key === c.key;
        return h('th', { scope: 'col', class: c.text ? '' : 'num', 'aria-sort': active ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none' },
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
      const tbody = h('tbody', null, rows.map((r) => h('tr', null, routeCols.map((c) => h('td', { class: c.text ? 'route' : 'num' }, c.fmt(r[c.key]))))));
      replace(body, scroll(h('table', { class: 'table routes' }, h('thead', null, head), tbody)),
        h('p', { class: 'muted small' }, `${fmtNum(st.perf.routes_tracked)} routes tracked (cap ${fmtNum(st.perf.route_cap)}); showing the top by volume, p95 and error rate`));
    },
  };
}

function slowWidget() {
  return {
    title: 'Recent slow requests',
    want: ['perf'],
    render(body, st) {
      const list = st.perf && st.perf.recent_slow_requests;
      if (!list) return;
      if (list.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No slow requests recorded.'));
        return;
      }
      const max = Math.max(...list.map((r) => r.duration || 0));
      replace(body, scroll(h('table', { class: 'table slow' },
        h('thead', null, h('tr', null, ['Time', 'Request', 'Route', 'Status', 'Duration', 'Queue wait / upstream / transfer'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, list.slice(0, 30).map((r) => h('tr', null,
          h('td', null, fmtClock(r.time)),
          h('td', { class: 'route' }, `${r.method} ${r.path}`),
          h('td', { class: 'route' }, r.route),
          h('td', { class: 'num' }, r.status),
          h('td', { class: 'num' }, fmtSeconds(r.duration)),
          h('td', null, splitBar(r.queue_wait, r.upstream_ttfb, r.transfer, max),
            h('span', { class: 'small muted' }, ` ${fmtSeconds(r.queue_wait)} / ${fmtSeconds(r.upstream_ttfb)} / ${fmtSeconds(r.transfer)}`))))))));
    },
  };
}

// ------------------------------------------------------------ resources

const gauges = [
  { fig: 'memory_usage', signal: 'memory', label: 'Memory' },
  { fig: 'cpu_usage', signal: 'cpu', label: 'CPU' },
  { fig: 'disk_usage', signal: 'disk', label: 'Disk' },
  { fig: 'connection_pool_utilization', signal: 'db_connections', label: 'DB pool' },
];

function resourcesWidget(options) {
  const trends = options.embedded ? trendsWidget({ ...options, charts: 'mini' }) : null;
  let trendBody = null;
  return {
    title: 'Resource monitoring',
    want: trends ? ['history'] : [],
    tools: trends ? (el) => trends.tools(el) : undefined,
    render(body, st, reason) {
      const thr = thresholds(st.config);
      if (!body.querySelector('.gauges')) {
        trendBody = trends ? h('div', { class: 'mini-trends' }) : null;
        replace(body, h('div', { class: 'gauges' }), h('p', { class: 'muted small when' }), trendBody);
      }
      replace(body.querySelector('.gauges'), gauges.map((g) => {
        const v = st.figures[g.fig];
        const [warn, crit] = thr[g.fig] || [];
        const level = (st.levels && isNum(v) && st.levels[g.signal]) || levelOf(v, warn, crit);
        const alerts = alertsFor(st, g.fig);
        const pos = (x) => Math.min(100, Math.max(0, x * 100)).toFixed(1) + '%';
        return h('div', { class: 'gauge ' + levelClass(isNum(v) ? level : 'unknown'), dataset: { figure: g.fig } },
          h('div', { class: 'gauge-head' }, h('span', { class: 'label' }, g.label),
            h('span', { class: 'value' }, isNum(v) ? fmtPct(v) : 'not measured'),
            alerts.map((a) => h('span', { class: 'alert-flag ' + levelClass(a.severity), title: a.message }, a.state === 'acknowledged' ? '⚑ acknowledged' : '⚠ alert'))),
          h('div', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': isNum(v) ? (v * 100).toFixed(1) : 0, 'aria-label': g.label },
            h('span', { class: 'fill', style: { width: isNum(v) ? pos(v) : '0%' } }),
            isNum(warn) ? h('span', { class: 'marker warning', style: { left: pos(warn) }, title: 'warning ' + fmtPct(warn, 0) }) : null,
            isNum(crit) ? h('span', { class: 'marker critical', style: { left: pos(crit) }, title: 'critical ' + fmtPct(crit, 0) }) : null),
          h('div', { class: 'small muted' }, isNum(warn) ? `warning ${fmtPct(warn, 0)} · critical ${fmtPct(crit, 0)}` : ''));
      }));
      const extra = [];
      if (isNum(st.figures.db_latency)) extra.push(`DB round trip ${fmtSeconds(st.figures.db_latency)}`);
      if (isNum(st.figures.redis_latency)) extra.push(`Redis round trip ${fmtSeconds(st.figures.redis_latency)}`);
      if (isNum(st.figures.redis_memory_usage)) extra.push(`Redis memory ${fmtPct(st.figures.redis_memory_usage)}`);
      if (isNum(st.figures.session_count)) extra.push(`${fmtNum(st.figures.session_count)} sessions`);
      if (st.tickTime) extra.push(`updated ${fmtClock(st.tickTime)}`);
      replace(body.querySelector('.when'), extra.join(' · '));
      if (trends) trends.render(trendBody, st, reason);
    },
  };
}

// ------------------------------------------------------------ backpressure

function backpressureWidget() {
  return {
    title: 'Backpressure',
    render(body, st) {
      const b = st.backpressure;
      if (!b) return;
      const modeLevel = { shedding: 'critical', 'dry-run': 'warning', enforcing: 'ok' }[b.mode] || 'off';
      const rej = Object.entries(b.rejections || {}).filter(([, n]) => n > 0).sort((x, y) => y[1] - x[1]);
      const would = Object.entries(b.dry_run_would_reject || {}).filter(([, n]) => n > 0);
      const qLevel = b.queued >= (b.queue_limit || Infinity) ? 'critical' : b.queued >= (b.queue_warning || Infinity) ? 'warning' : 'ok';
      replace(body,
        h('div', { class: 'verdict' }, h('span', { class: 'pill big ' + levelClass(modeLevel), dataset: { mode: b.mode } }, b.mode), ' ', h('span', { class: 'muted' }, b.why || '')),
        h('div', { class: 'stats' },
          stat('Limit', b.limit > 0 ? fmtNum(b.limit) : 'none', { figure: 'limit' }),
          stat('In flight', fmtNum(b.in_flight), { figure: 'in_flight' }),
          stat('Queued', `${fmtNum(b.queued)} / ${fmtNum(b.queue_limit)}`, { level: qLevel, figure: 'queued' }),
          stat('Shedding', fmtPct(b.shed_fraction, 0), { level: b.shed_fraction > 0 ? 'critical' : 'ok', figure: 'shed_fraction' }),
          b.shed_low_priority_fraction > 0
            ? stat('Low-priority shed', fmtPct(b.shed_low_priority_fraction, 0), { level: 'warning', figure: 'shed_low_priority_fraction' })
            : null,
          stat('Drain rate', fmtRate(b.drain_per_second), { figure: 'drain_per_second' }),
          stat('Left the queue', fmtNum(b.queue_abandoned), { figure: 'queue_abandoned' })),
        h('h3', null, 'Rejections by reason'),
        rej.length === 0 ? h('p', { class: 'muted' }, 'none') :
          h('ul', { class: 'rejections' }, rej.map(([k, n]) => h('li', { dataset: { reason: k } }, h('code', null, k), ' ', h('b', null, fmtNum(n))))),
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
    ['Error rate', (t) => fmtPct(t.error_rate, 0), false, 'num'],
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
      replace(body, scroll(h('table', { class: 'table tasks' },
        h('thead', null, h('tr', null, cols.map(([label, , , cls]) => h('th', { scope: 'col', class: cls === 'num' ? 'num' : undefined }, label)))),
        h('tbody', null, tasks.map((t) => {
          const [lv, why] = taskHealth(t, st);
          return h('tr', { dataset: { task: t.task_id } }, cols.map(([, cell, , cls]) => h('td', { class: cls }, cell(t, lv, why))));
        })))));
    },
  };
}

// ------------------------------------------------------------ trends

const chartSets = {
  overview: [
    { title: 'Response time', series: [['avg_response_time', 'avg'], ['p95_response_time', 'p95'], ['p99_response_time', 'p99']], fmt: fmtSeconds, thr: 'avg_response_time' },
    { title: 'Throughput', series: [['throughput_rps', 'requests/s']], fmt: fmtRate },
    { title: 'Error rate', series: [['error_rate', 'errors']], fmt: (v) => fmtPct(v, 1), thr: 'error_rate' },
    { title: 'CPU and memory', series: [['cpu_usage', 'CPU'], ['memory_usage', 'memory']], fmt: (v) => fmtPct(v, 0), thr: 'cpu_usage', yMax: 1 },
  ],
  performance: [
    { title: 'Response time', series: [['avg_response_time', 'avg'], ['p50_response_time', 'p50'], ['p95_response_time', 'p95'], ['p99_response_time', 'p99']], fmt: fmtSeconds, thr: 'avg_response_time' },
    { title: 'Throughput', series: [['throughput_rps', 'requests/s']], fmt: fmtRate },
    { title: 'Error rate', series: [['error_rate', 'errors']], fmt: (v) => fmtPct(v, 1), thr: 'error_rate' },
    { title: 'Queue and in flight', series: [['queue_depth', 'queued'], ['in_flight', 'in flight']], fmt: (v) => fmtNum(v, v < 10 && !Number.isInteger(v) ? 1 : 0), thr: 'queue_depth' },
    { title: 'Apdex', series: [['apdex', 'Apdex']], fmt: fmtApdex, yMax: 1 },
    { title: 'Slow requests (per minute)', series: [['slow_requests', 'slow']], fmt: (v) => fmtNum(v, v < 10 && !Number.isInteger(v) ? 1 : 0) },
  ],
  resources: [
    { title: 'Memory', series: [['memory_usage', 'memory']], fmt: (v) => fmtPct(v, 0), thr: 'memory_usage', yMax: 1 },
    { title: 'CPU', series: [['cpu_usage', 'CPU']], fmt: (v) => fmtPct(v, 0), thr: 'cpu_usage', yMax: 1 },
    { title: 'Disk', series: [['disk_usage', 'disk']], fmt: (v) => fmtPct(v, 0), thr: 'disk_usage', yMax: 1 },
    { title: 'DB connection pool', series: [['connection_pool_utilization', 'in use']], fmt: (v) => fmtPct(v, 0), thr: 'connection_pool_utilization', yMax: 1 },
    { title: 'DB and Redis round trip', series: [['db_latency', 'DB'], ['redis_latency', 'Redis']], fmt: fmtSeconds, thr: 'db_latency' },
    { title: 'Queue depth', series: [['queue_depth', 'queued'], ['in_flight', 'in flight']], fmt: (v) => fmtNum(v, v < 10 && !Number.isInteger(v) ? 1 : 0), thr: 'queue_depth' },
  ],
  mini: [
    { title: 'CPU and memory', series: [['cpu_usage', 'CPU'], ['memory_usage', 'memory']], fmt: (v) => fmtPct(v, 0), thr: 'cpu_usage', yMax: 1 },
  ],
};

const RANGES = ['15m', '1h', '24h'];

function trendsWidget(options) {
  let range = '15m';
  let view = null;
  let target = null;
  let lastState = null;
  const buttons = [];
  const set = chartSets[options.charts] || chartSets.overview;
  const load = () => getHistory(range).then((v) => {
    view = v;
    if (target && lastState) draw(target, lastState);
  }, (e) => {
    if (target) replace(target, h('p', { class: 'msg' }, 'history unavailable: ' + e.message));
  });
  const draw = (body, st) => {
    const thr = thresholds(st.config);
    replace(body, h('div', { class: 'charts' }, set.map((c) => lineChart({
      title: c.title,
      series: c.series.map(([key, label]) => ({ key, label })),
      fmt: c.fmt,
      yMax: c.yMax,
      thresholds: c.thr ? thrList(thr[c.thr]) : [],
      view,
    }))));
  };
  return {
    title: 'Trends',
    want: ['history'],
    tools(el) {
      const group = h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' });
      for (const r of RANGES) {
        const b = h('button', { type: 'button', 'aria-pressed': r === range ? 'true' : 'false', dataset: { range: r } }, r);
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
        getHistory(range).then((v) => {
          view = v;
          draw(body, st);
        });
        return;
      }
      if (reason === 'config' || reason === 'init' || !body.querySelector('.charts')) draw(body, st);
    },
  };
}
