// A small SVG line chart for the trend graphs: time on x, one or more
// series on y, dashed threshold lines, gaps where there was no data. No
// dependencies, no inline styles (colours come from classes in the CSS).

import { h, s, isNum } from './util.js';

const W = 440;
const H = 150;
const PAD = { l: 56, r: 10, t: 8, b: 20 };

// lineChart returns a <figure> drawing view (a history endpoint answer).
//   title      caption
//   series     [{key, label}] keys of view.series
//   fmt        value → label for the y axis and legend
//   thresholds [{value, level: 'warning'|'critical'}]
//   yMax       fixed top of the y axis (e.g. 1 for fractions), else from data
export function lineChart({ title, series, fmt, thresholds = [], yMax, view }) {
  const fig = h('figure', { class: 'chart', dataset: { chart: title } });
  const times = (view && view.time) || [];
  const cols = series.map((sr) => ((view && view.series && view.series[sr.key]) || []));
  let dataMax = 0;
  let any = false;
  for (const col of cols) {
    for (const v of col) {
      if (isNum(v)) {
        any = true;
        dataMax = Math.max(dataMax, v);
      }
    }
  }
  const latest = cols.map((col) => {
    for (let i = col.length - 1; i >= 0; i--) if (isNum(col[i])) return col[i];
    return null;
  });

  // The y axis fits the data; a threshold joins the scale when it is near
  // (otherwise the legend says it is above the graph).
  let top = yMax ?? 0;
  if (!yMax) {
    const firstThr = thresholds.find((t) => isNum(t.value) && t.value > 0);
    top = dataMax > 0 ? dataMax * 1.15 : firstThr ? firstThr.value * 1.2 : 1;
    for (const t of thresholds) if (isNum(t.value) && t.value <= top * 1.6) top = Math.max(top, t.value * 1.1);
  }
  const from = view ? view.from : 0;
  const to = view ? view.to : 1;
  const x = (t) => PAD.l + ((t - from) / Math.max(1, to - from)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (Math.min(v, top) / top) * (H - PAD.t - PAD.b);

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'xMidYMid meet' });
  // grid and y labels
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    const yy = y(v);
    svg.append(s('line', { class: 'grid', x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy }));
    svg.append(s('text', { class: 'axis', x: PAD.l - 6, y: yy + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  // x labels: five clock times
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) * i) / 4;
    const d = new Date(t * 1000);
    const label = d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false });
    svg.append(s('text', { class: 'axis', x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, label));
  }
  // thresholds
  const offScale = [];
  for (const t of thresholds) {
    if (!isNum(t.value)) continue;
    if (t.value > top) {
      offScale.push(t);
      continue;
    }
    svg.append(s('line', { class: 'threshold ' + t.level, x1: PAD.l, x2: W - PAD.r, y1: y(t.value), y2: y(t.value) },
      s('title', null, `${t.level} threshold ${fmt(t.value)}`)));
  }
  // series
  const step = view ? view.step_seconds : 10;
  series.forEach((sr, i) => {
    const col = cols[i];
    let d = '';
    let prevT = null;
    let lastPt = null;
    for (let j = 0; j < times.length; j++) {
      const v = col[j];
      if (!isNum(v)) {
        prevT = null;
        continue;
      }
      const px = x(times[j]).toFixed(1);
      const py = y(v).toFixed(1);
      d += (prevT === null || times[j] - prevT > 2.5 * step ? 'M' : 'L') + px + ' ' + py + ' ';
      prevT = times[j];
      lastPt = [px, py];
    }
    svg.append(s('path', { class: 'line s' + i, d: d.trim(), dataset: { series: sr.key } }));
    if (lastPt) svg.append(s('circle', { class: 'dot s' + i, cx: lastPt[0], cy: lastPt[1], r: 2.5 }));
  });
  if (!any) {
    svg.append(s('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'not measured in this range'));
  }

  const legend = h('ul', { class: 'legend' },
    series.map((sr, i) => h('li', null, h('span', { class: 'swatch s' + i }), sr.label + ' ', h('b', null, latest[i] === null ? '–' : fmt(latest[i])))),
    thresholds.filter((t) => isNum(t.value)).map((t) => h('li', { class: 'thr' },
      h('span', { class: 'swatch threshold ' + t.level }), `${t.level} ${fmt(t.value)}${offScale.includes(t) ? ' (above the graph)' : ''}`)));
  fig.append(h('figcaption', null, title), svg, legend);
  return fig;
}
