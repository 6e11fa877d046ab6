// The route page (templates/route.html): one route's long view. Its
// p50/p95/p99, throughput and failures over a range of up to a year, with
// the range's alerts, configuration changes and releases marked on every
// graph, and the route's releases: each version's first and last request,
// and the last release compared with the one before (p95 and error rate
// before/after with their sample counts, and whether the change is a
// regression beyond the noise, in words).
//
// Everything comes from GET /admin/responsiveness/api/history/route
// (contract R1 in the pulsegate sources), in the page's scope (fleet.js):
// with &scope=fleet every instance's route rows merged from the shared
// store, the releases and their comparison over every instance's requests. A pulsegate without that
// endpoint answers the dashboard's HTML 404: the page then says that route
// history is not available here, instead of failing.

import { h, replace, isNum, fmtSeconds, fmtPct, fmtRate, fmtNum, secondsAxis, pctAxis, numAxis, NB } from './util.js';
import { getJSON, AuthError, PREFIX } from './live.js';
import { lineChart, RANGES, RANGE_WORDS, fmtWhen, fmtSpan, GLYPH } from './chart.js';
import { registerWidget, runbookOf, routeHref } from './widgets.js';
import { getScoped } from './fleet.js';

const params = new URLSearchParams(location.search);
const ROUTE = params.get('route') || '';
export const ENDPOINT = PREFIX + 'api/history/route';

// unavailable: the error of a pulsegate without the per-route history
// endpoint (the dashboard's own HTML 404, not a JSON answer).
export function unavailable(e) {
  return !!e && !(e instanceof AuthError) && e.status === 404 && /^HTTP 404$/.test(e.message);
}

// The route answer, shared by the page's two cards: fetched per range,
// refreshed when a new step may have closed; an answer for a range the
// viewer already left is dropped.
const data = {
  range: RANGES.includes(params.get('range')) ? params.get('range') : '24h',
  answer: null,
  error: null,
  fetched: 0,
  loading: null,
  seq: 0,
  listeners: new Set(),
};

function emit() {
  for (const fn of data.listeners) fn();
}

function load(range) {
  if (!ROUTE) return;
  const seq = ++data.seq;
  data.range = range;
  const url = `${ENDPOINT}?route=${encodeURIComponent(ROUTE)}&range=${encodeURIComponent(range)}`;
  data.loading = getScoped(getJSON, url).then((a) => {
    if (seq !== data.seq) return;
    data.answer = a;
    data.error = null;
    data.fetched = Date.now();
    emit();
  }, (e) => {
    if (seq !== data.seq) return;
    data.error = e;
    data.fetched = Date.now();
    emit();
  }).finally(() => {
    if (seq === data.seq) data.loading = null;
  });
}

function maybeRefresh() {
  if (!ROUTE || data.loading || unavailable(data.error)) return;
  const step = (data.answer && data.answer.step_seconds) || 60;
  if (Date.now() - data.fetched >= step * 1000) load(data.range);
}

// view adapts the route answer to the chart's history shape ("time").
function viewOf(a) {
  return { ...a, time: a.timestamps || a.time || [] };
}

// releaseEvents marks each release's first request on the graphs.
function releaseEvents(a) {
  return (a.releases || []).filter((r) => r.first_seen).map((r) => ({ time: r.first_seen, kind: 'release', version: r.version, requests: r.requests, last_seen: r.last_seen }));
}

function noRoute(body, st) {
  const routes = (st.perf && st.perf.routes && st.perf.routes.by_volume) || [];
  replace(body, h('p', null, 'No route chosen. Open one from the routes table on the ', h('a', { href: PREFIX + 'performance' }, 'Performance'), ' page' +
    (routes.length ? ', or here:' : '.')),
  routes.length ? h('ul', { class: 'route-picks' }, routes.map((r) => h('li', null, h('a', { href: routeHref(r.route) }, h('code', { class: 'route' }, r.route))))) : null);
}

function notAvailable(body) {
  replace(body, h('p', { class: 'msg route-unavailable', role: 'status' },
    'Route history is not available on this pulsegate: it has no per-route history endpoint (',
    h('code', null, 'GET /admin/responsiveness/api/history/route'),
    '). The route\u2019s figures of the last 5 minutes are in the routes table on the ',
    h('a', { href: PREFIX + 'performance' }, 'Performance'), ' page.'));
}

const charts = [
  { title: 'Response time', series: [['p50_response_time', 'p50'], ['p95_response_time', 'p95'], ['p99_response_time', 'p99']], fmt: fmtSeconds, axis: secondsAxis, unit: 'seconds' },
  { title: 'Throughput', series: [['throughput_rps', 'requests/s']], fmt: fmtRate, axis: numAxis, unit: 'requests per second' },
  { title: 'Failed for clients', series: [['error_rate', 'failed for clients']], fmt: (v) => fmtPct(v, 1), axis: pctAxis, unit: '% of requests' },
];

function routeTrends() {
  let drawn = [];
  let drawnFor = null; // the answer drawn
  let target = null;
  let lastState = null;
  const buttons = [];
  const keeps = new Map(); // chart title → what its graph keeps across redraws (an opened event)
  const keepOf = (title) => {
    if (!keeps.has(title)) keeps.set(title, {});
    return keeps.get(title);
  };
  const clear = () => {
    for (const c of drawn) c.destroy();
    drawn = [];
  };
  const draw = () => {
    const body = target;
    const st = lastState;
    if (!body || !st) return;
    if (!ROUTE) return noRoute(body, st);
    if (data.error) {
      if (data.error instanceof AuthError) return; // the card's banner says to sign in
      clear();
      drawnFor = null;
      if (unavailable(data.error)) return notAvailable(body);
      return replace(body, h('p', { class: 'msg error' }, 'route history unavailable: ' + data.error.message));
    }
    const a = data.answer;
    if (!a) return replace(body, h('p', { class: 'muted' }, 'loading this route\u2019s history…'));
    if (a === drawnFor && body.querySelector('.charts')) return;
    drawnFor = a;
    clear();
    const view = viewOf(a);
    const events = [...(a.events || []), ...releaseEvents(a)].sort((x, y) => new Date(x.time) - new Date(y.time));
    const fleet = a.scope === 'fleet';
    const onWhere = fleet ? ' on any instance of the fleet' : ''; // the summary says "on this instance"
    drawn = charts.map((c) => lineChart({
      title: c.title,
      window: RANGE_WORDS[a.range] || RANGE_WORDS[data.range],
      unit: c.unit,
      series: c.series.filter(([key]) => !a.series || key in a.series).map(([key, label]) => ({ key, label })),
      fmt: c.fmt,
      axisFmt: c.axis,
      view,
      events,
      runbook: (rule) => runbookOf(st, rule),
      keep: keepOf(c.title),
      why: `no request to this route${onWhere} in this range (` + (fleet
        ? 'the fleet\u2019s shared store keeps each instance\u2019s per-route history at 1 min and 1 h steps for its busiest routes)'
        : 'pulsegate keeps per-route history at 1 min and 1 h steps for the busiest routes)'),
      since: (when) => `data since ${when}: the step of the first request to this route${onWhere} in this range` + (fleet ? ' (from the fleet\u2019s shared store; instances record only while they run)' : ''),
      gapWhy: `no request to this route${onWhere} then`,
    }));
    const reqs = (a.series && a.series.requests) || [];
    const where = fleet ? 'on every instance of the fleet' : 'on this instance';
    const total = reqs.reduce((n, v) => n + (isNum(v) ? v : 0), 0);
    body.dataset.range = a.range || data.range;
    body.dataset.route = a.route || ROUTE;
    body.dataset.scope = fleet ? 'fleet' : 'instance';
    replace(body,
      h('p', { class: 'muted small route-summary' }, `${RANGE_WORDS[a.range] || data.range}: ${fmtNum(total)} requests to this route ${where}, one point per ${fmtSpan(a.step_seconds || 60)}. ` +
        `Alerts (shaded, ${GLYPH.fired} fired, ${GLYPH.resolved} resolved), configuration changes (${GLYPH.config}) and releases (${GLYPH.release}) are marked on every graph: point at or tap a mark for what changed and who.`),
      h('div', { class: 'charts' }, drawn.map((c) => c.fig)));
  };
  const onData = () => draw();
  data.listeners.add(onData);
  return {
    title: 'This route over time',
    want: ROUTE ? [] : ['perf'],
    stop() {
      data.listeners.delete(onData);
      clear();
    },
    tools(el) {
      if (!ROUTE) return;
      const group = h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' });
      for (const r of RANGES) {
        const b = h('button', { type: 'button', 'aria-pressed': r === data.range ? 'true' : 'false', dataset: { range: r }, 'aria-label': RANGE_WORDS[r] }, r);
        b.addEventListener('click', () => {
          for (const x of buttons) x.setAttribute('aria-pressed', x.dataset.range === r ? 'true' : 'false');
          const u = new URL(location.href);
          u.searchParams.set('range', r);
          history.replaceState(null, '', u.pathname + u.search);
          load(r);
        });
        buttons.push(b);
        group.append(b);
      }
      el.append(group);
    },
    render(body, st, reason) {
      target = body;
      lastState = st;
      if (ROUTE && !data.answer && !data.error && !data.loading) load(data.range);
      else if (reason === 'tick') maybeRefresh();
      if (reason === 'tick' && drawnFor) return; // the answer, not the tick, redraws the graphs
      draw();
    },
  };
}

// pctChange: "+12%" / "−8%" of after against before.
function pctChange(before, after) {
  if (!isNum(before) || !isNum(after) || before === 0) return '';
  const d = (after - before) / before;
  return `${d >= 0 ? '+' : '\u2212'}${Math.abs(d * 100).toFixed(0)}%`;
}

function fmtP(p) {
  if (!isNum(p)) return '–';
  if (p < 0.0001) return '< 0.0001';
  return p < 0.01 ? p.toPrecision(2) : p.toFixed(2);
}

// verdict says the comparison's outcome in words.
function verdict(c) {
  if (!c.compared) return null;
  const parts = [];
  if (c.p95 && c.p95.regressed) {
    parts.push(`p95 went from ${fmtSeconds(c.p95.before)} to ${fmtSeconds(c.p95.after)} (${pctChange(c.p95.before, c.p95.after)}); ` +
      `if both releases were equally fast, a difference this large would show up with probability ${fmtP(c.p95.p_value)}`);
  }
  if (c.error_rate && c.error_rate.regressed) {
    parts.push(`the error rate went from ${fmtPct(c.error_rate.before, 2)} to ${fmtPct(c.error_rate.after, 2)}; ` +
      `if both releases failed equally often, a difference this large would show up with probability ${fmtP(c.error_rate.p_value)}`);
  }
  if (c.regressed) {
    return h('p', { class: 'verdict-text regressed', dataset: { regressed: '1' } },
      h('span', { class: 'pill crit' }, '▼ regression'), ' ',
      `Release ${c.after_release} is worse than ${c.before_release} on this route, beyond the noise: ${parts.join('; and ')}.`);
  }
  return h('p', { class: 'verdict-text', dataset: { regressed: '0' } },
    h('span', { class: 'pill ok' }, '✓ no regression'), ' ',
    `Release ${c.after_release} is not measurably worse than ${c.before_release} on this route: any difference in p95 or error rate is within the noise ` +
    `of ${fmtNum(c.before_requests)} and ${fmtNum(c.after_requests)} requests, or too small to matter.`);
}

function comparison(c, win, fleet) {
  if (!c) {
    return h('p', { class: 'muted comparison-none' }, 'No comparison: in this range the route answered with fewer than two releases. ' +
      'pulsegate learns the app\u2019s version from RESPONSIVENESS_APP_VERSION, or per response from the header named by RESPONSIVENESS_APP_VERSION_HEADER (e.g. X-App-Version).');
  }
  const head = h('p', null, 'Last release ', h('b', null, c.after_release || '(unknown)'), ' against the one before, ', h('b', null, c.before_release || '(unknown)'),
    `, over their requests ${fleet ? 'on every instance' : 'on this instance'} in the ${win}:`);
  if (!c.compared) {
    return h('div', { class: 'comparison', dataset: { compared: '0' } }, head,
      h('p', { class: 'muted' }, 'Not compared: ', c.why || 'too few requests', '.'),
      h('p', { class: 'small muted' }, `${fmtNum(c.before_requests)} requests with ${c.before_release}, ${fmtNum(c.after_requests)} with ${c.after_release}.`));
  }
  const row = (label, key, f) => {
    const x = c[key] || {};
    return h('tr', { dataset: { row: key } },
      h('th', { scope: 'row' }, label),
      h('td', { class: 'num' }, f(x.before)),
      h('td', { class: 'num' }, f(x.after)),
      h('td', { class: 'num' }, pctChange(x.before, x.after) || '–'),
      h('td', { class: 'num' }, fmtP(x.p_value)),
      h('td', null, x.regressed ? h('span', { class: 'pill crit' }, '▼ regressed') : h('span', { class: 'pill ok' }, '✓ within noise')));
  };
  return h('div', { class: 'comparison', dataset: { compared: '1', regressed: c.regressed ? '1' : '0' } }, head,
    h('div', { class: 'scroll' }, h('table', { class: 'table compare' },
      h('thead', null, h('tr', null,
        h('th', null, h('span', { class: 'visually-hidden' }, 'Figure')),
        h('th', { scope: 'col', class: 'num' }, `${c.before_release} (${fmtNum(c.before_requests)}${NB}requests)`),
        h('th', { scope: 'col', class: 'num' }, `${c.after_release} (${fmtNum(c.after_requests)}${NB}requests)`),
        h('th', { scope: 'col', class: 'num' }, 'Change'),
        h('th', { scope: 'col', class: 'num' }, 'p-value'),
        h('th', { scope: 'col' }, 'Verdict'))),
      h('tbody', null, row('p95', 'p95', fmtSeconds), row('Error rate', 'error_rate', (v) => fmtPct(v, 2))))),
    verdict(c),
    h('p', { class: 'small muted' }, 'The p-value is the chance of a difference at least this large if both releases behaved the same. ' +
      'A figure is flagged only when that chance is small and the change is large enough to matter. Test: ', c.test || 'see docs/releases.md', '.'));
}

function routeReleases() {
  let target = null;
  let lastState = null;
  const draw = () => {
    const body = target;
    if (!body || !lastState || !ROUTE) return;
    if (data.error) {
      if (unavailable(data.error)) return replace(body, h('p', { class: 'muted' }, 'Releases need the per-route history, which this pulsegate does not have.'));
      return replace(body, h('p', { class: 'muted' }, 'releases unavailable: ' + data.error.message));
    }
    const a = data.answer;
    if (!a) return replace(body, h('p', { class: 'muted' }, 'loading…'));
    const rel = (a.releases || []).slice().sort((x, y) => new Date(y.last_seen) - new Date(x.last_seen));
    const step = a.step_seconds || 60;
    const win = RANGE_WORDS[a.range] || RANGE_WORDS[data.range] || data.range;
    const fleet = a.scope === 'fleet';
    replace(body,
      rel.length === 0
        ? h('p', { class: 'muted releases-none' }, 'No release recorded for this route in this range.')
        : [h('p', { class: 'small muted releases-window' }, `${win}: each version\u2019s first and last request to this route, and its requests ${fleet ? 'summed over every instance of the fleet' : 'on this instance'}.`),
          h('div', { class: 'scroll' }, h('table', { class: 'table releases' },
          h('thead', null, h('tr', null, ['Version', 'First request', 'Last request', 'Requests'].map((c, i) => h('th', { scope: 'col', class: i === 3 ? 'num' : undefined }, c)))),
          h('tbody', null, rel.map((r, i) => h('tr', { dataset: { version: r.version ?? '' } },
            h('th', { scope: 'row' }, h('code', null, r.version || '(unknown)'), i === 0 ? h('span', { class: 'small muted' }, ' latest') : null),
            h('td', null, r.first_seen ? fmtWhen(new Date(r.first_seen).getTime() / 1000, step) : '–'),
            h('td', null, r.last_seen ? fmtWhen(new Date(r.last_seen).getTime() / 1000, step) : '–'),
            h('td', { class: 'num' }, fmtNum(r.requests)))))))],
      h('h3', null, 'Last release against the one before'),
      comparison(a.comparison, win, fleet));
    body.dataset.range = a.range || data.range;
    body.dataset.scope = fleet ? 'fleet' : 'instance';
  };
  const onData = () => draw();
  data.listeners.add(onData);
  return {
    title: 'Releases',
    stop() {
      data.listeners.delete(onData);
    },
    render(body, st) {
      target = body;
      lastState = st;
      if (!ROUTE) return replace(body, h('p', { class: 'muted' }, 'Choose a route to see its releases.'));
      draw();
    },
  };
}

registerWidget('route-trends', routeTrends);
registerWidget('route-releases', routeReleases);
