#!/usr/bin/env bash
# Reloads as the operator sees them (guest, in the VM): SIGHUP with one weight changed
# in the file → that weight in the kernel, lvsdr-director against keepalived (checker
# process only, -C; no checks: real servers stay in) on the same table in the same boot;
# then, for lvsdr alone, a reload that adds the whole table to an empty config against a
# start with the same file. One weight: the same observer for both daemons, started
# before the signal: `ipvs_programming --watch-weight` reads the one service over
# netlink every millisecond and prints when the destination has the new weight (an
# `ipvsadm -Ln -t` every 20 ms, a process each, added ~0.1 s to both sides under
# emulation). Each daemon is measured idle: lvsdr once /status counts its first pass
# (the start's program-and-confirm; a reload sent while the start still confirmed
# 100,000 destinations waited 10 s for it), keepalived once the table is complete
# (it programs at start, then idles). The whole table: the timestamp of the director's
# "ops applied" log line that completes it, then counted over netlink (polling
# the proc file of a growing 100,000-destination table every 20 ms slowed the
# programming it watched 7-fold: its walk is quadratic). The start is taken just
# before the signal (or the process start). Each daemon's table is built in a fresh
# network namespace: after `ipvsadm -C` the deleted destinations wait in the kernel's
# trash list, which every add searches (a reload adding 10,000 × 10 after clearing the
# same table took 187 s instead of 18 s); the old namespace is emptied before it is
# deleted (see fresh).
# Args: RELEASE_DIR SIZE_ONE_CHANGE(1000) SIZE_ADD(10000) REPEAT OUT IPVS_BENCH
set -euo pipefail
bin=$1 one=$2 add=$3 repeat=$4 out=$5 watch=$6
w=$(dirname "$out")/reload
rm -rf "$w" && mkdir -p "$w"
dests=10

# Service i at 198.18.(i/250).(i%250+1):80, destination j at 10.(j+1).(i/250).(i%250+1),
# weight j+1, wrr, DR (as benches/e2e.sh). `mid` gets weight W for its first destination.
gen() { # n kind(toml|keepalived) mid W
  awk -v n="$1" -v kind="$2" -v mid="$3" -v W="$4" -v d="$dests" 'BEGIN {
    if (kind == "toml") print "[director]\nstatus_listen = \"127.0.0.1:9180\""
    else print "global_defs { router_id bench }"
    for (i = 0; i < n; i++) {
      vip = sprintf("198.18.%d.%d", int(i / 250), i % 250 + 1)
      if (kind == "toml") printf "[[service]]\nname = \"s%d\"\nvip = \"%s\"\nport = 80\nscheduler = \"wrr\"\n[service.check]\ntype = \"none\"\n", i, vip
      else printf "virtual_server %s 80 {\n  lb_algo wrr\n  lb_kind DR\n  protocol TCP\n", vip
      for (j = 0; j < d; j++) {
        rip = sprintf("10.%d.%d.%d", j + 1, int(i / 250), i % 250 + 1)
        wt = (i == mid && j == 0) ? W : j + 1
        if (kind == "toml") printf "[[service.real_server]]\naddress = \"%s\"\nweight = %d\n", rip, wt
        else printf "  real_server %s 80 { weight %d }\n", rip, wt
      }
      if (kind != "toml") print "}"
    }
  }'
}
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", (b - a) / 1e9}'; }
# Over netlink: the kernel's proc listing skips services of this namespace when other
# namespaces hold services (its walk counts theirs when it steps and not when it
# restarts at every 4 KiB read): late in benches/run's boot it showed 990 of 1,000.
routes() { ns ipvsadm -Ln | grep -c Route || true; }
# The time (ns) of the director's log line by which `want` ops were applied.
applied_at() { # log want
  local line ts
  for _ in $(seq 6000); do
    line=$(awk -v want="$2" '/ops applied/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^applied=/) { split($i, a, "="); sum += a[2] }
        if (sum >= want) { print; exit } }' "$1")
    if [ -n "$line" ]; then
      ts=${line%% *}
      date -d "$ts" +%s%N
      return 0
    fi
    sleep 0.2
  done
  echo "reload: fewer than $2 ops applied" >&2
  exit 1
}
# Starts the observer of `vip`'s destination `ip` reaching `weight`; returns once it
# has looked once (its output file: "ready", then the time seen in ns).
watch_weight() { # vip ip weight file
  ip netns exec rl "$watch" --watch-weight "$1:80" "$2" "$3" >"$4" &
  for _ in $(seq 3000); do
    grep -q ready "$4" && return 0
    sleep 0.02
  done
  echo "reload: the observer did not start" >&2
  exit 1
}
seen_at() { # file (the observer's)
  for _ in $(seq 30000); do
    [ "$(wc -l <"$1")" -ge 2 ] && sed -n 2p "$1" && return 0
    sleep 0.02
  done
  echo "reload: $1: the weight never showed" >&2
  exit 1
}
# lvsdr's reconciler has finished its first pass (the start's program and confirm).
# Asked once a second, one request at a time (a render of 10,000 services takes a
# CPU for a while under emulation): none is in progress when this returns.
first_pass() {
  for _ in $(seq 600); do
    ns curl -sf http://127.0.0.1:9180/status | grep -Eq '"passes": ?[1-9]' && return 0
    sleep 1
  done
  echo "reload: the director's first pass never ended" >&2
  exit 1
}
wait_routes() { # n (untimed: a start before the measured reloads)
  for _ in $(seq 600); do
    [ "$(routes)" -ge "$1" ] && return 0
    sleep 1
  done
  echo "reload: $(routes) of $1 destinations after 600 s; the daemons:" >&2
  ps -eo pid,stat,etime,args | grep -E "[k]eepalived|[l]vsdr-director" >&2
  tail -n 30 "$w"/keepalived.log "$w"/director-*.log >&2 || true
  for n in $(ip netns list | awk '{print $1}'); do
    echo "namespace $n: $(ip netns exec "$n" ipvsadm -Ln | grep -c Route) destinations" >&2
  done
  echo "the root namespace: $(ipvsadm -Ln | grep -c Route) destinations" >&2
  ns ipvsadm -Ln | awk -v d="$dests" '/^TCP/ {s = $2; n++; c[s] = 0} /Route/ {c[s]++}
    END {print n " services"; for (k in c) if (c[k] != d) print k ": " c[k] " destinations"}' >&2
  exit 1
}
# (Daemons are started with `ip netns exec` itself, not this function: `$!` must be
# the daemon, which the signals go to.)
ns() { ip netns exec rl "$@"; }
fresh() { # a new namespace, the real servers on a dummy link
  if [ -e /run/netns/rl ]; then
    # Emptied first: deleting a namespace with a big table leaves the kernel tearing
    # it down in the background, during the next measurement.
    ns ipvsadm -C
    ip netns del rl
  fi
  ip netns add rl
  ip -n rl link set lo up
  ip -n rl link add d0 type dummy
  ip -n rl link set d0 up
  ip -n rl addr add 10.0.0.1/8 dev d0
  rm -f "$w/k.pid" "$w/kc.pid"
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# One weight changed, `repeat` times, on a running daemon: appends seconds to $2.
# The middle service's first destination goes to weight 100, 1, 100, … (it was 1).
one_change() { # daemon(lvsdr|keepalived) results
  local kind=toml file=$w/director.toml n=$one mid=$((one / 2)) pid wpid t0 t1 r wt vip d line
  [ "$1" = keepalived ] && kind=keepalived file=$w/keepalived.conf
  vip=198.18.$((mid / 250)).$((mid % 250 + 1)) d=10.1.$((mid / 250)).$((mid % 250 + 1))
  fresh
  gen "$n" "$kind" "$mid" 1 >"$file"
  if [ "$1" = lvsdr ]; then
    ip netns exec rl "$bin/lvsdr-director" run --config "$file" >/dev/null 2>"$w/director-$n.log" &
    pid=$!
  else
    ip netns exec rl keepalived -C -n -f "$file" -p "$w/k.pid" -c "$w/kc.pid" >"$w/keepalived.log" 2>&1 &
    pid=$!
  fi
  wait_routes $((n * dests))
  [ "$1" = lvsdr ] && first_pass
  for r in $(seq "$repeat"); do
    wt=$((r % 2 == 1 ? 100 : 1))
    gen "$n" "$kind" "$mid" "$wt" >"$file.new" && mv "$file.new" "$file"
    watch_weight "$vip" "$d" "$wt" "$w/seen"
    wpid=$!
    t0=$(now_ns)
    kill -HUP "$pid"
    t1=$(seen_at "$w/seen")
    wait "$wpid"
    secs "$t0" "$t1" >>"$2"
    if [ "$1" = lvsdr ]; then # of which reading and validating the file
      line=$(grep 'SIGHUP: config reloaded' "$w/director-$n.log" | sed -n "${r}p")
      secs "$t0" "$(date -d "${line%% *}" +%s%N)" >>"$2.parse"
    fi
    echo "reload one change, $1, $n × $dests, run $r: $(tail -1 "$2") s" >&2
  done
  kill "$pid" && wait "$pid" || true
}

# lvsdr: a start with the whole table, and a reload from an empty config to it.
add_all() { # results-start results-reload
  local n=$add pid t0 t1 r want=$((add * (dests + 1)))
  gen "$n" toml -1 0 >"$w/full.toml"
  for r in $(seq "$repeat"); do
    fresh
    cp "$w/full.toml" "$w/director.toml"
    t0=$(now_ns)
    ip netns exec rl "$bin/lvsdr-director" run --config "$w/director.toml" >/dev/null 2>"$w/start-$r.log" &
    pid=$!
    t1=$(applied_at "$w/start-$r.log" "$want")
    wait_routes $((n * dests))
    secs "$t0" "$t1" >>"$1"
    kill "$pid" && wait "$pid" || true
    fresh
    printf '[director]\nstatus_listen = "127.0.0.1:9180"\n' >"$w/director.toml"
    ip netns exec rl "$bin/lvsdr-director" run --config "$w/director.toml" >/dev/null 2>"$w/add-$r.log" &
    pid=$!
    for _ in $(seq 600); do ns curl -sf http://127.0.0.1:9180/healthz >/dev/null && break; sleep 0.1; done
    cp "$w/full.toml" "$w/director.toml"
    t0=$(now_ns)
    kill -HUP "$pid"
    t1=$(applied_at "$w/add-$r.log" "$want")
    wait_routes $((n * dests))
    secs "$t0" "$t1" >>"$2"
    kill "$pid" && wait "$pid" || true
    echo "add $n × $dests, run $r: start $(tail -1 "$1") s, reload $(tail -1 "$2") s" >&2
  done
}

: >"$w/lvsdr" && : >"$w/keepalived" && : >"$w/start" && : >"$w/add" && : >"$w/one-big"
one_change keepalived "$w/keepalived"
one_change lvsdr "$w/lvsdr"
add_all "$w/start" "$w/add"
one=$add one_change lvsdr "$w/one-big"
ns ipvsadm -C
ip netns del rl
runs() { paste -sd' ' "$1"; }
l=$(median <"$w/lvsdr") k=$(median <"$w/keepalived") s=$(median <"$w/start") a=$(median <"$w/add") b=$(median <"$w/one-big")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
version=$(keepalived --version 2>&1 | awk 'NR == 1 {print $2}')
{
  echo "| reloads (SIGHUP → the kernel as the file says; benches/reload.sh says how the end is seen), medians of $repeat | lvsdr-director | denominator | ratio | target |"
  echo "| --- | --- | --- | --- | --- |"
  echo "| one weight changed, $one × $dests, no checks | $l s (runs: $(runs "$w/lvsdr"); of which reading and validating the file: $(runs "$w/lvsdr.parse")) | keepalived $version -C, same table: $k s (runs: $(runs "$w/keepalived")) | $(ratio "$l" "$k") | ≤ 0.2 |"
  echo "| one weight changed, $add × $dests, no checks | $b s (runs: $(runs "$w/one-big"); of which reading and validating the file: $(runs "$w/one-big.parse")) | lvsdr's start with the same file (process start → the \"ops applied\" line that completes the table): $s s | $(ratio "$b" "$s") | ≤ 0.05 |"
  echo "| a reload that adds $add × $dests to an empty config (to the \"ops applied\" line that completes it) | $a s (runs: $(runs "$w/add")) | that start: $s s (runs: $(runs "$w/start")) | $(ratio "$a" "$s") | ≤ 1.2 |"
} >"$out"
cat "$out"
