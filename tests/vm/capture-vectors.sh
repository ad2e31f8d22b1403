#!/usr/bin/env bash
# Guest script (run with `tests/vm/vm.sh run tests/vm/capture-vectors.sh`): records the
# netlink bytes ipvsadm sends and the kernel answers, for every IPVS message kind, with
# `strace -e write=N -e read=N` hex dumps. The dumps land in target/vm/work/vectors/;
# the byte-vector tests in ipvs/src/vectors/ were transcribed from them.
set -u
out=$(pwd)/target/vm/work/vectors
mkdir -p "$out"
ip netns add cap
n() { ip netns exec cap "$@"; }
n ip link set lo up
n ip link add d0 type dummy
n ip link set d0 up multicast on
n ip addr add 10.9.0.1/24 dev d0
n ip -6 addr add 2001:db8:9::1/64 dev d0 nodad
step=0
cap() {
  step=$((step + 1))
  local name=$1
  shift
  echo "### $name: ipvsadm $*" >"$out/$(printf %02d "$step")-$name.txt"
  n strace -s 65535 -e trace=sendmsg,recvmsg,sendto,recvfrom -e write=all -e read=all \
    ipvsadm "$@" >>"$out/$(printf %02d "$step")-$name.txt" 2>&1
  echo "rc=$?" >>"$out/$(printf %02d "$step")-$name.txt"
}
cap info -L -n
cap new-service-tcp -A -t 192.0.2.10:80 -s wrr
cap new-dest-dr -a -t 192.0.2.10:80 -r 10.9.0.11:80 -g -w 100
cap new-dest-dr2 -a -t 192.0.2.10:80 -r 10.9.0.12:80 -g -w 200 -x 1000 -y 10
cap set-dest -e -t 192.0.2.10:80 -r 10.9.0.11:80 -g -w 5
cap new-service-dup -A -t 192.0.2.10:80 -s wrr
cap new-service-udp -A -u 192.0.2.10:53 -s sh -b sh-fallback,sh-port
cap new-service-fwmark -A -f 7 -s lc -p 300 -M 255.255.255.0
cap new-service-v6 -A -t [2001:db8::10]:443 -s mh -p 60 -M 64 --pe sip
cap new-dest-v6 -a -t [2001:db8::10]:443 -r [2001:db8:9::11]:443 -g -w 3
cap new-dest-tun -a -f 7 -r 10.9.0.13 -i --tun-type gue --tun-port 6080 --tun-nocsum -w 2
cap new-dest-nat -a -u 192.0.2.10:53 -r 10.9.0.14:5353 -m -w 1
cap set-service -E -u 192.0.2.10:53 -s rr -o
cap get-service -L -n -t 192.0.2.10:80
cap dump -L -n
cap dump-stats -L -n --stats --exact
cap del-dest -d -t 192.0.2.10:80 -r 10.9.0.12:80
cap del-dest-missing -d -t 192.0.2.10:80 -r 10.9.0.99:80
cap del-service -D -u 192.0.2.10:53
cap del-service-missing -D -u 192.0.2.10:54
cap set-config --set 900 120 300
cap get-config -L --timeout
cap start-daemon --start-daemon master --mcast-interface d0 --syncid 5
cap get-daemon -L --daemon
cap stop-daemon --stop-daemon master
cap zero -Z
cap flush -C
ls "$out"
