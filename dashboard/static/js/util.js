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

// seconds: 0.0042 → "4.2 ms", 1.5 → "1.50 s".
export function fmtSeconds(v) {
  if (!isNum(v)) return '–';
  if (v < 0.001) return (v * 1e6).toFixed(0) + ' µs';
  if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + ' ms';
  if (v < 100) return v.toFixed(2) + ' s';
  return v.toFixed(0) + ' s';
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
    default: return 'off';
  }
}

// levelOf places v against a warning and a critical threshold.
export function levelOf(v, warn, crit) {
  if (!isNum(v)) return 'unknown';
  if (isNum(crit) && v >= crit) return 'critical';
  if (isNum(warn) && v >= warn) return 'warning';
  return 'ok';
}

export function pill(level, label) {
  return h('span', { class: 'pill ' + levelClass(level) }, label ?? level);
}

export function humanize(name) {
  return String(name).replace(/^probe:/, '').replace(/_/g, ' ');
}
