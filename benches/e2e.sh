#!/usr/bin/env bash
# Programming as the operator sees it (guest, in the VM): from process start to the
# kernel holding the whole table, `lvsdr-director run` (release build, default logging)
# against `ipvsadm -R` of the same table, alternating, each in a fresh network namespace.
# lvsdr's end is the timestamp of its "ops applied" log line (the pass's one summary at
# info), checked against the table (every destination present); its start is taken just
# before the process is started, so exec, config load and startup are inside. The
# director's peak RSS (VmHWM) is read once the table is complete.
# Args: RELEASE_DIR SIZES(1000,10000) DESTS REPEAT OUT
set -euo pipefail
bin=$1 sizes=$2 dests=$3 repeat=$4 out=$5
w=$(dirname "$out")/e2e
rm -rf "$w" && mkdir -p "$w"

# The same table as benches/ipvs_programming.rs: service i at 198.18.(i/250).(i%250+1),
# destination j of it at 10.(j+1).(i/250).(i%250+1), weight j+1, wrr, DR; from service
# 62,500 on, 198.19.… and 10.(j+17).… (b below).
gen() { # n d kind(toml|save)
  awk -v n="$1" -v d="$2" -v kind="$3" 'BEGIN {
    if (kind == "toml") print "[director]\nstatus_listen = \"127.0.0.1:9180\""
    for (i = 0; i < n; i++) {
      b = int(i / 62500); k = i % 62500
      vip = sprintf("198.%d.%d.%d", 18 + b, int(k / 250), k % 250 + 1)
      if (kind == "toml") {
        printf "[[service]]\nname = \"s%d\"\nvip = \"%s\"\nport = 80\nscheduler = \"wrr\"\n[service.check]\ntype = \"none\"\n", i, vip
      } else {
        printf "-A -t %s:80 -s wrr\n", vip
      }
      for (j = 0; j < d; j++) {
        rip = sprintf("10.%d.%d.%d", j + 1 + 16 * b, int(k / 250), k % 250 + 1)
        if (kind == "toml") printf "[[service.real_server]]\naddress = \"%s\"\nweight = %d\n", rip, j + 1
        else printf "-a -t %s:80 -r %s:80 -g -w %d\n", vip, rip, j + 1
      }
    }
  }'
}
fresh() {
  ip netns add e2e
  ip -n e2e link set lo up
  ip -n e2e link add d0 type dummy
  ip -n e2e link set d0 up
  ip -n e2e addr add 10.0.0.1/8 dev d0
}
gone() {
  ip netns exec e2e ipvsadm -C
  ip netns del e2e
}
routes() { ip netns exec e2e ipvsadm -Ln | grep -c Route || true; }
now_ns() { date +%s%N; }

lvsdr_once() { # config n d → seconds from start to the "ops applied" line
  local cfg=$1 want=$(($2 * $3)) log=$w/director.log t0 line ts t1 got
  fresh
  t0=$(now_ns)
  ip netns exec e2e "$bin/lvsdr-director" run --config "$cfg" 2>"$log" >/dev/null &
  local pid=$!
  for _ in $(seq 6000); do
    grep -q 'ops applied' "$log" && break
    sleep 0.1
  done
  line=$(grep -m1 'ops applied' "$log")
  ts=${line%% *}
  t1=$(date -d "$ts" +%s%N)
  got=$(routes)
  awk '/^VmHWM:/ {printf "%.0f\n", $2 / 1024}' "/proc/$pid/status" >>"$w/rss"
  kill "$pid"
  wait "$pid" || true
  gone
  [ "$got" = "$want" ] || { echo "lvsdr: $got of $want destinations at the end" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}'
}
ipvsadm_once() { # save n d → seconds
  local save=$1 want=$(($2 * $3)) t0 t1 got
  fresh
  t0=$(now_ns)
  ip netns exec e2e ipvsadm -R <"$save"
  t1=$(now_ns)
  got=$(routes)
  gone
  [ "$got" = "$want" ] || { echo "ipvsadm: $got of $want destinations" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

{
  echo "| programming end to end (process start → whole table in the kernel, default logging), medians of $repeat | size | lvsdr-director run | ipvsadm -R | lvsdr / ipvsadm (denominator: ipvsadm -R, same boot) | target | lvsdr-director's peak RSS (VmHWM), table complete |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
} >"$out"
for n in ${sizes//,/ }; do
  gen "$n" "$dests" toml >"$w/director.toml"
  gen "$n" "$dests" save >"$w/table.save"
  : >"$w/l" && : >"$w/i" && : >"$w/rss"
  for r in $(seq "$repeat"); do
    lvsdr_once "$w/director.toml" "$n" "$dests" >>"$w/l"
    ipvsadm_once "$w/table.save" "$n" "$dests" >>"$w/i"
    echo "e2e $n × $dests, run $r: lvsdr $(tail -1 "$w/l") s, ipvsadm $(tail -1 "$w/i") s" >&2
  done
  l=$(median <"$w/l") i=$(median <"$w/i")
  case $n in 1000) target="≤ 0.5" ;; 10000) target="≤ 0.35" ;; *) target="–" ;; esac
  echo "| | $n × $dests | $l s (runs: $(paste -sd' ' "$w/l")) | $i s (runs: $(paste -sd' ' "$w/i")) | $(awk -v a="$l" -v b="$i" 'BEGIN {printf "%.2f", a / b}') | $target | $(median <"$w/rss") MB (runs: $(paste -sd' ' "$w/rss")) |" >>"$out"
  grep -E 'config loaded|status endpoint|ops applied' "$w/director.log" | sed 's/^/    /' >&2 || true
done
cat "$out"
