#!/usr/bin/env bash
# pulsegate scale curve: CPU per request and RSS at 1, 64, 512, 4096
# connections and with 10, 1 000, 100 000 distinct URL paths (the bare
# ReverseProxy alongside for reference), then pulsegate's idle CPU with its
# probes and history at default intervals. Same CPU layout as run.sh.
#
# Knobs (environment):
#   ROUNDS=1  DURATION=10  CONNS=64 (for the path-count points)
#   SCALE_CONNS=1,64,512,4096  SCALE_ROUTES=10,1000,100000
#   SCALE_TARGETS=pulsegate,bare   IDLE=60 (seconds; 0 skips)
#   PROXY_CPU=0 LOAD_CPU=1  NICE=0 (see run.sh)  DB_DSN=...  REDIS_URL=...
#   BASE_REF=<git ref>  add pulsegate-base: pulsegate at that ref, shipped defaults
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_tools
build_all
if [ -n "${BASE_REF:-}" ]; then
	build_base "$BASE_REF" # adds the pulsegate-base target (that ref, shipped defaults)
fi

SCALE_TARGETS="${SCALE_TARGETS:-pulsegate,bare}${BASE_REF:+,pulsegate-base}"
[ -x "$BIN/pulsegate" ] || SCALE_TARGETS="$(without "$SCALE_TARGETS" pulsegate pulsegate-nomon)"
if [ -z "$SCALE_TARGETS" ]; then
	echo "bench: nothing to measure (pulsegate does not build yet)" >&2
	exit 1
fi

cd "$REPO"
exec "$BIN/driver" -bin "$BIN" -out "$REPO/bench/results" -mode scale \
	-targets "$SCALE_TARGETS" -scale-targets "$SCALE_TARGETS" \
	-rounds "${ROUNDS:-1}" -duration "${DURATION:-10}s" -conns "${CONNS:-64}" \
	-scale-conns "${SCALE_CONNS:-1,64,512,4096}" -scale-routes "${SCALE_ROUTES:-10,1000,100000}" \
	-idle "${IDLE:-60}s" \
	-proxy-cpu "${PROXY_CPU:-0}" -load-cpu "${LOAD_CPU:-1}" -nice "${NICE:-0}" \
	-db-dsn "${DB_DSN-mysql://root@127.0.0.1:3306/test}" -redis-url "${REDIS_URL-redis://127.0.0.1:6379/0}"
