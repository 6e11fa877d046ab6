"""Fixture Flask app for pulsegate's end-to-end and fault suite.

Run by Debian's gunicorn 20.1 (python3-flask 2.2):
    gunicorn -k sync -w 4 --keep-alive 2 -b 127.0.0.1:PORT --chdir test/flaskapp app:app

Routes (RELIABILITY.md section 0):
    /ok                      200 "ok"
    /sleep?ms=N              sleeps N ms, then 200 (concurrent /sleeps are counted)
    /internal/concurrency    GET {"current", "max"} of concurrent /sleeps; POST resets max
    /big?mb=N                N MiB streamed in 64 KiB chunks (generator)
    /sse?n=N&interval=S      text/event-stream, one event every S seconds
    /chunked?n=N&interval=S  plain streamed body, one line every S seconds
    /upload                  reads the whole body, returns {"sha256", "length"}
    /hdr                     echoes request headers and remote_addr as JSON
    /status/<n>              answers with status n
    /cookie                  sets two cookies (two Set-Cookie headers)
    /admin/users             the app's own admin page (must never be taken by pulsegate)
    /internal/cleanup        POST: the cleanup hook target; GET: how many calls
    /internal/auth-check     204/401/500/sleep, chosen by ?mode= or the "auth" cookie
    /widget-page             HTML page embedding pulsegate's dashboard widget
    /db                      one pymysql query (FIXTURE_MYSQL_* env), optional
    /session/leak?n=N        creates N TTL-less session:* keys in Redis (FIXTURE_REDIS_URL), optional

Counters (cleanup calls) live in a file named by FIXTURE_STATE_DIR so that
every gunicorn worker sees the same count.
"""

import fcntl
import hashlib
import json
import os
import time
import uuid

from flask import Flask, Response, jsonify, request

app = Flask(__name__)

CHUNK = 64 * 1024
STATE_DIR = os.environ.get("FIXTURE_STATE_DIR", "/tmp")


def _bump(name):
    """Increment a counter shared by all workers; returns the new value."""
    path = os.path.join(STATE_DIR, name + ".count")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        raw = f.read().strip()
        value = int(raw or "0") + 1
        f.seek(0)
        f.truncate()
        f.write(str(value))
        return value


def _read(name):
    path = os.path.join(STATE_DIR, name + ".count")
    try:
        with open(path) as f:
            return int(f.read().strip() or "0")
    except FileNotFoundError:
        return 0


@app.route("/ok", methods=["GET", "POST", "HEAD"])
def ok():
    return "ok\n"


def _concurrency(delta):
    """Track /sleep requests running at once across all workers: (current, max)."""
    path = os.path.join(STATE_DIR, "concurrency")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        parts = (f.read().split() + ["0", "0"])[:2]
        cur, peak = int(parts[0]), int(parts[1])
        if delta == "reset":
            peak = cur
        else:
            cur += delta
            peak = max(peak, cur)
        f.seek(0)
        f.truncate()
        f.write("%d %d" % (cur, peak))
        return cur, peak


@app.route("/sleep")
def sleep():
    ms = float(request.args.get("ms", "0"))
    _concurrency(1)
    try:
        time.sleep(ms / 1000.0)
    finally:
        _concurrency(-1)
    return "slept %g ms\n" % ms


@app.route("/internal/concurrency", methods=["GET", "POST"])
def concurrency():
    """GET: /sleep requests running now and the most at once; POST: reset the peak."""
    cur, peak = _concurrency("reset" if request.method == "POST" else 0)
    return jsonify(current=cur, max=peak)


@app.route("/big")
def big():
    mb = float(request.args.get("mb", "1"))
    total = int(mb * 1024 * 1024)
    block = b"x" * CHUNK

    def gen():
        left = total
        while left > 0:
            n = min(left, CHUNK)
            yield block[:n]
            left -= n

    return Response(gen(), mimetype="application/octet-stream")


@app.route("/sse")
def sse():
    n = int(request.args.get("n", "5"))
    interval = float(request.args.get("interval", "1"))

    def gen():
        for i in range(n):
            time.sleep(interval)
            yield "id: %d\ndata: event %d at %.3f\n\n" % (i, i, time.time())

    return Response(gen(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache"})


@app.route("/chunked")
def chunked():
    n = int(request.args.get("n", "5"))
    interval = float(request.args.get("interval", "1"))

    def gen():
        for i in range(n):
            time.sleep(interval)
            yield "line %d at %.3f\n" % (i, time.time())

    return Response(gen(), mimetype="text/plain")


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    h = hashlib.sha256()
    length = 0
    stream = request.stream
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        length += len(chunk)
    return jsonify(sha256=h.hexdigest(), length=length)


@app.route("/hdr", methods=["GET", "POST"])
def hdr():
    headers = {}
    for k, v in request.headers.items():
        # Several fields of one name are joined, as the WSGI environ does.
        headers[k] = v
    return jsonify(headers=headers, remote_addr=request.remote_addr,
                   method=request.method, path=request.path)


@app.route("/status/<int:n>", methods=["GET", "POST"])
def status(n):
    body = {"status": n}
    return Response(json.dumps(body) + "\n", status=n, mimetype="application/json")


@app.route("/cookie")
def cookie():
    resp = Response("two cookies\n")
    resp.set_cookie("a", "1", path="/")
    resp.set_cookie("b", "2", path="/", httponly=True)
    return resp


@app.route("/admin/users")
def admin_users():
    return "<html><body><h1>the app's own admin users page</h1></body></html>\n"


@app.route("/internal/cleanup", methods=["GET", "POST"])
def cleanup():
    if request.method == "POST":
        n = _bump("cleanup")
        return jsonify(cleaned=True, calls=n)
    return jsonify(calls=_read("cleanup"))


@app.route("/internal/auth-check", methods=["GET", "POST", "HEAD"])
def auth_check():
    mode = request.args.get("mode") or request.cookies.get("auth") or "401"
    _bump("auth-check")
    if mode == "204":
        return "", 204
    if mode == "500":
        return "broken\n", 500
    if mode.startswith("sleep"):
        secs = float(mode[len("sleep"):] or "10")
        time.sleep(secs)
        return "", 204
    return "denied\n", 401


@app.route("/widget-page")
def widget_page():
    return (
        "<!doctype html><html><head><title>app page with widget</title></head><body>"
        "<h1>app page</h1>"
        '<script src="/admin/responsiveness/widget.js"></script>'
        '<pulsegate-widget kind="resources"></pulsegate-widget>'
        "</body></html>\n"
    )


@app.route("/db")
def db():
    import pymysql  # optional dependency, only this route needs it

    conn = pymysql.connect(
        host=os.environ.get("FIXTURE_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("FIXTURE_MYSQL_PORT", "3306")),
        user=os.environ.get("FIXTURE_MYSQL_USER", "root"),
        password=os.environ.get("FIXTURE_MYSQL_PASSWORD", ""),
        database=os.environ.get("FIXTURE_MYSQL_DB", "test"),
        connect_timeout=5,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            (value,) = cur.fetchone()
    finally:
        conn.close()
    return jsonify(value=value)


@app.route("/session/leak", methods=["GET", "POST"])
def session_leak():
    import redis  # optional dependency, only this route needs it

    n = int(request.args.get("n", "1"))
    r = redis.Redis.from_url(os.environ.get("FIXTURE_REDIS_URL", "redis://127.0.0.1:6379/15"))
    pipe = r.pipeline()
    for _ in range(n):
        pipe.set("session:" + uuid.uuid4().hex, "leaked")
    pipe.execute()
    return jsonify(created=n)
