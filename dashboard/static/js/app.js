// Page bootstrap: mounts the widgets named by data-widget attributes, shows
// the live connection state and who is looking, and runs the login page
// (including the one-click #token= sign-in link).

import { mount } from './widgets.js';
import { subscribe, postJSON, getJSON, PREFIX } from './live.js';
import { h, replace, fmtClock } from './util.js';
import { mountSwitch, labelWidgets } from './fleet.js';

const page = document.body.dataset.page;

if (page === 'login') {
  login();
} else if (page === 'route') {
  import('./route.js').then(dashboard); // registers the route page's widgets first
} else if (page !== 'notfound') {
  dashboard();
}

function dashboard() {
  for (const el of document.querySelectorAll('[data-widget]')) {
    mount(el.dataset.widget, el, { compact: el.dataset.compact === '1', charts: el.dataset.charts });
  }
  const conn = document.getElementById('conn');
  const logout = document.getElementById('logout');
  const viewer = document.getElementById('viewer');
  const scopeSwitch = mountSwitch(document.getElementById('scope'));
  subscribe((st) => {
    scopeSwitch();
    labelWidgets(st);
    // Who is looking, and whether they can change anything: from the API.
    const v = st.viewer;
    if (logout) logout.hidden = !(v && v.via === 'session');
    if (viewer && v) {
      viewer.hidden = false;
      viewer.dataset.canWrite = v.can_write ? '1' : '0';
      if (v.can_write) replace(viewer, v.name ? `signed in as ${v.name}` : 'signed in');
      else replace(viewer, 'read-only', !v.token_configured ? ' (no admin token set)' : '');
      viewer.title = v.why_read_only || '';
    }
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

// readFragment takes #token=…&name=… out of the address bar at once: the
// fragment never reaches a server or its logs, and must not stay in the
// history either.
function readFragment() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return { token: frag.get('token') || '', name: frag.get('name') || '' };
}

async function login() {
  const form = document.getElementById('login-form');
  const input = document.getElementById('token');
  const nameInput = document.getElementById('name');
  const msg = document.getElementById('login-msg');
  const notice = document.getElementById('login-notice');
  const fields = document.getElementById('login-fields');
  const frag = readFragment();
  // Nothing is kept in web storage: the browser's own form autofill
  // (autocomplete="name") remembers the name, the link may carry it.
  if (frag.name) nameInput.value = frag.name;
  if (frag.token) input.value = frag.token;

  // Say up front what signing in can do here.
  try {
    const me = await getJSON(PREFIX + 'api/whoami');
    if (!me.token_configured) {
      fields.hidden = true;
      notice.hidden = false;
      notice.className = 'notice';
      replace(notice, 'No admin token is configured, so there is nothing to sign in with. The dashboard is open read-only to this machine (loopback): ',
        h('a', { href: PREFIX }, 'open the dashboard'), '. To acknowledge alerts and change settings, set ',
        h('code', null, 'RESPONSIVENESS_ADMIN_TOKEN'), ' (for example ', h('code', null, 'export RESPONSIVENESS_ADMIN_TOKEN=$(openssl rand -hex 24)'),
        '), restart pulsegate and come back here.');
      return;
    }
    if (me.signed_in && me.can_write) {
      notice.hidden = false;
      replace(notice, `Already signed in${me.name ? ' as ' + me.name : ''}${me.via === 'delegated' ? ' through the app' : ''}. `, h('a', { href: safeNext() }, 'Continue'));
    } else if (me.delegated_auth) {
      notice.hidden = false;
      replace(notice, 'Signed in to the app as an admin? Open the dashboard from there, or sign in here with the token.');
    }
  } catch {
    // the form still works
  }
  if (input.value) {
    (nameInput.value ? form.querySelector('button[type=submit]') : nameInput).focus();
    replace(msg, nameInput.value ? 'Token filled in from the link: press Sign in.' : 'Token filled in from the link: enter your name and press Sign in.');
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(msg, 'signing in…');
    msg.className = 'msg';
    const name = nameInput.value.trim();
    try {
      await postJSON(PREFIX + 'login', { token: input.value, name });
      input.value = '';
      location.assign(safeNext());
    } catch (e) {
      msg.className = 'msg error';
      replace(msg, e.status === 401 || e.status === undefined ? 'That token is not valid.' : e.message);
    }
  });
}
