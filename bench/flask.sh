#!/usr/bin/env bash
# pulsegate in front of a real Flask app: gunicorn (Debian's, 2 sync
# workers) serving a small JSON route, at fixed everyday rates; direct,
# nginx, the bare httputil.ReverseProxy and pulsegate in interleaved rounds.
# Prints each proxy's CPU per request (process tree, /proc), ÷ the app's own
# CPU per request and ÷ nginx's, context switches per request, and the
# p50/p99 it adds over direct. Results: Markdown on stdout and under
# bench/results/.
#
# Knobs (environment):
#   ROUNDS=2  DURATION=15 (seconds per rate)  RATES=100,300,1000  CONNS=16
#   FLASK_TARGETS=direct,nginx,bare,pulsegate-defaults
#       a Go proxy target may carry settings: pulsegate-defaults/GOMAXPROCS=1/GOGC=100
#   BASE_REF=<git ref>  also build pulsegate at that ref and add the
#       pulsegate-base target (A/B of two versions in one run)
#   FLASK_CPU= FLASK_LOAD_CPU=  taskset CPU lists (default: nothing pinned,
#       as in a pod without a CPU limit)
#   NICE=0
# Quick look: ROUNDS=1 DURATION=5 bench/flask.sh   (~2 minutes)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_tools
install_flask
build_all
TARGETS="${FLASK_TARGETS:-direct,nginx,bare,pulsegate-defaults}"
if [ -n "${BASE_REF:-}" ]; then
	build_base "$BASE_REF"
	TARGETS="$TARGETS,pulsegate-base"
fi
# shellcheck disable=SC2086
TARGETS="$(without "$TARGETS" $PKG_TARGETS_MISSING)"

cd "$REPO"
exec "$BIN/driver" -bin "$BIN" -out "$REPO/bench/results" -mode flask \
	-targets direct -flask-targets "$TARGETS" \
	-rounds "${ROUNDS:-2}" -flask-duration "${DURATION:-15}s" \
	-flask-rates "${RATES:-100,300,1000}" -flask-conns "${CONNS:-16}" \
	-flask-cpu "${FLASK_CPU:-}" -flask-load-cpu "${FLASK_LOAD_CPU:-}" -nice "${NICE:-0}" \
	-db-dsn "" -redis-url ""
