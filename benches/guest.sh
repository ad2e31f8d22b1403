#!/usr/bin/env bash
# Guest side of benches/run: the IPVS benchmarks, programming end to end, failure
# detection, the health checks beside keepalived, reloads beside keepalived, checks
# while the writer works, the big tables, in one boot.
# Args: IPVS_BENCH SIZES REPEAT OUT RELEASE_DIR TRIALS DETECTION_OUT CHECKS_BENCH
#       KEEPALIVED_TARGETS KEEPALIVED_SECONDS KEEPALIVED_OUT E2E_OUT WRITER_OUT RELOAD_OUT
#       BIG_SIZES BIG_E2E_OUT BIG_IPVS_OUT
set -euo pipefail
bench=$1 sizes=$2 repeat=$3 out=$4 bin=$5 trials=$6 detection_out=$7
# The binaries run from the guest's own disk (a tmpfs), as installed ones do from a
# local disk: ipvsadm and keepalived come from the host's root, mounted with the page
# cache on, but the repository's mount has none, so each start of lvsdr-director from
# target/release read its 19 MB binary's pages over 9p again (1,000 x 10 end to end,
# same binary, same boot: 1.85-2.66 s from the repository, 1.31-1.67 s from the tmpfs).
local=$(mktemp -d /tmp/lvsdr-bench-bin.XXXXXX)
cp "$bin/lvsdr-director" "$bench" "$local/"
bin=$local bench=$local/$(basename "$bench")
"$bench" --sizes "$sizes" --dests 10 --repeat "$repeat" --out "$out"
bash "$(dirname "$0")/e2e.sh" "$bin" "$sizes" 10 "$repeat" "${12}"
# The big tables (issue 22 item 7): up to 100,000 services × 2, in process
# (programming, the no-op resync beside its floor, a whole-table pass over netlink),
# then end to end with the director's peak RSS, once each: how each cost grows. Early
# in the boot: the kernel's listing skips a namespace's services while other
# namespaces hold some (the benches after these leave such namespaces behind for a
# while), and the in-process no-op resync asserts that it reads nothing again.
"$bench" --sizes "${15}" --dests 2 --repeat 1 --out "${17}"
bash "$(dirname "$0")/e2e.sh" "$bin" "${15}" 2 1 "${16}"
bash "$(dirname "$0")/detection.sh" "$bin" "$trials" "$detection_out"
bash "$(dirname "$0")/keepalived.sh" "$bin" "$8" "$9" "${10}" "${11}" "$3"
bash "$(dirname "$0")/reload.sh" "$bin" "${sizes%%,*}" "${sizes##*,}" "$repeat" "${14}" "$bench"
bash "$(dirname "$0")/writer.sh" "$bin" "${sizes##*,}" "${13}"
