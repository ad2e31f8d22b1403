//! Health checks against real listeners, in a network namespace of the test's own
//! (no IPVS needed). Needs root; `tests/run` runs these.

use lvsdr_test_support as support;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use lvsdr_checks::{CheckKind, CheckSpec, Checker, Prepared};
use support::{runtime, sh};

fn spec(target: SocketAddr, kind: CheckKind) -> Prepared {
    Prepared::new(Arc::new(CheckSpec {
        via: None,
        target,
        kind,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 1,
        fall: 1,
    }))
    .expect("spec")
}

/// The listener's accept queue and the namespace's half-open connections.
fn connections() -> (usize, usize) {
    let count = |state: &str| {
        sh(&format!("ss -Htn state {state} | wc -l"))
            .trim()
            .parse::<usize>()
            .expect("count")
    };
    (count("established"), count("syn-recv"))
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_half_open_check_finds_listeners_and_leaves_no_connection_behind() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up && ip route add blackhole 192.0.2.0/24");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("listen");
    let v6 = TcpListener::bind("[::1]:0").expect("listen v6");
    v4.set_nonblocking(true).expect("nonblocking");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let checker = Checker::new(cancel.clone()).expect("checker");
        let up = spec(v4.local_addr().expect("addr"), CheckKind::TcpSyn);
        for _ in 0..20 {
            assert_eq!(checker.run(&up).await, Ok(()));
        }
        assert_eq!(
            checker
                .run(&spec(v6.local_addr().expect("addr"), CheckKind::TcpSyn))
                .await,
            Ok(())
        );
        let refused = checker.run(&spec(closed, CheckKind::TcpSyn)).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("RST")),
            "{refused:?}"
        );
        let silent = checker
            .run(&spec(
                "192.0.2.1:80".parse().expect("addr"),
                CheckKind::TcpSyn,
            ))
            .await;
        assert!(silent.is_err(), "{silent:?}");

        // Twenty SYN-ACKs were answered with a RST by the kernel: nothing to accept,
        // nothing half-open left on the listener.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            v4.accept().is_err(),
            "a half-open check completed a connection"
        );
        assert_eq!(connections(), (0, 0));
        // A connect check, by contrast, is a connection the listener sees.
        assert_eq!(
            checker
                .run(&spec(v4.local_addr().expect("addr"), CheckKind::Tcp))
                .await,
            Ok(())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            v4.accept().is_ok(),
            "the connect check reached the accept queue"
        );
        cancel.cancel();
    });
}

/// The scheduler's own probers (no task per check), for `tcp` and `tcp-syn` each: a
/// listener is up, a closed port is down (refused), a port whose SYNs are dropped is
/// down after its timeout (the wheel's deadline), and no socket stays open behind them.
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn the_scheduler_runs_connect_checks_to_up_refused_and_silent_ports() {
    use lvsdr_checks::{Health, Supervisor};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up");
    sh("nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }' && nft add rule inet t in tcp dport 9 drop");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let silent: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let check = |target: SocketAddr, kind: CheckKind| {
        Arc::new(CheckSpec {
            via: None,
            target,
            kind,
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
            rise: 2,
            fall: 2,
        })
    };
    let three = |kind: CheckKind| {
        [
            check(listener.local_addr().expect("addr"), kind.clone()),
            check(closed, kind.clone()),
            check(silent, kind),
        ]
    };
    let [up, refused, dropped] = three(CheckKind::Tcp);
    let [syn_up, syn_refused, syn_dropped] = three(CheckKind::TcpSyn);
    // IPv6 too: the scheduler's half-open prober has a raw socket per family.
    let listener6 = TcpListener::bind("[::1]:0").expect("listen on ::1");
    let syn_up6 = check(listener6.local_addr().expect("addr"), CheckKind::TcpSyn);
    runtime().block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut sup = Supervisor::new(
            Checker::new(cancel.clone()).expect("checker"),
            cancel.clone(),
        );
        sup.set_checks(&[
            up.clone(),
            refused.clone(),
            dropped.clone(),
            syn_up.clone(),
            syn_refused.clone(),
            syn_dropped.clone(),
            syn_up6.clone(),
        ]);
        let mut health = sup.health();
        let details = sup.details();
        let want = |h: &lvsdr_checks::HealthMap| {
            [&up, &syn_up, &syn_up6]
                .iter()
                .all(|c| h.get(*c) == Some(&Health::Up))
                && [&refused, &dropped, &syn_refused, &syn_dropped]
                    .iter()
                    .all(|c| h.get(*c) == Some(&Health::Down))
        };
        tokio::time::timeout(Duration::from_secs(5), health.wait_for(want))
            .await
            .expect("up, refused and dropped each found within 5 s, by both kinds")
            .expect("channel");
        let d = details.borrow().clone();
        let err = |s: &Arc<CheckSpec>| d[s].error.clone().unwrap_or_default();
        assert!(err(&refused).contains("refused"), "{}", err(&refused));
        assert!(err(&dropped).contains("timed out"), "{}", err(&dropped));
        assert!(err(&syn_refused).contains("RST"), "{}", err(&syn_refused));
        assert!(
            err(&syn_dropped).contains("timed out"),
            "{}",
            err(&syn_dropped)
        );
        assert_eq!((&d[&up].error, &d[&syn_up].error), (&None, &None));
        assert!(d[&up].latency.is_some() && d[&up].last_check.is_some());
        // Removed checks stop: their entries go, and no socket is left open.
        sup.set_checks(std::slice::from_ref(&up));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(details.borrow().len(), 1);
        let open = sh("ss -Htn state syn-sent | wc -l");
        assert_eq!(open.trim(), "0", "connects left in flight");
        cancel.cancel();
    });
}

/// Connections accepted and requests read by a test server.
type Served = (
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
);

/// A plain-HTTP server on `listener`: answers `answer` to each request (or nothing,
/// if it is empty), keeping the connection; counts connections and requests.
async fn http_server(
    listener: TcpListener,
    answer: &'static str,
) -> Arc<(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
)> {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let counts = Arc::new(Served::default());
    let c2 = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counts: Arc<(
                std::sync::atomic::AtomicUsize,
                std::sync::atomic::AtomicUsize,
            )> = c2.clone();
            counts.0.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 512];
                while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    got.extend_from_slice(&chunk[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let close = String::from_utf8_lossy(&got[..end]).contains("close");
                        got.drain(..end + 4);
                        counts.1.fetch_add(1, Relaxed);
                        if answer.is_empty() {
                            continue;
                        }
                        if s.write_all(answer.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    counts
}

/// Plain-HTTP checks in the scheduler's own epoll set: a server that answers 200 is up
/// on one kept connection per ten checks; a wrong status, a refused port, a port whose
/// SYNs are dropped and a server that never answers are down (the last two after the
/// wheel's deadline); removed checks leave no connection open.
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn the_scheduler_runs_http_checks_from_its_epoll_set() {
    use lvsdr_checks::{Health, HttpCheck, Supervisor};
    use std::sync::atomic::Ordering::Relaxed;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up");
    sh("nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }' && nft add rule inet t in tcp dport 9 drop");
    let listen = || TcpListener::bind("127.0.0.1:0").expect("listen");
    let (ok, wrong, mute) = (listen(), listen(), listen());
    let closed = listen().local_addr().expect("addr");
    let check = |target: SocketAddr| {
        let mut h = HttpCheck::get("/health");
        h.expect_body = Some("^ok$".into());
        Arc::new(CheckSpec {
            via: None,
            target,
            kind: CheckKind::Http(h),
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
            rise: 2,
            fall: 2,
        })
    };
    let addr = |l: &TcpListener| l.local_addr().expect("addr");
    let up = check(addr(&ok));
    let (status, silent) = (check(addr(&wrong)), check(addr(&mute)));
    let (refused, dropped) = (check(closed), check("127.0.0.1:9".parse().expect("addr")));
    runtime().block_on(async {
        let served = http_server(ok, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        http_server(wrong, "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nok").await;
        http_server(mute, "").await;
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut sup = Supervisor::new(
            Checker::new(cancel.clone()).expect("checker"),
            cancel.clone(),
        );
        let all = [&up, &status, &silent, &refused, &dropped].map(|c| (*c).clone());
        sup.set_checks(&all);
        let mut health = sup.health();
        let want = |h: &lvsdr_checks::HealthMap| {
            h.get(&up) == Some(&Health::Up)
                && all[1..].iter().all(|c| h.get(c) == Some(&Health::Down))
        };
        tokio::time::timeout(Duration::from_secs(60), health.wait_for(want))
            .await
            .expect("each found up or down within 60 s")
            .expect("channel");
        let d = sup.details().borrow().clone();
        let err = |s: &Arc<CheckSpec>| d[s].error.clone().unwrap_or_default();
        assert!(
            err(&status).ends_with("/health: status 500, expected 200"),
            "{}",
            err(&status)
        );
        assert!(err(&refused).contains("refused"), "{}", err(&refused));
        assert!(err(&dropped).contains("timed out"), "{}", err(&dropped));
        assert!(err(&silent).contains("timed out"), "{}", err(&silent));
        assert_eq!(d[&up].error, None);
        // Keep-alive through the scheduler: a new connection every tenth check.
        let t0 = std::time::Instant::now();
        while served.1.load(Relaxed) < 25 {
            assert!(t0.elapsed() < Duration::from_secs(60), "25 checks in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (conns, reqs) = (served.0.load(Relaxed), served.1.load(Relaxed));
        assert!(
            conns <= reqs / 10 + 1,
            "{conns} connections for {reqs} checks"
        );
        // Removed checks: their kept connections (and the silent server's) close.
        sup.set_checks(&[]);
        let t0 = std::time::Instant::now();
        loop {
            let open = sh("ss -Htn state established '( dport != :0 )' | wc -l");
            if open.trim() == "0" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "connections left open: {open}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
    });
}

/// A check this host cannot carry out (here: no route to the server) is a local error:
/// the server's health stays unknown, never down, and the runs are counted for the
/// `lvsdr_health_check_local_errors_total` metric (a fork refused by `TasksMax` takes
/// the same path: EAGAIN).
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_check_this_host_cannot_run_is_counted_and_takes_no_server_down() {
    use lvsdr_checks::{Health, Supervisor};
    use std::sync::atomic::Ordering;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up");
    let unroutable: SocketAddr = "192.0.2.1:80".parse().expect("addr");
    let check = |kind: CheckKind| {
        Arc::new(CheckSpec {
            via: None,
            target: unroutable,
            kind,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 1,
        })
    };
    let (tcp, syn) = (check(CheckKind::Tcp), check(CheckKind::TcpSyn));
    runtime().block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut sup = Supervisor::new(
            Checker::new(cancel.clone()).expect("checker"),
            cancel.clone(),
        );
        sup.set_checks(&[tcp.clone(), syn.clone()]);
        let tally = sup.tally();
        let t0 = std::time::Instant::now();
        while tally.local_errors.load(Ordering::Relaxed) < 10 {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "local errors counted: {}",
                tally.local_errors.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let h = sup.health().borrow().clone();
        for c in [&tcp, &syn] {
            assert_ne!(h.get(c), Some(&Health::Down), "{}: {h:?}", c.label());
        }
        let d = sup.details().borrow().clone();
        let err = d[&tcp].error.clone().unwrap_or_default();
        assert!(err.contains("local error"), "{err}");
        assert!(tally.completed.load(Ordering::Relaxed) >= 10);
        cancel.cancel();
    });
}

/// A flood of TCP segments to the tcp-syn prober's own port (learnt, as an attacker
/// would, from its SYNs), with three shares of one CPU against the prober's one. The
/// prober must still send its probes and settle them: a listener stays up throughout,
/// a closed port stays down (its RSTs still read), and checks keep completing. (The
/// flood this machine can make never outran the prober, before the socket filter
/// dropped non-answers in the kernel or after: the test shows the bound, it did not
/// catch a failure.)
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn the_syn_prober_keeps_checking_through_a_flood_to_its_port() {
    use lvsdr_checks::{Health, Supervisor};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    // One CPU for the prober and the flooders (threads inherit it): the flood gets three
    // shares of it to the prober's one, as a flood from other machines would outrun it.
    let mut one = nix::sched::CpuSet::new();
    one.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("affinity");
    sh("ip link set lo up");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let check = |target: SocketAddr| {
        Arc::new(CheckSpec {
            via: None,
            target,
            kind: CheckKind::TcpSyn,
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
        })
    };
    let (up, refused) = (check(listener.local_addr().expect("addr")), check(closed));
    let snoop = Snoop::open();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    runtime().block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut sup = Supervisor::new(
            Checker::new(cancel.clone()).expect("checker"),
            cancel.clone(),
        );
        sup.set_checks(&[up.clone(), refused.clone()]);
        let mut health = sup.health();
        let tally = sup.tally();
        let details = sup.details();
        let settled = |h: &lvsdr_checks::HealthMap| {
            h.get(&up) == Some(&Health::Up) && h.get(&refused) == Some(&Health::Down)
        };
        tokio::time::timeout(Duration::from_secs(30), health.wait_for(settled))
            .await
            .expect("the listener up and the closed port down within 30 s")
            .expect("channel");
        let lp = up_port(&listener);
        let port = tokio::task::spawn_blocking(move || snoop.prober_port(lp))
            .await
            .expect("snoop");

        // Flooder threads inherit this thread's namespace.
        for i in 0..3u16 {
            let (stop, sent) = (stop.clone(), sent.clone());
            flooders.push(std::thread::spawn(move || flood(i, port, &stop, &sent)));
        }
        // Through a good stretch of flood, every change is watched: none may be a
        // transition, and checks must go on completing.
        let done0 = tally.completed.load(Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let mut changes = Vec::new();
        while t0.elapsed() < Duration::from_secs(6) {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(200), health.changed()).await
            {
                let h = health.borrow_and_update().clone();
                if !settled(&h) {
                    let d = details.borrow().clone();
                    changes.push(format!("{:?}: {h:?} {d:?}", t0.elapsed()));
                }
            }
        }
        let done = tally.completed.load(Ordering::Relaxed) - done0;
        let flooded = sent.load(Ordering::Relaxed);
        println!(
            "flood to port {port}: {flooded} segments in {:?}; {done} checks completed; {} transitions",
            t0.elapsed(),
            changes.len()
        );
        assert!(flooded > 10_000, "the flood sent only {flooded} segments");
        assert!(changes.is_empty(), "health changed under the flood: {changes:#?}");
        // Two checks every 200 ms for 6 s: about 60.
        assert!(done >= 30, "only {done} checks completed under the flood");
        cancel.cancel();
    });
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder");
    }
}

fn up_port(l: &TcpListener) -> u16 {
    l.local_addr().expect("addr").port()
}

/// A raw socket that reads every TCP segment in this namespace.
struct Snoop(socket2::Socket);

impl Snoop {
    fn open() -> Snoop {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("raw socket");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Snoop(s)
    }

    /// The source port of the prober's SYNs to `to`.
    fn prober_port(self, to: u16) -> u16 {
        use std::io::Read;
        let mut buf = [0u8; 1500];
        loop {
            let n = (&self.0).read(&mut buf).expect("a SYN within 30 s");
            let b = &buf[..n];
            let Ok(ip) = etherparse::Ipv4HeaderSlice::from_slice(b) else {
                continue;
            };
            let Ok(t) = etherparse::TcpHeaderSlice::from_slice(&b[ip.slice().len()..]) else {
                continue;
            };
            if t.syn() && !t.ack() && t.destination_port() == to {
                return t.source_port();
            }
        }
    }
}

/// Sends bare ACK segments (valid checksums, nothing a probe waits for) to 127.0.0.1:
/// `port` from a raw socket until `stop`.
fn flood(
    i: u16,
    port: u16,
    stop: &std::sync::atomic::AtomicBool,
    sent: &std::sync::atomic::AtomicU64,
) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::sync::atomic::Ordering;
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("raw socket");
    let to = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut n: u32 = 0;
    let mut buf = Vec::with_capacity(20);
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
        let mut t = etherparse::TcpHeader::new(40_000 + i, port, n, 1024);
        t.ack = true;
        t.acknowledgment_number = n;
        t.checksum = t
            .calc_checksum_ipv4_raw([127, 0, 0, 1], [127, 0, 0, 1], &[])
            .expect("checksum");
        buf.clear();
        t.write(&mut buf).expect("header");
        if s.send_to(&buf, &to).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}
