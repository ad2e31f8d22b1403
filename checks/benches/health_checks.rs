//! Health checks at scale, on the host: N targets (TCP listeners that answer HTTP, spread over 127.x
//! addresses and ports, served by a child process) checked every second for S seconds
//! by the director's own check supervisor, in a network namespace of its own. Reports
//! this process's CPU (user + sys, from getrusage) and peak RSS; the child's work is
//! not counted.
//!
//! Each kind in `--kinds` (default `tcp-syn,tcp,http-close,http`: peak RSS only grows,
//! so the kept-alive HTTP connections come last) runs in turn, its CPU measured alone;
//! "checks completed / s" counts every run that ended (the scheduler's own counter).
//!
//! Usage: health_checks [--targets 10000] [--seconds 60] [--kinds tcp-syn,tcp,http,http-close] [--out FILE]
//!        health_checks --serve N [--counts FILE] [--close] [--address A]   (the listener
//!        child; with --close it answers as an HTTP/1.0 server that closes every
//!        connection; with --address its N listeners are ports 20000.. of A)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lvsdr_checks::{CheckKind, CheckSpec, Checker, Health, Supervisor};
use tokio_util::sync::CancellationToken;

/// The i-th target: 100 ports per address at 127.1.x.y (all of 127/8 is local on lo),
/// or, given one address (`--address`), port 20000 + i of it.
fn target(i: usize, one: Option<IpAddr>) -> SocketAddr {
    if let Some(ip) = one {
        return SocketAddr::new(ip, 20_000 + i as u16);
    }
    let a = i / 100;
    let ip = Ipv4Addr::new(127, 1, (a / 250) as u8, (a % 250 + 1) as u8);
    SocketAddr::new(IpAddr::V4(ip), 20_000 + (i % 100) as u16)
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The listeners: every connection is accepted and counted; an HTTP request on it is
/// answered `200 ok` (keep-alive unless the client asks to close) and counted. With a
/// counts file, "accepted requests" is written to it every 100 ms (for
/// benches/keepalived.sh: what each checker did, counted at the servers). `close`:
/// every answer is HTTP/1.0 and closes its connection, whatever the client asked.
fn serve(n: usize, counts: Option<String>, close: bool, one: Option<IpAddr>) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let accepted = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..n {
            let l = tokio::net::TcpListener::bind(target(i, one))
                .await
                .expect("bind");
            let (accepted, requests) = (accepted.clone(), requests.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => {
                            accepted.fetch_add(1, Relaxed);
                            tokio::spawn(http(s, requests.clone(), close));
                        }
                        // Out of descriptors (10,000 listeners and 10,000 kept
                        // connections meet a 20,000 limit): wait, do not close the
                        // listener (its checks would be refused).
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }));
        }
        if let Some(path) = counts {
            tokio::spawn(async move {
                loop {
                    let line = format!("{} {}\n", accepted.load(Relaxed), requests.load(Relaxed));
                    let tmp = format!("{path}.tmp");
                    if std::fs::write(&tmp, line).is_ok() {
                        let _ = std::fs::rename(&tmp, &path);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        println!("ready");
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// Answers HTTP requests on one connection until the client closes it or asks to.
async fn http(
    mut s: tokio::net::TcpStream,
    requests: Arc<std::sync::atomic::AtomicU64>,
    close_all: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let close =
                close_all || head.contains("connection: close") || head.contains("http/1.0");
            requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let answer: &[u8] = if close_all {
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else if close {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            if s.write_all(answer).await.is_err() || close {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

/// Checks every target each second for `seconds`; returns (up, checks completed in
/// the window).
async fn run(targets: usize, seconds: u64, kind: CheckKind) -> (usize, u64) {
    let cancel = CancellationToken::new();
    let mut sup = Supervisor::new(
        Checker::new(cancel.clone()).expect("checker"),
        cancel.clone(),
    );
    let specs: Vec<Arc<CheckSpec>> = (0..targets)
        .map(|i| {
            Arc::new(CheckSpec {
                via: None,
                target: target(i, None),
                kind: kind.clone(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 3,
            })
        })
        .collect();
    sup.set_checks(&specs);
    let health = sup.health();
    let tally = sup.tally();
    let done = || tally.completed.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let checks = done();
    // What the checks that are not up say (a few), so a failure is not just a count.
    let mut errors: Vec<String> = sup
        .details()
        .borrow()
        .values()
        .filter(|d| d.health != Health::Up)
        .filter_map(|d| d.error.clone())
        .collect();
    errors.sort();
    errors.dedup();
    for e in errors.iter().take(3) {
        eprintln!("not up: {e}");
    }
    let up = health
        .borrow()
        .values()
        .filter(|h| **h == Health::Up)
        .count();
    cancel.cancel();
    // Let the tasks see the cancellation before the next run is measured.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (up, checks)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(n) = arg("--serve") {
        let close = args.iter().any(|a| a == "--close");
        let one = arg("--address").map(|a| a.parse().expect("--address IP"));
        serve(n.parse().expect("--serve N"), arg("--counts"), close, one);
        return;
    }
    let targets: usize = arg("--targets")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(60);
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("health_checks: needs root (a network namespace of its own)");
        std::process::exit(2);
    }
    // A private namespace, before any thread exists.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
    raise_fd_limit();
    let mut child = std::process::Command::new(&args[0])
        .args(["--serve", &targets.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("listener child");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("child ready");

    let _ = rustls::crypto::ring::default_provider().install_default();
    // The director's runtime flavour (LVSDR_RUNTIME=multi for the 2-worker one).
    let rt = if std::env::var("LVSDR_RUNTIME").as_deref() == Ok("multi") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("rt");
    let kinds = arg("--kinds").unwrap_or_else(|| "tcp-syn,tcp,http-close,http".into());
    let usage = || {
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage")
    };
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let mut table = format!(
        "| health checks: {targets} targets, every 1 s, {seconds} s | checks completed / s | CPU (user+sys) | user / sys | % of one core | CPU per check | peak RSS (so far) | targets up at the end | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for kind in kinds.split(',') {
        let (check_kind, label) = match kind {
            "tcp" => (CheckKind::Tcp, "tcp (connect, then RST)"),
            "tcp-syn" => (CheckKind::TcpSyn, "tcp-syn (half-open)"),
            "http" => (
                CheckKind::Http(lvsdr_checks::HttpCheck::get("/")),
                "http (GET /, connection kept alive)",
            ),
            "http-close" => (
                CheckKind::Http(lvsdr_checks::HttpCheck {
                    keepalive: false,
                    ..lvsdr_checks::HttpCheck::get("/")
                }),
                "http, keepalive = false (a new connection each check)",
            ),
            other => panic!("--kinds: unknown kind {other:?}"),
        };
        let u0 = usage();
        let (up, checks) = rt.block_on(run(targets, seconds, check_kind));
        let u1 = usage();
        let user = secs(u1.user_time()) - secs(u0.user_time());
        let sys = secs(u1.system_time()) - secs(u0.system_time());
        let cpu = user + sys;
        let rss_mb = u1.max_rss() as f64 / 1024.0;
        let pct = cpu / seconds as f64 * 100.0;
        let rate = checks as f64 / seconds as f64;
        let per_check = cpu / (checks.max(1) as f64) * 1e6;
        table.push_str(&format!(
            "| lvsdr check scheduler, {label} | {rate:.0} | {cpu:.1} s | {user:.1} / {sys:.1} s | {pct:.1} % | {per_check:.0} µs | {rss_mb:.1} MB | {up} of {targets} | ≤ 64 MB |\n"
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    print!("{table}");
    if let Some(out) = arg("--out") {
        std::fs::write(out, &table).expect("write results");
    }
}
