#!/usr/bin/env bash
# pulsegate's test command (README and .ci/run call exactly this):
#
#   bash test/run.sh
#
# Idempotent and safe to re-run from any directory. On a fresh Debian machine it
# installs with apt what the suites need (apt-get update only if something is
# missing), starts MariaDB, PostgreSQL and Redis if they are down, runs go vet,
# then three suites side by side (each line of their output prefixed with its
# name):
#
#   [unit]     go test -race of every package but test/
#   [e2e]      go test -race ./test/ (the end-to-end and fault suite)
#   [browser]  test/browser/run.sh (the dashboard in headless Chromium)
#
# The unit packages need nothing from apt, so they start while apt still
# installs; the e2e suite starts once gunicorn and Flask are in, and Chromium
# is installed meanwhile. One pulsegate binary serves the e2e and browser
# suites. Exits non-zero if apt, a service, go vet or any suite fails (the
# suites all finish first, so one run shows every failure), and prints how
# long each step took.
#
# Environment:
#   PULSEGATE_LONG=1    run the fault cases at the catalogue's full size (slow)
#   PULSEGATE_STRICT=1  fail, instead of skip, tests whose feature is missing
#   PULSEGATE_BIN       test this binary instead of building the repository's
#   GO_TEST_FLAGS       extra flags for both go test runs (e.g. "-run TestCase11 -v")
#   PULSEGATE_SUITES    the suites to run (default "unit e2e browser")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
T0=$SECONDS

log() { printf '==> %s\n' "$*" >&2; }

export PATH="/usr/local/go/bin:$PATH"
ART="$ROOT/test/artifacts"
mkdir -p "$ART"
SUITES=" ${PULSEGATE_SUITES:-unit e2e browser} "
want() { [[ "$SUITES" == *" $1 "* ]]; }
BROWSER=""
if want browser && [ -f "$ROOT/test/browser/run.sh" ]; then
	BROWSER=1
fi

# Background jobs run with job control, each in its own process group, so
# an interrupted run stops them (and their children) too.
set -m
declare -A PID=() START=() TOOK=() RC=()
stop_jobs() {
	for name in "${!PID[@]}"; do
		kill -TERM -- "-${PID[$name]}" 2>/dev/null || true
	done
}
trap 'stop_jobs; exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, its output prefixed with
# [NAME]; when it ends it writes its exit code and end time to .done-NAME.
start() {
	local name=$1
	shift
	rm -f "$ART/.done-$name"
	START[$name]=$(date +%s)
	log "$name: started"
	(
		rc=0
		"$@" 2>&1 | sed -u "s/^/[$name] /" || rc=$?
		echo "$rc $(date +%s)" >"$ART/.done-$name"
		exit "$rc"
	) &
	PID[$name]=$!
}

# ended NAME: true once NAME's job has ended.
ended() {
	[ -e "$ART/.done-$1" ] || ! kill -0 "${PID[$1]}" 2>/dev/null
}

# finish NAME: waits for NAME and records its exit code and duration.
finish() {
	local name=$1 rc end
	wait "${PID[$name]}" 2>/dev/null || true
	unset "PID[$name]"
	if ! read -r rc end <"$ART/.done-$name" 2>/dev/null; then
		rc=1 end=$(date +%s) # killed before it could say
	fi
	RC[$name]=$rc
	TOOK[$name]=$((end - START[$name]))
	if [ "$rc" -eq 0 ]; then
		log "$name: passed (${TOOK[$name]} s)"
	else
		log "$name: FAILED with exit code $rc (${TOOK[$name]} s)"
	fi
	return "$rc"
}

# ---------------------------------------------------------------- packages
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# missing_of CHECKS...: each check is "package:path" (present when the path
# exists) or "package:@command" (present when the command is found); prints
# the packages that are missing.
missing_of() {
	local check pkg what
	for check in "$@"; do
		pkg=${check%%:*}
		what=${check#*:}
		if [[ "$what" == @* ]]; then
			command -v "${what#@}" >/dev/null 2>&1 || printf '%s\n' "$pkg"
		else
			[ -e "$what" ] || printf '%s\n' "$pkg"
		fi
	done
}

# What the Go suites need (the e2e suite's app, private Redis servers, curl),
# and what the browser suite needs (test/browser/run.sh installs the same
# when run alone).
mapfile -t GO_MISSING < <(missing_of \
	python3-flask:/usr/lib/python3/dist-packages/flask/__init__.py \
	gunicorn:/usr/bin/gunicorn \
	python3-pymysql:/usr/lib/python3/dist-packages/pymysql/__init__.py \
	python3-redis:/usr/lib/python3/dist-packages/redis/__init__.py \
	redis-server:/usr/bin/redis-server \
	redis-tools:/usr/bin/redis-cli \
	curl:/usr/bin/curl \
	procps:/usr/bin/pgrep)
BROWSER_MISSING=()
if [ -n "$BROWSER" ]; then
	mapfile -t BROWSER_MISSING < <(missing_of "chromium:${CHROMIUM:-/usr/bin/chromium}" nodejs:@node npm:@npm)
fi

APT_UPDATED=""
apt_install() {
	if [ -z "$APT_UPDATED" ]; then
		$SUDO apt-get update -qq
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# apt runs in the background: the Go suites' packages first, then the
# browser's, in one job (dpkg takes one install at a time). .apt-go-done
# marks the Go suites' packages in.
apt_job() {
	if [ "${#GO_MISSING[@]}" -gt 0 ]; then
		log "installing: ${GO_MISSING[*]}"
		apt_install "${GO_MISSING[@]}"
	fi
	: >"$ART/.apt-go-done"
	if [ "${#BROWSER_MISSING[@]}" -gt 0 ]; then
		log "installing: ${BROWSER_MISSING[*]}"
		apt_install "${BROWSER_MISSING[@]}"
	fi
}
rm -f "$ART/.apt-go-done"
APT=""
if [ "${#GO_MISSING[@]}" -gt 0 ] || [ "${#BROWSER_MISSING[@]}" -gt 0 ]; then
	APT=1
	start apt apt_job
fi

# wait_go_packages returns once the Go suites' packages are installed, and
# stops the run if apt failed before that.
wait_go_packages() {
	[ -n "$APT" ] || return 0
	while [ ! -e "$ART/.apt-go-done" ]; do
		if ended apt; then
			finish apt || true
			log "apt failed: the Go suites cannot run"
			stop_jobs
			exit 1
		fi
		sleep 1
	done
}

# ---------------------------------------------------------------- services
wait_for() { # name, tries, command...
	local name=$1 tries=$2
	shift 2
	for _ in $(seq "$tries"); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
	log "$name did not come up"
	return 1
}

if command -v mariadb-admin >/dev/null 2>&1; then
	if ! mariadb-admin ping >/dev/null 2>&1; then
		log "starting MariaDB"
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
	fi
	wait_for MariaDB 60 mariadb-admin ping
else
	log "MariaDB client not installed: database tests will skip"
fi

if command -v pg_isready >/dev/null 2>&1; then
	if ! pg_isready -q -h 127.0.0.1; then
		log "starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
	fi
	wait_for PostgreSQL 60 pg_isready -q -h 127.0.0.1
else
	log "PostgreSQL client not installed: database tests will skip"
fi

if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/bin/redis-cli ]; then
	wait_go_packages # Redis itself comes from apt
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
	log "starting Redis"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
		--dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis 30 redis-cli -h 127.0.0.1 ping

# ---------------------------------------------------------------- Go
step=$SECONDS
log "go vet ./..."
go vet ./...
TOOK[vet]=$((SECONDS - step))

# One binary for the e2e and browser suites (test/'s TestMain and
# test/browser/run.sh use PULSEGATE_BIN instead of building their own).
if [ -z "${PULSEGATE_BIN:-}" ] && { want e2e || [ -n "$BROWSER" ]; }; then
	step=$SECONDS
	log "go build -o test/artifacts/pulsegate ."
	go build -o "$ART/pulsegate" .
	export PULSEGATE_BIN="$ART/pulsegate"
	TOOK[build]=$((SECONDS - step))
fi

E2E_PKG=github.com/pulsegate/pulsegate/test
# shellcheck disable=SC2086
if want unit; then
	mapfile -t UNIT_PKGS < <(go list ./... | grep -vx "$E2E_PKG")
	# nice: the unit tests only want throughput; the e2e suite compares
	# timings (client-measured latencies within 2 %, aborts pulsegate sees
	# within 100 ms) and gets the CPU first when both want it.
	start unit nice -n 10 go test -race -count=1 -timeout 20m ${GO_TEST_FLAGS:-} "${UNIT_PKGS[@]}"
fi

wait_go_packages
# shellcheck disable=SC2086
if want e2e; then
	# -parallel 4: the suite's parallel tests mostly wait on processes and
	# timers (the default, GOMAXPROCS, is 2 here).
	start e2e go test -race -count=1 -timeout 20m -parallel 4 ${GO_TEST_FLAGS:-} ./test/
fi

# ---------------------------------------------------------------- browser tests
# The dashboard's headless-browser suite; it needs Chromium, which apt may
# still be installing.
browser_job() {
	if [ -n "$APT" ]; then
		while [ ! -e "$ART/.done-apt" ]; do sleep 1; done
	fi
	# Behind the e2e suite for the CPU, ahead of the unit tests.
	nice -n 5 bash "$ROOT/test/browser/run.sh"
}
if [ -n "$BROWSER" ]; then
	start browser browser_job
fi

# ---------------------------------------------------------------- results
# Each suite is reported as soon as it ends.
failed=()
while [ "${#PID[@]}" -gt 0 ]; do
	for name in "${!PID[@]}"; do
		if ended "$name"; then
			finish "$name" || failed+=("$name")
		fi
	done
	[ "${#PID[@]}" -eq 0 ] || sleep 1
done
summary="vet ${TOOK[vet]} s"
[ -z "${TOOK[build]:-}" ] || summary+=", build ${TOOK[build]} s"
for name in apt unit e2e browser; do
	[ -z "${TOOK[$name]:-}" ] || summary+=", $name ${TOOK[$name]} s"
done
log "took $((SECONDS - T0)) s in all ($summary)"
if [ "${#failed[@]}" -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all tests passed"
