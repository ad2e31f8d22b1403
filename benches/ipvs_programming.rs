//! IPVS programming benchmarks, side by side with `ipvsadm --restore`. Runs as root
//! against a kernel with IPVS (the test VM: `benches/run`), each measurement in a fresh
//! network namespace (deleted destinations linger in a namespace's trash list and slow
//! later adds down).
//!
//! For each size N (services, each with D destinations, DR, wrr):
//! 1. programming from empty: lvsdr (config parse + dump + plan + pipelined apply, as
//!    the director does at start) vs `ipvsadm -R` of the same table as save text;
//! 2. no-op resync: one dump of the full table + plan, nothing to change;
//! 3. one change: one destination's weight differs; the pass (dump + plan + apply),
//!    and the netlink requests it sends, counted.
//!
//! Usage: ipvs_programming [--sizes 1000,10000] [--dests 10] [--repeat 3] [--out FILE]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvsdr::health::HealthMap;
use lvsdr::reconcile::{plan, Drains, Gate, IpvsBackend, Kernel, Observed};

struct Args {
    sizes: Vec<usize>,
    dests: usize,
    repeat: usize,
    out: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![1000],
        dests: 10,
        repeat: 3,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match k.as_str() {
            "--sizes" => a.sizes = val().split(',').filter_map(|s| s.parse().ok()).collect(),
            "--dests" => a.dests = val().parse().unwrap_or(10),
            "--repeat" => a.repeat = val().parse().unwrap_or(3),
            "--out" => a.out = Some(val()),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn vip(i: usize) -> String {
    format!("198.18.{}.{}", i / 250, i % 250 + 1)
}

fn rip(i: usize, j: usize) -> String {
    format!("10.{}.{}.{}", j + 1, i / 250, i % 250 + 1)
}

fn config_text(n: usize, d: usize) -> String {
    let mut s = String::from("[director]\nstatus_listen = \"127.0.0.1:9180\"\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"{}\"\nport = 80\nscheduler = \"wrr\"\n[service.check]\ntype = \"none\"\n",
            vip(i)
        ));
        for j in 0..d {
            s.push_str(&format!(
                "[[service.real_server]]\naddress = \"{}\"\nweight = {}\n",
                rip(i, j),
                j + 1
            ));
        }
    }
    s
}

fn save_text(n: usize, d: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("-A -t {}:80 -s wrr\n", vip(i)));
        for j in 0..d {
            s.push_str(&format!(
                "-a -t {}:80 -r {}:80 -g -w {}\n",
                vip(i),
                rip(i, j),
                j + 1
            ));
        }
    }
    s
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread in a new network namespace with a route to the real servers.
fn fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        sh("ip link set lo up && ip link add d0 type dummy && ip link set d0 up && ip addr add 10.0.0.1/8 dev d0");
        f()
    })
    .join()
    .expect("bench thread")
}

fn count_dests() -> usize {
    sh("ipvsadm -Ln | grep -c Route || true")
        .trim()
        .parse()
        .unwrap_or(0)
}

struct Lvsdr {
    parse: Duration,
    program: Duration,
    noop: Duration,
    noop_requests: u64,
    one: Duration,
    one_ops: usize,
    one_requests: u64,
}

fn run_lvsdr(n: usize, d: usize) -> Lvsdr {
    let text = config_text(n, d);
    fresh_netns(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let t = Instant::now();
            let desired = lvsdr::config::parse(&text, "bench.toml").expect("config");
            let parse = t.elapsed();
            let kernel = Kernel::connect().await.expect("IPVS");
            let (health, gate, drains) = (HealthMap::new(), Gate::default(), Drains::default());

            let t = Instant::now();
            let table = kernel.table().await.expect("dump");
            let ops = plan(&desired, &Observed::from(&table), &health, &gate, &drains);
            let results = kernel.apply(&ops).await;
            let program = t.elapsed();
            assert!(results.iter().all(Result::is_ok), "an op failed");
            assert_eq!(count_dests(), n * d, "the table is not complete");

            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let table = kernel.table().await.expect("dump");
            let ops = plan(&desired, &Observed::from(&table), &health, &gate, &drains);
            let noop = t.elapsed();
            assert!(ops.is_empty(), "no-op resync planned {} ops", ops.len());
            let noop_requests = kernel.requests_sent().await - sent;

            let mut changed = desired.clone();
            changed.services[n / 2].real_servers[0].dest.settings.weight = 99;
            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let table = kernel.table().await.expect("dump");
            let ops = plan(&changed, &Observed::from(&table), &health, &gate, &drains);
            let results = kernel.apply(&ops).await;
            let one = t.elapsed();
            assert!(results.iter().all(Result::is_ok));
            Lvsdr {
                parse,
                program,
                noop,
                noop_requests,
                one,
                one_ops: ops.len(),
                one_requests: kernel.requests_sent().await - sent,
            }
        })
    })
}

fn run_ipvsadm(n: usize, d: usize) -> Duration {
    let text = save_text(n, d);
    fresh_netns(move || {
        let t = Instant::now();
        let mut child = Command::new("ipvsadm")
            .arg("-R")
            .stdin(Stdio::piped())
            .spawn()
            .expect("ipvsadm");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "ipvsadm -R failed");
        let took = t.elapsed();
        assert_eq!(count_dests(), n * d, "ipvsadm's table is not complete");
        took
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = args();
    if nix::unistd::geteuid().as_raw() != 0 || !std::path::Path::new("/proc/net/ip_vs").exists() {
        eprintln!("ipvs_programming: needs root and a kernel with IPVS loaded (run benches/run, which uses the test VM)");
        std::process::exit(2);
    }
    let mut rows = vec![
        "| measure | size | lvsdr | ipvsadm | lvsdr / ipvsadm | target |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut full_programs = Vec::new();
    for &n in &a.sizes {
        let d = a.dests;
        let size = format!("{n} × {d}");
        let mut runs = Vec::new();
        let mut ipvsadm = Vec::new();
        for r in 0..a.repeat {
            eprintln!("size {size}: run {} of {}", r + 1, a.repeat);
            runs.push(run_lvsdr(n, d));
            ipvsadm.push(run_ipvsadm(n, d));
        }
        let parse = median(runs.iter().map(|r| r.parse).collect());
        let program = median(runs.iter().map(|r| r.parse + r.program).collect());
        let apply_only = median(runs.iter().map(|r| r.program).collect());
        let noop = median(runs.iter().map(|r| r.noop).collect());
        let one = median(runs.iter().map(|r| r.one).collect());
        let ip = median(ipvsadm);
        let ratio = program.as_secs_f64() / ip.as_secs_f64();
        rows.push(format!(
            "| program from empty (parse + dump + plan + apply) | {size} | {} (parse {}, apply {}) | {} | {ratio:.2} | ≤ 0.5 |",
            ms(program),
            ms(parse),
            ms(apply_only),
            ms(ip)
        ));
        rows.push(format!(
            "| no-op resync (dump + plan, {} requests) | {size} | {} | | {:.3} of programming | < 0.05 |",
            runs[0].noop_requests,
            ms(noop),
            noop.as_secs_f64() / apply_only.as_secs_f64()
        ));
        rows.push(format!(
            "| one weight change: {} write op, {} requests in all | {size} | {} | | {:.4} of programming | 1 op, < 0.01 |",
            runs[0].one_ops,
            runs[0].one_requests,
            ms(one),
            one.as_secs_f64() / apply_only.as_secs_f64()
        ));
        full_programs.push((n, noop));
    }
    if let [(n1, t1), .., (n2, t2)] = full_programs[..] {
        rows.push(format!(
            "| no-op resync growth {n1} → {n2} services | | {:.1}× for {:.0}× the size | | | linear |",
            t2.as_secs_f64() / t1.as_secs_f64(),
            n2 as f64 / n1 as f64
        ));
    }
    let table = rows.join("\n") + "\n";
    print!("{table}");
    if let Some(out) = a.out {
        std::fs::write(&out, &table).expect("write results");
    }
}
