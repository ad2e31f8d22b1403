//! IPVS programming benchmarks, side by side with `ipvsadm --restore`. Runs as root
//! against a kernel with IPVS (the test VM: `benches/run`), each measurement in a fresh
//! network namespace (deleted destinations linger in a namespace's trash list and slow
//! later adds down).
//!
//! For each size N (services, each with D destinations, DR, wrr), through the
//! director's own reconciler:
//! 1. programming from empty: lvsdr (config parse + the first pass: read, plan,
//!    pipelined apply) vs `ipvsadm -R` of the same table as save text;
//! 2. no-op resync: a whole-table pass through `/proc/net/ip_vs`, nothing to change
//!    (and, for reference, the same pass reading every service over netlink); then
//!    the same under traffic (connections on every tenth service), and what reading
//!    those services' traffic counters costs (done apart from the pass);
//! 3. one change: one destination's weight differs in the config; the pass, and the
//!    netlink requests it sends, counted.
//!
//! Usage: ipvs_programming [--sizes 1000,10000] [--dests 10] [--repeat 3] [--out FILE]
//!        ipvs_programming --parse-only [--sizes …]   (the config parse alone, on the host)
//!        ipvs_programming --ab [--sizes …]           (the bare read/plan/apply against the
//!                                                      reconciler's first pass, same boot)
//!        ipvs_programming --watch-weight VIP:PORT RIP WEIGHT
//!            (benches/reload.sh's observer: reads the one TCP service over netlink every
//!            millisecond, prints "ready" after the first look (which must not see the
//!            weight yet), then the wall-clock time in ns at which real server RIP has
//!            WEIGHT, and exits; no process started per look, which cost ipvsadm ~0.1 s)

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use lvsdr::health::HealthMap;
use lvsdr::reconcile::driver::{ReadKind, Reconciler};
use lvsdr::reconcile::{Gate, IpvsBackend, Kernel, Scope};

struct Args {
    sizes: Vec<usize>,
    dests: usize,
    repeat: usize,
    out: Option<String>,
    parse_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![1000],
        dests: 10,
        repeat: 3,
        out: None,
        parse_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match k.as_str() {
            "--sizes" => a.sizes = val().split(',').filter_map(|s| s.parse().ok()).collect(),
            "--dests" => a.dests = val().parse().unwrap_or(10),
            "--repeat" => a.repeat = val().parse().unwrap_or(3),
            "--out" => a.out = Some(val()),
            "--parse-only" => a.parse_only = true,
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Service i's VIP: 198.18.(i/250).(i%250+1) up to 62,500 services, then on in
/// 198.19 (the benchmarking range, 198.18.0.0/15).
fn vip(i: usize) -> String {
    let (block, i) = (i / 62_500, i % 62_500);
    format!("198.{}.{}.{}", 18 + block, i / 250, i % 250 + 1)
}

fn rip(i: usize, j: usize) -> String {
    let (block, i) = (i / 62_500, i % 62_500);
    format!("10.{}.{}.{}", j + 1 + 16 * block, i / 250, i % 250 + 1)
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

/// Runs `f` on a thread in a new network namespace with a route to the real servers,
/// and empties its IPVS table before leaving: a namespace is torn down in the
/// background, and while its services linger in the kernel's (global) table, the proc
/// listing of the next namespace skips services.
fn fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        sh("ip link set lo up && ip link add d0 type dummy && ip link set d0 up && ip addr add 10.0.0.1/8 dev d0");
        let out = f();
        sh("ipvsadm -C");
        out
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
    read_back: Duration,
    noop: Duration,
    noop_requests: u64,
    proc_read: Duration,
    proc_raw: Duration,
    noop_full: Duration,
    publish: Duration,
    noop_full_requests: u64,
    noop_traffic: Duration,
    noop_traffic_reread: usize,
    busy: usize,
    counters: Duration,
    one: Duration,
    one_ops: usize,
    one_requests: u64,
    one_back: Duration,
    one_back_requests: u64,
}

/// The director's runtime flavour: one thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// Everything goes through the director's own [`Reconciler`]: the pass code the
/// daemon runs, with its scopes and its cache.
fn run_lvsdr(n: usize, d: usize) -> Lvsdr {
    let text = config_text(n, d);
    fresh_netns(move || {
        runtime().block_on(async move {
            let t = Instant::now();
            let desired = Arc::new(lvsdr::config::parse(&text, "bench.toml").expect("config"));
            let parse = t.elapsed();
            let kernel = Arc::new(Kernel::connect().await.expect("IPVS"));
            let (health, gate) = (HealthMap::new(), Gate::default());
            let mut r = Reconciler::new(kernel.clone(), &desired);

            // 1. From empty: the first pass reads the (empty) table in full and applies.
            let t = Instant::now();
            let p = r.pass(&desired, &health, &gate, Scope::All).await;
            let program = t.elapsed();
            assert!(
                p.errors.is_empty() && p.read_error.is_none(),
                "{:?}",
                p.errors
            );
            assert_eq!(p.ops.len(), n * (d + 1));
            assert_eq!(count_dests(), n * d, "the table is not complete");
            // The read-back the daemon does next (every service was touched).
            let t = Instant::now();
            let p = r.pass(&desired, &health, &gate, Scope::All).await;
            let read_back = t.elapsed();
            assert!(p.ops.is_empty(), "read-back planned {} ops", p.ops.len());

            // 2. No-op resync: the proc file, the same listing as the read-back (which
            // planned nothing), the same inputs: nothing parsed, read again or planned.
            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let p = r.pass(&desired, &health, &gate, Scope::All).await;
            let noop = t.elapsed();
            assert_eq!(p.read, ReadKind::Unchanged, "{}", p.read);
            assert!(p.ops.is_empty(), "no-op resync planned {} ops", p.ops.len());
            let noop_requests = kernel.requests_sent().await - sent;
            // Of which the proc file: read and parsed alone.
            let t = Instant::now();
            let blocks = lvsdr::ipvs::proc::parse(&kernel.listing().await.expect("proc"))
                .expect("parse the proc file");
            let proc_read = t.elapsed();
            assert_eq!(blocks.len(), n);
            // The floor: the kernel's listing read whole, nothing parsed.
            let t = Instant::now();
            // This thread's namespace (the measurement's), as the backend reads it.
            let raw = std::fs::read("/proc/thread-self/net/ip_vs").expect("read the proc file");
            let proc_raw = t.elapsed();
            assert!(
                raw.len() > n * 40,
                "the listing is short: {} bytes",
                raw.len()
            );
            // What the daemon adds after each pass: a copy of the table for /status.
            let t = Instant::now();
            let copy = r.observed().cloned();
            let publish = t.elapsed();
            drop(copy);
            // For reference: the same with every service read over netlink.
            r.full_read_if_older(Duration::ZERO);
            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let p = r.pass(&desired, &health, &gate, Scope::All).await;
            let noop_full = t.elapsed();
            assert_eq!(p.read, ReadKind::Full { services: n }, "{}", p.read);
            assert!(p.ops.is_empty());
            let noop_full_requests = kernel.requests_sent().await - sent;

            // 2b. The same under traffic: a client loop opens connections to every
            // tenth service (IPVS takes locally sent SYNs to a VIP; the entries stay
            // for the SYN_RECV timeout), so their connection counts move.
            sh("ip route add 198.18.0.0/15 dev d0");
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let busy_vips: Vec<std::net::SocketAddr> = (0..n)
                .step_by(10)
                .map(|i| format!("{}:80", vip(i)).parse().expect("vip"))
                .collect();
            let busy = busy_vips.len();
            connect_round(&busy_vips);
            let client = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(500));
                        connect_round(&busy_vips);
                    }
                })
            };
            let t = Instant::now();
            let p = r.pass(&desired, &health, &gate, Scope::All).await;
            let noop_traffic = t.elapsed();
            assert!(
                p.ops.is_empty(),
                "no-op resync under traffic planned {} ops",
                p.ops.len()
            );
            let noop_traffic_reread = match p.read {
                ReadKind::Proc { reread } => reread,
                other => panic!("not a proc read: {other}"),
            };
            let shown = lvsdr::reconcile::counters::busy(r.observed().expect("cache"));
            assert_eq!(
                shown.len(),
                busy,
                "services with connections in the proc read"
            );
            // What the status endpoint's counter reader does every 10 s, off the pass.
            let observed = r.observed().expect("cache").clone();
            let mut c = lvsdr::reconcile::counters::Counters::default();
            let t = Instant::now();
            let read = c.read(&kernel, &observed).await.expect("counters");
            let counters = t.elapsed();
            assert_eq!(read, busy);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            client.join().expect("client loop");

            // 3. One weight changes in the config.
            let mut changed = (*desired).clone();
            Arc::make_mut(&mut changed.services[n / 2]).real_servers[0]
                .dest
                .settings
                .weight = 99;
            let changed = Arc::new(changed);
            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let p = r.pass(&changed, &health, &gate, Scope::none()).await;
            let one = t.elapsed();
            assert!(p.errors.is_empty() && p.read_error.is_none());
            let one_ops = p.ops.len();
            let one_requests = kernel.requests_sent().await - sent;
            // The read-back of the touched service that follows it.
            let sent = kernel.requests_sent().await;
            let t = Instant::now();
            let p = r
                .pass(&changed, &health, &gate, Scope::Services(r.touched()))
                .await;
            let one_back = t.elapsed();
            assert!(p.ops.is_empty());
            Lvsdr {
                parse,
                program,
                read_back,
                noop,
                noop_requests,
                proc_read,
                proc_raw,
                noop_full,
                noop_full_requests,
                publish,
                noop_traffic,
                noop_traffic_reread,
                busy,
                counters,
                one,
                one_ops,
                one_requests,
                one_back,
                one_back_requests: kernel.requests_sent().await - sent,
            }
        })
    })
}

/// One SYN to each address (a non-blocking connect, then closed): IPVS makes a
/// connection entry for each.
fn connect_round(to: &[std::net::SocketAddr]) {
    for a in to {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_nonblocking(true).expect("nonblocking");
        let _ = s.connect(&(*a).into());
    }
}

/// Programming from empty the bare way (read, plan, apply; no reconciler), in seconds:
/// an A/B against the reconciler's first pass.
fn run_bare(n: usize, d: usize) -> (f64, f64) {
    let text = config_text(n, d);
    fresh_netns(move || {
        runtime().block_on(async move {
            let desired = Arc::new(lvsdr::config::parse(&text, "bench.toml").expect("config"));
            let kernel = Kernel::connect().await.expect("IPVS");
            let t = Instant::now();
            let table = kernel.table().await.expect("dump");
            let ops = lvsdr::reconcile::plan(
                &desired,
                &lvsdr::reconcile::Observed::from(&table),
                &HealthMap::new(),
                &Gate::default(),
                &lvsdr::reconcile::Drains::default(),
            );
            let planned = t.elapsed().as_secs_f64();
            let results = kernel.apply(&ops).await;
            assert!(results.iter().all(Result::is_ok));
            (planned, t.elapsed().as_secs_f64())
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
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|x| x == "--watch-weight") {
        watch_weight(&argv[i + 1..]);
        return;
    }
    if std::env::args().any(|x| x == "--ab") {
        for &n in &a.sizes {
            for _ in 0..a.repeat {
                let (planned, bare) = run_bare(n, a.dests);
                let r = run_lvsdr(n, a.dests);
                println!(
                    "{n} × {}: bare read+plan {planned:.2} s, read+plan+apply {bare:.2} s; reconciler pass {:.2} s",
                    a.dests,
                    r.program.as_secs_f64()
                );
            }
        }
        return;
    }
    if a.parse_only {
        parse_only(&a);
        return;
    }
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
        let med = |f: &dyn Fn(&Lvsdr) -> Duration| median(runs.iter().map(f).collect());
        let parse = med(&|r| r.parse);
        let apply_only = med(&|r| r.program);
        let program = med(&|r| r.parse + r.program);
        let noop = med(&|r| r.noop);
        let one = med(&|r| r.one);
        let ip = median(ipvsadm);
        let ratio = program.as_secs_f64() / ip.as_secs_f64();
        // Against the programming time (parse included), and against its kernel part.
        let of = |x: Duration| {
            format!(
                "{:.3} ({:.3} of the kernel part)",
                x.as_secs_f64() / program.as_secs_f64(),
                x.as_secs_f64() / apply_only.as_secs_f64()
            )
        };
        rows.push(format!(
            "| program from empty (parse + read + plan + apply) | {size} | {} (parse {}, kernel {}) | {} | {ratio:.2} | ≤ 0.5 |",
            ms(program),
            ms(parse),
            ms(apply_only),
            ms(ip)
        ));
        rows.push(format!(
            "| read-back after programming (proc file + every touched service) | {size} | {} | | | |",
            ms(med(&|r| r.read_back)),
        ));
        rows.push(format!(
            "| no-op resync (one read of /proc/net/ip_vs, the same listing as the pass before: nothing parsed or planned; {} netlink requests) | {size} | {} | | {} of programming | < 0.05 |",
            runs[0].noop_requests,
            ms(noop),
            of(noop)
        ));
        rows.push(format!(
            "| reading and parsing /proc/net/ip_vs (the kernel's listing restarts its walk at every 4 KiB read; what a resync whose listing changed pays first) | {size} | {} | | {} of programming | |",
            ms(med(&|r| r.proc_read)),
            of(med(&|r| r.proc_read))
        ));
        rows.push(format!(
            "| no-op resync against its floor: the pass / reading /proc/net/ip_vs alone, nothing parsed (denominator, same run) | {size} | {} | {} | {:.2} | ≤ 1.25 |",
            ms(noop),
            ms(med(&|r| r.proc_raw)),
            noop.as_secs_f64() / med(&|r| r.proc_raw).as_secs_f64()
        ));
        rows.push(format!(
            "| no-op resync, every service over netlink ({} requests; every `full_resync_interval`) | {size} | {} | | {} of programming | |",
            runs[0].noop_full_requests,
            ms(med(&|r| r.noop_full)),
            of(med(&|r| r.noop_full))
        ));
        rows.push(format!(
            "| no-op resync under traffic ({} of {n} services with connections, a client loop; {} services read again) | {size} | {} | | {} of programming | < 0.05 |",
            runs[0].busy,
            runs[0].noop_traffic_reread,
            ms(med(&|r| r.noop_traffic)),
            of(med(&|r| r.noop_traffic))
        ));
        rows.push(format!(
            "| traffic counters of those {} busy services (status endpoint's reader, every 10 s, apart from the pass) | {size} | {} | | | |",
            runs[0].busy,
            ms(med(&|r| r.counters)),
        ));
        rows.push(format!(
            "| copying the table for the status endpoint (after every pass, not in the figures above) | {size} | {} | | | |",
            ms(med(&|r| r.publish)),
        ));
        rows.push(format!(
            "| one weight change: {} write op, {} netlink requests in all (the pass reads its one service first) | {size} | {} | | {} of programming | 1 op, < 0.01 |",
            runs[0].one_ops,
            runs[0].one_requests,
            ms(one),
            of(one)
        ));
        rows.push(format!(
            "| its read-back pass ({} requests) | {size} | {} | | {} of programming | |",
            runs[0].one_back_requests,
            ms(med(&|r| r.one_back)),
            of(med(&|r| r.one_back))
        ));
        full_programs.push((n, noop, med(&|r| r.noop_traffic)));
    }
    if let [(n1, t1, u1), .., (n2, t2, u2)] = full_programs[..] {
        rows.push(format!(
            "| no-op resync growth {n1} → {n2} services | | {:.1}× idle, {:.1}× under traffic, for {:.0}× the size | | | linear |",
            t2.as_secs_f64() / t1.as_secs_f64(),
            u2.as_secs_f64() / u1.as_secs_f64(),
            n2 as f64 / n1 as f64
        ));
    }
    let table = rows.join("\n") + "\n";
    print!("{table}");
    if let Some(out) = a.out {
        std::fs::write(&out, &table).expect("write results");
    }
}

/// `--watch-weight VIP:PORT RIP WEIGHT`: waits (up to 10 minutes) until the kernel
/// shows that weight, then prints the time since the epoch in ns.
fn watch_weight(args: &[String]) {
    use lvsdr::ipvs::{IpvsHandle, Protocol, ServiceKey};
    let vip: std::net::SocketAddr = args[0].parse().expect("VIP:PORT");
    let rip: std::net::IpAddr = args[1].parse().expect("RIP");
    let weight: u32 = args[2].parse().expect("WEIGHT");
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: vip.ip(),
        port: vip.port(),
    };
    runtime().block_on(async move {
        let h = IpvsHandle::connect().await.expect("IPVS");
        let give_up = Instant::now() + Duration::from_secs(600);
        let mut first = true;
        while Instant::now() < give_up {
            let seen = h.dests(&key).await.unwrap_or_default();
            let has = seen
                .iter()
                .any(|d| d.dest.addr == rip && d.dest.settings.weight == weight);
            if first {
                // The caller changes the weight once this is printed.
                assert!(!has, "--watch-weight: {rip} has weight {weight} already");
                println!("ready");
                first = false;
            }
            if has {
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock");
                println!("{}", at.as_nanos());
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprintln!("--watch-weight: {rip} never got weight {weight} in {vip}");
        std::process::exit(1);
    });
}

/// `--parse-only`: on the host (no root, no IPVS), the config read at a start (as the
/// director reads it, block by block on two threads), read as one document, and read
/// again by the same loader with one weight changed (a reload).
fn parse_only(a: &Args) {
    let host = lvsdr::config::Host::default();
    for &n in &a.sizes {
        let text = config_text(n, a.dests);
        // The middle service's first real server: weight 1 → 100.
        let at = text
            .find(&format!("name = \"s{}\"", n / 2))
            .and_then(|i| text[i..].find("weight = 1\n").map(|j| i + j))
            .expect("the middle service");
        let changed = format!("{}weight = 100\n{}", &text[..at], &text[at + 11..]);
        for _ in 0..a.repeat {
            let mut loader = lvsdr::config::Loader::default();
            let t = Instant::now();
            let d = loader.parse_on(&text, "bench.toml", &host).expect("config");
            let start = t.elapsed();
            let t = Instant::now();
            let again = loader
                .parse_on(&changed, "bench.toml", &host)
                .expect("config");
            let reload = t.elapsed();
            let read = loader.last_read().read;
            let t = Instant::now();
            lvsdr::config::parse_whole(&text, "bench.toml", &host).expect("config");
            let whole = t.elapsed();
            assert_ne!(d, again, "the weight changed");
            println!(
                "parse {n} × {}: start {} (as one document {}); reload with one weight changed {} ({read} block read; {} bytes, {} services)",
                a.dests,
                ms(start),
                ms(whole),
                ms(reload),
                text.len(),
                d.services.len()
            );
        }
    }
}
