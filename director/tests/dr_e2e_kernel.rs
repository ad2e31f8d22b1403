//! The director end to end, in the test VM: a client, a director and real servers in
//! network namespaces; `lvsdr-director run` programs IPVS; traffic goes through the
//! VIP. The test sets the VIP and ARP suppression on the real servers itself.

use lvsdr_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use support::clients::ClientLoop;
use support::director::*;
use support::lab::{Lab, Server};
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn wrr_spreads_by_weight_and_status_metrics_plan_agree() {
    let lab = Lab::new("w", 51, 2);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    let config = write_file(&lab, "d.toml", &web_config(&lab, &[(1, 1), (2, 2)], ""));
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 2)], 20, &d);

    let seen = spread(&lab, 30);
    assert_eq!(
        seen.get("rs1"),
        Some(&10),
        "wrr 1:2 over 30 requests: {seen:?}"
    );
    assert_eq!(
        seen.get("rs2"),
        Some(&20),
        "wrr 1:2 over 30 requests: {seen:?}"
    );

    let st = status(&lab);
    let rs2 = server(&st, "web", &lab.rip(2));
    assert_eq!(rs2["health"], "up");
    assert_eq!(rs2["configured_weight"], 2);
    assert!(rs2["last_check"].as_f64().is_some() && rs2["latency_ms"].as_f64().is_some());
    assert_eq!(st["config"]["generation"], 1);
    // The kernel folds counters every 2 s.
    let counted = poll(10, || {
        let st = status(&lab);
        (server(&st, "web", &lab.rip(2))["stats"]["conns"].as_u64() >= Some(20)).then_some(st)
    });
    assert!(counted.is_some(), "connection counters did not reach 20");

    let metrics = lab.director_get(STATUS, "/metrics").expect("metrics");
    let rs1 = lab.rip(1);
    for want in [
        format!("lvsdr_real_server_up{{service=\"web\",address=\"{rs1}\",port=\"80\"}} 1"),
        format!(
            "lvsdr_real_server_kernel_weight{{service=\"web\",address=\"{rs1}\",port=\"80\"}} 1"
        ),
        "lvsdr_reconcile_passes_total".to_string(),
        "lvsdr_real_server_bytes_in_total".to_string(),
    ] {
        assert!(
            metrics.contains(&want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    let page = lab.director_get(STATUS, "/").expect("page");
    assert!(
        page.contains("<h2>web") && page.contains("class=\"up\""),
        "{page}"
    );

    let plan = sh(&format!(
        "ip netns exec {} {BIN} plan --config {}",
        lab.director,
        config.display()
    ));
    assert!(
        plan.starts_with("nothing to do"),
        "plan after a reconcile: {plan}"
    );
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_failed_server_is_quiesced_within_the_bound_and_restored() {
    let lab = Lab::new("f", 52, 3);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let s2 = Server::http(&lab.servers[1], 80, "rs2");
    let _s3 = Server::http(&lab.servers[2], 80, "rs3");
    let config = write_file(
        &lab,
        "d.toml",
        &web_config(&lab, &[(1, 1), (2, 1), (3, 1)], ""),
    );
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1), (3, 1)], 20, &d);

    // fall 2 × interval 1 s + timeout 0.5 s = 2.5 s.
    let t0 = Instant::now();
    s2.stop();
    let rip2 = lab.rip(2);
    let zero = poll(15, || {
        lab.ipvsadm("-Ln")
            .lines()
            .any(|l| l.contains(&format!("{rip2}:80")) && l.split_whitespace().nth(3) == Some("0"))
            .then(|| t0.elapsed())
    });
    let detected = zero.unwrap_or_else(|| panic!("weight never reached 0:\n{}", d.log()));
    println!("failure detection: kernel weight 0 after {detected:?} (bound 2.5 s)");
    assert!(
        detected <= Duration::from_millis(2500 + 1500),
        "detection took {detected:?}, bound 2.5 s (+1.5 s for polling and emulation)"
    );
    assert_eq!(server(&status(&lab), "web", &rip2)["health"], "down");
    let seen = spread(&lab, 12);
    assert_eq!(
        seen.get("rs2"),
        None,
        "a quiesced server got requests: {seen:?}"
    );
    assert_eq!(seen.values().sum::<usize>(), 12, "{seen:?}");

    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    wait_weights(&lab, &[(2, 1)], 15, &d);
    let seen = spread(&lab, 12);
    assert!(
        seen.get("rs2").is_some_and(|n| *n >= 3),
        "rs2 is back: {seen:?}"
    );
}

/// A client's flow moves to the other server when its server dies: `who` is the
/// server the loop's answers came from before; returns how long it took from `t0`
/// (the failure) until an answer from another server, and what failed meanwhile.
fn moved(clients: &ClientLoop, who: &str, t0: Instant, secs: u64) -> Option<(Duration, u64)> {
    poll(secs, || {
        let t = clients.tally();
        t.answered_by
            .keys()
            .any(|k| k != who)
            .then(|| (t0.elapsed(), t.failed))
    })
}

/// The one server a loop's answers all came from (persistence, or one UDP flow).
fn sole_server(clients: &ClientLoop) -> String {
    clients.reset();
    let t = poll(20, || {
        let t = clients.tally();
        (t.ok >= 5).then_some(t)
    })
    .expect("the client loop got no answers");
    clients.reset();
    assert_eq!(t.answered_by.len(), 1, "one flow, one server: {t:?}");
    t.answered_by.into_keys().next().expect("a server")
}

/// Persistent and UDP clients leave a failed server. With persistence, a client's
/// template kept it on the dead server (weight 0) until the template expired (300 s);
/// a UDP flow from one source port kept going to it for as long as it sent.
/// `prepare` now sets expire_quiescent_template and expire_nodest_conn, and a failed
/// UDP server is deleted: each client gets a healthy server within the detection bound
/// (2.5 s) + 2 s.
#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn persistent_and_udp_clients_move_off_a_failed_server() {
    let lab = Lab::new("u", 48, 2);
    let mut web: Vec<Option<Server>> = (1..=2)
        .map(|i| Some(Server::http(&lab.servers[i - 1], 80, &format!("rs{i}"))))
        .collect();
    let mut dns: Vec<Option<Server>> = (1..=2)
        .map(|i| Some(Server::udp(&lab.servers[i - 1], 53, &format!("rs{i}"))))
        .collect();
    // One check per host (HTTP on 80) serves both services.
    let check = "[service.check]\ntype = \"http\"\nport = 80\npath = \"/healthz\"\n\
                 interval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n";
    let servers: String = (1..=2)
        .map(|i| format!("[[service.real_server]]\naddress = \"{}\"\n", lab.rip(i)))
        .collect();
    let text = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n\
         [[service]]\nname = \"web\"\nvip = \"{vip}\"\nport = 80\nscheduler = \"rr\"\n\
         persistence = \"300s\"\n{check}{servers}\
         [[service]]\nname = \"dns\"\nvip = \"{vip}\"\nport = 53\nprotocol = \"udp\"\n\
         scheduler = \"rr\"\n{check}{servers}",
        vip = lab.vip()
    );
    let config = write_file(&lab, "d.toml", &text);
    // As the unit's ExecStartPre does: the kernel settings, as root.
    let set = sh(&format!(
        "ip netns exec {} {BIN} prepare --config {}",
        lab.director,
        config.display()
    ));
    assert!(set.contains("expire_quiescent_template = 1"), "{set}");
    assert!(set.contains("expire_nodest_conn = 1"), "{set}");
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);
    let st = status(&lab);
    assert!(
        st["kernel_settings"].as_array().is_some_and(Vec::is_empty),
        "prepare left a setting differing: {}",
        st["kernel_settings"]
    );
    let index = |who: &str| -> usize {
        if who == "rs1" {
            0
        } else {
            1
        }
    };

    // A persistent client: new connections every 0.1 s, all to one server.
    let vip = |port: u16| -> std::net::SocketAddr {
        format!("{}:{port}", lab.vip()).parse().expect("vip")
    };
    let clients = ClientLoop::http(&lab.client, vip(80), Duration::from_millis(100));
    let who = sole_server(&clients);
    let t0 = Instant::now();
    if let Some(s) = web[index(&who)].take() {
        s.stop();
    }
    let (took, failed) = moved(&clients, &who, t0, 30)
        .unwrap_or_else(|| panic!("the persistent client stayed on {who}:\n{}", d.log()));
    println!(
        "persistent client: moved off {who} after {took:?}, {failed} requests failed meanwhile"
    );
    assert!(
        took <= Duration::from_millis(4500),
        "moved after {took:?}, bound 2.5 s + 2 s"
    );
    clients.stop();
    web[index(&who)] = Some(Server::http(&lab.servers[index(&who)], 80, &who));
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);

    // A UDP flow from one source port, on one server.
    let clients = ClientLoop::udp(&lab.client, 5353, vip(53), Duration::from_millis(100));
    let who = sole_server(&clients);
    let t0 = Instant::now();
    if let Some(s) = web[index(&who)].take() {
        s.stop();
    }
    if let Some(s) = dns[index(&who)].take() {
        s.stop();
    }
    let (took, lost) = moved(&clients, &who, t0, 30)
        .unwrap_or_else(|| panic!("the UDP flow stayed on {who}:\n{}", d.log()));
    println!("UDP flow: moved off {who} after {took:?}, {lost} queries lost meanwhile");
    assert!(
        took <= Duration::from_millis(4500),
        "moved after {took:?}, bound 2.5 s + 2 s"
    );
    clients.stop();
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_long_lived_connection_survives_reloads_and_a_kill_9() {
    let lab = Lab::new("k", 53, 3);
    let _h: Vec<Server> = (0..3)
        .map(|i| Server::http(&lab.servers[i], 80, &format!("rs{}", i + 1)))
        .collect();
    let _e: Vec<Server> = (0..2)
        .map(|i| Server::echo(&lab.servers[i], 9000))
        .collect();
    let echo_svc = |servers: &[usize]| echo_config(&lab, 9000, servers);
    let two = format!(
        "{}{}",
        web_config(&lab, &[(1, 1), (2, 1)], ""),
        echo_svc(&[1, 2])
    );
    let config = write_file(&lab, "d.toml", &two);
    let mut d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);

    let conn = lab.connect(9000);
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    let mut echo = |n: u32| {
        writeln!(w, "ping {n}").expect("write on the long-lived connection");
        let mut line = String::new();
        r.read_line(&mut line)
            .expect("read on the long-lived connection");
        assert_eq!(
            line,
            format!("ping {n}\n"),
            "the long-lived connection broke"
        );
    };
    echo(1);

    // 1. A reload that adds a real server.
    let three = format!(
        "{}{}",
        web_config(&lab, &[(1, 1), (2, 1), (3, 1)], ""),
        echo_svc(&[1, 2])
    );
    std::fs::write(&config, &three).expect("write");
    d.signal("HUP");
    wait_weights(&lab, &[(3, 1)], 15, &d);
    assert_eq!(status(&lab)["config"]["generation"], 2);
    echo(2);

    // 2. A reload with an invalid config: rejected, the old one stays.
    let before = lab.ipvsadm("-Ln");
    std::fs::write(
        &config,
        three.replace("scheduler = \"wrr\"", "scheduler = \"fastest\""),
    )
    .expect("write");
    d.signal("HUP");
    let rejected = poll(10, || {
        (status(&lab)["config"]["ok"] == false).then(|| status(&lab))
    });
    let st =
        rejected.unwrap_or_else(|| panic!("the invalid reload was not reported:\n{}", d.log()));
    assert_eq!(st["config"]["generation"], 2);
    assert!(
        st["config"]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("unknown scheduler \"fastest\"")),
        "{st}"
    );
    std::thread::sleep(Duration::from_secs(3)); // a resync passes
    assert_eq!(
        lab.ipvsadm("-Ln"),
        before,
        "an invalid reload changed the table"
    );
    echo(3);

    // 3. kill -9 and restart: nothing flushed or re-created.
    std::fs::write(&config, &three).expect("write");
    let _ = d.child.kill();
    let _ = d.child.wait();
    assert_eq!(
        lab.ipvsadm("-Ln"),
        before,
        "the table changed when the director died"
    );
    echo(4);
    d = start_director(&lab, BIN, &config);
    let settled = poll(20, || {
        let st = status(&lab);
        let all_up = st["services"].as_array()?.iter().all(|s| {
            s["real_servers"]
                .as_array()
                .is_some_and(|rs| rs.iter().all(|r| r["health"] == "up"))
        });
        (all_up && st["reconcile"]["passes"].as_u64() >= Some(2)).then_some(st)
    });
    let st =
        settled.unwrap_or_else(|| panic!("the restarted director did not settle:\n{}", d.log()));
    assert_eq!(
        st["reconcile"]["ops_applied"],
        0,
        "the restart changed the kernel: {st}\n{}",
        d.log()
    );
    assert_eq!(lab.ipvsadm("-Ln"), before);
    echo(5);

    // SIGTERM with on_exit = keep leaves the table.
    d.signal("TERM");
    let _ = d.child.wait();
    assert_eq!(lab.ipvsadm("-Ln"), before);
    echo(6);
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn drift_is_repaired_and_unmanaged_services_are_left_alone() {
    let lab = Lab::new("d", 54, 2);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    let config = write_file(&lab, "d.toml", &web_config(&lab, &[(1, 1), (2, 1)], ""));
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);
    let good = lab.ipvsadm("-Ln");

    let unmanaged = format!("10.{}.0.200:80", lab.net);
    lab.ipvsadm(&format!("-A -t {unmanaged} -s rr"));
    let t0 = Instant::now();
    lab.ipvsadm(&format!("-D -t {}:80", lab.vip()));
    // resync_interval is 2 s.
    let repaired = poll(10, || {
        let now = lab.ipvsadm("-Ln");
        now.contains(&format!("TCP  {}:80 wrr", lab.vip()))
            .then_some(())
            .filter(|_| now.matches("Route").count() == 2)
    });
    assert!(
        repaired.is_some(),
        "the deleted service was not repaired:\n{}",
        d.log()
    );
    println!(
        "drift repaired after {:?} (resync interval 2 s)",
        t0.elapsed()
    );
    let now = lab.ipvsadm("-Ln");
    assert!(
        now.contains(&format!("TCP  {unmanaged} rr")),
        "the unmanaged service was touched:\n{now}"
    );
    assert_eq!(now.replace(&format!("TCP  {unmanaged} rr\n"), ""), good);
    let st = status(&lab);
    assert_eq!(
        st["unmanaged_services"][0],
        format!("tcp {unmanaged}"),
        "{st}"
    );
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn idle_connections_to_the_status_endpoint_do_not_take_real_servers_down() {
    // This test process holds the flood's client ends: it needs the descriptors.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    let lab = Lab::new("i", 57, 2);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    // Also: an exec check gets none of the director's capabilities (it runs with
    // CAP_NET_ADMIN and CAP_NET_RAW ambient); the server is up only if the command
    // sees no ambient capability.
    let exec = format!(
        "[[service]]\nname = \"caps\"\nvip = \"{}\"\nport = 81\n\
         [service.check]\ntype = \"exec\"\ncommand = \"grep -q 'CapAmb:[[:space:]]*0*$' /proc/self/status\"\ninterval = \"1s\"\nrise = 1\n\
         [[service.real_server]]\naddress = \"{}\"\nweight = 7\n",
        lab.vip(),
        lab.rip(1)
    );
    let config = write_file(
        &lab,
        "d.toml",
        &format!("{}{exec}", web_config(&lab, &[(1, 1), (2, 1)], "")),
    );
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);
    let exec_up = poll(15, || {
        (kernel_weight(&lab, "caps", &lab.rip(1)) == Some(7)).then_some(())
    });
    assert!(
        exec_up.is_some(),
        "the exec check saw ambient capabilities (or failed): {}",
        status(&lab)
    );

    // 1,100 idle connections to the status endpoint (more than the director has
    // descriptors for) from the director's own namespace
    // (the director has 1,024 descriptors), held for longer than fall x interval.
    let held = support::lab::in_ns(&lab.director, || {
        let addr: std::net::SocketAddr = STATUS.parse().expect("addr");
        (0..1100)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
            })
            .collect::<Vec<_>>()
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "status flood: {} connections open; the director holds {fds} descriptors",
        held.len()
    );
    let t0 = Instant::now();
    let mut weights = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) {
        weights.push(lab.ipvsadm("-Ln"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = held.len();
    drop(held);
    let weight_of = |listing: &str, rip: &str| {
        listing.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&format!("{rip}:80").as_str()))
                .then(|| f.get(3).map(|w| w.to_string()))
        })
    };
    for w in &weights {
        for i in 1..=2 {
            assert!(
                weight_of(w, &lab.rip(i)) == Some(Some("1".to_string())),
                "a real server lost its weight during the flood ({opened} connections):\n{w}\n{}",
                d.log()
            );
        }
    }
    assert!(
        !d.log().contains("state=Down"),
        "a check went down during the flood:\n{}",
        d.log()
    );
    // The endpoint answers again once the idle ones are gone.
    let back = poll(20, || lab.director_get(STATUS, "/healthz").ok());
    assert_eq!(back.as_deref(), Some("ok\n"));
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_check_through_the_vip_goes_down_when_the_real_server_loses_the_vip() {
    let lab = Lab::new("v", 64, 2);
    let _h: Vec<Server> = (0..2)
        .flat_map(|i| {
            [80, 81].map(|port| Server::http(&lab.servers[i], port, &format!("rs{}", i + 1)))
        })
        .collect();
    // The real server answers from the VIP to the director's own address.
    sh(&format!(
        "ip netns exec {} sysctl -qw net.ipv4.conf.all.accept_local=1 net.ipv4.conf.eth0.accept_local=1",
        lab.director
    ));
    let svc = |name: &str, port: u16, via: &str| {
        let mut c = format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{}\"\nport = {port}\nscheduler = \"rr\"\n\
             [service.check]\ntype = \"http\"\npath = \"/healthz\"\nvia = \"{via}\"\n\
             interval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n",
            lab.vip()
        );
        for i in 1..=2 {
            c.push_str(&format!(
                "[[service.real_server]]\naddress = \"{}\"\n",
                lab.rip(i)
            ));
        }
        c
    };
    let text = format!(
        "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n{}{}",
        svc("plain", 80, "server"),
        svc("dr-path", 81, "vip")
    );
    let config = write_file(&lab, "via.toml", &text);
    let d = start_director(&lab, BIN, &config);
    let weights = |svc: &str| {
        (
            kernel_weight(&lab, svc, &lab.rip(1)),
            kernel_weight(&lab, svc, &lab.rip(2)),
        )
    };
    let all_up = poll(20, || {
        (weights("plain") == (Some(1), Some(1)) && weights("dr-path") == (Some(1), Some(1)))
            .then_some(())
    });
    assert!(
        all_up.is_some(),
        "not all up: {}\n{}\n{}",
        status(&lab),
        lab.ipvsadm("-Ln"),
        d.log()
    );
    let st = status(&lab);
    let label = server(&st, "dr-path", &lab.rip(1))["check"].clone();
    assert!(
        label
            .as_str()
            .is_some_and(|l| l.contains(&format!("via {}:81", lab.vip()))),
        "{label}"
    );

    // rs1 loses the VIP: its own address still answers, the DR path does not.
    sh(&format!(
        "ip -n {} addr del {}/32 dev lo",
        lab.servers[0],
        lab.vip()
    ));
    let down = poll(10, || {
        (weights("dr-path") == (Some(0), Some(1))).then_some(())
    });
    assert!(
        down.is_some(),
        "the check through the VIP did not go down: {}\n{}",
        status(&lab),
        d.log()
    );
    assert_eq!(
        weights("plain"),
        (Some(1), Some(1)),
        "the plain check stays up"
    );
    let st = status(&lab);
    let rs1 = server(&st, "dr-path", &lab.rip(1));
    assert_eq!(rs1["health"], "down", "{rs1}");
    assert!(rs1["error"].as_str().is_some(), "{rs1}");
    assert_eq!(server(&st, "plain", &lab.rip(1))["health"], "up");

    // The VIP back: up again.
    sh(&format!(
        "ip -n {} addr add {}/32 dev lo",
        lab.servers[0],
        lab.vip()
    ));
    let up = poll(10, || {
        (weights("dr-path") == (Some(1), Some(1))).then_some(())
    });
    assert!(up.is_some(), "did not come back: {}", status(&lab));
}
