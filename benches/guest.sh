#!/usr/bin/env bash
# Guest side of benches/run: the IPVS benchmarks, programming end to end, failure
# detection, the health checks beside keepalived, checks while the writer works and
# in one boot.
# Args: IPVS_BENCH SIZES REPEAT OUT RELEASE_DIR TRIALS DETECTION_OUT CHECKS_BENCH
#       KEEPALIVED_TARGETS KEEPALIVED_SECONDS KEEPALIVED_OUT E2E_OUT WRITER_OUT (RELOAD_OUT: unused)
set -euo pipefail
bench=$1 sizes=$2 repeat=$3 out=$4 bin=$5 trials=$6 detection_out=$7
"$bench" --sizes "$sizes" --dests 10 --repeat "$repeat" --out "$out"
bash "$(dirname "$0")/e2e.sh" "$bin" "$sizes" 10 "$repeat" "${12}"
bash "$(dirname "$0")/detection.sh" "$bin" "$trials" "$detection_out"
bash "$(dirname "$0")/keepalived.sh" "$bin" "$8" "$9" "${10}" "${11}"
# benches/reload.sh is not run here yet: started late in this boot (after the rows
# above), keepalived programmed nothing (three times, smoke size; not understood).
# Run it in a boot of its own: tests/vm/vm.sh run benches/reload.sh RELEASE_DIR 1000 10000 3 OUT
bash "$(dirname "$0")/writer.sh" "$bin" "${sizes##*,}" "${13}"
