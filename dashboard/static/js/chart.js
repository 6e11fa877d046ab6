// Trend graphs drawn by uPlot (vendored under static/vendor/uplot, see
// its VERSION file): time on x with dates once a graph spans days, one or
// more series on y with units, dashed threshold lines, a "data since"
// marker where the history starts, and a hover readout of every series
// (uPlot's live legend). uPlot styles its elements through the CSSOM,
// which the dashboard's Content-Security-Policy allows.

import { h, isNum, fmtClock } from './util.js';

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

// timeTicks labels the x axis: clock times, with the date on the first
// tick and wherever the day changes (so a 24 h graph never shows the same
// label at both ends).
function timeTicks(span, fig) {
  return (u, ticks) => {
    let prevDay = null;
    const labels = ticks.map((t, i) => {
      const d = new Date(t * 1000);
      const day = d.toDateString();
      const label = hhmm(d);
      const withDate = span >= DAY - 60 && (i === 0 || day !== prevDay);
      prevDay = day;
      return withDate ? monthDay(d) + '\n' + label : label;
    });
    fig.dataset.xAxis = labels.join(' | ').replace(/\n/g, ' '); // the canvas's labels, for tests and tools
    return labels;
  };
}

// cssVar reads a colour from the stylesheet (canvas cannot use var()).
function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

const PALETTE = ['--pg-s0', '--pg-s1', '--pg-s2', '--pg-s3'];

// lineChart draws view (a history answer) into a new <figure> and returns
// {fig, destroy}. Options:
//   title      caption (the window is added from view.step_seconds)
//   series     [{key, label}] keys of view.series
//   fmt        value → text (legend, hover readout, threshold labels)
//   axisFmt    (ticks) → labels for the y axis (one unit for all ticks)
//   thresholds [{value, level: 'warning'|'critical'}]
//   yMax       fixed top of the y axis (e.g. 1 for ratios), else from data
//   why        when no series has data: why not (e.g. "set RESPONSIVENESS_DB_DSN …")
export function lineChart({ title, series, fmt, axisFmt, thresholds = [], yMax, view, why }) {
  const step = (view && view.step_seconds) || 10;
  const fig = h('figure', { class: 'chart', dataset: { chart: title } });
  const plotBox = h('div', { class: 'plot' });
  const notes = h('p', { class: 'chart-notes small muted' });
  fig.append(h('figcaption', null, title, h('span', { class: 'muted small' }, ` · each point: a ${fmtStep(step)} step`)), plotBox, notes);

  const times = (view && view.time) || [];
  const cols = series.map((sr) => ((view && view.series && view.series[sr.key]) || []).map((v) => (isNum(v) ? v : null)));
  let dataMax = 0;
  let firstData = null;
  for (const col of cols) {
    col.forEach((v, j) => {
      if (v === null) return;
      dataMax = Math.max(dataMax, v);
      if (firstData === null || times[j] < firstData) firstData = times[j];
    });
  }
  const from = view ? view.from : 0;
  const to = view ? view.to : 1;
  let lastIdx = null; // the latest point with any value
  for (let j = times.length - 1; j >= 0 && lastIdx === null; j--) if (cols.some((c) => c[j] !== null)) lastIdx = j;

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
    noteParts.push(why || 'no data in this range yet: pulsegate records a point every ' + fmtStep((view && view.resolution_seconds) || 10) + ' while it runs');
    fig.dataset.empty = '1';
  } else if (firstData > from + 2 * step) {
    noteParts.push('data since ' + fmtClock(firstData * 1000) + ' (pulsegate records history only while it runs; it is kept across restarts in data_dir)');
  }
  if (thr.length) {
    noteParts.push('dashed: ' + thr.map((t) => `${t.level} ${fmt(t.value)}${above.includes(t) ? ' (above the graph)' : ''}`).join(', '));
  }
  notes.textContent = noteParts.join(' · ');

  let plot = null;
  let ro = null;
  let destroyed = false;
  loadUPlot().then((uPlot) => {
    if (destroyed) return;
    const colour = (i) => cssVar(fig, PALETTE[i % PALETTE.length], '#2563eb');
    const warnC = cssVar(fig, '--pg-warn', '#a16207');
    const critC = cssVar(fig, '--pg-crit', '#b91c1c');
    const axisC = cssVar(fig, '--pg-muted', '#5b6572');
    const gridC = cssVar(fig, '--pg-line', '#e2e6eb');
    const sinceC = cssVar(fig, '--pg-off', '#6b7280');
    const width = Math.max(240, plotBox.clientWidth || 420);
    const opts = {
      width,
      height: 170,
      scales: { x: { time: true, range: [from, to] }, y: { range: [0, top] } },
      axes: [
        { stroke: axisC, grid: { stroke: gridC, width: 1 }, ticks: { stroke: gridC }, values: timeTicks(to - from, fig), font: '11px system-ui, sans-serif', size: to - from >= DAY - 60 ? 44 : 30 },
        { stroke: axisC, grid: { stroke: gridC, width: 1 }, ticks: { stroke: gridC }, values: (u, ticks) => (axisFmt ? axisFmt(ticks) : ticks.map(fmt)), font: '11px system-ui, sans-serif', size: 58 },
      ],
      series: [
        // Off the graph the legend shows the latest point (and says so);
        // on it, the point under the cursor.
        { label: 'time', value: (u, v) => (v === null ? '–' : (u.cursor.idx == null ? `latest ${fmtStep(step)} point, ` : '') + new Date(v * 1000).toLocaleString('en-GB', { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })) },
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
            const label = 'data since ' + hhmm(new Date(firstData * 1000));
            const tw = ctx.measureText(label).width;
            ctx.textAlign = x - left > tw + 8 ? 'right' : 'left';
            ctx.fillText(label, x + (ctx.textAlign === 'right' ? -4 : 4) * devicePixelRatio, ptop + 12 * devicePixelRatio);
          }
          ctx.restore();
        }],
      },
    };
    plot = new uPlot(opts, [times, ...cols], plotBox);
    if (lastIdx !== null) plot.setLegend({ idx: lastIdx });
    plot.root.setAttribute('role', 'img');
    plot.root.setAttribute('aria-label', `${title}: ${series.map((sr, i) => `${sr.label} latest ${lastOf(cols[i])}`).join(', ')}`);
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

function fmtStep(sec) {
  if (sec < 60) return sec + ' s';
  if (sec < 3600) return Math.round(sec / 60) + ' min';
  return Math.round(sec / 3600) + ' h';
}
