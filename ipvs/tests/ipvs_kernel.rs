//! The IPVS binding against the real kernel. These run inside the test VM (tests/run
//! boots it); on an ordinary `cargo test` they are ignored, with the reason shown.
//! Each test works in a network namespace of its own, so each has its own IPVS table.

use lvsdr_test_support as support;

use std::net::{IpAddr, Ipv4Addr};

use lvsdr_ipvs::listing::{self, Columns};
use lvsdr_ipvs::proc;
use lvsdr_ipvs::*;
use support::{fresh_netns, ipvsadm, runtime, sh};

/// The kernel keeps one IPVS service table for all network namespaces, and a netlink
/// dump (or the proc listing) resumes by position in it: a test adding services in
/// another namespace meanwhile shifts the positions, and a listing repeats or skips
/// entries (seen: `ipvsadm -Ln` listed 304 of 300 services). The tests of this file
/// take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    // A test that panicked while holding it has already failed; carry on.
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip(addr),
        port,
    }
}

fn service(key: &ServiceKey, scheduler: Scheduler) -> Service {
    Service {
        key: key.clone(),
        settings: ServiceSettings::new(scheduler, key.family()),
    }
}

fn route(addr: &str, port: u16, weight: u32) -> Dest {
    Dest {
        addr: ip(addr),
        port,
        settings: DestSettings::route(weight),
    }
}

/// `ipvsadm -Ln` without its version line.
fn ipvsadm_table() -> String {
    ipvsadm("-Ln")
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

const TITLE: &str = "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// Our rendering of the table must be ipvsadm's, character for character.
async fn assert_listing_matches_ipvsadm(h: &IpvsHandle) {
    let info = h.info().await.expect("info");
    let table = h.table().await.expect("table");
    assert_eq!(
        listing::ipvsadm_text(&info, &table, Columns::Connections),
        ipvsadm("-Ln"),
        "ipvs list differs from ipvsadm -Ln"
    );
    assert_eq!(
        listing::ipvsadm_text(&info, &table, Columns::Stats),
        ipvsadm("-Ln --stats"),
        "ipvs list --stats differs from ipvsadm -Ln --stats"
    );
}

fn dests_sorted(mut d: Vec<DestEntry>) -> Vec<Dest> {
    d.sort_by_key(|e| (e.dest.addr, e.dest.port));
    d.into_iter().map(|e| e.dest).collect()
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn tcp_dr_service_with_wrr_add_read_edit_delete() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let key = tcp("192.0.2.10", 80);
        h.add_service(&service(&key, Scheduler::Wrr))
            .await
            .expect("add service");
        h.add_dest(&key, &route("10.9.0.11", 80, 100))
            .await
            .expect("add dest 1");
        h.add_dest(&key, &route("10.9.0.12", 80, 200))
            .await
            .expect("add dest 2");

        assert_eq!(
            ipvsadm_table(),
            format!(
                "{TITLE}TCP  192.0.2.10:80 wrr\n\
                 \x20 -> 10.9.0.11:80                 Route   100    0          0         \n\
                 \x20 -> 10.9.0.12:80                 Route   200    0          0         \n"
            )
        );
        // The same, read back through our own dump.
        let table = h.table().await.expect("table");
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].0.service, service(&key, Scheduler::Wrr));
        assert_eq!(
            dests_sorted(table[0].1.clone()),
            vec![route("10.9.0.11", 80, 100), route("10.9.0.12", 80, 200)]
        );
        assert_eq!(h.service(&key).await.expect("get").service.key, key);
        assert_listing_matches_ipvsadm(&h).await;

        h.edit_dest(&key, &route("10.9.0.11", 80, 5))
            .await
            .expect("edit weight");
        assert!(ipvsadm_table().contains("  -> 10.9.0.11:80                 Route   5      "));
        let d = dests_sorted(h.dests(&key).await.expect("dests"));
        assert_eq!(d[0].settings.weight, 5);

        h.delete_dest(&key, ip("10.9.0.12"), 80)
            .await
            .expect("delete dest");
        assert!(!ipvsadm_table().contains("10.9.0.12"));
        assert_eq!(h.dests(&key).await.expect("dests").len(), 1);

        h.delete_service(&key).await.expect("delete service");
        assert_eq!(ipvsadm_table(), TITLE);
        assert!(h.services().await.expect("services").is_empty());
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn refusals_are_typed_and_name_the_object() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let key = tcp("192.0.2.10", 80);
        h.add_service(&service(&key, Scheduler::Rr))
            .await
            .expect("add");

        let dup = h
            .add_service(&service(&key, Scheduler::Rr))
            .await
            .expect_err("duplicate");
        assert!(matches!(dup, IpvsError::Exists { .. }), "{dup:?}");
        assert_eq!(dup.to_string(), "service tcp 192.0.2.10:80 already exists");

        let d = route("10.9.0.11", 80, 1);
        h.add_dest(&key, &d).await.expect("add dest");
        let dup = h.add_dest(&key, &d).await.expect_err("duplicate dest");
        assert_eq!(
            dup.to_string(),
            "destination 10.9.0.11:80 of service tcp 192.0.2.10:80 already exists"
        );

        let missing = tcp("192.0.2.10", 81);
        let e = h
            .delete_service(&missing)
            .await
            .expect_err("missing service");
        assert!(matches!(e, IpvsError::NotFound { .. }), "{e:?}");
        assert!(
            e.to_string().contains("no such service tcp 192.0.2.10:81"),
            "{e}"
        );

        let e = h
            .delete_dest(&key, ip("10.9.0.99"), 80)
            .await
            .expect_err("missing dest");
        assert!(matches!(e, IpvsError::NotFound { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("no such destination 10.9.0.99:80 of service tcp 192.0.2.10:80"),
            "{e}"
        );

        let e = h
            .add_dest(&missing, &d)
            .await
            .expect_err("dest of a missing service");
        assert!(
            e.to_string().contains("no such service tcp 192.0.2.10:81"),
            "{e}"
        );

        // A multicast address cannot be a destination: EINVAL, with what was sent.
        let e = h
            .add_dest(&key, &route("224.0.0.5", 80, 1))
            .await
            .expect_err("multicast destination");
        assert!(matches!(e, IpvsError::Invalid { .. }), "{e:?}");
        assert!(
            e.to_string().contains("EINVAL") && e.to_string().contains("224.0.0.5"),
            "{e}"
        );

        let e = h
            .add_service(&service(
                &tcp("192.0.2.10", 82),
                Scheduler::Other("nosuch".into()),
            ))
            .await
            .expect_err("unknown scheduler");
        assert!(e.to_string().contains("scheduler \"nosuch\""), "{e}");
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn ipv6_udp_fwmark_persistence_and_tunnel() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");

        let v6 = tcp("2001:db8::10", 443);
        let mut v6svc = service(&v6, Scheduler::Sh);
        v6svc.settings.flags = ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
        h.add_service(&v6svc).await.expect("add v6");
        h.add_dest(&v6, &route("2001:db8:9::11", 443, 3))
            .await
            .expect("v6 dest");

        let udp = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip("192.0.2.10"),
            port: 53,
        };
        let mut udpsvc = service(&udp, Scheduler::Wlc);
        udpsvc.settings.flags = ServiceFlags::ONEPACKET;
        h.add_service(&udpsvc).await.expect("add udp");
        h.add_dest(&udp, &route("10.9.0.11", 53, 1))
            .await
            .expect("udp dest");

        let fwm = ServiceKey::Fwmark {
            family: Family::V4,
            mark: 7,
        };
        let mut fwmsvc = service(&fwm, Scheduler::Lc);
        fwmsvc.settings.flags = ServiceFlags::PERSISTENT;
        fwmsvc.settings.timeout = 300;
        fwmsvc.settings.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
        h.add_service(&fwmsvc).await.expect("add fwmark");
        let tun = Dest {
            addr: ip("10.9.0.13"),
            port: 0,
            settings: DestSettings {
                forwarding: Forwarding::Tunnel(Tunnel {
                    kind: TunnelKind::Gue,
                    port: 6080,
                    flags: 1,
                }),
                weight: 2,
                upper_threshold: 1000,
                lower_threshold: 10,
            },
        };
        h.add_dest(&fwm, &tun).await.expect("tunnel dest");

        let v6fwm = ServiceKey::Fwmark {
            family: Family::V6,
            mark: 9,
        };
        let mut v6fwmsvc = service(&v6fwm, Scheduler::Mh);
        v6fwmsvc.settings.flags = ServiceFlags::PERSISTENT;
        v6fwmsvc.settings.timeout = 60;
        v6fwmsvc.settings.netmask = Netmask::V6(64);
        v6fwmsvc.settings.pe_name = None;
        h.add_service(&v6fwmsvc).await.expect("add v6 fwmark");

        assert_eq!(
            ipvsadm_table(),
            format!(
                "{TITLE}UDP  192.0.2.10:53 wlc ops\n\
                 \x20 -> 10.9.0.11:53                 Route   1      0          0         \n\
                 TCP  [2001:db8::10]:443 sh (sh-fallback,sh-port)\n\
                 \x20 -> [2001:db8:9::11]:443         Route   3      0          0         \n\
                 FWM  7 lc persistent 300 mask 255.255.255.0\n\
                 \x20 -> 10.9.0.13:0                  Tunnel  2      0          0         \n\
                 FWM  9 IPv6 mh persistent 60 mask 64\n"
            )
        );

        let table = h.table().await.expect("table");
        let find = |k: &ServiceKey| {
            table
                .iter()
                .find(|(s, _)| &s.service.key == k)
                .unwrap_or_else(|| panic!("{k} not in the dump"))
        };
        assert_eq!(find(&v6).0.service, v6svc);
        assert_eq!(find(&udp).0.service, udpsvc);
        assert_eq!(find(&fwm).0.service, fwmsvc);
        assert_eq!(find(&v6fwm).0.service, v6fwmsvc);
        assert_eq!(dests_sorted(find(&fwm).1.clone()), vec![tun]);
        assert_eq!(
            dests_sorted(find(&v6).1.clone()),
            vec![route("2001:db8:9::11", 443, 3)]
        );
        assert_listing_matches_ipvsadm(&h).await;

        // Persistence engine sip on a UDP service (needs ip_vs_pe_sip, auto-loaded).
        let sip = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: ip("192.0.2.10"),
            port: 5060,
        };
        let mut sipsvc = service(&sip, Scheduler::Rr);
        sipsvc.settings.flags = ServiceFlags::PERSISTENT;
        sipsvc.settings.timeout = 30;
        sipsvc.settings.pe_name = Some("sip".into());
        h.add_service(&sipsvc).await.expect("add sip service");
        assert_eq!(h.service(&sip).await.expect("get sip").service, sipsvc);
        assert!(ipvsadm_table().contains("UDP  192.0.2.10:5060 rr persistent 30 pe sip\n"));

        // Edit a service: scheduler and flags change in place.
        let mut edited = udpsvc.clone();
        edited.settings.scheduler = Scheduler::Rr;
        edited.settings.flags = ServiceFlags::empty();
        h.edit_service(&edited).await.expect("edit service");
        assert_eq!(h.service(&udp).await.expect("get").service, edited);

        h.flush().await.expect("flush");
        assert!(h.services().await.expect("services").is_empty());
        assert_eq!(ipvsadm_table(), TITLE);
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn info_timeouts_and_sync_daemon() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let info = h.info().await.expect("info");
        assert_eq!(info.version_string(), "1.2.1");
        assert!(ipvsadm("-Ln").starts_with(&format!(
            "IP Virtual Server version 1.2.1 (size={})\n",
            info.conn_tab_size
        )));

        let t = Timeouts {
            tcp: Some(900),
            tcp_fin: Some(120),
            udp: Some(300),
        };
        h.set_timeouts(t).await.expect("set timeouts");
        assert_eq!(h.timeouts().await.expect("timeouts"), t);
        assert_eq!(ipvsadm("-L --timeout"), "Timeout (tcp tcpfin udp): 900 120 300\n");
        // None leaves a value alone.
        h.set_timeouts(Timeouts {
            tcp: Some(600),
            ..Timeouts::default()
        })
        .await
        .expect("set tcp only");
        assert_eq!(ipvsadm("-L --timeout"), "Timeout (tcp tcpfin udp): 600 120 300\n");

        let daemon = Daemon {
            state: DaemonState::Master,
            ifname: "d0".into(),
            sync_id: 5,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        };
        h.start_daemon(&daemon).await.expect("start daemon");
        let running = h.daemons().await.expect("daemons");
        assert_eq!(running.len(), 1, "{running:?}");
        assert_eq!(
            (running[0].state, running[0].ifname.as_str(), running[0].sync_id),
            (DaemonState::Master, "d0", 5)
        );
        assert_eq!(running[0].mcast_port, Some(8848));
        assert_eq!(
            ipvsadm("-L --daemon"),
            "master sync daemon (mcast=d0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
        let e = h.start_daemon(&daemon).await.expect_err("second master");
        assert!(matches!(e, IpvsError::Exists { .. }), "{e:?}");

        h.stop_daemon(DaemonState::Master).await.expect("stop daemon");
        assert!(h.daemons().await.expect("daemons").is_empty());
        assert_eq!(ipvsadm("-L --daemon"), "");
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn batched_and_pipelined_requests_each_get_their_own_answer() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let n = 300u16;
        let mut reqs = Vec::new();
        for i in 0..n {
            let key = tcp("192.0.2.10", 1000 + i);
            reqs.push(lvsdr_ipvs::wire::Request::NewService(service(
                &key,
                Scheduler::Rr,
            )));
            reqs.push(lvsdr_ipvs::wire::Request::NewDest(
                key.into(),
                route("10.9.0.11", 1000 + i, 1),
            ));
        }
        // A duplicate in the middle fails alone; the rest go through.
        reqs.insert(
            301,
            lvsdr_ipvs::wire::Request::NewService(service(&tcp("192.0.2.10", 1000), Scheduler::Rr)),
        );
        let results = h.execute(reqs).await;
        assert_eq!(results.len(), 2 * usize::from(n) + 1);
        for (i, r) in results.iter().enumerate() {
            if i == 301 {
                assert!(matches!(r, Err(IpvsError::Exists { .. })), "{r:?}");
            } else {
                assert!(r.is_ok(), "request {i}: {r:?}");
            }
        }
        // Answers that carry data, more than a window of them: each its own.
        let gets = (0..n)
            .map(|i| lvsdr_ipvs::wire::Request::GetService(tcp("192.0.2.10", 1000 + i).into()))
            .collect();
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), h.execute(gets))
            .await
            .expect("300 pipelined gets answered within 60 s");
        for (i, r) in (0..n).zip(got) {
            match r.expect("get").into_iter().next() {
                Some(lvsdr_ipvs::wire::Reply::Service(s)) => {
                    assert_eq!(s.service.key, tcp("192.0.2.10", 1000 + i))
                }
                other => panic!("get {i}: {other:?}"),
            }
        }
        // Changes that all fail, more than a buffer's worth (each failure answers with
        // its errno and an echo of the request), the last of each buffer among them:
        // every one gets its own error, none is lost from the receive queue.
        let dups: Vec<_> = (0..n)
            .map(|i| {
                lvsdr_ipvs::wire::Request::NewService(service(
                    &tcp("192.0.2.10", 1000 + i),
                    Scheduler::Rr,
                ))
            })
            .collect();
        let results = tokio::time::timeout(std::time::Duration::from_secs(60), h.execute(dups))
            .await
            .expect("300 refused changes answered within 60 s");
        assert_eq!(results.len(), usize::from(n));
        for (i, r) in results.iter().enumerate() {
            assert!(
                matches!(r, Err(IpvsError::Exists { .. })),
                "change {i}: {r:?}"
            );
        }
        let table = h.table().await.expect("table");
        assert_eq!(table.len(), usize::from(n));
        assert!(table.iter().all(|(_, d)| d.len() == 1));
        assert_eq!(
            ipvsadm("-Ln")
                .lines()
                .filter(|l| l.starts_with("TCP"))
                .count(),
            300
        );
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn traffic_through_the_vip_moves_the_counters() {
    let _turn = turn();
    fresh_netns();
    // This thread's namespace is the director: it owns a bridge with the VIP; a client
    // and a real server hang off the bridge in namespaces of their own.
    let tag = std::process::id();
    let (client, rs) = (format!("tc{tag}"), format!("tr{tag}"));
    let vip = "10.9.2.100";
    sh(&format!(
        "ip link add br0 type bridge forward_delay 0 && ip link set br0 up \
         && ip addr add 10.9.2.1/24 dev br0 && ip addr add {vip}/32 dev br0 \
         && for ns in {client} {rs}; do ip netns add $ns; ip link add v$ns type veth peer name eth0 netns $ns; \
              ip link set v$ns master br0 up; ip -n $ns link set lo up; ip -n $ns link set eth0 up; done \
         && ip -n {client} addr add 10.9.2.2/24 dev eth0 \
         && ip -n {rs} addr add 10.9.2.11/24 dev eth0 && ip -n {rs} addr add {vip}/32 dev lo \
         && ip netns exec {rs} sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
         && mkdir -p /tmp/www{tag} && echo hello > /tmp/www{tag}/index.html"
    ));
    let mut httpd = std::process::Command::new("ip")
        .args([
            "netns", "exec", &rs, "busybox", "httpd", "-f", "-p", "80", "-h",
        ])
        .arg(format!("/tmp/www{tag}"))
        .spawn()
        .expect("httpd");
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let key = tcp(vip, 80);
        h.add_service(&service(&key, Scheduler::Rr)).await.expect("add service");
        h.add_dest(&key, &route("10.9.2.11", 80, 1)).await.expect("add dest");
        for _ in 0..5 {
            let body = sh(&format!(
                "ip netns exec {client} curl -s --max-time 5 --retry 3 --retry-connrefused http://{vip}/"
            ));
            assert_eq!(body, "hello\n");
        }
        // The kernel folds per-CPU counters every 2 s: poll.
        let mut moved = None;
        for _ in 0..60 {
            let (svc, dest) = counters(&h, &key).await;
            if svc.conns >= 5 && dest.stats.conns >= 5 && dest.stats.in_pkts > 0 {
                moved = Some((svc, dest));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let (svc_stats, dest) = moved.expect("counters reached 5 connections within 15 s");
        assert!(svc_stats.in_bytes > 0);
        assert!(dest.active_conns + dest.inactive_conns > 0, "{dest:?}");
        // The proc file shows the same connection counts (the director drains on them).
        let text = lvsdr_ipvs::proc::read().expect("proc file");
        let blocks = lvsdr_ipvs::proc::parse(&text).expect("parse");
        let now = counters(&h, &key).await.1;
        assert_eq!(
            blocks[0].conns,
            [(ip("10.9.2.11"), 80, now.active_conns, now.inactive_conns)],
            "{text}"
        );

        h.zero(Some(&key)).await.expect("zero");
        let mut zeroed = false;
        for _ in 0..40 {
            if counters(&h, &key).await.0.conns == 0 {
                zeroed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        assert!(zeroed, "counters were not zeroed");
    });
    let _ = httpd.kill();
    let _ = httpd.wait();
    sh(&format!(
        "ip netns del {client}; ip netns del {rs}; rm -rf /tmp/www{tag}"
    ));
}

/// A service's and its first destination's counters.
async fn counters(h: &IpvsHandle, key: &ServiceKey) -> (Stats, DestEntry) {
    let s = h.service(key).await.expect("service");
    let d = h.dests(key).await.expect("dests");
    (s.stats, d.into_iter().next().expect("one dest"))
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn the_proc_listing_agrees_with_netlink_and_moves_only_where_the_table_did() {
    let _turn = turn();
    fresh_netns();
    ipvsadm("-A -t 192.0.2.1:80 -s wrr");
    ipvsadm("-a -t 192.0.2.1:80 -r 10.0.0.2:80 -g -w 3");
    ipvsadm("-a -t 192.0.2.1:80 -r 10.0.0.3:80 -g -w 1 -x 10 -y 5");
    ipvsadm("-A -u 192.0.2.1:53 -s rr -o");
    ipvsadm("-A -t 192.0.2.2:0 -s sh -p 300 -M 255.255.255.0 -b sh-port");
    ipvsadm("-a -t 192.0.2.2:0 -r 10.0.0.4 -i");
    ipvsadm("-A -t [2001:db8::1]:443 -s wlc -p 10 -M 64");
    ipvsadm("-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -g -w 2");
    ipvsadm("-A -f 7 -s lc -p 60");
    ipvsadm("-A -f 7 -6 -s lc");
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let text = proc::read().expect("proc file");
        let table = h.table().await.expect("table");
        // The proc file and the netlink dumps walk the same lists in the same order,
        // so our rendering of the dump is the kernel's text, for the kernel's HZ.
        assert!(
            [100, 250, 300, 1000]
                .iter()
                .any(|&hz| proc::render(&table, hz) == text),
            "render differs from the kernel:\n{text}\nours (HZ 250):\n{}",
            proc::render(&table, 250)
        );
        let blocks = proc::parse(&text).expect("parse");
        assert_eq!(blocks.len(), table.len());
        for (b, (s, dests)) in blocks.iter().zip(&table) {
            assert!(
                b.keys.contains(&s.service.key),
                "{b:?} vs {}",
                s.service.key
            );
            let ours: Vec<(IpAddr, u16)> =
                dests.iter().map(|d| (d.dest.addr, d.dest.port)).collect();
            // Only destinations with connections are listed (none in this idle table);
            // the order of all of them is checked by the rendering above.
            assert!(b.conns.iter().all(|c| ours.contains(&(c.0, c.1))), "{b:?}");
        }

        ipvsadm("-e -t 192.0.2.1:80 -r 10.0.0.3:80 -g -w 4 -x 10 -y 5");
        let after = proc::parse(&proc::read().expect("proc")).expect("parse");
        let moved: Vec<&str> = blocks
            .iter()
            .zip(&after)
            .filter(|(a, b)| a.fingerprint != b.fingerprint)
            .map(|(a, _)| a.id.as_str())
            .collect();
        assert_eq!(
            moved,
            ["TCP C0000201:0050"],
            "only the edited service moved"
        );
        ipvsadm("-e -t 192.0.2.1:80 -r 10.0.0.3:80 -g -w 4 -x 20 -y 5");
        let thresholds = proc::parse(&proc::read().expect("proc")).expect("parse");
        assert_eq!(
            thresholds[0].fingerprint, after[0].fingerprint,
            "thresholds are not in the proc file (the full read catches them)"
        );
    });
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn many_services_read_by_key_more_than_a_window_at_a_time() {
    let _turn = turn();
    fresh_netns();
    runtime().block_on(async {
        let h = IpvsHandle::connect().await.expect("IPVS family");
        let keys: Vec<ServiceKey> = (0..300u16).map(|p| tcp("192.0.2.7", 1000 + p)).collect();
        for k in &keys[..200] {
            h.add_service(&service(k, Scheduler::Rr))
                .await
                .expect("add");
            h.add_dest(k, &route("10.0.0.2", 0, 1)).await.expect("dest");
        }
        let got =
            tokio::time::timeout(std::time::Duration::from_secs(60), h.services_by_key(&keys))
                .await
                .expect("answered within 60 s")
                .expect("read");
        assert_eq!(got.len(), 300);
        assert_eq!(got.iter().filter(|(_, s)| s.is_some()).count(), 200);
        for (k, s) in &got {
            if let Some((s, d)) = s {
                assert_eq!(&s.service.key, k);
                assert_eq!(d.len(), 1);
            }
        }
    });
}
