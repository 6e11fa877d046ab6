#!/usr/bin/env bash
# pulsegate load benchmark: direct, pulsegate (full), pulsegate (monitoring
# off), bare httputil.ReverseProxy, nginx, HAProxy and Caddy against the same
# Go upstream, in interleaved rounds; then the "timing figures agree" check.
#
# CPU layout: the proxy under test and the upstream share core PROXY_CPU (a
# sidecar shares the app's CPU); wrk and the open-loop generator run on
# LOAD_CPU. Results: Markdown on stdout and under bench/results/.
#
# Knobs (environment):
#   ROUNDS=3       interleaved rounds; medians are taken over them
#   DURATION=10    seconds per peak / 16 KiB / open-loop run (low-rate and 512-conn runs take half, ≥ 2 s)
#   TARGETS=...    comma list (default: direct,pulsegate,pulsegate-nomon,bare,nginx,haproxy,caddy)
#   RATE=6000      open-loop rate, req/s;  LOW_RATE=200  single-connection rate
#   CONNS=64       connections of the peak / 16 KiB / open-loop runs
#   PROXY_CPU=0 LOAD_CPU=1
#   NICE=0         e.g. -19 on a machine shared with other work: the processes under
#                  test and the load generators get the CPU first (needs root);
#                  every run reports how much of each core other processes still took
#   DB_DSN=mysql://root@127.0.0.1:3306/test  REDIS_URL=redis://127.0.0.1:6379/0  (pulsegate full's probes)
#   AGREE_RATES=1000,$RATE  open-loop rates of the "timing figures agree" check
#   MODES=compare,agree   add ",profile" for perf CPU profiles of PROFILE_TARGETS
#                         (default pulsegate,bare) under the peak load
#   BASE_REF=<git ref>  add pulsegate-base: pulsegate at that ref, shipped defaults
#                       (an A/B of two versions in the same run)
# Quick look: ROUNDS=1 DURATION=3 bench/run.sh   (~2 minutes; the full run ~15)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_tools
build_all
if [ -n "${BASE_REF:-}" ]; then
	build_base "$BASE_REF" # adds the pulsegate-base target (that ref, shipped defaults)
fi

TARGETS="${TARGETS:-direct,pulsegate,pulsegate-nomon,bare,nginx,haproxy,caddy}${BASE_REF:+,pulsegate-base}"
# shellcheck disable=SC2086
TARGETS="$(without "$TARGETS" $PKG_TARGETS_MISSING)"
[ -x "$BIN/pulsegate" ] || TARGETS="$(without "$TARGETS" pulsegate pulsegate-nomon)"

cd "$REPO"
exec "$BIN/driver" -bin "$BIN" -out "$REPO/bench/results" \
	-mode "${MODES:-compare,agree}" \
	-targets "$TARGETS" \
	-rounds "${ROUNDS:-3}" -duration "${DURATION:-10}s" \
	-rate "${RATE:-6000}" -low-rate "${LOW_RATE:-200}" -conns "${CONNS:-64}" \
	-proxy-cpu "${PROXY_CPU:-0}" -load-cpu "${LOAD_CPU:-1}" -nice "${NICE:-0}" \
	-profile-targets "${PROFILE_TARGETS:-pulsegate,bare}" -agree-rates "${AGREE_RATES:-1000,${RATE:-6000}}" \
	-db-dsn "${DB_DSN-mysql://root@127.0.0.1:3306/test}" -redis-url "${REDIS_URL-redis://127.0.0.1:6379/0}"
