//! Health checks and a director that cannot run: its other work blocking its main
//! thread, or the whole process stopped (as a paused VM or a host short of CPU stops
//! it). A binary of its own, its tests one at a time ([`SERIAL`]): the second test
//! stops this whole process, which would starve the first one's checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lvsdr_checks::{CheckKind, CheckSpec, Checker, Health, HealthMap, HttpCheck, Supervisor};
use tokio_util::sync::CancellationToken;

/// Held by each test for its whole run: the tests of this binary never overlap.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn spec(target: SocketAddr, kind: CheckKind) -> Arc<CheckSpec> {
    Arc::new(CheckSpec {
        via: None,
        target,
        kind,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(400),
        rise: 1,
        fall: 2,
    })
}

/// An HTTP server that answers each request `200` after 150 ms of its own running time
/// (so that a check is in flight whenever the process stops), then closes. A stop of
/// the process counts as one of its 10 ms steps: a check in flight across a stop
/// passes its deadline during the stop, and its answer comes over 100 ms after the
/// process runs again (an answer already in when it runs again is read before the
/// deadlines, as it should be: a server whose answer was there is not timed out).
fn slow_http() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                for _ in 0..15 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    addr
}

async fn started(checks: &[Arc<CheckSpec>]) -> (Supervisor, CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cancel = CancellationToken::new();
    let mut sup = Supervisor::new(
        Checker::new(cancel.clone()).expect("checker"),
        cancel.clone(),
    );
    sup.set_checks(checks);
    let mut health = sup.health();
    let all_up = |h: &HealthMap| checks.iter().all(|c| h.get(c) == Some(&Health::Up));
    tokio::time::timeout(Duration::from_secs(30), health.wait_for(all_up))
        .await
        .expect("all up within 30 s")
        .expect("channel");
    (sup, cancel)
}

/// Health changes of `check` so far (1: unknown → up).
fn transitions(sup: &Supervisor, check: &Arc<CheckSpec>) -> Option<u32> {
    sup.details().borrow().get(check).map(|d| d.transitions)
}

/// The checks have a thread of their own: while the director's main thread is
/// blocked (the writer inside the kernel, a plan of 100,000 services, a big status
/// page), checks go on being run. On one thread, none ended meanwhile.
#[tokio::test]
async fn checks_go_on_while_the_directors_thread_is_blocked() {
    let _one_at_a_time = SERIAL.lock().await;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp = spec(l.local_addr().expect("addr"), CheckKind::Tcp);
    let (sup, cancel) = started(std::slice::from_ref(&tcp)).await;
    let tally = sup.tally();
    let before = tally.completed.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let during = tally.completed.load(Ordering::Relaxed) - before;
    assert!(
        during >= 5,
        "{during} checks ended while this thread was blocked for 1.5 s (interval 100 ms)"
    );
    assert_eq!(transitions(&sup, &tcp), Some(1));
    cancel.cancel();
}

/// The whole process stops three times for 800 ms (SIGSTOP, SIGCONT: a paused VM),
/// servers with it; checks have a 400 ms timeout and fall 2. No server goes down: a
/// connect that completed meanwhile counts, and an HTTP check that timed out across
/// the stop is inconclusive. Before the stall tracker the HTTP check fell.
#[tokio::test]
async fn a_stopped_director_takes_no_server_down() {
    let _one_at_a_time = SERIAL.lock().await;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp = spec(l.local_addr().expect("addr"), CheckKind::Tcp);
    let mut get = HttpCheck::get("/");
    get.keepalive = false;
    let http = spec(slow_http(), CheckKind::Http(get));
    let (sup, cancel) = started(&[tcp.clone(), http.clone()]).await;
    let pid = std::process::id();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let stop = format!("kill -STOP {pid}; sleep 0.8; kill -CONT {pid}");
        let ok = std::process::Command::new("sh")
            .args(["-c", &stop])
            .status()
            .expect("sh");
        assert!(ok.success());
    }
    let tally = sup.tally();
    let completed = tally.completed.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    while tally.completed.load(Ordering::Relaxed) < completed + 6 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no check ends after the stops"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = sup.details().borrow().clone();
    assert_eq!(
        (transitions(&sup, &http), transitions(&sup, &tcp)),
        (Some(1), Some(1)),
        "a stop of the director took a server down: {d:?}"
    );
    let stalled = Duration::from_micros(tally.stalled_us.load(Ordering::Relaxed));
    assert!(
        stalled >= Duration::from_millis(1500),
        "stalls seen: {stalled:?}"
    );
    assert!(
        tally.inconclusive.load(Ordering::Relaxed) >= 1,
        "the HTTP check across a stop was not inconclusive: {d:?}"
    );
    cancel.cancel();
}
