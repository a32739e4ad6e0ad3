#!/usr/bin/env bash
# warmproxy benchmark: `make bench` runs `bash bench/run.sh` from the repo root.
#
# Knobs (environment):
#   REPEAT=3        runs of every scenario; RESULTS.md shows medians
#   QUICK=1         2 s load runs and 1 repeat (unless REPEAT is set): < 3 min
#   DURATION=5s     length of each measured load run
#   SCENARIOS=S1,S2,S3,S4,S5   TARGETS=direct,warmproxy,nginx,haproxy,squid
#   WARMPROXY=path  warmproxy binary (default: build ./cmd/warmproxy if it exists)
#   PROFILE=1       also save warmproxy pprof top-lists for S2/S4 in bench/profiles/
#   OUT=bench/RESULTS.md       NO_INSTALL=1 (never apt-get the peers)
#   BENCH_ARGS="..."           extra benchrun flags (see bench/out/bin/benchrun -h)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

say() { echo "$(date +%T) run.sh: $*" >&2; }

# The record of how this report was made.
knobs=""
for k in REPEAT QUICK DURATION SCENARIOS TARGETS WARMPROXY PROFILE OUT BENCH_ARGS; do
	if [ -n "${!k:-}" ]; then knobs+="$k=${!k} "; fi
done
if [ -n "${MAKELEVEL:-}" ]; then cmdline="${knobs}make bench"; else cmdline="${knobs}bash bench/run.sh"; fi

# Peers and wrk from Debian, unless present. A temporary policy-rc.d keeps
# apt from starting the system services we do not want running.
missing=()
for p in haproxy nginx squid wrk; do
	command -v "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "${NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
		say "missing ${missing[*]}: those rows are left out (install: apt-get install -y haproxy nginx squid wrk)"
	else
		say "installing ${missing[*]}"
		policy=/usr/sbin/policy-rc.d
		made_policy=0
		if [ ! -e "$policy" ]; then
			printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
		fi
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy nginx squid wrk >/dev/null || say "apt-get failed; going on with what is installed"
		if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
	fi
fi

# S5 holds 10,000 connections in one process and 10,000 in another.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

say "building bench tools"
go build -o bench/out/bin/ ./bench/cmd/...
wp="${WARMPROXY:-}"
if [ -z "$wp" ] && compgen -G "cmd/warmproxy/*.go" >/dev/null; then
	say "building warmproxy"
	ver="$(git describe --tags --always --dirty 2>/dev/null || echo devel)"
	go build -ldflags "-X main.version=$ver" -o bench/out/bin/warmproxy ./cmd/warmproxy
	wp=bench/out/bin/warmproxy
fi
[ -n "$wp" ] || say "no cmd/warmproxy yet: benching the peers and direct only"

args=(-cmdline "$cmdline" -out "${OUT:-bench/RESULTS.md}" -warmproxy "$wp")
[ -n "${REPEAT:-}" ] && args+=(-repeat "$REPEAT")
[ "${QUICK:-0}" = 1 ] && args+=(-quick)
[ -n "${DURATION:-}" ] && args+=(-duration "$DURATION")
[ -n "${SCENARIOS:-}" ] && args+=(-scenarios "$SCENARIOS")
[ -n "${TARGETS:-}" ] && args+=(-targets "$TARGETS")
[ "${PROFILE:-0}" = 1 ] && args+=(-profile)
# shellcheck disable=SC2086
exec bench/out/bin/benchrun "${args[@]}" ${BENCH_ARGS:-}
