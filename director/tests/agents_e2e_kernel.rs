//! The director with real-server agents, in the test VM: the agents put the VIP on the
//! real servers and suppress ARP (the test does neither), and with `require = true` a
//! real server whose agent is not running gets no traffic until its agent is back; a
//! restart of the director (kill -9, SIGTERM) changes nothing in the table and fails
//! no request.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::clients::ClientLoop;
use support::director::*;
use support::lab::{Lab, Server};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

fn agent_bin() -> String {
    let p = Path::new(BIN).with_file_name("lvsdr-agent");
    assert!(
        p.exists(),
        "{} is not built (cargo test --workspace builds it)",
        p.display()
    );
    p.display().to_string()
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn agents_set_up_the_real_servers_and_gate_their_weight() {
    let lab = Lab::bare("g", 56, 2);
    let _s1 = Server::http(&lab.servers[0], 80, "rs1");
    let _s2 = Server::http(&lab.servers[1], 80, "rs2");
    let dir = PathBuf::from(format!("/tmp/lvsdr-e2e-{}", lab.tag));
    let pki = dir.join("pki");
    let _ = std::fs::remove_dir_all(&pki);
    lvsdr::pki::init(&pki, &[lab.rip(1), lab.rip(2)]).expect("pki");
    // The director runs as nobody: its key is readable to it, as LoadCredential makes it.
    support::sh(&format!(
        "chown {NOBODY} {0}/director.key {0}/director.pem {0}/ca.pem",
        pki.display()
    ));
    let agent_config = |i: usize| {
        let rip = lab.rip(i);
        write_file(
            &lab,
            &format!("agent{i}.toml"),
            &format!(
                "[agent]\nlisten = \"0.0.0.0:9181\"\nstate_file = \"{d}/state{i}.json\"\n\
                 [agent.tls]\ncert = \"{p}/agent-{rip}.pem\"\nkey = \"{p}/agent-{rip}.key\"\nclient_ca = \"{p}/ca.pem\"\n",
                d = dir.display(),
                p = pki.display()
            ),
        )
    };
    let (c1, c2) = (agent_config(1), agent_config(2));
    let _a1 = start_agent(&lab, &agent_bin(), 1, &c1);
    let agents = format!(
        "[agents]\nca = \"{p}/ca.pem\"\ncert = \"{p}/director.pem\"\nkey = \"{p}/director.key\"\nrequire = true\npush_interval = \"1s\"\nconfirm_grace = \"10s\"\n",
        p = pki.display()
    );
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
    let mut a2 = start_agent(&lab, &agent_bin(), 2, &c2);
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
    let _a2 = start_agent(&lab, &agent_bin(), 2, &c2);
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
