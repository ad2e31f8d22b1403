#!/usr/bin/env bash
# Agent benchmarks (host, root, in network namespaces): idle RSS of the release
# binary, and push-to-applied latency (the agent answers a push once the VIPs and ARP
# rules are in place and read back) for 1 and 100 VIPs, median of 5. Each push
# replaces the whole set, so every push adds and removes VIPs. Then the drain poll
# (a director's long poll, POST /v1/drain): how soon a held poll hears
# `lvsdr-agent drain`, and the agent CPU one poll costs on a kept connection.
# Args: AGENT_BIN DIRECTOR_BIN OUT
set -euo pipefail
agent=$1 director=$2 out=$3
w=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; ip netns del bagent 2>/dev/null || true; ip netns del bdir 2>/dev/null || true; rm -rf "$w"' EXIT
ip netns add bagent && ip netns add bdir
ip link add vbagent type veth peer name vbdir
ip link set vbagent netns bagent && ip link set vbdir netns bdir
ip -n bagent addr add 10.81.0.11/24 dev vbagent && ip -n bdir addr add 10.81.0.1/24 dev vbdir
for ns in bagent bdir; do ip -n $ns link set lo up; done
ip -n bagent link set vbagent up && ip -n bdir link set vbdir up
"$director" pki init "$w/pki" --agent 10.81.0.11 >/dev/null
cat >"$w/agent.toml" <<TOML
[agent]
listen = "0.0.0.0:9181"
state_file = "$w/state.json"
control_socket = "$w/agent.sock"
[agent.tls]
cert = "$w/pki/agent-10.81.0.11.pem"
key = "$w/pki/agent-10.81.0.11.key"
client_ca = "$w/pki/ca.pem"
TOML
ip netns exec bagent "$agent" --config "$w/agent.toml" 2>"$w/agent.log" &
pid=$!
sleep 2
rss_idle=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)
push() { # generation, JSON list of VIPs → seconds
  printf '{"generation": %s, "vips": [%s]}' "$1" "$2" >"$w/body"
  # From the request sent to the first byte of the answer: the agent's apply time
  # (the TLS handshake of each curl is left out).
  ip netns exec bdir curl -sS -o "$w/resp" -w '%{http_code} %{time_pretransfer} %{time_starttransfer}' --cacert "$w/pki/ca.pem" \
    --cert "$w/pki/director.pem" --key "$w/pki/director.key" -X PUT --data-binary @"$w/body" \
    https://10.81.0.11:9181/v1/vips >"$w/timing"
  read -r code t0 t1 <"$w/timing"
  if [ "$code" != 200 ]; then
    echo "push of generation $1 failed: $code $(cat "$w/resp")" >&2
    exit 1
  fi
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%f", b - a}'
}
vips() { seq "$2" | awk -v b="$1" '{printf "%s\"198.51.%d.%d\"", (NR > 1 ? "," : ""), b + int(($1 - 1) / 250), ($1 - 1) % 250 + 1}'; }
median_of() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] * 1000}'; }
declare -A lat
for n in 1 100; do
  lat[$n]=$(for r in 1 2 3 4 5; do
    push $((n * 10 + r)) "$(vips $(( (r % 2) * 10 + 100 )) "$n")"; echo
  done | median_of)
done
rss_after=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)

# The drain poll, as a director sends it (lvsdr::agents::poll): `known` is the drain
# version the director has; the agent holds the answer until it changes or wait_ms.
tls=(--cacert "$w/pki/ca.pem" --cert "$w/pki/director.pem" --key "$w/pki/director.key")
poll() { # known wait_ms → the answer in $w/poll.json
  printf '{"known": %s, "wait_ms": %s, "servers": []}' "$1" "$2" >"$w/pollbody"
  ip netns exec bdir curl -sS -o "$w/poll.json" "${tls[@]}" -H 'content-type: application/json' \
    --data-binary @"$w/pollbody" https://10.81.0.11:9181/v1/drain
}
version() { sed -n 's/.*"version":\([0-9]*\).*/\1/p' "$w/poll.json"; }
now() { date +%s.%N; }
poll null 0
heard=$(for r in 1 2 3 4 5; do
  v=$(version)
  poll "$v" 20000 &
  cpid=$!
  # A head start for the poll to be held; were it not yet, the agent would answer it
  # at once on arrival (its version differs), which is what a director would see.
  sleep 0.5
  t0=$(now)
  "$agent" drain --socket "$w/agent.sock" --reason bench >/dev/null
  wait "$cpid"
  t1=$(now)
  grep -q '"reason":"bench"' "$w/poll.json" || { echo "the held poll did not hear the drain: $(cat "$w/poll.json")" >&2; exit 1; }
  "$agent" ready --socket "$w/agent.sock" >/dev/null
  poll null 0
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%f\n", b - a}'
done | median_of)
# CPU per poll: N polls answered at once, on one kept connection (as reqwest keeps
# the director's), from the agent's utime + stime.
n=2000
printf '{"known": null, "wait_ms": 0, "servers": [{"service": "web", "server": "10.81.0.11:80", "weight": 1, "active": 3, "inactive": 10}]}' >"$w/pollbody"
for i in $(seq $n); do
  # (--next starts each transfer afresh: the TLS files go with each.)
  printf 'url = "https://10.81.0.11:9181/v1/drain"\ndata-binary = "@%s"\nheader = "content-type: application/json"\noutput = "/dev/null"\ncacert = "%s"\ncert = "%s"\nkey = "%s"\n' \
    "$w/pollbody" "$w/pki/ca.pem" "$w/pki/director.pem" "$w/pki/director.key"
  [ "$i" = "$n" ] || echo next
done >"$w/curl.conf"
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
c0=$(ticks) t0=$(now)
ip netns exec bdir curl -sS -K "$w/curl.conf"
c1=$(ticks) t1=$(now)
hz=$(getconf CLK_TCK)
cpu_us=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.0f", c / hz / n * 1e6}')
rate=$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN {printf "%.0f", n / (b - a)}')
# A director polls each agent once per 20 s idle (IDLE_WAIT), once per s drained.
idle=$(awk -v u="$cpu_us" 'BEGIN {printf "%.1f", u / 20}')
{
  echo "| agent | idle RSS | RSS after 100-VIP pushes | push → applied, 1 VIP | push → applied, 100 VIPs | target |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| lvsdr-agent ($(basename "$(dirname "$agent")") build, arp = nft) | $rss_idle MB | $rss_after MB | ${lat[1]} ms | ${lat[100]} ms | idle RSS ≤ 10 MB |"
  echo
  echo "| drain poll (director → agent, POST /v1/drain) | a held poll hears \`lvsdr-agent drain\` (median of 5) | agent CPU per poll (kept connection, $n polls, $rate/s) | polls per director, idle / drained | agent CPU per director, idle / drained |"
  echo "| --- | --- | --- | --- | --- |"
  echo "| lvsdr-agent ($(basename "$(dirname "$agent")") build) | $heard ms | $cpu_us µs | 1 per 20 s / 1 per s | $idle µs/s / $cpu_us µs/s |"
} >"$out"
cat "$out"
