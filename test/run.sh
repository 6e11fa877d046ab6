#!/usr/bin/env bash
# pulsegate's test command (README and .ci/run call exactly this):
#
#   bash test/run.sh
#
# Idempotent and safe to re-run from any directory. On a fresh Debian machine it
# installs with apt what the suites need (apt-get update only if something is
# missing), starts MariaDB, PostgreSQL and Redis if they are down, then runs
# go vet and the race-enabled tests of every package, including the end-to-end
# and fault suite in test/. Exits non-zero on the first failing step.
#
# Environment:
#   PULSEGATE_LONG=1    run the fault cases at the catalogue's full size (slow)
#   PULSEGATE_STRICT=1  fail, instead of skip, tests whose feature is missing
#   GO_TEST_FLAGS       extra flags for go test (e.g. "-run TestCase11 -v")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

export PATH="/usr/local/go/bin:$PATH"

# ---------------------------------------------------------------- packages
# Debian packages and the command (or file) that shows each is present.
declare -A NEED=(
	[python3-flask]="/usr/lib/python3/dist-packages/flask/__init__.py"
	[gunicorn]="/usr/bin/gunicorn"
	[python3-pymysql]="/usr/lib/python3/dist-packages/pymysql/__init__.py"
	[python3-redis]="/usr/lib/python3/dist-packages/redis/__init__.py"
	[redis-server]="/usr/bin/redis-server"
	[redis-tools]="/usr/bin/redis-cli"
	[curl]="/usr/bin/curl"
	[procps]="/usr/bin/pgrep"
)
missing=()
for pkg in "${!NEED[@]}"; do
	[ -e "${NEED[$pkg]}" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing: ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
	log "starting Redis"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
		--dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis 30 redis-cli -h 127.0.0.1 ping

# ---------------------------------------------------------------- Go
log "go vet ./..."
go vet ./...

log "go test -race ./..."
# shellcheck disable=SC2086
go test -race -count=1 -timeout 20m ${GO_TEST_FLAGS:-} ./...

# ---------------------------------------------------------------- browser tests
# The dashboard's headless-browser suite adds itself here.
if [ -x "$ROOT/test/browser/run.sh" ] || [ -f "$ROOT/test/browser/run.sh" ]; then
	log "browser tests"
	bash "$ROOT/test/browser/run.sh"
fi

log "all tests passed"
