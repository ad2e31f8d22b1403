//! Operators' runtime overrides over the control socket (`lvsdr-director ctl`), with
//! agents and `require = true`, in the test VM: a drain gives weight 0 and new
//! requests go elsewhere while a long-lived connection goes on (`drain --wait` holds
//! until it closes); the drain survives `kill -9` and a restart, which changes nothing
//! in the table; uid 65534 is refused; a runtime weight, a disable and an enable each
//! reach the kernel. A client loop through the VIP counts failed requests throughout.

use lvsdr_test_support as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::agents::{AgentLab, Echo};
use support::clients::ClientLoop;
use support::director::*;
use support::lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-director");

/// `lvsdr-director ctl --socket SOCKET ARGS` as root (the test's user).
fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run ctl")
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "ctl failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Waits until `svc`'s real server `i` has this kernel weight (`None`: absent).
fn wait_weight(lab: &Lab, svc: &str, i: usize, want: Option<u64>, d: &Proc) -> Duration {
    let t0 = Instant::now();
    let got = support::poll(30, || {
        let port = if svc == "web" { 80 } else { 7 };
        let table = lab.ipvsadm(&format!("-Ln -t {}:{port}", lab.vip()));
        let w = table
            .lines()
            .find(|l| l.contains(&format!("{}:{port}", lab.rip(i))))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|w| w.parse::<u64>().ok());
        (w == want).then_some(())
    });
    assert!(
        got.is_some(),
        "{svc}: rs{i} did not reach weight {want:?}: {}\n{}",
        lab.ipvsadm("-Ln"),
        d.log()
    );
    t0.elapsed()
}

/// The director's config for these tests: web (weight 6, a slow start of 10 s, so that
/// a return shows its steps) and echo on both servers, agents with `require = true`,
/// the control socket and overrides file in a folder of the director's own (it runs as
/// nobody: RuntimeDirectory= and StateDirectory= under systemd), and a hook that keeps
/// every event it is told of. Returns the config, the socket and the events file.
fn ctl_config(lab: &Lab, running: &AgentLab) -> (PathBuf, PathBuf, PathBuf) {
    let ctl_dir = PathBuf::from(format!("/tmp/lvsdr-e2e-{}/ctl", lab.tag));
    let _ = std::fs::remove_dir_all(&ctl_dir);
    std::fs::create_dir_all(&ctl_dir).expect("dir");
    support::sh(&format!("chown {NOBODY} {}", ctl_dir.display()));
    let socket = ctl_dir.join("control.sock");
    let extra = format!(
        "control_socket = \"{}\"\nadmin_file = \"{}/admin.json\"\n{}",
        socket.display(),
        ctl_dir.display(),
        running.pki.agents_section()
    );
    // With rs2 drained, rs1 is the only server: a check timed out or a push lost on a
    // loaded machine under emulation (these tests run two at a time) must not take it
    // out, or IPVS, with no server left, answers clients with "port unreachable".
    let extra = extra.replacen("confirm_grace = \"10s\"", "confirm_grace = \"30s\"", 1);
    let web = web_config(lab, &[(1, 6), (2, 6)], &extra)
        .replacen(
            "scheduler = \"wrr\"\n",
            "scheduler = \"wrr\"\nslow_start = \"10s\"\n",
            1,
        )
        .replacen(
            "timeout = \"500ms\"\nrise = 1\nfall = 2",
            "timeout = \"1s\"\nrise = 1\nfall = 3",
            1,
        );
    assert!(
        web.contains("fall = 3") && web.contains("confirm_grace = \"30s\""),
        "{web}"
    );
    let events_file = ctl_dir.join("events.jsonl");
    let hook = format!(
        "[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        events_file.display()
    );
    let text = web + &echo_config(lab, 7, &[1, 2]) + &hook;
    (write_file(lab, "d.toml", &text), socket, events_file)
}

/// Kills the director with -9 and starts it again; waits until it has settled (both
/// agents confirmed, three passes) and asserts the restart changed nothing in the
/// table: what it kept is in force from its first pass.
fn kill_and_restart(
    lab: &Lab,
    d: &mut Proc,
    config: &Path,
    before: &mut String,
) -> serde_json::Value {
    // The killed director's log, for a failure reported later (the new one writes
    // the same file).
    *before = d.log();
    d.signal("KILL");
    let _ = d.child.wait();
    *d = start_director(lab, BIN, config);
    let settled = support::poll(60, || {
        // Just started: a GET that times out (the VM stalled the new director past the
        // client's 5 s) is "not yet", not a failure.
        let st = try_status(lab)?;
        let confirmed = st["agents"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["confirmed"] == true));
        (confirmed && st["reconcile"]["passes"].as_u64() >= Some(3)).then_some(st)
    })
    .unwrap_or_else(|| panic!("not settled after kill -9:\n{}", d.log()));
    assert_eq!(
        settled["reconcile"]["ops_applied"],
        0,
        "the restart changed the table: {settled}\n{}",
        d.log()
    );
    settled
}

/// Waits until rs2 has weight 0 in web and echo, and prints how long that took.
fn drained_in_kernel(lab: &Lab, d: &Proc, what: &str) {
    let took = wait_weight(lab, "web", 2, Some(0), d);
    wait_weight(lab, "echo", 2, Some(0), d);
    println!(
        "{what} → weight 0 in the kernel: {:.2} s",
        took.as_secs_f64()
    );
}

/// Stops the client loop and asserts none of its requests failed (with both directors'
/// logs, the one killed and the one running, when some did).
fn no_request_failed(clients: ClientLoop, before: &str, d: &Proc) {
    let t = clients.stop();
    println!(
        "client loop: {} ok, {} failed, longest gap {:?}",
        t.ok, t.failed, t.longest_gap
    );
    assert_eq!(
        t.failed,
        0,
        "requests failed: {:?}\nthe director before its restart:\n{before}\nafter:\n{}",
        t.errors,
        d.log()
    );
    assert!(t.ok > 0, "the client loop never got an answer");
}

/// Waits until web's rs2 is back at its full weight 6, through the steps of its slow
/// start; returns the kernel weights seen on the way.
fn ramp_back(lab: &Lab, d: &Proc) -> std::collections::BTreeSet<u64> {
    let mut steps = std::collections::BTreeSet::new();
    let full = support::poll(60, || {
        let w = kernel_weight(lab, "web", &lab.rip(2));
        steps.extend(w);
        (w == Some(6)).then_some(())
    });
    assert!(
        full.is_some(),
        "rs2 never got its weight back: {steps:?}\n{}",
        d.log()
    );
    assert!(
        steps.iter().any(|w| (1..6).contains(w)),
        "no step between 0 and 6 (slow_start): {steps:?}"
    );
    steps
}

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn an_operator_drains_disables_and_weighs_servers_over_the_control_socket() {
    let lab = Lab::bare("o", 66, 2);
    let running = AgentLab::start(&lab, BIN);
    let (config, socket, events_file) = ctl_config(&lab, &running);
    let mut d = start_director(&lab, BIN, &config);
    let mut before = String::new();
    wait_weights(&lab, &[(1, 6), (2, 6)], 60, &d);
    wait_weight(&lab, "echo", 2, Some(1), &d);
    let vip: std::net::SocketAddr = format!("{}:80", lab.vip()).parse().expect("vip");
    let clients = ClientLoop::http(&lab.client, vip, Duration::from_millis(100));

    // Long-lived connections on both servers (rr).
    let mut conns: Vec<Echo> = (0..4).map(|_| Echo::open(&lab)).collect();
    for c in &mut conns {
        c.ping().expect("a fresh connection echoes");
    }
    // drain --wait: weight 0 in both services, and it holds while rs2 has connections.
    let mut wait = Command::new(BIN)
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args([
            "drain",
            &lab.rip(2),
            "--reason",
            "kernel upgrade",
            "--wait",
            "--timeout",
            "5m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl drain --wait");
    drained_in_kernel(&lab, &d, "ctl drain");
    let seen = spread(&lab, 8);
    assert_eq!(
        seen.get("rs1"),
        Some(&8),
        "new requests go to rs1 only: {seen:?}"
    );
    for c in &mut conns {
        c.ping().expect("a drained server's connection goes on");
    }
    assert!(
        wait.try_wait().expect("wait").is_none(),
        "drain --wait returned while rs2 still had connections"
    );
    let st = status(&lab);
    let rs2 = server(&st, "web", &lab.rip(2));
    assert_eq!(rs2["admin_state"], "drain", "{st}");
    assert_eq!(rs2["reason"], "drained by uid 0: kernel upgrade", "{st}");
    assert_eq!(rs2["admin_by"], 0);
    drop(conns);
    let returned = support::poll(120, || wait.try_wait().expect("wait"));
    let out = wait.wait_with_output().expect("output");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        returned.is_some_and(|s| s.success()) && printed.trim_end().ends_with("drained"),
        "drain --wait: {returned:?} {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("active connection"), "{printed}");
    println!("drain --wait printed:\n{printed}");

    // The drain survives kill -9 and a start: the first pass already sees it, so the
    // restart changes nothing in the table.
    let settled = kill_and_restart(&lab, &mut d, &config, &mut before);
    assert_eq!(
        server(&settled, "web", &lab.rip(2))["admin_state"],
        "drain",
        "{settled}"
    );
    wait_weight(&lab, "web", 2, Some(0), &d);

    // Only root (or control_group) may ask.
    let nobody = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "ctl",
            "--socket",
        ])
        .arg(&socket)
        .args(["enable", &lab.rip(2)])
        .output()
        .expect("setpriv");
    let said = String::from_utf8_lossy(&nobody.stderr).to_string();
    assert!(
        !nobody.status.success() && said.contains("uid 65534 may not use the control socket"),
        "uid 65534: {said}"
    );
    wait_weight(&lab, "web", 2, Some(0), &d);

    // A runtime weight, then enable, disable and enable again.
    ok(ctl(
        &socket,
        &[
            "weight",
            &lab.rip(1),
            "3",
            "--service",
            "web",
            "--reason",
            "bigger box",
        ],
    ));
    wait_weight(&lab, "web", 1, Some(3), &d);
    wait_weight(&lab, "echo", 1, Some(1), &d);
    let listed = ok(ctl(&socket, &["list"]));
    assert!(
        listed.contains("kernel upgrade") && listed.contains("bigger box"),
        "{listed}"
    );
    // enable: back from the drain in steps (slow_start), to its full weight.
    ok(ctl(&socket, &["enable", &lab.rip(2)]));
    let steps = ramp_back(&lab, &d);
    println!("enable after the drain: kernel weights seen {steps:?}");
    ok(ctl(&socket, &["disable", &lab.rip(2), "--service", "web"]));
    wait_weight(&lab, "web", 2, None, &d);
    wait_weight(&lab, "echo", 2, Some(1), &d);
    let seen = spread(&lab, 6);
    assert_eq!(seen.get("rs2"), None, "{seen:?}");
    ok(ctl(&socket, &["enable", &lab.rip(2)]));
    ok(ctl(&socket, &["enable", &lab.rip(1)]));
    wait_weight(&lab, "web", 2, Some(6), &d);
    wait_weight(&lab, "web", 1, Some(6), &d);
    let bad = ctl(&socket, &["drain", "10.99.0.1"]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("not a real server of any service"),
        "{bad:?}"
    );

    no_request_failed(clients, &before, &d);

    // The hook was told of the drain, and of a server going down: rs2's web server stops.
    let told = || std::fs::read_to_string(&events_file).unwrap_or_default();
    let drain = told().lines().any(|l| {
        l.contains(r#""event":"admin""#)
            && l.contains(r#""state":"drain""#)
            && l.contains("kernel upgrade")
    });
    assert!(drain, "no drain event: {}", told());
    let mut running = running;
    running.servers.remove(2).stop(); // rs2's HTTP server (rs1 http, rs1 echo, rs2 http, …)
    let down = support::poll(60, || {
        told()
            .lines()
            .any(|l| {
                l.contains(r#""event":"server""#)
                    && l.contains(r#""state":"down""#)
                    && l.contains(&format!("{}:80", lab.rip(2)))
            })
            .then_some(())
    });
    assert!(down.is_some(), "no down event: {}\n{}", told(), d.log());
    let hooks = status(&lab)["notify"].clone();
    assert!(hooks[0]["delivered"].as_u64() >= Some(2), "{hooks}");
    println!("the hook was told:\n{}", told());
    drop(running);
}

/// The director's drain polls the agent has counted (`lvsdr-agent status`).
fn polls(agent: &Path) -> u64 {
    let o = agent_cmd(agent, &["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.split_once(" polls since")
        .and_then(|(before, _)| before.rsplit('(').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no poll count in:\n{text}"))
}

/// `lvsdr-agent ARGS --config CONFIG` as root.
fn agent_cmd(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(support::agents::agent_bin(BIN));
    c.args(args).arg("--config").arg(config);
    c
}

/// A real server drains itself (`lvsdr-agent drain`), without knowing the director:
/// the director gives it weight 0 in every service within a second or two, new
/// requests go elsewhere, `drain --wait` holds while a long-lived connection is open
/// and returns after it closes; the drain survives the agent's restart and the
/// director's `kill -9`; `ready` brings the weight back (through its slow start).
#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn a_real_server_drains_itself_through_its_agent_and_ready_brings_it_back() {
    let lab = Lab::bare("x", 67, 2);
    let mut running = AgentLab::start(&lab, BIN);
    let (config, _, events_file) = ctl_config(&lab, &running);
    let mut d = start_director(&lab, BIN, &config);
    let started = Instant::now();
    let mut before = String::new();
    wait_weights(&lab, &[(1, 6), (2, 6)], 60, &d);
    wait_weight(&lab, "echo", 2, Some(1), &d);
    let vip: std::net::SocketAddr = format!("{}:80", lab.vip()).parse().expect("vip");
    let clients = ClientLoop::http(&lab.client, vip, Duration::from_millis(100));
    let agent2 = running.pki.agent_config(&lab, 2);

    let mut conns: Vec<Echo> = (0..4).map(|_| Echo::open(&lab)).collect();
    for c in &mut conns {
        c.ping().expect("a fresh connection echoes");
    }
    // What the long poll costs: the director's polls, idle until now.
    let (idle_polls, idle_for) = (polls(&agent2), started.elapsed());
    let drain_began = Instant::now();
    let args = ["drain", "--reason", "deploy 4711", "--wait"];
    let mut wait = agent_cmd(&agent2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lvsdr-agent drain --wait");
    drained_in_kernel(&lab, &d, "lvsdr-agent drain");
    let (dlog, alog) = (d.log(), running.agents[1].log());
    let lines = |log: &str, what: &str| {
        log.lines()
            .filter(|l| l.contains(what))
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    };
    println!(
        "the agent's and the director's logs:\n{}{}{}",
        lines(&alog, "drained: every director"),
        lines(&dlog, "drained itself"),
        lines(&dlog, "ops applied")
    );
    let seen = spread(&lab, 8);
    assert_eq!(
        seen.get("rs1"),
        Some(&8),
        "new requests go to rs1: {seen:?}"
    );
    for c in &mut conns {
        c.ping().expect("a drained server's connection goes on");
    }
    // Held while rs2's echo connections are open: the director tells the agent its
    // counts, and the agent's status shows them.
    let counted = support::poll(30, || {
        let o = agent_cmd(&agent2, &["status"]).output().expect("status");
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        text.contains("weight 0, ").then_some(text)
    });
    let counted = counted.unwrap_or_else(|| panic!("no director's counts:\n{}", d.log()));
    println!("lvsdr-agent status while draining:\n{counted}");
    assert!(counted.starts_with("drained: deploy 4711"), "{counted}");
    assert!(
        wait.try_wait().expect("wait").is_none(),
        "drain --wait returned while rs2 still had connections: {counted}"
    );
    let st = status(&lab);
    let rs2 = server(&st, "echo", &lab.rip(2));
    assert_eq!(rs2["admin_state"], "drain", "{st}");
    assert_eq!(rs2["admin_agent"], true, "{st}");
    assert_eq!(
        rs2["reason"], "drained by its agent (lvsdr-agent drain): deploy 4711",
        "{st}"
    );
    drop(conns);
    let returned = support::poll(120, || wait.try_wait().expect("wait"));
    let out = wait.wait_with_output().expect("output");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        returned.is_some_and(|s| s.success()) && printed.contains("no active connection"),
        "drain --wait: {returned:?} {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("active connections"), "{printed}");
    println!("lvsdr-agent drain --wait printed:\n{printed}");
    let (all_polls, drained_for) = (polls(&agent2), drain_began.elapsed());
    println!(
        "drain polls of the director: {idle_polls} in {:.1} s before the drain (idle), {} in the {:.1} s of the drain",
        idle_for.as_secs_f64(),
        all_polls.saturating_sub(idle_polls),
        drained_for.as_secs_f64()
    );

    // The agent restarts: still drained, and the director, having heard it again,
    // keeps weight 0.
    running.agents[1].signal("KILL");
    let _ = running.agents[1].child.wait();
    running.agents[1] = start_agent(&lab, &support::agents::agent_bin(BIN), 2, &agent2);
    let heard = support::poll(60, || {
        let o = agent_cmd(&agent2, &["status"]).output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        (text.starts_with("drained: deploy 4711") && text.contains("weight 0, 0 active"))
            .then_some(text)
    });
    assert!(heard.is_some(), "after the agent's restart:\n{}", d.log());
    wait_weight(&lab, "web", 2, Some(0), &d);

    // The director is killed and started: the drain it kept is in force from its first
    // pass, so the restart changes nothing in the table.
    let settled = kill_and_restart(&lab, &mut d, &config, &mut before);
    assert_eq!(server(&settled, "web", &lab.rip(2))["admin_state"], "drain");

    // ready: back in steps to the full weight.
    let t0 = Instant::now();
    let o = agent_cmd(&agent2, &["ready"]).output().expect("ready");
    assert!(o.status.success(), "{o:?}");
    let steps = ramp_back(&lab, &d);
    println!(
        "lvsdr-agent ready: kernel weights seen {steps:?}, full weight after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    wait_weight(&lab, "echo", 2, Some(1), &d);

    no_request_failed(clients, &before, &d);
    let told = std::fs::read_to_string(&events_file).unwrap_or_default();
    let agent_drain = told.lines().any(|l| {
        l.contains(r#""state":"drain""#) && l.contains(r#""agent":true"#) && l.contains("deploy")
    });
    assert!(agent_drain, "no agent drain event:\n{told}");
}
