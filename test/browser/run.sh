#!/usr/bin/env bash
# The dashboard's headless-browser tests (test/run.sh calls this).
#
#   bash test/browser/run.sh
#
# Installs what is missing — Debian's chromium (apt) and playwright-core
# (npm, from the committed package-lock.json; it never downloads a
# browser) — builds pulsegate, then runs dashboard.test.mjs with node's
# built-in test runner against `pulsegate demo`. Exits non-zero on failure.
# Screenshots go to test/artifacts/screenshots/.
#
# Environment:
#   PULSEGATE_BIN        use this binary instead of building one
#   CHROMIUM             browser executable (default /usr/bin/chromium)
#   UPDATE_DOCS_SCREENSHOTS=1 also write every page at 1366 and 390 px to docs/img/*.jpg (the
#                             test does it) and the overview to docs/img/dashboard.png (README)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
HERE=$(pwd)
ROOT=$(cd ../.. && pwd)
log() { printf '==> browser: %s\n' "$*" >&2; }
export PATH="/usr/local/go/bin:$PATH"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	pkgs=()
	[ -x "$CHROMIUM" ] || pkgs+=(chromium)
	command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
	command -v npm >/dev/null 2>&1 || pkgs+=(npm)
	log "installing ${pkgs[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	log "node $node_major is too old: playwright-core needs node >= 20"
	exit 1
fi

if [ ! -f node_modules/playwright-core/package.json ] ||
	[ "$(node -p 'require("./node_modules/playwright-core/package.json").version')" != "$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')" ]; then
	log "npm ci (playwright-core; no browser download)"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error ||
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error
fi

mkdir -p "$ROOT/test/artifacts/screenshots"
if [ -z "${PULSEGATE_BIN:-}" ]; then
	log "building pulsegate"
	(cd "$ROOT" && go build -o "$ROOT/test/artifacts/pulsegate-browser" .)
	export PULSEGATE_BIN="$ROOT/test/artifacts/pulsegate-browser"
fi

log "node --test dashboard.test.mjs"
node --test --test-concurrency=1 --test-reporter=spec ${BROWSER_TEST_PATTERN:+--test-name-pattern="$BROWSER_TEST_PATTERN"} "$HERE/dashboard.test.mjs"

if [ "${UPDATE_DOCS_SCREENSHOTS:-}" = 1 ]; then
	mkdir -p "$ROOT/docs/img"
	cp "$ROOT/test/artifacts/screenshots/overview-live.png" "$ROOT/docs/img/dashboard.png"
	log "docs/img/ updated"
fi
