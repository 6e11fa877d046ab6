# Shared by bench/run.sh and bench/scale.sh: install the load tools and
# reverse proxies from Debian when missing, and build the Go pieces with the
# Go toolchain on PATH (pulsegate and the bare-proxy baseline from the same Go).
#
# Sets: REPO, BIN, PKG_TARGETS_MISSING (targets skipped for lack of a package).

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BENCH_BIN:-$REPO/bench/results/bin}" # bench/results/ is gitignored
mkdir -p "$BIN"

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		echo "bench: need root (or sudo) to run: $*" >&2; return 1; fi
}

# install_tools installs wrk (required) and nginx, haproxy, caddy (each
# optional: a target whose package is unavailable is skipped with a note).
install_tools() {
	local missing=() pkg updated=0
	for pkg in wrk nginx haproxy caddy; do
		command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	PKG_TARGETS_MISSING=""
	[ ${#missing[@]} -eq 0 ] && return 0
	if ! command -v apt-get >/dev/null; then
		echo "bench: no apt-get here; missing: ${missing[*]}" >&2
	else
		as_root apt-get update -qq && updated=1
		local installable=()
		for pkg in "${missing[@]}"; do
			# Not `apt-cache policy | grep -q`: under pipefail grep's early exit
			# fails the pipeline (SIGPIPE) and every package looked missing.
			if [ "$updated" = 1 ] && [[ "$(apt-cache policy "$pkg" 2>/dev/null)" == *"Candidate: "[0-9]* ]]; then
				installable+=("$pkg")
			else
				echo "bench: note: Debian package '$pkg' is not available here; its target is skipped" >&2
			fi
		done
		if [ ${#installable[@]} -gt 0 ]; then
			echo "bench: installing ${installable[*]} from apt" >&2
			# Debian starts nginx/haproxy services on install where systemd runs;
			# the benchmark uses its own configs on free loopback ports.
			as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${installable[@]}" >/dev/null
		fi
	fi
	for pkg in nginx haproxy caddy; do
		command -v "$pkg" >/dev/null 2>&1 || PKG_TARGETS_MISSING="$PKG_TARGETS_MISSING $pkg"
	done
	if ! command -v wrk >/dev/null 2>&1; then
		echo "bench: wrk is required and could not be installed" >&2
		return 1
	fi
}

# install_flask installs Debian's gunicorn and python3-flask (the flask
# mode's app server) when missing.
install_flask() {
	command -v gunicorn >/dev/null 2>&1 && [ -e /usr/lib/python3/dist-packages/flask/__init__.py ] && return 0
	as_root apt-get update -qq
	echo "bench: installing gunicorn python3-flask from apt" >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gunicorn python3-flask >/dev/null
}

# build_base builds pulsegate as of git ref $1 into $BIN/pulsegate-base
# (the pulsegate-base target: an A/B of two versions in the same run).
build_base() {
	local ref="$1" src
	src="$(mktemp -d)"
	git -C "$REPO" archive "$ref" | tar -x -C "$src"
	echo "bench: building pulsegate-base at $ref ($(git -C "$REPO" rev-parse --short "$ref"))" >&2
	(cd "$src" && go build -trimpath -o "$BIN/pulsegate-base" .)
	rm -rf "$src"
}

# build_all builds upstream, bareproxy, loadgen, driver and (if it builds)
# pulsegate into $BIN.
build_all() {
	cd "$REPO"
	echo "bench: building with $(go version)" >&2
	local p
	for p in upstream bareproxy loadgen driver; do
		go build -trimpath -o "$BIN/$p" "./bench/$p"
	done
	rm -f "$BIN/pulsegate"
	if ! go build -trimpath -o "$BIN/pulsegate" . 2>"$BIN/pulsegate-build.log"; then
		echo "bench: note: pulsegate does not build yet; its targets are skipped (see $BIN/pulsegate-build.log)" >&2
		rm -f "$BIN/pulsegate"
	fi
}

# without LIST WORDS: LIST (comma-separated) minus WORDS.
without() {
	local list="$1" out="" t w skip
	shift
	IFS=, read -ra items <<<"$list"
	for t in "${items[@]}"; do
		skip=0
		for w in "$@"; do [ "$t" = "$w" ] && skip=1; done
		[ "$skip" = 1 ] || out="${out:+$out,}$t"
	done
	echo "$out"
}
