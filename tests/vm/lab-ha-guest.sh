#!/usr/bin/env bash
# Guest side of `tests/lab --ha`: the HA story, told by the VM test that proves it
# (director/tests/ha_kernel.rs). $1: that test's binary.
set -uo pipefail
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "topology: client -> router (BIRD, ECMP) -> directors hd1, hd2 (lvsdr [announce] + [sync], BIRD eBGP + BFD) -> real servers hrs1, hrs2"
echo "  each director puts the VIP 10.91.0.100 on lvsdr0 while it can serve it; BIRD announces it"
say "what happens (graceful stop, a cut link under a long-lived connection, all real servers down)"
"$1" --include-ignored --nocapture --test-threads=1 2>&1 |
  grep -vE '^(bird:|running|test result|$|successes|failures|    )' | sed 's/^/  /'
rc=${PIPESTATUS[0]}
say "done (exit $rc)"
exit "$rc"
