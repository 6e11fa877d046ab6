// Trend graphs drawn by uPlot (vendored under static/vendor/uplot, see
// its VERSION file): time on x, labelled to fit the range (clock times,
// dates once a graph spans days, months over a year), one or more series
// on y with units, dashed threshold lines, a "data since" marker where the
// history starts, a hover readout of every series (uPlot's live legend),
// and the events of the range: alerts as shaded spans from firing to
// resolved, configuration changes as dashed vertical lines. Every event
// also has a mark (a glyph, not only a colour) in the strip under the
// graph: a button that shows what happened, when and who, on hover, focus
// or tap. uPlot styles its elements through the CSSOM, which the
// dashboard's Content-Security-Policy allows.

import { h, replace, isNum, fmtClock, NB } from './util.js';

let uplotLoading = null;

// loadUPlot loads the vendored uPlot once per page (a classic script: the
// file is uPlot's own, unmodified IIFE build).
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const el = document.createElement('script');
      el.src = new URL('../vendor/uplot/uPlot.iife.min.js', import.meta.url).href;
      el.addEventListener('load', () => resolve(window.uPlot));
      el.addEventListener('error', () => {
        uplotLoading = null;
        reject(new Error('the chart library did not load'));
      });
      document.head.append(el);
    });
  }
  return uplotLoading;
}

const DAY = 86400;
const monthDay = (d) => d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short' });
const hhmm = (d) => d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false });

// RANGE_WORDS names the history ranges for people.
export const RANGES = ['15m', '1h', '24h', '7d', '30d', '90d', '365d'];
export const RANGE_WORDS = {
  '15m': 'last 15 min', '1h': 'last hour', '24h': 'last 24 h', '7d': 'last 7 days',
  '30d': 'last 30 days', '90d': 'last 90 days', '365d': 'last year',
};

// timeTicks labels the x axis to fit the range: clock times within a day
// (with the date on the first tick and wherever the day changes, so a
// 24 h graph never shows the same label at both ends), dates when the
// ticks are days apart, month names (and the year where it changes) when
// they are months apart.
function timeTicks(span, fig) {
  return (u, ticks) => {
    const inc = ticks.length > 1 ? ticks[1] - ticks[0] : span;
    let prev = null;
    const labels = ticks.map((t, i) => {
      const d = new Date(t * 1000);
      let label;
      if (inc >= 27 * DAY) {
        const y = d.getFullYear();
        label = d.toLocaleDateString('en-GB', { month: 'short' }) + (i === 0 || y !== prev ? '\n' + y : '');
        prev = y;
      } else if (inc >= DAY - 60) {
        label = monthDay(d);
      } else {
        const day = d.toDateString();
        const withDate = span >= DAY - 60 && (i === 0 || day !== prev);
        prev = day;
        label = withDate ? monthDay(d) + '\n' + hhmm(d) : hhmm(d);
      }
      return label;
    });
    fig.dataset.xAxis = labels.join(' | ').replace(/\n/g, ' '); // the canvas's labels, for tests and tools
    return labels;
  };
}

// fmtWhen: a moment at the precision of the graph's step.
export function fmtWhen(sec, step = 10) {
  const opts = { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false };
  if (step < 60) opts.second = '2-digit';
  if (Math.abs(Date.now() / 1000 - sec) > 180 * DAY) opts.year = 'numeric';
  return new Date(sec * 1000).toLocaleString('en-GB', opts);
}

// fmtSpan: a duration in seconds, "2 min 6 s", "3 h 10 min", "2 d 4 h".
export function fmtSpan(sec) {
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec}${NB}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}${NB}min${sec % 60 ? ` ${sec % 60}${NB}s` : ''}`;
  if (sec < DAY) return `${Math.floor(sec / 3600)}${NB}h${Math.floor((sec % 3600) / 60) ? ` ${Math.floor((sec % 3600) / 60)}${NB}min` : ''}`;
  return `${Math.floor(sec / DAY)}${NB}d${Math.floor((sec % DAY) / 3600) ? ` ${Math.floor((sec % DAY) / 3600)}${NB}h` : ''}`;
}

// cssVar reads a colour from the stylesheet (canvas cannot use var()).
function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

const PALETTE = ['--pg-s0', '--pg-s1', '--pg-s2', '--pg-s3'];

// Event glyphs: every event kind has its own mark, so none is told apart
// by colour alone.
export const GLYPH = { fired: '▲', resolved: '✓', acknowledged: '⚑', config: '⚙', release: '◆' };
const ORDER = ['fired', 'resolved', 'config', 'release', 'acknowledged']; // which glyph a group of marks shows
const KIND_WORDS = { fired: 'alert fired', resolved: 'alert resolved', acknowledged: 'alert acknowledged', config: 'configuration changed', release: 'release first answered' };

const toSec = (t) => {
  const ms = new Date(t).getTime();
  return Number.isFinite(ms) ? ms / 1000 : null;
};

// eventMarks turns the history answer's events (alert_fired,
// alert_acknowledged, alert_resolved, config_change; oldest first) into
// alert spans, one per alert occurrence, clipped to [from, to] (an alert
// that fired before the range starts at its left edge, one still firing
// ends at its right edge, and says so), and the marks of the strip.
export function eventMarks(events, from, to) {
  const spans = new Map(); // alert id → span
  const marks = [];
  for (const e of events || []) {
    const t = toSec(e.time);
    if (t === null) continue;
    if (e.kind === 'config_change') {
      marks.push({ kind: 'config', t, e });
      continue;
    }
    if (e.kind === 'release') { // the route page's: a version's first request
      marks.push({ kind: 'release', t, e });
      continue;
    }
    if (!/^alert_/.test(e.kind || '')) continue;
    const id = e.alert_id || `${e.rule}|${e.subject || ''}`;
    let sp = spans.get(id);
    if (!sp) {
      sp = { id, rule: e.rule, subject: e.subject, level: e.level, message: e.message, start: from, end: to, startKnown: false, endKnown: false, ack: null };
      spans.set(id, sp);
    }
    if (e.level) sp.level = e.level;
    if (e.message) sp.message = e.message;
    if (e.kind === 'alert_fired') {
      sp.start = t;
      sp.startKnown = true;
      marks.push({ kind: 'fired', t, span: sp });
    } else if (e.kind === 'alert_resolved') {
      sp.end = t;
      sp.endKnown = true;
      marks.push({ kind: 'resolved', t, span: sp });
    } else if (e.kind === 'alert_acknowledged') {
      sp.ack = { t, by: e.by, note: e.note };
      marks.push({ kind: 'acknowledged', t, span: sp });
    }
  }
  marks.sort((a, b) => a.t - b.t);
  return { spans: [...spans.values()], marks };
}

// eventText says one mark in a sentence (the button's accessible name).
function eventText(m, step) {
  if (m.kind === 'release') return `${fmtWhen(m.t, step)}: release ${m.e.version || '(unknown)'} first answered`;
  if (m.kind === 'config') {
    const keys = (m.e.changes || []).map((c) => c.key);
    return `${fmtWhen(m.t, step)}: configuration changed${m.e.by ? ' by ' + m.e.by : ''}${keys.length ? ' (' + keys.join(', ') + ')' : ''}`;
  }
  const sp = m.span;
  return `${fmtWhen(m.t, step)}: ${KIND_WORDS[m.kind]}, ${sp.rule}${sp.subject ? ' ' + sp.subject : ''} (${sp.level || 'alert'})` +
    (m.kind === 'acknowledged' && sp.ack && sp.ack.by ? ' by ' + sp.ack.by : '');
}

// eventDetail renders what one mark stands for: for an alert its rule,
// severity, message, how long it fired, who acknowledged it and a link to
// its runbook; for a configuration change every key with its old and new
// value, who changed it and on which instance.
function eventDetail(m, step, runbook) {
  if (m.kind === 'release') {
    const e = m.e;
    const last = toSec(e.last_seen);
    return h('li', { class: 'ev-item', dataset: { kind: 'release' } },
      h('span', { class: 'ev-glyph', 'aria-hidden': 'true' }, GLYPH.release), ' ',
      h('b', null, 'Release '), h('code', null, e.version || '(unknown)'), ` first answered ${fmtWhen(m.t, step)}`,
      h('div', { class: 'small muted' }, (last !== null ? `last request ${fmtWhen(last, step)}` : '') + (isNum(e.requests) ? `, ${e.requests.toLocaleString('en-US')} requests in this range` : '')));
  }
  if (m.kind === 'config') {
    const e = m.e;
    return h('li', { class: 'ev-item', dataset: { kind: 'config' } },
      h('span', { class: 'ev-glyph', 'aria-hidden': 'true' }, GLYPH.config), ' ',
      h('b', null, 'Configuration changed'), ` ${fmtWhen(m.t, step)}`,
      ' by ', h('b', { class: 'ev-actor' }, e.by || 'unknown'), e.instance ? ` on ${e.instance}` : '',
      (e.changes || []).length ? h('ul', { class: 'ev-changes' }, e.changes.map((c) => h('li', null,
        h('code', null, c.key), ': ', h('span', { class: 'ev-old' }, c.old === undefined || c.old === '' ? '(unset)' : String(c.old)),
        ' → ', h('span', { class: 'ev-new' }, c.new === undefined || c.new === '' ? '(unset)' : String(c.new))))) : null);
  }
  const sp = m.span;
  const url = runbook ? runbook(sp.rule) : '';
  const from = sp.startKnown ? `fired ${fmtWhen(sp.start, step)}` : 'firing since before this range';
  const until = sp.endKnown ? `resolved ${fmtWhen(sp.end, step)}` : 'still firing at the end of this range';
  const lasted = sp.startKnown && sp.endKnown ? ` (${fmtSpan(sp.end - sp.start)})` : '';
  return h('li', { class: 'ev-item', dataset: { kind: m.kind, rule: sp.rule || '', severity: sp.level || '' } },
    h('span', { class: 'ev-glyph', 'aria-hidden': 'true' }, GLYPH[m.kind]), ' ',
    h('b', null, KIND_WORDS[m.kind][0].toUpperCase() + KIND_WORDS[m.kind].slice(1)), ` ${fmtWhen(m.t, step)}: `,
    'rule ', h('code', null, sp.rule || '?'), sp.subject ? ` (${sp.subject})` : '', ', severity ', h('b', { class: 'ev-sev ' + (sp.level || '') }, sp.level || 'unknown'),
    sp.message ? h('div', { class: 'ev-msg' }, sp.message) : null,
    h('div', { class: 'small muted' }, `${from}, ${until}${lasted}`,
      sp.ack ? `; acknowledged ${fmtWhen(sp.ack.t, step)} by ${sp.ack.by || 'unknown'}${sp.ack.note ? ': “' + sp.ack.note + '”' : ''}` : ''),
    url ? h('div', { class: 'runbook small' }, h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, `Runbook: what ${sp.rule} means and what to do`)) : null);
}

// withGaps breaks the lines where the answer has no step: a history answer
// leaves out the steps nothing was recorded in (pulsegate, or in fleet
// scope every instance, was not running; on the route page, no request to
// the route), so a jump of more than two steps in time gets a null point
// (uPlot draws no line through it). gaps counts them.
function withGaps(times, cols, step) {
  const t = [];
  const c = cols.map(() => []);
  let gaps = 0;
  for (let j = 0; j < times.length; j++) {
    if (j > 0 && times[j] - times[j - 1] > 2 * step) {
      t.push(times[j - 1] + step);
      c.forEach((col) => col.push(null));
      gaps++;
    }
    t.push(times[j]);
    c.forEach((col, i) => col.push(cols[i][j] ?? null));
  }
  return { times: t, cols: c, gaps };
}

// Who recorded a graph's data, for its notes. In instance scope it is
// this pulsegate's own history (its ring, kept in data_dir); in fleet scope
// (view.scope "fleet") the fleet's shared store, which holds what each
// instance sent while it ran, with the number of instances that reported in
// the range when the answer carries it (the trend history's "instances";
// the route answer has none).
const isFleet = (view) => !!view && view.scope === 'fleet';
// plural: "2 instances", "1 instance" (the count kept with its noun on one line).
export const plural = (n, one) => `${n}${NB}${one}${n === 1 ? '' : 's'}`;

function reportedIn(view) {
  return isNum(view.instances) ? `; ${plural(view.instances, 'instance')} reported in this range` : '';
}

// emptyNote says why a graph has no point at all.
function emptyNote(view) {
  if (!isFleet(view)) return 'no data in this range yet: pulsegate records a point every ' + fmtStep((view && view.resolution_seconds) || 10) + ' while it runs';
  if (isNum(view.instances) && view.instances > 0) {
    return `no data in this range: the ${view.instances === 1 ? 'one instance' : plural(view.instances, 'instance')} that reported to the fleet's shared store in it sent none of these figures`;
  }
  return "no data in this range yet: no instance sent the fleet's shared store (store.dsn) a point in it; instances record only while they run";
}

// sinceNote says where a graph's data starts when that is inside the
// range. In fleet scope the trend history's steps each hold at least one
// heartbeat (tier "fleet"), so its first step is the first report of any
// instance in the range.
function sinceNote(view, first, when) {
  if (!isFleet(view)) return `data since ${when} (pulsegate records history only while it runs; it is kept across restarts in data_dir)`;
  const firstReport = view.tier === 'fleet' && (view.time || [])[0] === first;
  return `data since ${when}` + (firstReport ? `, when the first instance reported to the fleet's shared store in this range` : " in the fleet's shared store") +
    ` (instances record only while they run${reportedIn(view)})`;
}

// gapNote says what a break in the lines of a trend graph is.
function gapNote(view) {
  return isFleet(view) ? "no instance reported to the fleet's shared store then" : 'pulsegate was not recording then';
}

// lineChart draws view (a history answer) into a new <figure> and returns
// {fig, destroy}. Options:
//   title      caption
//   window     the range in words ("last 7 days"); else from the view
//   unit       the y unit in words ("seconds", "requests per second")
//   series     [{key, label}] keys of view.series
//   fmt        value → text (legend, hover readout, threshold labels)
//   axisFmt    (ticks) → labels for the y axis (one unit for all ticks)
//   thresholds [{value, level: 'warning'|'critical'}]
//   yMax       fixed top of the y axis (e.g. 1 for ratios), else from data
//   why        when no series has data: why not (e.g. "set RESPONSIVENESS_DB_DSN …");
//              else emptyNote's, in the view's scope
//   since      when → the note of data starting inside the range; else sinceNote's
//   gapWhy     what a break in the lines means (the steps the answer leaves
//              out); else gapNote's
//   events     the range's events (default view.events); [] draws none
//   runbook    rule → runbook URL ('' for none)
//   keep       an object kept by the caller across redraws of this graph:
//              the event whose details are open (pointed at, focused or
//              tapped) stays open when the graph is redrawn with fresh data
export function lineChart({ title, window: win, unit, series, fmt, axisFmt, thresholds = [], yMax, view, why, since, gapWhy, events, runbook, keep = {} }) {
  const step = (view && view.step_seconds) || 10;
  const from = view ? view.from : 0;
  const to = view ? view.to : 1;
  const winText = win || (view && RANGE_WORDS[view.range]) || (view ? `${fmtWhen(from, step)} – ${fmtWhen(to, step)}` : '');
  const fig = h('figure', { class: 'chart', dataset: { chart: title, step: String(step) } });
  const plotBox = h('div', { class: 'plot' });
  const strip = h('div', { class: 'ev-strip', role: 'group', 'aria-label': `Events on the ${title} graph`, hidden: true });
  const detail = h('div', { class: 'ev-detail', 'aria-live': 'polite', hidden: true });
  const notes = h('p', { class: 'chart-notes small muted' });
  fig.append(h('figcaption', null, title,
    h('span', { class: 'muted small chart-window' }, [winText && ` · ${winText}`, ` · one point per ${fmtStep(step)}`, unit ? ` · ${unit}` : ''].filter(Boolean).join(''))),
  plotBox, strip, detail, notes);

  const { times, cols, gaps } = withGaps((view && view.time) || [], series.map((sr) => ((view && view.series && view.series[sr.key]) || []).map((v) => (isNum(v) ? v : null))), step);
  fig.dataset.gaps = String(gaps);
  let dataMax = 0;
  let firstData = null;
  for (const col of cols) {
    col.forEach((v, j) => {
      if (v === null) return;
      dataMax = Math.max(dataMax, v);
      if (firstData === null || times[j] < firstData) firstData = times[j];
    });
  }
  let lastIdx = null; // the latest point with any value
  for (let j = times.length - 1; j >= 0 && lastIdx === null; j--) if (cols.some((c) => c[j] !== null)) lastIdx = j;

  const ev = eventMarks(events !== undefined ? events : view && view.events, from, to);
  fig.dataset.events = String(ev.marks.length);
  fig.dataset.alertSpans = String(ev.spans.length);

  // The y axis fits the data; a threshold joins the scale when near it
  // (otherwise the notes say it is above the graph).
  let top = yMax ?? 0;
  if (!yMax) {
    const firstThr = thresholds.find((t) => isNum(t.value) && t.value > 0);
    top = dataMax > 0 ? dataMax * 1.15 : firstThr ? firstThr.value * 1.2 : 1;
    for (const t of thresholds) if (isNum(t.value) && t.value <= top * 1.6) top = Math.max(top, t.value * 1.1);
  }
  const thr = thresholds.filter((t) => isNum(t.value));
  const above = thr.filter((t) => t.value > top);

  const noteParts = [];
  if (firstData === null) {
    noteParts.push(why || emptyNote(view));
    fig.dataset.empty = '1';
  } else if (firstData > from + 2 * step) {
    const when = to - from > DAY ? fmtWhen(firstData, step) : fmtClock(firstData * 1000);
    noteParts.push(since ? since(when) : sinceNote(view, firstData, when));
  }
  if (gaps) noteParts.push(`${gaps === 1 ? 'a break in the lines' : `${gaps} breaks in the lines`}: ${gapWhy || gapNote(view)}`);
  if (thr.length) {
    noteParts.push('dashed: ' + thr.map((t) => `${t.level} ${fmt(t.value)}${above.includes(t) ? ' (above the graph)' : ''}`).join(', '));
  }
  if (ev.marks.length) {
    const kinds = new Set(ev.marks.map((m) => m.kind));
    const keys = [];
    if (ev.spans.length) keys.push(`${GLYPH.fired} alert (shaded while firing)`);
    if (kinds.has('resolved')) keys.push(`${GLYPH.resolved} resolved`);
    if (kinds.has('acknowledged')) keys.push(`${GLYPH.acknowledged} acknowledged`);
    if (kinds.has('config')) keys.push(`${GLYPH.config} config change (dotted)`);
    if (kinds.has('release')) keys.push(`${GLYPH.release} release (solid line)`);
    noteParts.push(`marks: ${keys.join(', ')}`);
  }
  if (view && view.events_truncated) noteParts.push(`only the newest ${(view.events || []).length} events are shown`);
  if (view && view.events_error) noteParts.push(view.events_error);
  notes.textContent = noteParts.join(' · ');

  let plot = null;
  let ro = null;
  let destroyed = false;
  let clusters = []; // [{x, marks, button}]
  let shown = null; // the cluster whose detail is open
  let pinned = false; // opened by a click or tap: stays until closed

  const showDetail = (c, pin) => {
    if (!c || destroyed) return;
    if (pinned && !pin && shown !== c) return;
    if (pin) pinned = true;
    shown = c;
    keep.open = { t: c.marks[0].t, pinned };
    for (const x of clusters) {
      x.button.setAttribute('aria-expanded', x === c ? 'true' : 'false');
      x.button.classList.toggle('on', x === c);
    }
    const close = h('button', { type: 'button', class: 'ev-close', 'aria-label': 'Close the event details' }, '×');
    close.addEventListener('click', () => hideDetail(true));
    replace(detail, close, h('ul', { class: 'ev-list' }, c.marks.map((m) => eventDetail(m, step, runbook))));
    detail.hidden = false;
    fig.dataset.eventShown = String(c.marks[0].t);
  };
  const hideDetail = (force) => {
    if (destroyed || (pinned && !force)) return;
    delete keep.open;
    pinned = false;
    shown = null;
    detail.hidden = true;
    replace(detail);
    delete fig.dataset.eventShown;
    for (const x of clusters) {
      x.button.setAttribute('aria-expanded', 'false');
      x.button.classList.remove('on');
    }
  };

  // placeMarks lays the event buttons out under the plot, one per group of
  // marks closer than 24 px (a year of events stays readable).
  const placeMarks = (u) => {
    const open = shown ? { t: shown.marks[0].t, pinned } : keep.open; // kept across a resize or a redraw
    clusters = [];
    replace(strip);
    strip.hidden = ev.marks.length === 0;
    if (!ev.marks.length) return;
    const left = u.bbox.left / devicePixelRatio;
    strip.style.setProperty('margin-left', left + 'px');
    strip.style.setProperty('width', u.bbox.width / devicePixelRatio + 'px');
    for (const m of ev.marks) {
      if (m.t < from || m.t > to) continue;
      const x = u.valToPos(m.t, 'x');
      const last = clusters[clusters.length - 1];
      if (last && x - last.x < 24) last.marks.push(m);
      else clusters.push({ x, marks: [m] });
    }
    for (const c of clusters) {
      const kinds = ORDER.filter((k) => c.marks.some((m) => m.kind === k));
      const sev = c.marks.find((m) => m.span && m.span.level === 'critical') ? 'critical' : c.marks.find((m) => m.span) ? 'warning' : kinds[0];
      const label = c.marks.length === 1 ? eventText(c.marks[0], step) : `${c.marks.length} events: ` + c.marks.map((m) => eventText(m, step)).join('; ');
      const b = h('button', {
        type: 'button', class: 'ev-mark ' + sev, 'aria-label': label, 'aria-expanded': 'false', title: label,
        dataset: { kinds: kinds.join(' '), t: String(c.marks[0].t) },
        style: { left: c.x + 'px' },
      }, GLYPH[kinds[0]], c.marks.length > 1 ? h('span', { class: 'ev-count' }, String(c.marks.length)) : null);
      b.addEventListener('mouseenter', () => showDetail(c, false));
      b.addEventListener('focus', () => showDetail(c, false));
      b.addEventListener('click', () => (pinned && shown === c ? hideDetail(true) : showDetail(c, true)));
      b.addEventListener('mouseleave', () => hideDetail(false));
      b.addEventListener('blur', () => hideDetail(false));
      c.button = b;
      strip.append(b);
    }
    if (open) {
      const c = clusters.find((x) => x.marks.some((m) => m.t === open.t));
      pinned = false;
      shown = null;
      if (c) showDetail(c, open.pinned);
      else delete keep.open;
    }
  };

  loadUPlot().then((uPlot) => {
    if (destroyed) return;
    const colour = (i) => cssVar(fig, PALETTE[i % PALETTE.length], '#2563eb');
    const warnC = cssVar(fig, '--pg-warn', '#a16207');
    const critC = cssVar(fig, '--pg-crit', '#b91c1c');
    const warnBg = cssVar(fig, '--pg-warn-bg', '#fef3c7');
    const critBg = cssVar(fig, '--pg-crit-bg', '#fee2e2');
    const cfgC = cssVar(fig, '--pg-accent', '#0f766e');
    const relC = cssVar(fig, '--pg-s3', '#059669');
    const axisC = cssVar(fig, '--pg-muted', '#5b6572');
    const gridC = cssVar(fig, '--pg-line', '#e2e6eb');
    const sinceC = cssVar(fig, '--pg-off', '#6b7280');
    const width = Math.max(240, plotBox.clientWidth || 420);
    const span = to - from;
    const opts = {
      width,
      height: 170,
      scales: { x: { time: true, range: [from, to] }, y: { range: [0, top] } },
      axes: [
        { stroke: axisC, grid: { stroke: gridC, width: 1 }, ticks: { stroke: gridC }, values: timeTicks(span, fig), font: '11px system-ui, sans-serif', size: span >= DAY - 60 ? 44 : 30, space: span > 2 * DAY ? 56 : 50 },
        { stroke: axisC, grid: { stroke: gridC, width: 1 }, ticks: { stroke: gridC }, values: (u, ticks) => (axisFmt ? axisFmt(ticks) : ticks.map(fmt)), font: '11px system-ui, sans-serif', size: 58 },
      ],
      series: [
        // Off the graph the legend shows the latest point (and says so);
        // on it, the point under the cursor.
        { label: 'time', value: (u, v) => (v === null ? '–' : (u.cursor.idx == null ? `latest ${fmtStep(step)} point, ` : '') + fmtWhen(v, step)) },
        ...series.map((sr, i) => ({
          label: sr.label,
          stroke: colour(i),
          width: 1.8,
          spanGaps: false,
          points: { show: (u, si, i0, i1) => i1 - i0 < 40, size: 4 },
          value: (u, v) => (v === null ? '–' : fmt(v)),
        })),
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      hooks: {
        setCursor: [(u) => {
          if (u.cursor.idx == null && lastIdx !== null) u.setLegend({ idx: lastIdx });
          // On the graph, an event mark within 8 px of the cursor shows its details.
          if (!clusters.length) return;
          const x = u.cursor.left;
          if (x == null || x < 0) return hideDetail(false);
          let best = null;
          for (const c of clusters) if (Math.abs(c.x - x) <= 8 && (!best || Math.abs(c.x - x) < Math.abs(best.x - x))) best = c;
          if (best) showDetail(best, false);
          else hideDetail(false);
        }],
        setSize: [(u) => placeMarks(u)],
        drawClear: [(u) => {
          // Alert spans under the series: a tinted band while firing,
          // with a solid bar along the top in the alert's level colour.
          const ctx = u.ctx;
          const { top: ptop, height: ph } = u.bbox;
          ctx.save();
          for (const sp of ev.spans) {
            const x0 = Math.round(u.valToPos(Math.max(sp.start, from), 'x', true));
            const x1 = Math.round(u.valToPos(Math.min(sp.end, to), 'x', true));
            const w = Math.max(2 * devicePixelRatio, x1 - x0);
            const crit = sp.level === 'critical';
            ctx.globalAlpha = 0.55;
            ctx.fillStyle = crit ? critBg : warnBg;
            ctx.fillRect(x0, ptop, w, ph);
            ctx.globalAlpha = 1;
            ctx.fillStyle = crit ? critC : warnC;
            ctx.fillRect(x0, ptop, w, 3 * devicePixelRatio);
          }
          ctx.restore();
        }],
        draw: [(u) => {
          const ctx = u.ctx;
          const { left, top: ptop, width: pw, height: ph } = u.bbox;
          ctx.save();
          ctx.lineWidth = 1.2 * devicePixelRatio;
          for (const t of thr) {
            if (t.value > top) continue;
            const y = Math.round(u.valToPos(t.value, 'y', true));
            ctx.strokeStyle = t.level === 'critical' ? critC : warnC;
            ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + pw, y);
            ctx.stroke();
          }
          // Configuration changes: dotted vertical lines.
          ctx.strokeStyle = cfgC;
          ctx.setLineDash([1.5 * devicePixelRatio, 2.5 * devicePixelRatio]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          for (const m of ev.marks) {
            if (m.kind !== 'config' || m.t < from || m.t > to) continue;
            const x = Math.round(u.valToPos(m.t, 'x', true));
            ctx.beginPath();
            ctx.moveTo(x, ptop);
            ctx.lineTo(x, ptop + ph);
            ctx.stroke();
          }
          // Releases: solid vertical lines.
          ctx.strokeStyle = relC;
          ctx.setLineDash([]);
          for (const m of ev.marks) {
            if (m.kind !== 'release' || m.t < from || m.t > to) continue;
            const x = Math.round(u.valToPos(m.t, 'x', true));
            ctx.beginPath();
            ctx.moveTo(x, ptop);
            ctx.lineTo(x, ptop + ph);
            ctx.stroke();
          }
          ctx.lineWidth = 1.2 * devicePixelRatio;
          if (firstData !== null && firstData > from + 2 * step) {
            const x = Math.round(u.valToPos(firstData, 'x', true));
            ctx.strokeStyle = sinceC;
            ctx.setLineDash([2 * devicePixelRatio, 3 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(x, ptop);
            ctx.lineTo(x, ptop + ph);
            ctx.stroke();
            ctx.setLineDash([]);
            ctx.fillStyle = sinceC;
            ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
            const d = new Date(firstData * 1000);
            const label = 'data since ' + (span > DAY ? monthDay(d) + ' ' : '') + hhmm(d);
            const tw = ctx.measureText(label).width;
            ctx.textAlign = x - left > tw + 8 ? 'right' : 'left';
            ctx.fillText(label, x + (ctx.textAlign === 'right' ? -4 : 4) * devicePixelRatio, ptop + 14 * devicePixelRatio);
          }
          ctx.restore();
        }],
      },
    };
    plot = new uPlot(opts, [times, ...cols], plotBox);
    placeMarks(plot);
    if (lastIdx !== null) plot.setLegend({ idx: lastIdx });
    plot.root.setAttribute('role', 'img');
    plot.root.setAttribute('aria-label', `${title}, ${winText}: ${series.map((sr, i) => `${sr.label} latest ${lastOf(cols[i])}`).join(', ')}` +
      (ev.marks.length ? `; ${ev.spans.length} alerts and ${ev.marks.filter((m) => m.kind === 'config').length} configuration changes, listed under the graph` : ''));
    fig.dataset.ready = '1';
    if (window.ResizeObserver) {
      ro = new ResizeObserver(() => {
        const w = Math.max(240, plotBox.clientWidth);
        if (plot && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 170 });
      });
      ro.observe(plotBox);
    }
    function lastOf(col) {
      for (let j = col.length - 1; j >= 0; j--) if (col[j] !== null) return fmt(col[j]);
      return 'not measured';
    }
  }, (e) => {
    plotBox.textContent = e.message;
  });

  return {
    fig,
    destroy() {
      destroyed = true;
      if (ro) ro.disconnect();
      if (plot) plot.destroy();
      plot = null;
    },
  };
}

export function fmtStep(sec) {
  if (sec < 60) return sec + ' s';
  if (sec < 3600) return Math.round(sec / 60) + ' min';
  if (sec < DAY) return Math.round(sec / 3600) + ' h';
  return Math.round(sec / DAY) + ' d';
}
