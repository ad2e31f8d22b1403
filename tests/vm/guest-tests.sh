#!/usr/bin/env bash
# Guest script: runs each test binary given (guest-tests.sh [--filter F] BIN…), with its VM-only (ignored) tests included,
# and exits non-zero if any failed. Runs inside the VM (tests/vm/vm.sh run).
set -u -o pipefail
# --filter F: only the tests whose name contains F (tests/one).
filter=()
if [ "${1:-}" = --filter ]; then
  filter=("$2")
  shift 2
fi
# The test that unloads ip_vs runs first: namespaces of the tests before it (sync
# daemons, mh services) are torn down asynchronously and keep the modules in use for a
# while. The order of the binaries given is otherwise cargo's, which changes by build.
first=() rest=()
for bin in "$@"; do
  case $(basename "$bin") in
  module_reload_kernel-*) first+=("$bin") ;;
  *) rest+=("$bin") ;;
  esac
done
set -- "${first[@]}" "${rest[@]}"
echo "guest kernel $(uname -r); IPVS: $(grep -c . /proc/net/ip_vs 2>/dev/null || echo 0) lines in /proc/net/ip_vs"
failed=0 failures=()
out=$(mktemp -d)
for bin in "$@"; do
  name=$(basename "$bin")
  echo "=== $name (t=$(cut -d' ' -f1 /proc/uptime)s)"
  if ! "$bin" --include-ignored --test-threads=2 --show-output "${filter[@]}" 2>&1 | tee "$out/$name"; then
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAILED: $name"
  fi
done
# The failures again, last: CI keeps only the end of a long run's output, and a
# panic's message (its first lines) matters more than the logs a test dumps after it.
for name in "${failures[@]}"; do
  echo "=== what failed in $name: each panic's first lines (logs cut)"
  grep -A4 "panicked at" "$out/$name" | cut -c1-400 | head -30
done
echo "guest: $# test binaries, $failed failed"
exit "$failed"
