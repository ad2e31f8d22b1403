//! Two directors on one L2 segment without BGP (issue: director HA, section 3), in the
//! VM: keepalived 2.2 in VRRP-only mode moves the VIP (conf/keepalived-vrrp.conf), lvsdr
//! runs on both with the same config and `[sync]`. The master's link is cut: the backup
//! takes the VIP, `/status` says it holds it, and a long-lived connection goes on
//! through the sync daemon's copy.

use lvsdr_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::director::{start_director_in, Proc, STATUS};
use support::lab::{get_in, in_ns, Server};
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");
const VIP: &str = "10.82.0.100";

fn n(ns: &str, cmd: &str) -> String {
    sh(&format!("ip netns exec {ns} {cmd}"))
}

struct Net;

impl Net {
    fn new() -> Net {
        sh("ip link add bvr type bridge forward_delay 0 && ip link set bvr up");
        for (ns, host) in [
            ("yc", 2),
            ("yd1", 11),
            ("yd2", 12),
            ("yrs1", 21),
            ("yrs2", 22),
        ] {
            sh(&format!(
                "ip netns add {ns} && ip link add v{ns} type veth peer name eth0 netns {ns} \
                 && ip link set v{ns} master bvr up && ip -n {ns} link set lo up \
                 && ip -n {ns} link set eth0 up && ip -n {ns} addr add 10.82.0.{host}/24 dev eth0"
            ));
        }
        for rs in ["yrs1", "yrs2"] {
            sh(&format!("ip -n {rs} addr add {VIP}/32 dev lo"));
            n(
                rs,
                "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
                 net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2",
            );
        }
        Net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg("pkill -9 -f '[k]eepalived --vrrp' ; for ns in yc yd1 yd2 yrs1 yrs2; do ip link del v$ns 2>/dev/null; ip netns del $ns; done; ip link del bvr")
            .status();
    }
}

#[test]
#[ignore = "needs the IPVS kernel and keepalived: runs in the test VM (tests/run)"]
fn a_vrrp_pair_moves_the_vip_and_keeps_a_long_lived_connection() {
    let _net = Net::new();
    let _servers: Vec<Server> = ["yrs1", "yrs2"]
        .iter()
        .flat_map(|rs| [Server::http(rs, 80, rs), Server::echo(rs, 7000)])
        .collect();
    let dir = PathBuf::from("/tmp/lvsdr-vrrp");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let example = include_str!("../../conf/keepalived-vrrp.conf");
    let mut directors: Vec<Proc> = Vec::new();
    let mut vrrp: Vec<Proc> = Vec::new();
    for (i, prio) in [(1, "150"), (2, "100")] {
        let d = format!("yd{i}");
        let conf = dir.join(format!("k{i}.conf"));
        std::fs::write(
            &conf,
            example
                .replace("lvsdr-d1", &format!("lvsdr-d{i}"))
                .replace("priority 150", &format!("priority {prio}"))
                .replace("192.0.2.10/32", &format!("{VIP}/32")),
        )
        .expect("keepalived conf");
        vrrp.push(Proc::spawn(
            &d,
            "keepalived",
            &[
                "--vrrp",
                "--dont-fork",
                "--log-console",
                "-f",
                &conf.display().to_string(),
                "-p",
                &dir.join(format!("k{i}.pid")).display().to_string(),
                "-r",
                &dir.join(format!("kv{i}.pid")).display().to_string(),
            ],
            dir.join(format!("keepalived{i}.log")),
        ));
        let mut c = format!(
            "[director]\nstatus_listen = \"{STATUS}\"\nresync_interval = \"2s\"\n\
             [sync]\ninterface = \"eth0\"\nsync_id = 2\n"
        );
        for (name, port) in [("web", 80), ("echo", 7000)] {
            c.push_str(&format!(
                "[[service]]\nname = \"{name}\"\nvip = \"{VIP}\"\nport = {port}\nscheduler = \"mh\"\n\
                 scheduler_flags = [\"mh-fallback\", \"mh-port\"]\n\
                 [service.check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n\
                 [[service.real_server]]\naddress = \"10.82.0.21\"\n\
                 [[service.real_server]]\naddress = \"10.82.0.22\"\n"
            ));
        }
        let cfg = dir.join(format!("d{i}.toml"));
        std::fs::write(&cfg, c).expect("config");
        n(&d, &format!("{BIN} prepare --config {}", cfg.display()));
        directors.push(start_director_in(&d, BIN, &cfg, 30));
    }
    let held = |d: &str| -> Vec<String> {
        get_in(d, STATUS, "/status")
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|s| s["vips_held"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let master = poll(30, || {
        (held("yd1") == [VIP] && held("yd2").is_empty()).then_some(())
    });
    assert!(
        master.is_some(),
        "vd1 is not the only holder: {:?} {:?}\n{}",
        held("yd1"),
        held("yd2"),
        vrrp[0].log()
    );
    let echo = in_ns("yc", || {
        let s = TcpStream::connect_timeout(
            &format!("{VIP}:7000").parse().expect("addr"),
            Duration::from_secs(3),
        )
        .expect("echo connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    });
    let mut w = echo.try_clone().expect("clone");
    let mut r = BufReader::new(echo);
    let mut ping = |k: u32| {
        writeln!(w, "ping {k}").expect("write on the long-lived connection");
        let mut line = String::new();
        r.read_line(&mut line)
            .expect("read on the long-lived connection");
        assert_eq!(
            line,
            format!("ping {k}\n"),
            "the long-lived connection broke"
        );
    };
    ping(1);
    // The backup has the connection from the sync daemon.
    let synced = poll(10, || {
        n("yd2", "ipvsadm -Lnc").contains(":7000").then_some(())
    });
    assert!(synced.is_some(), "not synced: {}", n("yd2", "ipvsadm -Lnc"));

    // The master's link is cut (a dead host): the backup takes the VIP.
    let t0 = Instant::now();
    n("yd1", "ip link set eth0 down");
    let moved = poll(15, || (held("yd2") == [VIP]).then(|| t0.elapsed()));
    assert!(moved.is_some(), "the VIP did not move: {}", vrrp[1].log());
    let t1 = Instant::now();
    for k in 2..12 {
        ping(k);
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "VRRP: the backup holds the VIP {:?} after the master's link was cut; the long-lived connection went on (10 echoes in {:?})",
        moved.unwrap_or_default(),
        t1.elapsed()
    );
    let page = get_in("yd2", STATUS, "/").expect("page");
    assert!(page.contains(&format!("This director holds {VIP}")));
    for mut p in directors.into_iter().chain(vrrp) {
        p.kill();
    }
}
