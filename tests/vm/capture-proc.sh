#!/usr/bin/env bash
# Guest script: builds a varied IPVS table with ipvsadm and copies /proc/net/ip_vs to
# OUT, for the fixture ipvs/src/vectors/proc_net_ip_vs.txt (the service order follows
# the kernel's hash table, which differs from boot to boot).
#   tests/vm/vm.sh run tests/vm/capture-proc.sh "$PWD/target/vm/work/proc_net_ip_vs.txt"
set -euo pipefail
out=$1
ipvsadm -A -t 192.0.2.1:80 -s wrr
ipvsadm -a -t 192.0.2.1:80 -r 10.0.0.2:80 -g -w 3
ipvsadm -a -t 192.0.2.1:80 -r 10.0.0.3:80 -m -w 0
ipvsadm -A -u 192.0.2.1:53 -s rr -o
ipvsadm -A -t 192.0.2.2:0 -s sh -p 300 -M 255.255.255.0 -b sh-port
ipvsadm -a -t 192.0.2.2:0 -r 10.0.0.4 -i
ipvsadm -A -f 7 -s lc -p 60
ipvsadm -A -f 7 -6 -s lc
ipvsadm -A -t '[2001:db8::1]:443' -s wlc -p 10 -M 64
ipvsadm -a -t '[2001:db8::1]:443' -r '[2001:db8::2]:443' -g -w 2 -x 10 -y 5
ipvsadm -A --sctp-service 192.0.2.3:9 -s rr --pe sip
cat /proc/net/ip_vs >"$out"
