//! The director with real-server agents, in the test VM: the agents put the VIP on the
//! real servers and suppress ARP (the test does neither), and with `require = true` a
//! real server whose agent is not running gets no traffic until its agent is back; a
//! restart of the director (kill -9, SIGTERM) changes nothing in the table and fails
//! no request; and a real server that leaves every service of its VIP keeps the VIP
//! while the kernel drains its connections.

use lvsdr_test_support as support;

use std::time::Duration;

use support::agents::{agent_bin, AgentLab, Echo, Pki};
use support::clients::ClientLoop;
use support::director::*;
use support::lab::{Lab, Server};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn agents_set_up_the_real_servers_and_gate_their_weight() {
    let lab = Lab::bare("g", 56, 2);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    let pki = Pki::new(&lab);
    let (c1, c2) = (pki.agent_config(&lab, 1), pki.agent_config(&lab, 2));
    let _a1 = start_agent(&lab, &agent_bin(BIN), 1, &c1);
    let agents = pki.agents_section();
    let config = write_file(
        &lab,
        "d.toml",
        &web_config(&lab, &[(1, 1), (2, 1)], &agents),
    );
    let d = start_director(&lab, BIN, &config);

    // rs2's agent is not running: healthy, but no weight.
    wait_weights(&lab, &[(1, 1), (2, 0)], 20, &d);
    let st = status(&lab);
    assert_eq!(server(&st, "web", &lab.rip(2))["health"], "up");
    assert!(
        server(&st, "web", &lab.rip(2))["reason"]
            .as_str()
            .is_some_and(|r| r.contains("agent")),
        "{st}"
    );
    let a2 = st["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["address"] == lab.rip(2)))
        .expect("agent 2");
    assert_eq!(a2["reachable"], false, "{st}");
    let seen = spread(&lab, 8);
    assert_eq!(seen.get("rs1"), Some(&8), "only rs1 serves: {seen:?}");
    assert_eq!(
        lab.arp_answers(),
        vec![lab.mac(&lab.director)],
        "ARP for the VIP: only the director"
    );

    // The agent comes: it gets the VIP, confirms, and the server gets its weight.
    let mut a2 = start_agent(&lab, &agent_bin(BIN), 2, &c2);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);
    let seen = spread(&lab, 8);
    assert_eq!(
        (seen.get("rs1"), seen.get("rs2")),
        (Some(&4), Some(&4)),
        "{seen:?}"
    );
    assert_eq!(
        lab.arp_answers(),
        vec![lab.mac(&lab.director)],
        "ARP for the VIP: only the director"
    );
    let lo = support::sh(&format!("ip -n {} -o addr show dev lo", lab.servers[1]));
    assert!(lo.contains(&format!("inet {}/32", lab.vip())), "{lo}");

    // The agent stops: once the confirmation's grace period (10 s: a debug build's TLS
    // handshake under emulation takes seconds) is over, no traffic for rs2 until it is
    // back.
    a2.kill();
    wait_weights(&lab, &[(1, 1), (2, 0)], 40, &d);
    let seen = spread(&lab, 6);
    assert_eq!(seen.get("rs2"), None, "{seen:?}");
    let _a2 = start_agent(&lab, &agent_bin(BIN), 2, &c2);
    wait_weights(&lab, &[(1, 1), (2, 1)], 20, &d);

    // A restart changes nothing that is right: kill -9, then SIGTERM, each followed by
    // a start, with a client every 0.1 s throughout. The starting gate was closed and
    // health unknown, so the first pass zeroed both servers and the VIP had no server
    // until agents and checks answered.
    let vip: std::net::SocketAddr = format!("{}:80", lab.vip()).parse().expect("vip");
    let clients = ClientLoop::http(&lab.client, vip, Duration::from_millis(100));
    let mut d = d;
    for how in ["KILL", "TERM"] {
        let before = clients.reset();
        d.signal(how);
        let _ = d.child.wait();
        let restarted = start_director(&lab, BIN, &config);
        // Both agents heard from and confirmed, both checks up, a few passes made.
        let settled = support::poll(60, || {
            let st = status(&lab);
            let confirmed = st["agents"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["confirmed"] == true));
            let up = [1, 2]
                .iter()
                .all(|i| server(&st, "web", &lab.rip(*i))["health"] == "up");
            (confirmed && up && st["reconcile"]["passes"].as_u64() >= Some(3)).then_some(st)
        })
        .unwrap_or_else(|| panic!("not settled after SIG{how}:\n{}", restarted.log()));
        let after = clients.reset();
        println!(
            "SIG{how} and a start: {} requests ok, {} failed, longest gap {:?} (before: {} ok, {} failed)",
            after.ok, after.failed, after.longest_gap, before.ok, before.failed
        );
        assert_eq!(
            settled["reconcile"]["ops_applied"],
            0,
            "a restart after SIG{how} changed the table: {settled}\n{}",
            restarted.log()
        );
        assert_eq!(
            after.failed,
            0,
            "requests failed across SIG{how} and a start: {:?}\n{}",
            after.errors,
            restarted.log()
        );
        assert!(after.ok > 0, "the client loop did not run");
        wait_weights(&lab, &[(1, 1), (2, 1)], 5, &restarted);
        d = restarted;
    }
    clients.stop();
}

/// The director's `/status` entry for the agent at `addr`.
fn agent_entry(lab: &Lab, addr: &str) -> serde_json::Value {
    status(lab)["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["address"] == addr).cloned())
        .unwrap_or_default()
}

/// While rs2 drains: it holds the VIP, and every long-lived connection still echoes.
fn rs2_holds_the_vip_and_echoes(lab: &Lab, conns: &mut [Echo], d: &Proc) {
    let lo = support::sh(&format!("ip -n {} -o addr show dev lo", lab.servers[1]));
    assert!(
        lo.contains(&format!("inet {}/32", lab.vip())),
        "rs2 lost the VIP: {lo}"
    );
    for (k, c) in conns.iter_mut().enumerate() {
        c.ping().unwrap_or_else(|e| {
            panic!(
                "long-lived connection {k} broke while rs2 drained: {e}\n{}",
                d.log()
            )
        });
    }
}

/// Item 4 of "Where features meet": when a real server leaves every service of one VIP
/// and stays in a service of another, the kernel drains its connections to the first,
/// and its agent keeps that VIP until they end; and when it leaves every service, its
/// agent is told the draining VIP, then an empty set. Before, the agent was told at once to
/// drop the VIP; the server then no longer accepted the draining connections' packets,
/// and they died.
#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_server_leaving_its_vip_keeps_it_while_its_connections_drain() {
    let lab = Lab::bare("k", 74, 2);
    let running = AgentLab::start(&lab, BIN);
    let pki = &running.pki;
    let section = pki.agents_section();
    // "web" (port 80) and "echo" (port 7) on the one VIP.
    // rs2 stays in "other", on a VIP of its own, throughout.
    let vip2 = format!("10.{}.0.101", lab.net);
    let other = format!(
        "[[service]]\nname = \"other\"\nvip = \"{vip2}\"\nport = 80\n\
         [service.check]\ntype = \"none\"\n[[service.real_server]]\naddress = \"{}\"\n",
        lab.rip(2)
    );
    let config_with = |servers: &[usize], with_other: bool| {
        let web: Vec<(usize, u32)> = servers.iter().map(|i| (*i, 1)).collect();
        let other = if with_other { other.as_str() } else { "" };
        web_config(&lab, &web, &section) + &echo_config(&lab, 7, servers) + other
    };
    let config_of = |servers: &[usize]| config_with(servers, true);
    let config = write_file(&lab, "d.toml", &config_of(&[1, 2]));
    let d = start_director(&lab, BIN, &config);
    wait_weights(&lab, &[(1, 1), (2, 1)], 30, &d);
    let both_echo = support::poll(30, || {
        let st = status(&lab);
        [1, 2]
            .iter()
            .all(|i| {
                find_server(&st, "echo", &lab.rip(*i)).is_some_and(|s| s["kernel_weight"] == 1)
            })
            .then_some(())
    });
    assert!(both_echo.is_some(), "echo: {}\n{}", status(&lab), d.log());

    // Long-lived connections, spread by rr over both servers.
    let mut conns: Vec<Echo> = (0..4).map(|_| Echo::open(&lab)).collect();
    for c in &mut conns {
        c.ping().expect("a fresh connection echoes");
    }
    let on_rs2 = || {
        support::sh(&format!(
            "ip netns exec {} ss -Htn state established '( sport = :7 )' | wc -l",
            lab.servers[1]
        ))
        .trim()
        .parse::<usize>()
        .unwrap_or(0)
    };
    assert!(on_rs2() > 0, "no connection reached rs2");

    // rs2 leaves both services of the VIP: web's destination goes (no connections),
    // echo's drains. The director goes on asking rs2's agent for the VIP while it
    // drains.
    let reloaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    write_file(&lab, "d.toml", &config_of(&[1]));
    d.signal("HUP");
    let pushed_after = support::poll(60, || {
        let a = agent_entry(&lab, &lab.rip(2));
        let web_gone = find_server(&status(&lab), "web", &lab.rip(2)).is_none()
            && !lab
                .ipvsadm(&format!("-Ln -t {}:80", lab.vip()))
                .contains(&lab.rip(2));
        (a["last_push"]
            .as_f64()
            .is_some_and(|t| t > reloaded_at + 2.0)
            && web_gone)
            .then_some(a)
    })
    .unwrap_or_else(|| {
        panic!(
            "no push to rs2's agent after the reload: {}\n{}",
            status(&lab),
            d.log()
        )
    });
    assert!(
        pushed_after["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == &serde_json::json!(lab.vip()))),
        "the director told rs2's agent to drop the VIP while rs2 drains: {pushed_after}\n{}",
        d.log()
    );
    rs2_holds_the_vip_and_echoes(&lab, &mut conns, &d);
    assert!(on_rs2() > 0, "rs2's connections ended early");

    // The connections end: the drained destination goes, and then the VIP (VIP2
    // stays).
    drop(conns);
    let gone = support::poll(120, || {
        let lo = support::sh(&format!("ip -n {} -o addr show dev lo", lab.servers[1]));
        (!lab
            .ipvsadm(&format!("-Ln -t {}:7", lab.vip()))
            .contains(&lab.rip(2))
            && !lo.contains(&format!("inet {}/32", lab.vip()))
            && lo.contains(&format!("inet {vip2}/32")))
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "rs2 kept its destination or the VIP after its connections ended: {}\n{}\n{}",
        lab.ipvsadm("-Ln"),
        status(&lab),
        d.log()
    );

    // rs2 leaves every service: back in echo, connections on it, then a config
    // without it anywhere ("other" retired too). Its agent is still told the VIP its
    // draining destination carries, then, once drained, an empty set: both VIPs come
    // off. (It was told nothing more, and kept both until the agent's set_expiry.)
    write_file(&lab, "d.toml", &config_of(&[1, 2]));
    d.signal("HUP");
    let back = support::poll(60, || {
        let st = status(&lab);
        find_server(&st, "echo", &lab.rip(2))
            .is_some_and(|s| s["kernel_weight"] == 1)
            .then_some(())
    });
    assert!(
        back.is_some(),
        "rs2 not back in echo: {}\n{}",
        status(&lab),
        d.log()
    );
    let mut conns: Vec<Echo> = (0..4).map(|_| Echo::open(&lab)).collect();
    for c in &mut conns {
        c.ping().expect("a fresh connection echoes");
    }
    assert!(on_rs2() > 0, "no connection reached rs2");
    write_file(&lab, "d.toml", &config_with(&[1], false));
    d.signal("HUP");
    let told = support::poll(60, || {
        let a = agent_entry(&lab, &lab.rip(2));
        let other_gone = !lab.ipvsadm("-Ln").contains(&vip2);
        (other_gone && a["vips"] == serde_json::json!([lab.vip()])).then_some(())
    });
    assert!(
        told.is_some(),
        "rs2's agent is not told the VIP of its draining destination: {}\n{}",
        status(&lab),
        d.log()
    );
    rs2_holds_the_vip_and_echoes(&lab, &mut conns, &d);
    drop(conns);
    let cleared = support::poll(120, || {
        let lo = support::sh(&format!("ip -n {} -o addr show dev lo", lab.servers[1]));
        let listed = status(&lab)["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == lab.rip(2)));
        (!lo.contains(&format!("inet {}/32", lab.vip()))
            && !lo.contains(&format!("inet {vip2}/32"))
            && !listed)
            .then_some(())
    });
    assert!(
        cleared.is_some(),
        "rs2 kept a VIP after it drained out of every service: {}\n{}\n{}",
        support::sh(&format!("ip -n {} -o addr show dev lo", lab.servers[1])),
        status(&lab),
        d.log()
    );
    drop(running);
}
