#!/usr/bin/env bash
# Agent benchmarks (host, root, in network namespaces): idle RSS of the release
# binary, and push-to-applied latency (the agent answers a push once the VIPs and ARP
# rules are in place and read back) for 1 and 100 VIPs, median of 5. Each push
# replaces the whole set, so every push adds and removes VIPs.
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
{
  echo "| agent | idle RSS | RSS after 100-VIP pushes | push → applied, 1 VIP | push → applied, 100 VIPs | target |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| lvsdr-agent ($(basename "$(dirname "$agent")") build, arp = nft) | $rss_idle MB | $rss_after MB | ${lat[1]} ms | ${lat[100]} ms | idle RSS ≤ 10 MB |"
} >"$out"
cat "$out"
