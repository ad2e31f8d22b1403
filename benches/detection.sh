#!/usr/bin/env bash
# Failure detection (guest, in the VM): the time from a real server's listener closing
# to its kernel weight reading 0, over TRIALS trials; interval 1 s, fall 2, timeout
# 0.5 s, so the bound is fall × interval + timeout = 2.5 s. The weight is polled from
# /proc/net/ip_vs with bash builtins only (no process per poll).
# Args: RELEASE_DIR TRIALS OUT
set -euo pipefail
bin=$1 trials=$2 out=$3
w=$(dirname "$out")/detection
rm -rf "$w" && mkdir -p "$w/www" && echo ok >"$w/www/healthz"
ip netns add bd && ip netns add br1
ip link add vbd type veth peer name vbr1
ip link set vbd netns bd && ip link set vbr1 netns br1
ip -n bd addr add 10.80.0.1/24 dev vbd && ip -n br1 addr add 10.80.0.11/24 dev vbr1
for ns in bd br1; do ip -n $ns link set lo up; done
ip -n bd link set vbd up && ip -n br1 link set vbr1 up
cat >"$w/d.toml" <<TOML
[director]
status_listen = "127.0.0.1:9180"
[[service]]
name = "web"
vip = "10.80.0.100"
port = 80
[service.check]
type = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 2
[[service.real_server]]
address = "10.80.0.11"
TOML
ip netns exec bd "$bin/lvsdr-director" run --config "$w/d.toml" 2>"$w/director.log" &
director=$!
start_httpd() {
  ip netns exec br1 busybox httpd -f -p 80 -h "$w/www" &
  httpd=$!
}
# Waits until 10.80.0.11:80 has weight $1; with $2 = a pid, kills it first and prints
# the seconds it took.
cat >"$w/watch.sh" <<'SH'
want=$1 victim=${2:-}
[ -n "$victim" ] && kill "$victim"
t0=$EPOCHREALTIME
for _ in $(seq 100000); do
  while read -r a b c d rest; do
    if [ "$a" = "->" ] && [ "$b" = "0A50000B:0050" ] && [ "$d" = "$want" ]; then
      t1=$EPOCHREALTIME
      [ -n "$victim" ] && echo "$t0 $t1" | awk '{printf "%.3f\n", $2 - $1}'
      exit 0
    fi
  done </proc/net/ip_vs
done
exit 1
SH
start_httpd
ip netns exec bd bash "$w/watch.sh" 1
times=()
for t in $(seq "$trials"); do
  times+=("$(ip netns exec bd bash "$w/watch.sh" 0 "$httpd")")
  wait "$httpd" 2>/dev/null || true
  start_httpd
  ip netns exec bd bash "$w/watch.sh" 1
done
kill "$httpd" "$director" 2>/dev/null || true
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(echo "$sorted" | tail -1)
min=$(echo "$sorted" | head -1)
{
  echo "| failure detection (listener closed → kernel weight 0), $trials trials | median | min | max | bound |"
  echo "| --- | --- | --- | --- | --- |"
  echo "| interval 1 s, fall 2, timeout 0.5 s | ${median} s | ${min} s | ${max} s | 2.5 s |"
} >"$out"
cat "$out"
