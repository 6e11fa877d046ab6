// DOM and formatting helpers. Every piece of data reaches the page through
// textContent or setAttribute on known attributes, never as markup: route
// names, URL paths and alert notes are attacker-controlled.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h builds an element: h('td', {class: 'num'}, 'text', childNode, ...).
// Attributes starting with "on" take functions (event listeners); strings
// are never parsed as markup.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'style') {
      // CSSOM, not the style attribute: allowed under style-src 'self'.
      for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace swaps el's children for the given ones.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

// NB joins a number to its unit so a narrow cell never splits them.
export const NB = '\u00a0';

// seconds: 0.0042 → "4.2 ms", 1.5 → "1.50 s", 0 → "0 ms".
export function fmtSeconds(v) {
  if (!isNum(v)) return '–';
  if (v === 0) return '0' + NB + 'ms';
  if (v < 0.001) return (v * 1e6).toFixed(0) + NB + 'µs';
  if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + NB + 'ms';
  if (v < 100) return v.toFixed(2) + NB + 's';
  return v.toFixed(0) + NB + 's';
}

// secondsAxis labels y-axis ticks in one unit chosen from the largest
// tick, so an axis never reads "0 µs … 400 ms".
export function secondsAxis(ticks) {
  const max = Math.max(0, ...ticks.filter(isNum));
  if (max >= 1) return ticks.map((t) => trim(t, max < 10 ? 1 : 0) + NB + 's');
  if (max >= 0.001 || max === 0) return ticks.map((t) => trim(t * 1000, max < 0.01 ? 1 : 0) + NB + 'ms');
  return ticks.map((t) => trim(t * 1e6, 0) + NB + 'µs');
}

export function pctAxis(ticks) {
  const max = Math.max(0, ...ticks.filter(isNum));
  return ticks.map((t) => trim(t * 100, max < 0.05 ? 1 : 0) + '%');
}

export function numAxis(ticks) {
  const max = Math.max(0, ...ticks.filter(isNum));
  return ticks.map((t) => trim(t, max < 10 ? 1 : 0));
}

function trim(v, digits) {
  return String(Number(v.toFixed(digits)));
}

// fraction: 0.123 → "12.3%".
export function fmtPct(v, digits = 1) {
  if (!isNum(v)) return '–';
  return (v * 100).toFixed(digits) + '%';
}

export function fmtRate(v) {
  if (!isNum(v)) return '–';
  return (v < 10 ? v.toFixed(2) : v.toFixed(1)) + '/s';
}

export function fmtNum(v, digits = 0) {
  if (!isNum(v)) return '–';
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtApdex(v) {
  return isNum(v) ? v.toFixed(2) : '–';
}

// fmtAgo: a past time as "12 s ago".
export function fmtAgo(t, now = Date.now()) {
  const ms = now - new Date(t).getTime();
  if (!Number.isFinite(ms) || !t) return 'never';
  const sec = Math.max(0, Math.round(ms / 1000));
  if (sec < 60) return sec + ' s ago';
  if (sec < 3600) return Math.round(sec / 60) + ' min ago';
  if (sec < 86400) return (sec / 3600).toFixed(1) + ' h ago';
  return (sec / 86400).toFixed(1) + ' d ago';
}

export function fmtClock(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '–';
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

// level maps pulsegate's level words to the three CSS classes.
export function levelClass(level) {
  switch (level) {
    case 'critical': case 'down': return 'crit';
    case 'warning': return 'warn';
    case 'ok': case 'healthy': return 'ok';
    default: return 'off'; // not_measured, disabled, unknown: neutral
  }
}

// levelWord is how a level reads on a badge.
export function levelWord(level) {
  switch (level) {
    case 'not_measured': return 'not measured';
    default: return level;
  }
}

// judgement returns the API's judgement of figure name (see C1 in
// docs/ARCHITECTURE.md: value, unit, level, thresholds, window, why not
// measured), or null when the API has none. Levels and colours come only
// from here: the page never compares a figure with a threshold itself.
export function judgement(st, name) {
  return (st && st.judgements && st.judgements[name]) || null;
}

// measured: the judgement has a value to show.
export function measured(j) {
  return !!j && isNum(j.value) && j.level !== 'not_measured' && j.level !== 'disabled';
}

// fmtUnit formats a value in a judgement's unit.
export function fmtUnit(unit, v) {
  switch (unit) {
    case 'ratio': return fmtPct(v);
    case 'seconds': return fmtSeconds(v);
    case 'per_second': return fmtRate(v);
    case 'score': return fmtApdex(v);
    default: return fmtNum(v, isNum(v) && !Number.isInteger(v) ? 1 : 0);
  }
}

// windowText names a judgement's window for people.
export function windowText(w) {
  if (!w) return '';
  const m = /^(\d+)(s|m|h)$/.exec(w);
  if (m) return `last ${m[1]}${NB}${{ s: 's', m: 'min', h: 'h' }[m[2]]}`;
  return w;
}

export function pill(level, label) {
  return h('span', { class: 'pill ' + levelClass(level) }, label ?? levelWord(level));
}

export function humanize(name) {
  return String(name).replace(/^probe:/, '').replace(/_/g, ' ');
}
