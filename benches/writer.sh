#!/usr/bin/env bash
# Checks while the writer works (guest, in the VM): 300 tcp-syn checks (interval 1 s,
# timeout 1 s, fall 1) run while a reload adds SERVICES × 10 unchecked services. Counts
# the checks' health transitions meanwhile (target 0) and reads how late the checks'
# scheduler looked at the clock (/status check_lateness: counts per bucket), idle for
# 10 s and then across the reload (target p99 ≤ 50 ms). The quantiles are bucket
# bounds (1, 2.5, 5, 10, 25, 50, 100, 250 ms …).
# Args: RELEASE_DIR SERVICES OUT
set -euo pipefail
bin=$1 services=$2 out=$3
w=$(dirname "$out")/writer
rm -rf "$w" && mkdir -p "$w"
ip netns add bw && ip netns add bw1
ip link add vbw type veth peer name vbw1
ip link set vbw netns bw && ip link set vbw1 netns bw1
ip -n bw addr add 10.82.0.1/24 dev vbw && ip -n bw1 addr add 10.82.0.11/24 dev vbw1
for ns in bw bw1; do ip -n $ns link set lo up; done
ip -n bw link set vbw up && ip -n bw1 link set vbw1 up
# 300 listeners on one real server; the kernel answers the SYNs.
ip netns exec bw1 python3 -c '
import socket, time
held = []
for p in range(20000, 20300):
    s = socket.socket()
    s.bind(("10.82.0.11", p))
    s.listen(16)
    held.append(s)
time.sleep(1e9)
' &
listeners=$!
checked() {
  echo '[director]'
  echo 'status_listen = "127.0.0.1:9180"'
  for i in $(seq 0 299); do
    printf '[[service]]\nname = "c%d"\nvip = "10.82.0.100"\nport = %d\nscheduler = "rr"\n' "$i" $((20000 + i))
    printf '[service.check]\ntype = "tcp-syn"\ninterval = "1s"\ntimeout = "1s"\nrise = 1\nfall = 1\n'
    printf '[[service.real_server]]\naddress = "10.82.0.11"\n'
  done
}
unchecked() { # n
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++) {
      printf "[[service]]\nname = \"u%d\"\nvip = \"198.18.%d.%d\"\nport = 80\nscheduler = \"wrr\"\n[service.check]\ntype = \"none\"\n", i, int(i / 250), i % 250 + 1
      for (j = 0; j < 10; j++)
        printf "[[service.real_server]]\naddress = \"10.%d.%d.%d\"\nweight = %d\n", j + 1, int(i / 250), i % 250 + 1, j + 1
    }
  }'
}
checked >"$w/d.toml"
ip netns exec bw "$bin/lvsdr-director" run --config "$w/d.toml" 2>"$w/director.log" &
director=$!
status() { ip netns exec bw curl -sf --max-time 60 http://127.0.0.1:9180/status; }
up() { status | jq '[.services[].real_servers[] | select(.health == "up")] | length'; }
for _ in $(seq 600); do
  [ "$(up 2>/dev/null || echo 0)" = 300 ] && break
  sleep 0.5
done
[ "$(up)" = 300 ] || { echo "writer: the 300 checks did not come up" >&2; tail -5 "$w/director.log" >&2; exit 1; }
snap() { status | jq -c '{l: .check_lateness.counts, t: ([.services[].real_servers[].transitions] | add)}'; }
s0=$(snap)
sleep 10
s1=$(snap)
{ checked; unchecked "$services"; } >"$w/d.toml"
# Done when the director's log has applied every op of the reload: services × 11 (the
# proc file cannot tell: with services in other namespaces its walk skips some).
from=$(($(wc -l <"$w/director.log") + 1))
applied() { tail -n "+$from" "$w/director.log" | grep -o 'ops applied applied=[0-9]*' | awk -F'applied=' '{ s += $2 } END { print s + 0 }'; }
want=$((services * 11))
t0=$EPOCHREALTIME
kill -HUP "$director"
for _ in $(seq 1200); do
  [ "$(applied)" -ge "$want" ] && break
  sleep 0.5
done
t1=$EPOCHREALTIME
s2=$(snap)
[ "$(applied)" -ge "$want" ] || { echo "writer: the reload did not finish ($(applied) of $want ops)" >&2; exit 1; }
# Checked over netlink: 3 header lines, the 300 + services services, their destinations.
lines=$((3 + 300 + services + 300 + services * 10))
got=$(ip netns exec bw ipvsadm -Ln | wc -l)
[ "$got" -ge "$lines" ] || { echo "writer: ipvsadm lists $got lines, not $lines" >&2; exit 1; }
kill "$director" "$listeners" 2>/dev/null || true
wait "$director" 2>/dev/null || true
# p50 and p99 (ms, bucket bounds) of the looks between two snapshots, and their count.
quantiles() {
  jq -rn --argjson a "$1" --argjson b "$2" '
    [range(0; $b.l | length) as $i | $b.l[$i] - ($a.l[$i] // 0)] as $d
    | ($d | add) as $n
    | ["1", "2.5", "5", "10", "25", "50", "100", "250", "500", "1000", "inf"] as $le
    | def q(p): [foreach $d[] as $x (0; . + $x)] | map(. >= ([1, (p * $n | ceil)] | max)) | index(true) | $le[.];
    "\(q(0.5)) ms | \(q(0.99)) ms | \($n)"'
}
took=$(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}')
{
  echo "| 300 tcp-syn checks (1 s, timeout 1 s, fall 1) | transitions | lateness p50 | p99 | looks | reload |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| idle, 10 s | $(jq -n --argjson a "$s0" --argjson b "$s1" '$b.t - $a.t') | $(quantiles "$s0" "$s1") | |"
  echo "| while a reload adds $services × 10 | $(jq -n --argjson a "$s1" --argjson b "$s2" '$b.t - $a.t') | $(quantiles "$s1" "$s2") | ${took} s |"
  echo
  echo "Targets: 0 transitions; p99 ≤ 50 ms. The checks have a thread of their own; the writer works on the director's."
} >"$out"
cat "$out"
