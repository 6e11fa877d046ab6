#!/usr/bin/env bash
# pulsegate under a hard memory limit: a memory cgroup of LIMIT_MIB (64)
# holding pulsegate alone (shipped defaults), CONNS (4096) keep-alive
# connections from wrk for DURATION seconds against the benchmark's Go
# upstream, then: is pulsegate still alive, did the kernel OOM-kill in the
# cgroup, peak cgroup memory, requests served.
#
# Needs a writable cgroup v1 memory hierarchy or cgroup v2 with the memory
# controller (root); the child cgroup is made under this shell's own cgroup
# and removed afterwards. Where none can be made, the script says so and
# exits 2: run it on a VM or in a privileged container, or see
# docs/performance.md for the manual run.
#
# Knobs: LIMIT_MIB=64 CONNS=4096 DURATION=15 ENV="RESPONSIVENESS_...=... GOGC=..."
#        BIN=bench/results/bin/pulsegate (built when missing)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIMIT_MIB="${LIMIT_MIB:-64}" CONNS="${CONNS:-4096}" DURATION="${DURATION:-15}"
command -v wrk >/dev/null || install_tools
cd "$REPO"
[ -x "$BIN/upstream" ] || go build -trimpath -o "$BIN/upstream" ./bench/upstream
PG="${BIN_PULSEGATE:-$BIN/pulsegate}"
[ -x "$PG" ] || go build -trimpath -o "$PG" .

own=$(awk -F: '$2=="memory" {print $3}' /proc/self/cgroup)
if [ -n "$own" ] && [ -w "/sys/fs/cgroup/memory$own" ]; then
	CG="/sys/fs/cgroup/memory$own/pulsegate-memlimit-$$"
	mkdir "$CG"
	echo $((LIMIT_MIB << 20)) >"$CG/memory.limit_in_bytes"
	echo $((LIMIT_MIB << 20)) >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
	V=1
elif own2=$(awk -F: '$1=="0" {print $3}' /proc/self/cgroup) && [ -w "/sys/fs/cgroup$own2" ] && grep -qw memory "/sys/fs/cgroup$own2/cgroup.controllers" 2>/dev/null; then
	CG="/sys/fs/cgroup$own2/pulsegate-memlimit-$$"
	mkdir "$CG"
	echo $((LIMIT_MIB << 20)) >"$CG/memory.max"
	echo 0 >"$CG/memory.swap.max" 2>/dev/null || true
	V=2
else
	echo "memlimit: no writable memory cgroup here; see docs/performance.md for the manual run" >&2
	exit 2
fi
WORK=$(mktemp -d)
cleanup() {
	set +e
	[ -n "${PGPID:-}" ] && kill "$PGPID" 2>/dev/null
	[ -n "${UPPID:-}" ] && kill "$UPPID" 2>/dev/null
	wait 2>/dev/null
	# The cgroup can be removed once its last process is gone.
	for _ in $(seq 20); do rmdir "$CG" 2>/dev/null && break; sleep 0.25; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=127.0.0.1:$(free_port) LISTEN=127.0.0.1:$(free_port) ADMIN=127.0.0.1:$(free_port)
"$BIN/upstream" -addr "$UP" >"$WORK/upstream.log" 2>&1 &
UPPID=$!
ulimit -n 65536 2>/dev/null || true
# The subshell moves itself into the cgroup, then becomes pulsegate.
(
	echo $BASHPID >"$CG/cgroup.procs"
	# shellcheck disable=SC2086
	exec env RESPONSIVENESS_UPSTREAM_URL="http://$UP" RESPONSIVENESS_LISTEN_ADDR="$LISTEN" \
		RESPONSIVENESS_ADMIN_ADDR="$ADMIN" RESPONSIVENESS_DATA_DIR="$WORK/data" ${ENV:-} "$PG" serve
) >"$WORK/pulsegate.log" 2>&1 &
PGPID=$!
for _ in $(seq 50); do curl -fs "http://$LISTEN/" >/dev/null 2>&1 && break; sleep 0.2; done
grep -o '"msg":"runtime_budget".*' "$WORK/pulsegate.log" | head -1 || true
wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s "http://$LISTEN/" >"$WORK/wrk.txt" 2>&1
sleep 1
alive=no
kill -0 "$PGPID" 2>/dev/null && curl -fs "http://$LISTEN/" >/dev/null && alive=yes
if [ "$V" = 1 ]; then
	peak=$(($(cat "$CG/memory.max_usage_in_bytes") >> 20))
	kills=$(awk '/oom_kill /{print $2}' "$CG/memory.oom_control")
	failcnt=$(cat "$CG/memory.failcnt")
else
	peak=$(($(cat "$CG/memory.peak" 2>/dev/null || echo 0) >> 20))
	kills=$(awk '/oom_kill /{print $2}' "$CG/memory.events")
	failcnt=$(awk '/^max /{print $2}' "$CG/memory.events")
fi
echo "limit ${LIMIT_MIB} MiB (cgroup v$V), $CONNS connections for ${DURATION}s: alive after the run: $alive; OOM kills: ${kills:-?}; peak cgroup memory ${peak} MiB; times at the limit: $failcnt"
grep -E "Requests/sec|requests in|Socket errors|Non-2xx" "$WORK/wrk.txt" | sed 's/^/  wrk: /'
[ "$alive" = yes ] && [ "${kills:-0}" = 0 ]
