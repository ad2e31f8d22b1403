//! The director with large tables, in the test VM: a `kill -9` in the middle of
//! programming 10,000 services and a restart, and a reload from an empty config to
//! 10,000 × 10. Their own binary: they load the kernel heavily (and IPVS's control
//! mutex is one for every namespace), so they do not run beside the latency-sensitive
//! soak.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::director::*;
use support::lab::{in_ns, Lab};
use support::poll;

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

/// The services (TCP lines) in the director namespace's `/proc/net/ip_vs`.
fn services_in_kernel(lab: &Lab) -> usize {
    in_ns(&lab.director, || {
        // /proc/net is the process's namespace; this thread entered the director's.
        std::fs::read_to_string("/proc/thread-self/net/ip_vs")
            .map(|t| t.lines().filter(|l| l.starts_with("TCP ")).count())
            .unwrap_or(0)
    })
}

/// How many services the large-table tests program.
const N: u16 = 10_000;

/// The `[director]` section of the large-table tests.
fn director_section() -> String {
    format!("[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"5s\"\n")
}

/// `N` services on the lab's VIP (ports 10000 on), `servers` real servers each.
fn big_config(lab: &Lab, servers: usize) -> String {
    let mut text = director_section();
    for i in 0..N {
        text.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"{}\"\nport = {}\nscheduler = \"rr\"\n\
             [service.check]\ntype = \"none\"\n",
            lab.vip(),
            10_000 + u32::from(i),
        ));
        for j in 1..=servers {
            // Addresses on the lab's segment (.11 on): DR keeps the service's port,
            // and the kernel does not ask whether a host is there.
            text.push_str(&format!(
                "[[service.real_server]]\naddress = \"{}\"\n",
                lab.rip(j)
            ));
        }
    }
    text
}

/// Waits until the kernel holds exactly the config: `N` services (the config's), each
/// with `servers` destinations at weight 1, counted every 2 s. Then the director is
/// alive (`/healthz`) and its log has no refusal and no abandoned pass. (Not `/status`:
/// at 10,000 × 10 it is 70 MB of JSON, which a debug test under emulation took longer
/// than 5 minutes to fetch and parse.)
fn assert_converges(lab: &Lab, d: &Proc, servers: usize, secs: u64) {
    let want = (usize::from(N), usize::from(N) * servers);
    let t0 = Instant::now();
    let (mut seen, mut saved) = ((0, 0), String::new());
    while t0.elapsed() < Duration::from_secs(secs) {
        assert!(
            !d.log().contains("config rejected"),
            "the director refused the config:\n{}",
            d.log()
        );
        saved = lab.ipvsadm("-Sn");
        seen = (
            saved.lines().filter(|l| l.starts_with("-A")).count(),
            saved
                .lines()
                .filter(|l| l.starts_with("-a") && l.trim_end().ends_with("-w 1"))
                .count(),
        );
        if seen == want {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(
        seen,
        want,
        "(services, destinations at weight 1) in the kernel:\n{}",
        d.log()
    );
    let services: BTreeSet<String> = saved
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(|s| s.trim().to_string())
        .collect();
    let config: BTreeSet<String> = (0..N)
        .map(|i| format!("-A -t {}:{} -s rr", lab.vip(), 10_000 + u32::from(i)))
        .collect();
    assert_eq!(services, config, "the services are not the config's");
    let alive = poll(60, || lab.director_get(STATUS, "/healthz").ok());
    assert!(alive.is_some(), "not alive:\n{}", d.log());
    let log = d.log();
    for bad in [
        "kernel refused",
        "refused for good",
        "abandoned",
        "did not converge",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_kill_9_while_programming_ten_thousand_services_then_a_restart_converges() {
    let lab = Lab::bare("p", 59, 1);
    let config = write_file(&lab, "big.toml", &big_config(&lab, 1));
    // Not waited for: the status endpoint may answer only after a while.
    let mut d = spawn_director(&lab.director, BIN, &config);
    // Kill it in the middle of programming.
    let t0 = Instant::now();
    let mut at = 0;
    while t0.elapsed() < Duration::from_secs(300) {
        at = services_in_kernel(&lab);
        if at >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill();
    assert!(
        (200..usize::from(N)).contains(&at),
        "programming was not caught in the middle ({at} of {N} services):\n{}",
        d.log()
    );
    let left = services_in_kernel(&lab);
    println!("killed with {at} services programmed ({left} after the kill)");

    // Restarted: it converges to exactly the config, and no pass was abandoned on
    // the way (a whole-pass deadline cut the long first pass, then every full read).
    let t = Instant::now();
    let d = start_director_within(&lab, BIN, &config, 300);
    assert_converges(&lab, &d, 1, 900);
    println!("restart converged in {:.1} s", t.elapsed().as_secs_f64());
}

/// A SIGHUP from an empty config to 10,000 × 10 programs it all, as a start with the
/// same file does (a reload of this size once kept a worker busy for minutes and
/// programmed nothing).
#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_reload_from_an_empty_config_to_ten_thousand_services_converges() {
    let lab = Lab::bare("q", 50, 1);
    let config = write_file(&lab, "grow.toml", &director_section());
    let d = start_director(&lab, BIN, &config);
    write_file(&lab, "grow.toml", &big_config(&lab, 10));
    let t = Instant::now();
    d.signal("HUP");
    assert_converges(&lab, &d, 10, 900);
    println!(
        "reload from empty to {N} x 10 converged in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
