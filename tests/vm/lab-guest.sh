#!/usr/bin/env bash
# Guest side of tests/lab. $1: the folder with lvsdr-director and lvsdr-agent; $2:
# --stay to keep the lab up, its status page forwarded to the host, until Ctrl-C.
set -euo pipefail
bin=$1
stay=${2:-}
w=$(pwd)/target/vm/work/lab
rm -rf "$w" && mkdir -p "$w"
net=10.70.0
vip=$net.100
n() { ip netns exec "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "topology: client $net.2, director $net.1 (VIP $vip), real servers $net.11 and $net.12"
ip link add br0 type bridge forward_delay 0 && ip link set br0 up
for h in client:2 director:1 rs1:11 rs2:12; do
  ns=${h%:*} host=${h#*:}
  ip netns add "$ns"
  ip link add "v$ns" type veth peer name eth0 netns "$ns"
  ip link set "v$ns" master br0 up
  ip -n "$ns" link set lo up && ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$net.$host/24" dev eth0
done
ip -n director addr add "$vip/32" dev eth0

say "certificates: lvsdr-director pki init"
"$bin/lvsdr-director" pki init "$w/pki" --agent "$net.11" --agent "$net.12" | sed 's/^/  /'

for i in 1 2; do
  mkdir -p "$w/www$i" && echo "hello from rs$i" >"$w/www$i/index.html" && echo ok >"$w/www$i/healthz"
  n "rs$i" busybox httpd -p 80 -h "$w/www$i"
  cat >"$w/agent$i.toml" <<TOML
[agent]
listen = "0.0.0.0:9181"
state_file = "$w/agent$i.json"
[agent.tls]
cert = "$w/pki/agent-$net.1$i.pem"
key = "$w/pki/agent-$net.1$i.key"
client_ca = "$w/pki/ca.pem"
TOML
  n "rs$i" "$bin/lvsdr-agent" --config "$w/agent$i.toml" 2>"$w/agent$i.log" &
done

cat >"$w/director.toml" <<TOML
[director]
status_listen = "127.0.0.1:9180"
resync_interval = "5s"

[agents]
ca = "$w/pki/ca.pem"
cert = "$w/pki/director.pem"
key = "$w/pki/director.key"
push_interval = "2s"

[[service]]
name = "web"
vip = "$vip"
port = 80
scheduler = "wrr"
[service.check]
type = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 2
[[service.real_server]]
address = "$net.11"
weight = 1
[[service.real_server]]
address = "$net.12"
weight = 2
TOML
say "director config"
sed 's/^/  /' "$w/director.toml"
say "kernel settings (lvsdr-director prepare, as the unit's ExecStartPre does)"
n director "$bin/lvsdr-director" prepare --config "$w/director.toml" | sed 's/^/  /'
n director "$bin/lvsdr-director" run --config "$w/director.toml" 2>"$w/director.log" &

say "waiting for the agents to confirm and the checks to pass"
for _ in $(seq 60); do
  if n director "$bin/lvsdr-director" ipvs list | grep -q "$net.12:80 .*Route   2"; then break; fi
  sleep 0.5
done
n director "$bin/lvsdr-director" ipvs list | sed 's/^/  /'

say "9 requests from the client to http://$vip/ (wrr 1:2)"
for i in $(seq 9); do printf '  %s: %s\n' "$i" "$(n client curl -s --max-time 3 "http://$vip/")"; done

say "who answers ARP for $vip? (the director's MAC is $(n director cat /sys/class/net/eth0/address))"
n client busybox arping -c 2 -w 3 -I eth0 "$vip" | grep -i reply | sed 's/^/  /' || true

say "rs2 stops serving: within fall x interval + timeout its weight goes to 0"
kill "$(n rs2 sh -c 'busybox pidof httpd')" 2>/dev/null || pkill -f "httpd -p 80 -h $w/www2" || true
sleep 3.5
for i in $(seq 4); do printf '  %s: %s\n' "$i" "$(n client curl -s --max-time 3 "http://$vip/")"; done

say "the director's status (lvsdr-director status)"
n director "$bin/lvsdr-director" status | sed 's/^/  /'
echo
if [ "$stay" = --stay ]; then
  # The guest's NIC (user-mode networking, see vm.sh) is 10.0.2.15; socat carries each
  # connection into the director's namespace, where the page listens on loopback.
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
  socat TCP-LISTEN:9180,bind=10.0.2.15,fork,reuseaddr \
    "EXEC:ip netns exec director socat STDIO TCP\:127.0.0.1\:9180" 2>"$w/forward.log" &
  # Listening before the line below, which tells tests/page to look.
  for _ in $(seq 100); do ss -ltn 'sport = :9180' | grep -q 10.0.2.15 && break; sleep 0.2; done
  say "rs2 serves again; the lab stays up"
  n rs2 busybox httpd -p 80 -h "$w/www2"
  echo "  The director's status page: http://127.0.0.1:9180/ (also /status, /metrics)"
  echo "  A client loop keeps traffic going. Ctrl-C stops the lab; logs in $w/."
  while true; do n client curl -s -o /dev/null --max-time 2 "http://$vip/" || true; sleep 0.5; done
fi
echo "The status page is at http://127.0.0.1:9180/ inside the director namespace; logs in $w/."
pkill -f "$bin/lvsdr-" || true
