//! Health checks at scale, on the host: N TCP targets (listeners spread over 127.x
//! addresses and ports, served by a child process) checked every second for S seconds
//! by the director's own check supervisor, in a network namespace of its own. Reports
//! this process's CPU (user + sys, from getrusage) and peak RSS; the child's work is
//! not counted.
//!
//! Each kind in `--kinds` (default `tcp-syn,tcp`) runs in turn, its CPU measured alone.
//!
//! Usage: health_checks [--targets 10000] [--seconds 60] [--kinds tcp-syn,tcp] [--out FILE]
//!        health_checks --serve N   (the listener child)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lvsdr::health::{CheckKind, CheckSpec, Checker, Health, Supervisor};
use tokio_util::sync::CancellationToken;

fn target(i: usize) -> SocketAddr {
    // 100 ports per address, addresses 127.1.x.y: all of 127/8 is local on lo.
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

fn serve(n: usize) {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            let l = tokio::net::TcpListener::bind(target(i))
                .await
                .expect("bind");
            tasks.push(tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            }));
        }
        println!("ready");
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// Checks every target each second for `seconds`; returns (up, checked).
async fn run(targets: usize, seconds: u64, kind: CheckKind) -> (usize, usize) {
    let cancel = CancellationToken::new();
    let mut sup = Supervisor::new(
        Checker::new(cancel.clone()).expect("checker"),
        cancel.clone(),
    );
    let specs: Vec<Arc<CheckSpec>> = (0..targets)
        .map(|i| {
            Arc::new(CheckSpec {
                via: None,
                target: target(i),
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
    let details = sup.details();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let up = health
        .borrow()
        .values()
        .filter(|h| **h == Health::Up)
        .count();
    let checks = details.borrow().len();
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
        serve(n.parse().expect("--serve N"));
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
    let kinds = arg("--kinds").unwrap_or_else(|| "tcp-syn,tcp".into());
    let usage = || {
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage")
    };
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let mut table = format!(
        "| health checks: {targets} TCP targets, every 1 s, {seconds} s | CPU (user+sys) | user / sys | % of one core | peak RSS (so far) | targets up at the end | target |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for kind in kinds.split(',') {
        let (check_kind, label) = match kind {
            "tcp" => (CheckKind::Tcp, "tcp (connect, then RST)"),
            "tcp-syn" => (CheckKind::TcpSyn, "tcp-syn (half-open)"),
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
        table.push_str(&format!(
            "| lvsdr check supervisor, {label} | {cpu:.1} s | {user:.1} / {sys:.1} s | {pct:.1} % | {rss_mb:.1} MB | {up} of {targets} ({checks} checked) | ≤ 15 %, ≤ 64 MB |\n"
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    print!("{table}");
    if let Some(out) = arg("--out") {
        std::fs::write(out, &table).expect("write results");
    }
}
