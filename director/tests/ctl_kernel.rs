//! Operators' runtime overrides over the control socket (`lvsdr-director ctl`), with
//! agents and `require = true`, in the test VM: a drain gives weight 0 and new
//! requests go elsewhere while a long-lived connection goes on (`drain --wait` holds
//! until it closes); the drain survives `kill -9` and a restart, which changes nothing
//! in the table; uid 65534 is refused; a runtime weight, a disable and an enable each
//! reach the kernel. A client loop through the VIP counts failed requests throughout.

#[path = "../../tests/support/mod.rs"]
mod support;

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

#[test]
#[ignore = "needs the IPVS kernel: runs in the test VM (tests/run)"]
fn an_operator_drains_disables_and_weighs_servers_over_the_control_socket() {
    let lab = Lab::bare("o", 66, 2);
    let running = AgentLab::start(&lab, BIN);
    let pki = &running.pki;
    // The director runs as nobody: its control folder is its own (RuntimeDirectory=
    // and StateDirectory= under systemd).
    let ctl_dir = PathBuf::from(format!("/tmp/lvsdr-e2e-{}/ctl", lab.tag));
    let _ = std::fs::remove_dir_all(&ctl_dir);
    std::fs::create_dir_all(&ctl_dir).expect("dir");
    support::sh(&format!("chown {NOBODY} {}", ctl_dir.display()));
    let socket = ctl_dir.join("control.sock");
    let extra = format!(
        "control_socket = \"{}\"\nadmin_file = \"{}/admin.json\"\n{}",
        socket.display(),
        ctl_dir.display(),
        pki.agents_section()
    );
    // web: weight 6 and a slow start of 10 s, so that an enable shows its steps.
    let web = web_config(&lab, &[(1, 6), (2, 6)], &extra).replacen(
        "scheduler = \"wrr\"\n",
        "scheduler = \"wrr\"\nslow_start = \"10s\"\n",
        1,
    );
    // A hook that keeps every event it is told of.
    let events_file = ctl_dir.join("events.jsonl");
    let hook = format!(
        "[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\n",
        events_file.display()
    );
    let text = web + &echo_config(&lab, 7, &[1, 2]) + &hook;
    let config = write_file(&lab, "d.toml", &text);
    let mut d = start_director(&lab, BIN, &config);
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
    let took = wait_weight(&lab, "web", 2, Some(0), &d);
    wait_weight(&lab, "echo", 2, Some(0), &d);
    println!(
        "ctl drain → weight 0 in the kernel: {:.2} s",
        took.as_secs_f64()
    );
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
    d.signal("KILL");
    let _ = d.child.wait();
    d = start_director(&lab, BIN, &config);
    let settled = support::poll(60, || {
        let st = status(&lab);
        let confirmed = st["agents"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["confirmed"] == true));
        (confirmed && st["reconcile"]["passes"].as_u64() >= Some(3)).then_some(st)
    })
    .unwrap_or_else(|| panic!("not settled after kill -9:\n{}", d.log()));
    assert_eq!(
        server(&settled, "web", &lab.rip(2))["admin_state"],
        "drain",
        "{settled}"
    );
    assert_eq!(
        settled["reconcile"]["ops_applied"],
        0,
        "the restart changed the table: {settled}\n{}",
        d.log()
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
    let mut steps = std::collections::BTreeSet::new();
    let full = support::poll(60, || {
        let w = kernel_weight(&lab, "web", &lab.rip(2));
        if let Some(w) = w {
            steps.insert(w);
        }
        (w == Some(6)).then_some(())
    });
    println!("enable after the drain: kernel weights seen {steps:?}");
    assert!(
        full.is_some(),
        "rs2 never got its weight back: {steps:?}\n{}",
        d.log()
    );
    assert!(
        steps.iter().any(|w| (1..6).contains(w)),
        "no step between 0 and 6 (slow_start): {steps:?}"
    );
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

    let t = clients.stop();
    println!(
        "client loop: {} ok, {} failed, longest gap {:?}",
        t.ok, t.failed, t.longest_gap
    );
    assert_eq!(t.failed, 0, "requests failed: {:?}\n{}", t.errors, d.log());
    assert!(t.ok > 0);

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
