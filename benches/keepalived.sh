#!/usr/bin/env bash
# Health checks side by side (guest, in the VM: keepalived needs IPVS to start): the
# same TCP targets checked every second by keepalived's TCP_CHECK and by lvsdr-director
# (with tcp checks, then with tcp-syn checks), one after the other in the same boot, each as a whole daemon programming IPVS (NAT:
# the targets' ports differ from the service port). CPU (user + sys, all the daemon's
# processes) from /proc/PID/stat over the window; the ratio is what counts (emulated CPU).
# Args: RELEASE_DIR HEALTH_CHECKS_BENCH TARGETS SECONDS OUT
set -euo pipefail
bin=$1 checks=$2 targets=$3 seconds=$4 out=$5
w=$(dirname "$out")/keepalived
rm -rf "$w" && mkdir -p "$w"
ip netns add bk
ip -n bk link set lo up
ip netns exec bk "$checks" --serve "$targets" >"$w/serve.out" &
server=$!
for _ in $(seq 600); do grep -q ready "$w/serve.out" 2>/dev/null && break; sleep 0.1; done
hz=$(getconf CLK_TCK)
# The i-th target, as health_checks.rs numbers them.
target() { local a=$(($1 / 100)); echo "127.1.$((a / 250)).$((a % 250 + 1)) $((20000 + $1 % 100))"; }
ticks() { # "utime stime" summed over the given pids
  local u=0 s=0 p a b
  for p in "$@"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}
services=$(((targets + 99) / 100))

{
  echo 'global_defs { router_id bench }'
  for s in $(seq 0 $((services - 1))); do
    echo "virtual_server 198.18.1.$((s + 1)) 80 {"
    echo "  delay_loop 1"
    echo "  lb_algo wrr"
    echo "  lb_kind NAT"
    echo "  protocol TCP"
    for i in $(seq $((s * 100)) $((s * 100 + 99))); do
      [ "$i" -lt "$targets" ] || break
      read -r a p < <(target "$i")
      echo "  real_server $a $p { weight 1"
      echo "    TCP_CHECK { connect_timeout 1 }"
      echo "  }"
    done
    echo "}"
  done
} >"$w/keepalived.conf"
director_config() { # check type
  echo '[director]'
  echo 'status_listen = "127.0.0.1:9180"'
  for s in $(seq 0 $((services - 1))); do
    printf '[[service]]\nname = "s%s"\nvip = "198.18.1.%s"\nport = 80\nforwarding = "nat"\n' "$s" $((s + 1))
    printf '[service.check]\ntype = "%s"\ninterval = "1s"\ntimeout = "1s"\n' "$1"
    for i in $(seq $((s * 100)) $((s * 100 + 99))); do
      [ "$i" -lt "$targets" ] || break
      read -r a p < <(target "$i")
      printf '[[service.real_server]]\naddress = "%s"\nport = %s\n' "$a" "$p"
    done
  done
}
director_config tcp >"$w/director.toml"
director_config tcp-syn >"$w/director-syn.toml"

# Both get the same warm-up, then the same measured window.
measure() { # name, pids... → "total user sys" CPU seconds over the window
  sleep 3
  local u0 s0 u1 s1
  read -r u0 s0 < <(ticks "${@:2}")
  sleep "$seconds"
  read -r u1 s1 < <(ticks "${@:2}")
  awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$hz" 'BEGIN {printf "%.2f %.2f %.2f\n", (u + s) / hz, u / hz, s / hz}'
}
ip netns exec bk keepalived -C -n -f "$w/keepalived.conf" -p "$w/k.pid" -c "$w/kc.pid" 2>"$w/keepalived.log" &
keep=$!
sleep 1
kpids=$(pgrep -x keepalived | tr '\n' ' ')
# shellcheck disable=SC2086
read -r k_cpu k_user k_sys < <(measure keepalived $kpids)
k_up=$(ip netns exec bk ipvsadm -Ln | grep -c Masq || true)
kill $keep 2>/dev/null || true
wait $keep 2>/dev/null || true
ip netns exec bk ipvsadm -C

lvsdr() { # config → "total user sys up"
  ip netns exec bk "$bin/lvsdr-director" run --config "$1" >"$1.out" 2>"$1.log" &
  local dir=$! cpu user sys up
  read -r cpu user sys < <(measure lvsdr $dir)
  up=$(ip netns exec bk "$bin/lvsdr-director" ipvs list | grep Masq | awk '$4 > 0' | wc -l)
  kill $dir 2>/dev/null || true
  wait $dir 2>/dev/null || true
  ip netns exec bk ipvsadm -C
  echo "$cpu $user $sys $up"
}
read -r l_cpu l_user l_sys l_up < <(lvsdr "$w/director.toml")
read -r s_cpu s_user s_sys s_up < <(lvsdr "$w/director-syn.toml")
kill $server 2>/dev/null || true
wait 2>/dev/null || true
ip netns del bk
pct() { awk -v c="$1" -v s="$seconds" 'BEGIN {printf "%.1f", c / s * 100}'; }
ratio() { awk -v a="$1" -v b="$k_cpu" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
{
  echo "| health checks in the VM: $targets TCP targets, every 1 s, ${seconds} s window | CPU (user+sys) | user / sys | % of one emulated core | real servers up | lvsdr / keepalived |"
  echo "| --- | --- | --- | --- | --- | --- |"
  echo "| keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}') TCP_CHECK (-C) | ${k_cpu} s | ${k_user} / ${k_sys} s | $(pct "$k_cpu") % | $k_up of $targets | |"
  echo "| lvsdr-director, tcp checks (connect, then RST) | ${l_cpu} s | ${l_user} / ${l_sys} s | $(pct "$l_cpu") % | $l_up of $targets | $(ratio "$l_cpu") (target ≤ 0.5) |"
  echo "| lvsdr-director, tcp-syn checks (half-open) | ${s_cpu} s | ${s_user} / ${s_sys} s | $(pct "$s_cpu") % | $s_up of $targets | $(ratio "$s_cpu") (target ≤ 0.5) |"
} >"$out"
cat "$out"
