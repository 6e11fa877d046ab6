// Page bootstrap: mounts the widgets named by data-widget attributes, shows
// the live connection state, and runs the login form on the login page.

import { mount } from './widgets.js';
import { subscribe, postJSON, PREFIX } from './live.js';
import { replace, fmtClock } from './util.js';

const page = document.body.dataset.page;

if (page === 'login') {
  login();
} else if (page !== 'notfound') {
  dashboard();
}

function dashboard() {
  for (const el of document.querySelectorAll('[data-widget]')) {
    mount(el.dataset.widget, el, { compact: el.dataset.compact === '1', charts: el.dataset.charts });
  }
  const conn = document.getElementById('conn');
  subscribe((st) => {
    if (!conn) return;
    conn.className = 'conn ' + (st.connected ? 'on' : 'off');
    conn.dataset.tickTime = st.tickTime || '';
    replace(conn, st.connected ? (st.tickTime ? `live · ${fmtClock(st.tickTime)}` : 'live') : 'reconnecting…');
  });
  const logout = document.getElementById('logout');
  if (logout) {
    logout.hidden = false;
    logout.addEventListener('click', async () => {
      try {
        await postJSON(PREFIX + 'logout', {});
      } finally {
        location.assign(PREFIX + 'login');
      }
    });
  }
}

// safeNext only allows going back to a dashboard page (no open redirect).
function safeNext() {
  const next = new URLSearchParams(location.search).get('next') || '';
  if (next.startsWith(PREFIX) && !next.startsWith('//') && !next.includes('\\') && !/[\u0000-\u001f]/.test(next)) return next;
  return PREFIX;
}

function login() {
  const form = document.getElementById('login-form');
  const input = document.getElementById('token');
  const msg = document.getElementById('login-msg');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(msg, 'signing in…');
    msg.className = 'msg';
    try {
      await postJSON(PREFIX + 'login', { token: input.value });
      input.value = '';
      location.assign(safeNext());
    } catch (e) {
      msg.className = 'msg error';
      replace(msg, e.status === 401 || e.status === undefined ? 'That token is not valid.' : e.message);
    }
  });
}
