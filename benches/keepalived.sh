#!/usr/bin/env bash
# Health checks side by side (guest, in the VM: keepalived needs IPVS to start): the
# same targets checked every second by keepalived and by lvsdr-director, one after the
# other in the same boot, each as a whole daemon programming IPVS (NAT: the targets'
# ports differ from the service port):
#   keepalived TCP_CHECK  vs  lvsdr tcp, lvsdr tcp-syn
#   keepalived HTTP_GET   vs  lvsdr http (keep-alive, its default), lvsdr http keepalive = false
# and the HTTP ones again against two other servers: one that answers HTTP/1.0 and
# closes every connection, and Debian's nginx (keep-alive as nginx does it). Two
# layouts: 100 real servers per service on loopback addresses (the targets spread
# over 127.1.x.y), and the tcp rows again with one service of all the targets, one
# host with that many ports, reached over a veth link.
# CPU (user + sys, all the daemon's processes) from /proc/PID/stat over the window
# (timed, and scaled to the nominal window); the
# ratio is what counts (emulated CPU), and its denominator is keepalived's CPU in the
# same boot for the same targets and check kind. Checks completed per second: counted
# at the servers for every daemon (connections accepted; HTTP requests answered), and
# from lvsdr's own counter (`lvsdr_health_checks_completed_total`), which also counts
# half-open checks, which the servers never see.
# Every row runs REPEAT times, interleaved with the rows it is compared with (TCP_CHECK,
# tcp, tcp-syn; HTTP_GET, http, http keepalive = false); each row shows the run with
# the median CPU per check, and every run's figure.
# Args: RELEASE_DIR HEALTH_CHECKS_BENCH TARGETS SECONDS OUT [REPEAT]
set -euo pipefail
bin=$1 checks=$2 targets=$3 seconds=$4 out=$5 repeat=${6:-1}
w=$(dirname "$out")/keepalived
rm -rf "$w" && mkdir -p "$w"
ip netns add bk
ip -n bk link set lo up
server_start() { # extra --serve arguments
  rm -f "$w/serve.out" "$w/counts"
  ip netns exec "${server_ns:-bk}" "$checks" --serve "$targets" --counts "$w/counts" "$@" >"$w/serve.out" &
  server=$!
  for _ in $(seq 600); do grep -q ready "$w/serve.out" 2>/dev/null && break; sleep 0.1; done
}
server_stop() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
# nginx on every target, its counts from stub_status on a port of its own.
nginx_start() {
  mkdir -p "$w/nginx-tmp"
  {
    echo "worker_processes 1; pid $w/nginx.pid; error_log $w/nginx.err;"
    echo "worker_rlimit_nofile 65536; events { worker_connections 20000; }"
    # Its temporary folders in the work dir: the defaults under /var/lib/nginx do not
    # exist until nginx has run once, and the guest cannot create them (read-only).
    echo "http { access_log off; default_type text/plain; client_body_temp_path $w/nginx-tmp/body;"
    echo "  proxy_temp_path $w/nginx-tmp/proxy; fastcgi_temp_path $w/nginx-tmp/fastcgi;"
    echo "  uwsgi_temp_path $w/nginx-tmp/uwsgi; scgi_temp_path $w/nginx-tmp/scgi;"
    echo "  server { listen 127.0.0.1:9181; location / { stub_status; } }"
    echo "  server {"
    for i in $(seq 0 $((targets - 1))); do
      read -r a p < <(target "$i")
      echo "    listen $a:$p;"
    done
    echo "    location / { return 200 ok; } } }"
  } >"$w/nginx.conf"
  ip netns exec bk nginx -e "$w/nginx.err" -c "$w/nginx.conf" -g 'daemon off;' &
  server=$!
  for _ in $(seq 600); do served >/dev/null 2>&1 && break; sleep 0.1; done
  served >/dev/null 2>&1 || {
    echo "keepalived.sh: nginx does not answer: $(cat "$w/nginx.err" 2>/dev/null)" >&2
    exit 1
  }
}
hz=$(getconf CLK_TCK)
# The i-th target, as health_checks.rs numbers them (veth layout: --address).
layout=lo per=100
target() {
  if [ "$layout" = veth ]; then echo "10.99.0.2 $((20000 + $1))"; return; fi
  local a=$(($1 / 100)); echo "127.1.$((a / 250)).$((a % 250 + 1)) $((20000 + $1 % 100))"
}
ticks() { # "utime stime" summed over the given pids
  local u=0 s=0 p a b
  for p in "$@"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}
served() { # "accepted requests"
  if [ -e "$w/nginx.conf" ]; then
    ip netns exec bk curl -sf http://127.0.0.1:9181/ | awk 'NR == 3 {print $1, $3}' | grep .
  else cat "$w/counts"; fi
}
# What lvsdr's status endpoint (in the namespace) says.
status_get() { ip netns exec bk curl -sf "http://127.0.0.1:9180$1"; }
lvsdr_done() { status_get /metrics | awk '/^lvsdr_health_checks_completed_total/ {print $2}'; }
services() { echo $(((targets + per - 1) / per)); }

keepalived_config() { # TCP_CHECK | HTTP_GET
  echo 'global_defs { router_id bench }'
  for s in $(seq 0 $(($(services) - 1))); do
    echo "virtual_server 198.18.1.$((s + 1)) 80 {"
    echo "  delay_loop 1"
    echo "  lb_algo wrr"
    echo "  lb_kind NAT"
    echo "  protocol TCP"
    for i in $(seq $((s * per)) $((s * per + per - 1))); do
      [ "$i" -lt "$targets" ] || break
      read -r a p < <(target "$i")
      echo "  real_server $a $p { weight 1"
      if [ "$1" = HTTP_GET ]; then
        echo "    HTTP_GET { url { path / status_code 200 } connect_timeout 1 }"
      else
        echo "    TCP_CHECK { connect_timeout 1 }"
      fi
      echo "  }"
    done
    echo "}"
  done
}
director_config() { # check type, extra check line
  echo '[director]'
  echo 'status_listen = "127.0.0.1:9180"'
  for s in $(seq 0 $(($(services) - 1))); do
    printf '[[service]]\nname = "s%s"\nvip = "198.18.1.%s"\nport = 80\nforwarding = "nat"\n' "$s" $((s + 1))
    printf '[service.check]\ntype = "%s"\ninterval = "1s"\ntimeout = "1s"\n%s\n' "$1" "${2:-}"
    for i in $(seq $((s * per)) $((s * per + per - 1))); do
      [ "$i" -lt "$targets" ] || break
      read -r a p < <(target "$i")
      printf '[[service.real_server]]\naddress = "%s"\nport = %s\n' "$a" "$p"
    done
  done
}

# Both get the same warm-up, then the same measured window: "cpu user sys accepted/s
# requests/s own/s" (own: lvsdr's counter; - for keepalived).
measure() { # own-counter(yes|no) pids...
  sleep 3
  local u0 s0 u1 s1 a0 r0 a1 r1 d0=0 d1=0 t0 t1
  # The window is timed: reading the counters (curl, in an emulated machine) takes
  # a while, so it is longer than `seconds`; CPU and rates are scaled to `seconds`.
  t0=$(date +%s%N)
  read -r u0 s0 < <(ticks "${@:2}")
  read -r a0 r0 < <(served)
  [ "$1" = yes ] && d0=$(lvsdr_done)
  sleep "$seconds"
  t1=$(date +%s%N)
  read -r u1 s1 < <(ticks "${@:2}")
  read -r a1 r1 < <(served)
  [ "$1" = yes ] && d1=$(lvsdr_done)
  awk -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$hz" -v a="$((a1 - a0))" -v r="$((r1 - r0))" \
    -v own="$1" -v d="$((${d1:-0} - ${d0:-0}))" -v t="$seconds" -v el="$(((t1 - t0) / 1000000))" \
    'BEGIN {e = el / 1000; k = t / e
      printf "%.2f %.2f %.2f %.0f %.0f %s\n", k * (u + s) / hz, k * u / hz, k * s / hz, a / e, r / e, (own == "yes" ? sprintf("%.0f", d / e) : "-")}'
}
keepalived_run() { # TCP_CHECK | HTTP_GET → "cpu user sys acc/s req/s - up"
  keepalived_config "$1" >"$w/keepalived-$1.conf"
  ip netns exec bk keepalived -C -n -f "$w/keepalived-$1.conf" -p "$w/k.pid" -c "$w/kc.pid" 2>"$w/keepalived-$1.log" &
  local keep=$! kpids m up
  sleep 1
  kpids=$(pgrep -x keepalived | tr '\n' ' ')
  # shellcheck disable=SC2086
  m=$(measure no $kpids)
  up=$(ip netns exec bk ipvsadm -Ln | grep -c Masq || true)
  kill $keep 2>/dev/null || true
  wait $keep 2>/dev/null || true
  ip netns exec bk ipvsadm -C
  echo "$m $up"
}
lvsdr_run() { # config → "cpu user sys acc/s req/s own/s up"
  ip netns exec bk "$bin/lvsdr-director" run --config "$1" >"$1.out" 2>"$1.log" &
  local dir=$! m up
  for _ in $(seq 100); do status_get /healthz >/dev/null 2>&1 && break; sleep 0.1; done
  m=$(measure yes $dir)
  up=$(ip netns exec bk "$bin/lvsdr-director" ipvs list | grep Masq | awk '$4 > 0' | wc -l)
  kill $dir 2>/dev/null || true
  wait $dir 2>/dev/null || true
  ip netns exec bk ipvsadm -C
  echo "$m $up"
}

# Of several runs ("cpu user sys acc req own up", one a line), the one with the median
# CPU per check (checks: lvsdr's own counter, else the connections the server saw),
# then "|" and every run's CPU per check in µs.
median_of() {
  printf '%s\n' "$1" | awk -v s="$seconds" '{n = ($6 == "-" ? $4 : $6); printf "%.6f %s\n", (n > 0 ? $1 / (n * s) * 1e6 : 0), $0}' |
    sort -n | awk '{runs = runs (NR > 1 ? ", " : "") sprintf("%.0f", $1); l[NR] = $0}
      END {m = l[int((NR + 1) / 2)]; sub(/^[^ ]+ /, "", m); print m "|" runs}'
}
# REPEAT rounds of three runs, interleaved: keepalived with KIND, then lvsdr with each
# config; three lines, each "median run|runs". The tcp rows: TCP_CHECK, tcp, tcp-syn;
# the HTTP rows (against the server running): HTTP_GET, http, http keepalive = false.
rounds() { # KIND config config
  local k="" a="" b="" r
  for r in $(seq "$repeat"); do
    k+=$(keepalived_run "$1")$'\n'
    a+=$(lvsdr_run "$2")$'\n'
    b+=$(lvsdr_run "$3")$'\n'
  done
  median_of "${k%$'\n'}"
  median_of "${a%$'\n'}"
  median_of "${b%$'\n'}"
}
tcp_rounds() { rounds TCP_CHECK "$w/director-tcp.toml" "$w/director-syn.toml"; }
http_rounds() { rounds HTTP_GET "$w/director-http.toml" "$w/director-http-close.toml"; }

director_config tcp >"$w/director-tcp.toml"
director_config tcp-syn >"$w/director-syn.toml"
director_config http 'path = "/"' >"$w/director-http.toml"
director_config http 'path = "/"
keepalive = false' >"$w/director-http-close.toml"

server_start
{ IFS='|' read -r kl kt_runs; IFS='|' read -r tl lt_runs; IFS='|' read -r yl ls_runs; } < <(tcp_rounds)
read -r kt_cpu kt_user kt_sys kt_acc kt_req _ kt_up <<<"$kl"
read -r lt_cpu lt_user lt_sys lt_acc lt_req lt_own lt_up <<<"$tl"
read -r ls_cpu ls_user ls_sys ls_acc ls_req ls_own ls_up <<<"$yl"
{ IFS='|' read -r kl kh_runs; IFS='|' read -r ll lh_runs; IFS='|' read -r cl lc_runs; } < <(http_rounds)
read -r kh_cpu kh_user kh_sys kh_acc kh_req _ kh_up <<<"$kl"
read -r lh_cpu lh_user lh_sys lh_acc lh_req lh_own lh_up <<<"$ll"
read -r lc_cpu lc_user lc_sys lc_acc lc_req lc_own lc_up <<<"$cl"
server_stop
# The HTTP rows against the other servers: "label|keep-alive row's target|keepalived|
# runs|lvsdr keep-alive|runs|lvsdr close|runs", one line per server. A server that
# closes every connection makes every check a new connection: ≤ 0.8 for both rows.
http_rows() { # label target
  local k l c
  { read -r k; read -r l; read -r c; } < <(http_rounds)
  echo "$1|$2|$k|$l|$c"
}
server_start --close
others=$(http_rows "an HTTP/1.0 server that closes every connection" "≤ 0.8")
server_stop
nginx_start
others+=$'\n'$(http_rows "nginx $(nginx -v 2>&1 | sed 's,.*nginx/,,') (keep-alive as nginx does it)" "≤ 0.5")
server_stop
rm -f "$w/nginx.conf"
# The veth layout: one service of every target, one host (a namespace of its own)
# with that many ports, over a veth link.
layout=veth per=$targets
ip netns add bks
ip link add vk0 netns bk type veth peer name vk1 netns bks
ip -n bk addr add 10.99.0.1/24 dev vk0
ip -n bks addr add 10.99.0.2/24 dev vk1
ip -n bk link set vk0 up
ip -n bks link set vk1 up
ip -n bks link set lo up
server_ns=bks server_start --address 10.99.0.2
director_config tcp >"$w/director-tcp.toml"
director_config tcp-syn >"$w/director-syn.toml"
{ IFS='|' read -r kl vt_runs; IFS='|' read -r tl wt_runs; IFS='|' read -r yl ws_runs; } < <(tcp_rounds)
read -r vt_cpu vt_user vt_sys vt_acc vt_req _ vt_up <<<"$kl"
read -r wt_cpu wt_user wt_sys wt_acc wt_req wt_own wt_up <<<"$tl"
read -r ws_cpu ws_user ws_sys ws_acc ws_req ws_own ws_up <<<"$yl"
server_stop
wait 2>/dev/null || true
ip netns del bks
ip netns del bk
pct() { awk -v c="$1" -v s="$seconds" 'BEGIN {printf "%.1f", c / s * 100}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
per() { awk -v c="$1" -v n="$2" -v s="$seconds" 'BEGIN {printf "%.0f", (n > 0 ? c / (n * s) * 1e6 : 0)}'; }
version=$(keepalived --version 2>&1 | awk 'NR == 1 {print $2}')
{
  echo "| health checks in the VM: $targets targets, every 1 s, ${seconds} s window (each row: the median of $repeat runs by CPU per check) | CPU (user+sys) | user / sys | % of one emulated core | checks completed / s (own counter; at the servers: connections, requests) | CPU per check | real servers up | CPU ratio (denominator: keepalived's CPU, same kind, same boot) | CPU per check ratio (denominator: keepalived's CPU per check; it checks less often than every 1 s) | target |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  echo "| keepalived $version TCP_CHECK (-C) | ${kt_cpu} s | ${kt_user} / ${kt_sys} s | $(pct "$kt_cpu") % | – ; $kt_acc conn/s | $(per "$kt_cpu" "$kt_acc") µs (runs: $kt_runs) | $kt_up of $targets | 1 | 1 | |"
  echo "| lvsdr-director, tcp (connect, then RST) | ${lt_cpu} s | ${lt_user} / ${lt_sys} s | $(pct "$lt_cpu") % | $lt_own ; $lt_acc conn/s | $(per "$lt_cpu" "$lt_own") µs (runs: $lt_runs) | $lt_up of $targets | $(ratio "$lt_cpu" "$kt_cpu") | $(ratio "$(per "$lt_cpu" "$lt_own")" "$(per "$kt_cpu" "$kt_acc")") | ≤ 0.8 |"
  echo "| lvsdr-director, tcp-syn (half-open) | ${ls_cpu} s | ${ls_user} / ${ls_sys} s | $(pct "$ls_cpu") % | $ls_own ; $ls_acc conn/s | $(per "$ls_cpu" "$ls_own") µs (runs: $ls_runs) | $ls_up of $targets | $(ratio "$ls_cpu" "$kt_cpu") | $(ratio "$(per "$ls_cpu" "$ls_own")" "$(per "$kt_cpu" "$kt_acc")") | ≤ 0.4 |"
  echo "| keepalived $version HTTP_GET (-C) | ${kh_cpu} s | ${kh_user} / ${kh_sys} s | $(pct "$kh_cpu") % | – ; $kh_acc conn/s, $kh_req req/s | $(per "$kh_cpu" "$kh_req") µs (runs: $kh_runs) | $kh_up of $targets | 1 | 1 | |"
  echo "| lvsdr-director, http (keep-alive: a new connection every 10th check) | ${lh_cpu} s | ${lh_user} / ${lh_sys} s | $(pct "$lh_cpu") % | $lh_own ; $lh_acc conn/s, $lh_req req/s | $(per "$lh_cpu" "$lh_own") µs (runs: $lh_runs) | $lh_up of $targets | $(ratio "$lh_cpu" "$kh_cpu") | $(ratio "$(per "$lh_cpu" "$lh_own")" "$(per "$kh_cpu" "$kh_req")") | ≤ 0.5 |"
  echo "| lvsdr-director, http, keepalive = false (a new connection every check, as keepalived) | ${lc_cpu} s | ${lc_user} / ${lc_sys} s | $(pct "$lc_cpu") % | $lc_own ; $lc_acc conn/s, $lc_req req/s | $(per "$lc_cpu" "$lc_own") µs (runs: $lc_runs) | $lc_up of $targets | $(ratio "$lc_cpu" "$kh_cpu") | $(ratio "$(per "$lc_cpu" "$lc_own")" "$(per "$kh_cpu" "$kh_req")") | ≤ 0.8 |"
  while IFS='|' read -r label l_target k k_runs l l_runs c c_runs; do
    read -r k_cpu k_user k_sys k_acc k_req _ k_up <<<"$k"
    read -r l_cpu l_user l_sys l_acc l_req l_own l_up <<<"$l"
    read -r c_cpu c_user c_sys c_acc c_req c_own c_up <<<"$c"
    echo "| keepalived $version HTTP_GET (-C), against $label | ${k_cpu} s | ${k_user} / ${k_sys} s | $(pct "$k_cpu") % | – ; $k_acc conn/s, $k_req req/s | $(per "$k_cpu" "$k_req") µs (runs: $k_runs) | $k_up of $targets | 1 | 1 | |"
    echo "| lvsdr-director, http (keep-alive), against $label | ${l_cpu} s | ${l_user} / ${l_sys} s | $(pct "$l_cpu") % | $l_own ; $l_acc conn/s, $l_req req/s | $(per "$l_cpu" "$l_own") µs (runs: $l_runs) | $l_up of $targets | $(ratio "$l_cpu" "$k_cpu") | $(ratio "$(per "$l_cpu" "$l_own")" "$(per "$k_cpu" "$k_req")") | $l_target |"
    echo "| lvsdr-director, http, keepalive = false, against $label | ${c_cpu} s | ${c_user} / ${c_sys} s | $(pct "$c_cpu") % | $c_own ; $c_acc conn/s, $c_req req/s | $(per "$c_cpu" "$c_own") µs (runs: $c_runs) | $c_up of $targets | $(ratio "$c_cpu" "$k_cpu") | $(ratio "$(per "$c_cpu" "$c_own")" "$(per "$k_cpu" "$k_req")") | ≤ 0.8 |"
  done <<<"$others"
  v="one service of $targets real servers (one host, $targets ports) over veth"
  echo "| keepalived $version TCP_CHECK (-C), $v | ${vt_cpu} s | ${vt_user} / ${vt_sys} s | $(pct "$vt_cpu") % | – ; $vt_acc conn/s | $(per "$vt_cpu" "$vt_acc") µs (runs: $vt_runs) | $vt_up of $targets | 1 | 1 | |"
  echo "| lvsdr-director, tcp, $v | ${wt_cpu} s | ${wt_user} / ${wt_sys} s | $(pct "$wt_cpu") % | $wt_own ; $wt_acc conn/s | $(per "$wt_cpu" "$wt_own") µs (runs: $wt_runs) | $wt_up of $targets | $(ratio "$wt_cpu" "$vt_cpu") | $(ratio "$(per "$wt_cpu" "$wt_own")" "$(per "$vt_cpu" "$vt_acc")") | ≤ 0.8 |"
  echo "| lvsdr-director, tcp-syn, $v | ${ws_cpu} s | ${ws_user} / ${ws_sys} s | $(pct "$ws_cpu") % | $ws_own ; $ws_acc conn/s | $(per "$ws_cpu" "$ws_own") µs (runs: $ws_runs) | $ws_up of $targets | $(ratio "$ws_cpu" "$vt_cpu") | $(ratio "$(per "$ws_cpu" "$ws_own")" "$(per "$vt_cpu" "$vt_acc")") | ≤ 0.4 |"
} >"$out"
cat "$out"
