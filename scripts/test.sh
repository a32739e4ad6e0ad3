#!/usr/bin/env bash
# Runs go vet and every test (fuzz seed corpora included) under the race
# detector: the body of make test. Its order is for a cold build cache on
# a small machine, the CI case:
#   - warmproxy is built once, first, and handed to the tests that run the
#     binary (deploy, e2e) in WARMPROXY_TEST_BIN. Each of them builds its
#     own when that is unset, so go test ./e2e alone still works.
#   - go vet runs beside go test, niced: its packages are mostly compiled
#     by the build above, and the tests spend much of their time waiting
#     on timers and child processes; niced, it takes that idle time and
#     not the CPU the compiles that e2e waits for need.
#   - ./e2e is named first, so go test builds and starts it first: its
#     tests run one after another for a minute or more, and started last
#     they would be the whole tail of the run.
#   - go test runs twice as many builds and test binaries at once as there
#     are CPUs (-p; the default is as many): a test binary under -race is
#     mostly asleep, in timers, child processes, and the race runtime's
#     one second wait at exit (GORACE atexit_sleep_ms, kept: it gives
#     goroutines still running a chance to report a race).
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$GO" build -o "$dir/warmproxy" ./cmd/warmproxy
export WARMPROXY_TEST_BIN="$dir/warmproxy"
nice -n 10 "$GO" vet ./... &
vet=$!
rc=0
"$GO" test -race -count=1 -timeout 9m -p "$((2 * $(nproc)))" ./e2e ./... || rc=$?
wait "$vet" || rc=$?
exit "$rc"
