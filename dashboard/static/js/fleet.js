// The dashboard's scope: "this instance" (the sidecar serving the page) or
// "whole fleet" (every sidecar sharing the store: RESPONSIVENESS_STORE_DSN).
//
// The choice is remembered per browser (web storage, one key) and offered only when
// whoami says a shared store is set. In fleet scope every API call that has
// a fleet answer carries scope=fleet (health, performance, alerts, trend
// history, the route page's history and releases); widgets whose data exists only per instance (windows, routes,
// slow requests, backpressure, tasks) say so in their header. The fleet's
// figures are not judged per figure by the API (the fleet verdict is the
// worst fresh instance's), so their tiles stay neutral: this page never
// compares a figure with a threshold itself.

import { h, replace, isNum, fmtSeconds, fmtPct, fmtRate, fmtAgo, fmtClock, pill } from './util.js';

const KEY = 'pulsegate.scope';
let viewer = null; // whoami answer
// API paths whose fleet answer failed as "not available" (501) or refused
// (400/409): they are read per instance and labelled so.
const unsupported = new Set();

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

// setViewer takes whoami's answer: shared_store says whether the fleet
// scope exists, fleet and instance name them.
export function setViewer(v) {
  viewer = v || null;
}

export function fleetAvailable() {
  return !!(viewer && viewer.shared_store);
}

// linked is the scope the page's address asks for (?scope=fleet or
// ?scope=instance: a route link from a page in fleet scope carries it, so
// the route page opens in the scope it was opened from); it wins over the
// remembered choice on that page.
function linked() {
  const s = new URLSearchParams(location.search).get('scope');
  return s === 'fleet' || s === 'instance' ? s : null;
}

// fleetOn: the page shows the whole fleet.
export function fleetOn() {
  return fleetAvailable() && (linked() || stored()) === 'fleet';
}

// withScope adds the page's scope to a dashboard link (route links): in
// fleet scope the linked page opens in fleet scope too.
export function withScope(href) {
  return fleetOn() ? href + (href.includes('?') ? '&' : '?') + 'scope=fleet' : href;
}

// The API paths with a fleet answer (?scope=fleet).
const FLEET_PATHS = [
  '/admin/api/health/responsiveness',
  '/admin/api/performance/responsiveness',
  '/admin/api/alerts/responsiveness',
  '/admin/responsiveness/api/history',
  '/admin/responsiveness/api/history/route',
  '/admin/api/releases/responsiveness',
];

function pathOf(url) {
  return new URL(url, location.href).pathname;
}

// scoped adds scope=fleet to url in fleet scope when its API has a fleet answer.
export function scoped(url) {
  const u = new URL(url, location.href);
  if (!fleetOn() || !FLEET_PATHS.includes(u.pathname) || unsupported.has(u.pathname)) return url;
  u.searchParams.set('scope', 'fleet');
  return u.pathname + u.search;
}

// getScoped reads url in the page's scope with get (live.js getJSON). A
// route without a fleet answer yet (501, or 400/409 naming scope) is read
// per instance from then on, and its widgets say "this instance".
export async function getScoped(get, url) {
  const s = scoped(url);
  if (s === url) return get(url);
  try {
    return await get(s);
  } catch (e) {
    if (e && (e.status === 501 || ((e.status === 400 || e.status === 409) && /scope/.test(e.message || '')))) {
      unsupported.add(pathOf(url));
      return get(url);
    }
    throw e;
  }
}

// supportsFleet: the page reads path in fleet scope.
function readsFleet(path) {
  return fleetOn() && !unsupported.has(path);
}

// ------------------------------------------------------------ state overlay

// Figures the fleet answers carry, by figure name, from the fleet's
// performance answer (performance_metrics: the last minute; resources: the
// highest fresh instance).
function fleetFigures(perf) {
  const pm = (perf && perf.performance_metrics) || {};
  const fresh = ((perf && perf.instances) || []).filter((i) => !i.stale);
  const highest = (k) => {
    const vs = fresh.map((i) => i[k]).filter(isNum);
    return vs.length ? Math.max(...vs) : null;
  };
  return {
    avg_response_time: pm.avg_response_time,
    p50_response_time: pm.p50_response_time,
    p95_response_time: pm.p95_response_time,
    p99_response_time: pm.p99_response_time,
    throughput_rps: pm.throughput_rps,
    error_rate: pm.requests > 0 ? pm.error_rate : null,
    cpu_usage: highest('cpu_usage'),
    memory_usage: highest('memory_usage'),
  };
}

const HIGHEST = 'on the highest instance';

// overlay puts the fleet's figures where the widgets read them, in fleet
// scope: state.judgements keep each figure's unit and configured
// thresholds but carry the fleet's value with a neutral level (or "not
// measured" for a figure the fleet does not merge), state.figures the
// fleet's figures, state.fleetRequests the fleet's last minute. The
// instance's own judgements stay in state.instanceJudgements.
export function overlay(state) {
  if (!fleetOn() || !state.fleet) return;
  if (state.judgements && state.judgements !== state.fleetJudgements) state.instanceJudgements = state.judgements;
  const base = state.instanceJudgements || {};
  const figs = fleetFigures(state.fleet);
  const out = {};
  for (const [name, j] of Object.entries(base)) {
    const v = figs[name];
    const keep = { unit: j.unit, label: j.label, warning: j.warning, critical: j.critical, bad_when: j.bad_when };
    if (isNum(v)) {
      const gauge = name === 'cpu_usage' || name === 'memory_usage';
      out[name] = { ...keep, value: v, level: 'unknown', window: gauge ? 'latest heartbeat of each instance' : '1m', of: gauge ? HIGHEST : undefined };
    } else {
      out[name] = { ...keep, value: null, level: 'not_measured',
        why_not_measured: name in figs ? 'no requests in the last minute on any instance' : 'kept per instance: switch to "this instance" to see it' };
    }
  }
  state.judgements = out;
  state.fleetJudgements = out;
  state.figures = Object.fromEntries(Object.entries(figs).filter(([, v]) => isNum(v)));
  const pm = state.fleet.performance_metrics || {};
  state.fleetRequests = {
    requests: pm.requests, errors: pm.errors, error_rate: pm.requests > 0 ? pm.error_rate : null,
    avg_response_time: pm.avg_response_time, p50: pm.p50_response_time, p95: pm.p95_response_time, p99: pm.p99_response_time,
    throughput_rps: pm.throughput_rps,
  };
}

// ------------------------------------------------------------ labels

// The widgets with a fleet answer; the others are always this instance's.
const FLEET_KINDS = {
  health: '/admin/api/health/responsiveness',
  figures: '/admin/api/performance/responsiveness',
  performance: '/admin/api/performance/responsiveness',
  resources: '/admin/api/performance/responsiveness',
  trends: '/admin/responsiveness/api/history',
  instances: '/admin/api/performance/responsiveness',
  'alert-history': '/admin/api/alerts/responsiveness',
  'route-trends': '/admin/responsiveness/api/history/route', // route.js
  'route-releases': '/admin/responsiveness/api/history/route',
};

// reporting: "3 of 3 instances reporting" from the fleet answer.
function reporting(state) {
  const f = state.fleet;
  if (f && f.reporting) return f.reporting;
  const list = (f && f.instances) || [];
  return `${list.filter((i) => !i.stale).length} of ${list.length} instances reporting`;
}

function instanceName() {
  return (viewer && viewer.instance) || '';
}

const FOOT = 'pulsegate · every figure is measured by a sidecar and names its window; each card\u2019s tag says whose: ' +
  'the whole fleet (merged in the shared store) or this instance (the sidecar serving this page) · live over Server-Sent Events';

// labelWidgets puts the scope in every widget's header: "whole fleet · 3
// of 3 instances reporting", or "this instance · web-1".
export function labelWidgets(state) {
  if (!fleetAvailable()) return;
  // The footer's "measured by the sidecar" is one sidecar's: with a shared
  // store the cards say whose figures they show.
  const foot = document.querySelector('footer.foot');
  if (foot && foot.textContent !== FOOT) foot.textContent = FOOT;
  for (const card of document.querySelectorAll('.widget[data-kind]')) {
    const head = card.querySelector(':scope > header');
    if (!head) continue;
    let tag = head.querySelector(':scope > .scope-tag');
    if (!tag) {
      tag = h('span', { class: 'scope-tag' });
      head.querySelector('h2').after(tag);
    }
    const api = FLEET_KINDS[card.dataset.kind];
    const fleet = api && readsFleet(api);
    tag.dataset.scope = fleet ? 'fleet' : 'instance';
    tag.className = 'scope-tag ' + (fleet ? 'fleet' : 'instance');
    // The health card lists the active alerts too: say when they are this instance's.
    const alertsHere = card.dataset.kind === 'health' && fleet && !readsFleet('/admin/api/alerts/responsiveness');
    replace(tag, fleet ? `whole fleet · ${reporting(state)}${alertsHere ? ' · alerts of this instance' : ''}` : `this instance${instanceName() ? ' · ' + instanceName() : ''}`);
    tag.title = fleet ? 'merged from every sidecar sharing the store' + (viewer.fleet ? ` (fleet ${viewer.fleet})` : '')
      : fleetOn() ? 'kept by each sidecar on its own: this is the sidecar serving this page' : '';
  }
}

// ------------------------------------------------------------ the switch

// mountSwitch fills the layout's #scope group: two buttons, "This
// instance" and "Whole fleet". Without a shared store the fleet button is
// disabled and says why. A choice is remembered and reloads the page, so
// every figure on it is read again in the new scope.
export function mountSwitch(el) {
  if (!el) return () => {};
  const mine = h('button', { type: 'button', dataset: { scope: 'instance' } }, 'This instance');
  const all = h('button', { type: 'button', dataset: { scope: 'fleet' } }, 'Whole fleet');
  const why = h('span', { class: 'visually-hidden scope-why' });
  el.replaceChildren(mine, all, why);
  const choose = (s) => {
    try {
      localStorage.setItem(KEY, s);
    } catch {
      return;
    }
    // The address's ?scope= (a route link's) gives way to the choice.
    const u = new URL(location.href);
    if (u.searchParams.has('scope')) {
      u.searchParams.delete('scope');
      history.replaceState(null, '', u.pathname + u.search + u.hash);
    }
    location.reload();
  };
  mine.addEventListener('click', () => fleetOn() && choose('instance'));
  all.addEventListener('click', () => !fleetOn() && fleetAvailable() && choose('fleet'));
  return () => {
    if (!viewer) return;
    el.hidden = false;
    const on = fleetOn();
    mine.setAttribute('aria-pressed', on ? 'false' : 'true');
    all.setAttribute('aria-pressed', on ? 'true' : 'false');
    all.disabled = !fleetAvailable();
    const reason = fleetAvailable() ? '' : 'Whole fleet needs a shared store: set RESPONSIVENESS_STORE_DSN (store.dsn) on every sidecar of the app';
    all.title = reason || `every sidecar of fleet ${viewer.fleet || ''} sharing the store`;
    mine.title = instanceName() ? `the sidecar serving this page: ${instanceName()}` : 'the sidecar serving this page';
    replace(why, reason);
    el.dataset.scope = on ? 'fleet' : 'instance';
  };
}

// ------------------------------------------------------------ instances table

// instancesWidget lists the fleet's instances from the fleet performance
// answer: each row is the instance's latest heartbeat. Shown in fleet scope.
export function instancesWidget() {
  return {
    title: 'Instances',
    render(body, st) {
      const section = body.closest('section');
      if (section) section.hidden = !fleetOn();
      if (!fleetOn()) return;
      const f = st.fleet;
      if (!f) {
        replace(body, h('p', { class: 'muted' }, 'waiting for the fleet\'s heartbeats…'));
        return;
      }
      const list = f.instances || [];
      const fleetCfg = st.config && st.config.fleet; // contract C1; absent until the fleet config lands
      const cfgVersion = fleetCfg && isNum(fleetCfg.version) ? fleetCfg.version : null;
      if (list.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No instance has sent a heartbeat to the shared store yet.'));
        return;
      }
      const me = instanceName();
      // [label, unit and window] per column: every figure says what it covers.
      const cols = [['Instance', ''], ['Status', 'latest verdict'], ['p99', 'latest interval'], ['Throughput', `req/s, latest interval`],
        ['Failed for clients', `%, latest interval`], ['CPU', '% at last heartbeat'], ['Memory', '% at last heartbeat'], ['Config version', ''], ['Last seen', 'heartbeat']];
      const rows = list.map((i) => {
        const behind = cfgVersion !== null && i.config_version < cfgVersion;
        return h('tr', { class: i.stale ? 'stale' : undefined, dataset: { instance: i.instance, stale: i.stale ? '1' : '0' } },
          h('th', { scope: 'row' }, i.instance, i.instance === me ? h('span', { class: 'small muted' }, ' (this page)') : null),
          h('td', null, i.stale ? pill('unknown', 'stale') : pill(i.status)),
          h('td', { class: 'num', dataset: { col: 'p99' } }, fmtSeconds(i.p99_response_time)),
          h('td', { class: 'num', dataset: { col: 'throughput_rps' } }, fmtRate(i.throughput_rps)),
          h('td', { class: 'num', dataset: { col: 'error_rate' } }, fmtPct(i.error_rate, 2)),
          h('td', { class: 'num', dataset: { col: 'cpu_usage' } }, fmtPct(i.cpu_usage)),
          h('td', { class: 'num', dataset: { col: 'memory_usage' } }, fmtPct(i.memory_usage)),
          h('td', { class: 'num', dataset: { col: 'config_version' } }, 'v' + i.config_version, behind ? h('span', { class: 'small warn-text' }, ` behind v${cfgVersion}`) : null),
          h('td', { class: 'nowrap', dataset: { col: 'last_seen' } }, h('time', { datetime: i.last_seen }, fmtClock(i.last_seen)), h('span', { class: 'small muted' }, ` (${fmtAgo(i.last_seen)})`)));
      });
      const box = h('div', { class: 'scroll' }, h('table', { class: 'table instances' },
        h('thead', null, h('tr', null, cols.map(([c, unit], k) => h('th', { scope: 'col', class: k >= 2 && k <= 7 ? 'num' : undefined }, c,
          unit ? h('span', { class: 'th-unit small muted' }, unit) : null)))),
        h('tbody', null, rows)));
      // A narrow screen scrolls the table: say that more columns are to the right.
      const cue = h('p', { class: 'scroll-cue small muted', hidden: true }, 'more columns → swipe or scroll sideways');
      const check = () => {
        cue.hidden = box.scrollWidth <= box.clientWidth + 2 || box.scrollLeft + box.clientWidth >= box.scrollWidth - 2;
      };
      box.addEventListener('scroll', check, { passive: true });
      requestAnimationFrame(check);
      replace(body, cue, box,
        h('p', { class: 'muted small' }, `${reporting(st)}. Each row is the instance's latest heartbeat: p99, throughput and failed-for-clients cover its last monitoring interval; CPU and memory are their values at its end (a share of the container or host). ` +
          'Greyed rows are stale (no heartbeat for 3 monitoring intervals): they are left out of the fleet figures and verdict, and pruned after 24 h.'));
    },
  };
}
