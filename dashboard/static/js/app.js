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
  const logout = document.getElementById('logout');
  subscribe((st) => {
    // Sign out only means something when a token (hence a session) exists.
    if (logout && st.config && st.config.admin) logout.hidden = !st.config.admin.token;
    if (!conn) return;
    conn.className = 'conn ' + (st.connected ? 'on' : 'off');
    conn.dataset.tickTime = st.tickTime || '';
    replace(conn, st.connected ? (st.tickTime ? `live · ${fmtClock(st.tickTime)}` : 'live') : 'reconnecting…');
  });
  if (logout) {
    logout.addEventListener('click', async () => {
      try {
        await postJSON(PREFIX + 'logout', {});
      } finally {
        location.assign(PREFIX + 'login');
      }
    });
  }
}

// safeNext returns to the page that sent the user here (a dashboard page,
// or the app page holding a widget), but only on this origin: never an
// open redirect.
function safeNext() {
  const next = new URLSearchParams(location.search).get('next') || '';
  if (!next.startsWith('/') || next.startsWith('//') || /[\\\u0000-\u001f]/.test(next)) return PREFIX;
  try {
    const u = new URL(next, location.origin);
    if (u.origin === location.origin) return u.pathname + u.search;
  } catch {
    // fall through
  }
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
