#!/usr/bin/env bash
# Guest side of `tests/packages --vm`, with systemd as PID 1 (tests/vm/vm.sh run
# --systemd): installs the .deb files given as arguments with dpkg -i, then runs the
# shipped, hardened units under the real service manager (issue 23):
#   - the director starts with the shipped example config (no [agents]), its logs reach
#     the journal with their fields, `systemctl reload` reloads;
#   - kill -9: systemd restarts it and the restarted director changes nothing (0 ops);
#   - a director that stops answering (SIGSTOP) misses the watchdog and is restarted;
#   - with [agents] and its credentials in place it starts and pushes to an agent; with a
#     credential missing the failure names the file;
#   - the agent's unit starts, serves its /metrics, re-applies its saved VIPs at start,
#     is restarted after a crash.
set -euo pipefail
t0=$SECONDS
say() { printf '[systemd-guest %4ss] %s\n' "$((SECONDS - t0))" "$*"; }
fail() {
  echo "systemd-guest: FAIL: $*" >&2
  journalctl --no-pager -n 40 -u lvsdr-director -u lvsdr-agent >&2 || true
  exit 1
}
# wait_for WHAT SECONDS CMD…: CMD succeeds within SECONDS (a loaded emulated machine).
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  fail "$what: not within ${secs}s"
}
status() { curl -sf --max-time 5 http://127.0.0.1:9180/status; }
main_pid() { systemctl show -p MainPID --value "$1"; }
restarts() { systemctl show -p NRestarts --value "$1"; }

say "dpkg -i $*"
names=()
for d in "$@"; do names+=("$(dpkg-deb -f "$d" Package)"); done
# The root is a copy of the host's, where the packages may already be installed.
dpkg --purge "${names[@]}" >/dev/null 2>&1 || true
dpkg -i --no-triggers "$@" >/dev/null
for n in "${names[@]}"; do
  dpkg -s "$n" | grep -q '^Status: install ok installed' || fail "$n not installed"
  say "installed: $(dpkg -s "$n" | grep '^Version:') $n"
done
lvsdr-director check-config /etc/lvsdr/director.toml >/dev/null
lvsdr-director --version
lvsdr-agent --version
# A changed conffile survives an upgrade (reinstall) untouched.
echo "# edited by the operator" >>/etc/lvsdr/director.toml
dpkg -i --force-confold --no-triggers "$@" >/dev/null
grep -q "edited by the operator" /etc/lvsdr/director.toml || fail "the conffile was overwritten"
systemctl daemon-reload

say "the director with the shipped example config"
! systemctl is-enabled -q lvsdr-director || fail "enabled on install (the example config must be edited first)"
systemctl start lvsdr-director || fail "systemctl start lvsdr-director"
wait_for "the status endpoint" 60 status
wait_for "the first pass" 60 sh -c "curl -sf http://127.0.0.1:9180/status | jq -e '.reconcile.passes >= 1'"
ipvsadm -Ln | grep -q "192.0.2.10:80" || fail "the example's service is not in the kernel"
say "unit: $(systemctl show -p ActiveState,SubState,User,DynamicUser --value lvsdr-director | tr '\n' ' ')"
# Native journal entries: the event's fields are journal fields.
wait_for "a journal entry with LVSDR_ fields" 30 sh -c \
  "journalctl -u lvsdr-director -o json --no-pager | jq -e 'select(.LVSDR_SERVICES != null)' | grep -q ."
say "journal: $(journalctl -u lvsdr-director -o json --no-pager | jq -c 'select(.LVSDR_SERVICES != null) | {MESSAGE, LVSDR_SERVICES, PRIORITY, TARGET}' | head -1)"

say "systemctl reload"
systemctl reload lvsdr-director
wait_for "config generation 2" 60 sh -c "curl -sf http://127.0.0.1:9180/status | jq -e '.config.generation == 2'"

say "kill -9: systemd restarts it, and the table is left as it is"
pid=$(main_pid lvsdr-director) n=$(restarts lvsdr-director)
kill -9 "$pid"
wait_for "a restart after kill -9" 60 sh -c "[ \"\$(systemctl show -p NRestarts --value lvsdr-director)\" -gt $n ] && systemctl is-active -q lvsdr-director"
wait_for "the restarted director's first pass" 60 sh -c "curl -sf http://127.0.0.1:9180/status | jq -e '.reconcile.passes >= 1'"
ops=$(status | jq '.reconcile.ops_applied')
[ "$ops" = 0 ] || fail "the restarted director applied $ops ops"
say "restarted (pid $pid → $(main_pid lvsdr-director)), ops_applied $ops"

say "the watchdog: a director that stops answering is restarted"
mkdir -p /run/systemd/system/lvsdr-director.service.d
printf '[Service]\nWatchdogSec=6s\nTimeoutAbortSec=5s\n' >/run/systemd/system/lvsdr-director.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart lvsdr-director
wait_for "the status endpoint" 60 status
n=$(restarts lvsdr-director)
sleep 9 # over the 6 s watchdog period: the pings must keep it running meanwhile
[ "$(restarts lvsdr-director)" = "$n" ] || fail "restarted while it answered (the watchdog was not fed)"
pid=$(main_pid lvsdr-director)
kill -STOP "$pid"
wait_for "a restart by the watchdog" 90 sh -c "[ \"\$(systemctl show -p NRestarts --value lvsdr-director)\" -gt $n ]"
journalctl -u lvsdr-director --no-pager | grep -q "Watchdog timeout" || fail "no watchdog timeout in the journal"
wait_for "active again" 60 systemctl is-active -q lvsdr-director
rm /run/systemd/system/lvsdr-director.service.d/watchdog.conf
systemctl daemon-reload
systemctl stop lvsdr-director

say "[agents] with its credentials, and an agent on this host"
pki=/tmp/pki
lvsdr-director pki init "$pki" --agent 10.99.0.2 >/dev/null
install -m 600 "$pki/ca.pem" /etc/lvsdr/ca.pem
install -m 600 "$pki/director.pem" /etc/lvsdr/director.pem
install -m 600 "$pki/director.key" /etc/lvsdr/director.key
install -m 600 "$pki/agent-10.99.0.2.pem" /etc/lvsdr/agent.pem
install -m 600 "$pki/agent-10.99.0.2.key" /etc/lvsdr/agent.key
ip link add rs0 type dummy && ip addr add 10.99.0.2/24 dev rs0 && ip link set rs0 up
systemctl start lvsdr-agent || fail "systemctl start lvsdr-agent"
wait_for "the agent" 60 systemctl is-active -q lvsdr-agent
cp /etc/lvsdr/director.toml /tmp/director.toml.shipped
cat >/etc/lvsdr/director.toml <<'EOF'
[director]
status_listen = "127.0.0.1:9180"
[agents]
ca = "ca.pem"
cert = "director.pem"
key = "director.key"
push_interval = "2s"
[[service]]
name = "web"
vip = "10.99.1.10"
port = 80
[service.check]
type = "tcp"
[[service.real_server]]
address = "10.99.0.2"
EOF
mkdir -p /etc/systemd/system/lvsdr-director.service.d
cp /usr/share/lvsdr-director/systemd/agents.conf /etc/systemd/system/lvsdr-director.service.d/
systemctl daemon-reload
systemctl start lvsdr-director || fail "systemctl start lvsdr-director with [agents]"
wait_for "the VIP pushed to the agent (on lo)" 90 sh -c "ip -4 addr show dev lo | grep -q '10.99.1.10/32'"
say "the agent holds 10.99.1.10/32 on lo, pushed by the director"
wait_for "the agent's /metrics to show the VIP in place" 30 sh -c \
  "curl -sf http://127.0.0.1:9182/metrics | grep -q '^lvsdr_agent_vip_in_place{.*vip=\"10.99.1.10\"} 1$'"

say "the agent restarts after a crash and re-applies its VIPs at start"
systemctl stop lvsdr-director # no pushes from here: what comes back comes from the state file
pid=$(main_pid lvsdr-agent) n=$(restarts lvsdr-agent)
ip addr del 10.99.1.10/32 dev lo
kill -9 "$pid"
wait_for "the agent restarted" 60 sh -c "[ \"\$(systemctl show -p NRestarts --value lvsdr-agent)\" -gt $n ] && systemctl is-active -q lvsdr-agent"
wait_for "the saved VIP back on lo" 60 sh -c "ip -4 addr show dev lo | grep -q '10.99.1.10/32'"
lvsdr-agent status | head -5

say "[agents] with a credential missing: the failure names it"
mv /etc/lvsdr/director.key /tmp/director.key
if systemctl start lvsdr-director; then fail "started without director.key"; fi
why=$(systemctl status lvsdr-director --no-pager 2>&1 || true; journalctl -u lvsdr-director --no-pager -n 30)
grep -q "/etc/lvsdr/director.key" <<<"$why" || {
  echo "$why" >&2
  fail "the failure does not name /etc/lvsdr/director.key"
}
say "named: $(grep -m1 "/etc/lvsdr/director.key" <<<"$why")"
mv /tmp/director.key /etc/lvsdr/director.key
systemctl reset-failed lvsdr-director
systemctl start lvsdr-director || fail "start once the key is back"
say "all systemd checks passed"
