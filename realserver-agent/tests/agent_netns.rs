//! The agent on the host, in network namespaces (no IPVS needed): a bridge with a
//! "director" namespace holding the VIP, real-server namespaces running `lvsdr-agent`,
//! and a client that asks who has the VIP. Needs root; `tests/run` runs these.
//!
//! Every agent here runs as an unprivileged user (`nobody`) with exactly the
//! capabilities its systemd unit grants (read from `conf/lvsdr-agent.service`), so a
//! missing capability fails here, not in production. The safety property checked
//! throughout: **only the director answers ARP for the VIP**.

use lvsdr_test_support as support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::lab::{in_ns, Lab};
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-agent");
const UNIT: &str = include_str!("../../conf/lvsdr-agent.service");
const NOBODY: u32 = 65534;

/// The capabilities the unit grants, as setpriv names them (`+net_admin,…`); the
/// arptables mode adds CAP_NET_RAW, as the unit's comment says.
fn caps(arp: &str) -> String {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit");
    let mut caps: Vec<String> = line
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    if arp == "arptables" {
        caps.push("+net_raw".into());
    }
    caps.join(",")
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start an agent.
struct Opts<'a> {
    arp: &'a str,
    /// More `[agent]` keys.
    extra: &'a str,
    /// `PATH` for the agent (default: the test's).
    path: Option<&'a str>,
    /// `RLIMIT_NOFILE` (soft and hard).
    nofile: u32,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            arp: "nft",
            extra: "resync_interval = \"1s\"\n",
            path: None,
            nofile: 4096,
        }
    }
}

struct Site {
    lab: Lab,
    dir: PathBuf,
}

impl Site {
    fn new(tag: &str, net: u8, n: usize) -> Site {
        let lab = Lab::bare(tag, net, n);
        let dir = PathBuf::from(format!("/tmp/lvsdr-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let agents: Vec<String> = (1..=n).map(|i| lab.rip(i)).collect();
        lvsdr_pki::init_with(&dir.join("pki"), &agents, &["d2".to_string()]).expect("pki init");
        for i in 1..=n {
            std::fs::create_dir_all(dir.join(format!("state{i}"))).expect("state dir");
        }
        // The agent runs as nobody: its files are its own (as systemd's
        // StateDirectory and LoadCredential arrange).
        sh(&format!(
            "chmod 755 {0} && chown -R {NOBODY}:{NOBODY} {0}",
            dir.display()
        ));
        Site { lab, dir }
    }

    fn ns(&self, i: usize) -> &str {
        &self.lab.servers[i - 1]
    }

    fn config(&self, i: usize, o: &Opts<'_>) -> PathBuf {
        let rip = self.lab.rip(i);
        let pki = self.dir.join("pki");
        let path = self.dir.join(format!("agent{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "[agent]\nlisten = \"0.0.0.0:9181\"\nstate_file = \"{}\"\narp = \"{}\"\n{}\
                 control_socket = \"{}/agent{i}.sock\"\n\
                 [agent.tls]\ncert = \"{p}/agent-{rip}.pem\"\nkey = \"{p}/agent-{rip}.key\"\nclient_ca = \"{p}/ca.pem\"\n",
                self.state_file(i).display(),
                o.arp,
                o.extra,
                self.dir.display(),
                p = pki.display()
            ),
        )
        .expect("write config");
        path
    }

    fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state{i}"))
    }

    fn state_file(&self, i: usize) -> PathBuf {
        self.state_dir(i).join("agent.json")
    }

    fn start(&self, i: usize, arp: &str) -> Agent {
        self.start_with(
            i,
            &Opts {
                arp,
                ..Opts::default()
            },
        )
    }

    /// Starts agent `i` as nobody with the unit's capabilities; waits for its API.
    fn start_with(&self, i: usize, o: &Opts<'_>) -> Agent {
        let config = self.config(i, o);
        let log = self.dir.join(format!(
            "agent{i}.log.{}",
            std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos())
        ));
        let caps = caps(o.arp);
        let path = o
            .path
            .map(str::to_string)
            .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default());
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns(i), "/usr/bin/env"])
            .arg(format!("PATH={path}"))
            .args([
                "/usr/bin/prlimit",
                &format!("--nofile={0}:{0}", o.nofile),
                "/usr/bin/setpriv",
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                &format!("--inh-caps=-all,{caps}"),
                &format!("--ambient-caps=-all,{caps}"),
                &format!("--bounding-set=-all,{caps}"),
                BIN,
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the agent");
        let a = Agent { child, log };
        let up = poll(10, || (self.status(i).0 == 200).then_some(()));
        assert!(up.is_some(), "agent {i} did not come up:\n{}", a.log());
        a
    }

    /// `curl` from the director's namespace: (HTTP code, body, seconds). `cert`: the
    /// director certificate to present (a file stem in `pki`), if any.
    fn curl(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        cert: Option<(&PathBuf, &str)>,
    ) -> (u32, String, f64) {
        self.curl_in(&self.lab.director, i, method, path, body, cert)
    }

    /// [`Site::curl`] from namespace `ns`.
    fn curl_in(
        &self,
        ns: &str,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        cert: Option<(&PathBuf, &str)>,
    ) -> (u32, String, f64) {
        let out = self.dir.join(format!("out{i}"));
        let mut cmd = format!(
            "ip netns exec {ns} curl -sS -o {} -w '%{{http_code}} %{{time_total}}' --max-time 5 --cacert {}/pki/ca.pem -X {method}",
            out.display(),
            self.dir.display()
        );
        if let Some((dir, stem)) = cert {
            cmd.push_str(&format!(
                " --cert {0}/{stem}.pem --key {0}/{stem}.key",
                dir.display()
            ));
        }
        if let Some(b) = body {
            let f = self.dir.join(format!("body{i}"));
            std::fs::write(&f, b).expect("body");
            cmd.push_str(&format!(" --data-binary @{}", f.display()));
        }
        cmd.push_str(&format!(" https://{}:9181{path}", self.lab.rip(i)));
        let o = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&o.stdout);
        let mut w = text.split_whitespace();
        let code = w.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let secs = w.next().and_then(|c| c.parse().ok()).unwrap_or(f64::NAN);
        (
            code,
            std::fs::read_to_string(&out).unwrap_or_default(),
            secs,
        )
    }

    fn push_as(&self, i: usize, director: &str, body: &str) -> (u32, String) {
        let pki = self.dir.join("pki");
        let (code, body, _) = self.curl(i, "PUT", "/v1/vips", Some(body), Some((&pki, director)));
        (code, body)
    }

    /// A push with the director certificate from another host on the segment (the
    /// client's namespace): a second director given the same certificate.
    fn push_from_client(&self, i: usize, body: &str) -> (u32, String) {
        let pki = self.dir.join("pki");
        let (code, body, _) = self.curl_in(
            &self.lab.client,
            i,
            "PUT",
            "/v1/vips",
            Some(body),
            Some((&pki, "director")),
        );
        (code, body)
    }

    fn push(&self, i: usize, body: &str) -> (u32, String) {
        self.push_as(i, "director", body)
    }

    fn status(&self, i: usize) -> (u32, String) {
        let pki = self.dir.join("pki");
        let (code, body, _) = self.curl(i, "GET", "/v1/status", None, Some((&pki, "director")));
        (code, body)
    }

    fn lo(&self, i: usize) -> String {
        sh(&format!("ip -n {} -o addr show dev lo", self.ns(i)))
    }

    fn holds(&self, i: usize, vip: &str) -> bool {
        self.lo(i).contains(&format!("inet {vip}/32"))
    }

    fn nft(&self, i: usize) -> String {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns(i),
                "nft",
                "list",
                "table",
                "arp",
                "lvsdr",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The safety property: only the director answers ARP for the VIP.
    fn assert_only_the_director_answers(&self, when: &str) {
        let answers = self.lab.arp_answers();
        assert_eq!(
            answers,
            vec![self.lab.mac(&self.lab.director)],
            "{when}: only the director may answer ARP for the VIP"
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn vips(generation: u64, epoch: Option<u64>, vips: &[&str]) -> String {
    let list: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    match epoch {
        Some(e) => format!(
            "{{\"generation\": {generation}, \"epoch\": {e}, \"vips\": [{}]}}",
            list.join(", ")
        ),
        None => format!(
            "{{\"generation\": {generation}, \"vips\": [{}]}}",
            list.join(", ")
        ),
    }
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn after_a_push_only_the_director_answers_arp_for_the_vip() {
    let site = Site::new("aa", 61, 3);
    let lab = &site.lab;
    // The check can fail: with the VIP on the real servers and nothing suppressing
    // ARP, every host answers.
    lab.vip_by_hand(false);
    let unsuppressed = lab.arp_answers();
    assert_eq!(
        unsuppressed.len(),
        4,
        "director + 3 real servers answer: {unsuppressed:?}"
    );
    for s in &lab.servers {
        sh(&format!("ip -n {s} addr del {}/32 dev lo", lab.vip()));
    }

    let modes = ["nft", "sysctl", "arptables"];
    let _agents: Vec<Agent> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| site.start(i + 1, m))
        .collect();
    let push = vips(1, None, &[&lab.vip(), "2001:db8::10"]);
    for (i, mode) in modes.iter().enumerate() {
        let (code, body) = site.push(i + 1, &push);
        assert_eq!(code, 200, "{mode}: {body}");
        let st = json(&body);
        assert_eq!(st["in_place"], true, "{mode}: {st}");
        assert_eq!(st["arp_mode"], *mode);
        assert_eq!(st["real_ip"], lab.rip(i + 1));
        assert_eq!(
            st["director"],
            format!("lvsdr-director at 10.{}.0.1", lab.net)
        );
        assert!(site.holds(i + 1, &lab.vip()), "{mode}");
        assert!(site.lo(i + 1).contains("inet6 2001:db8::10/128"), "{mode}");
    }
    let nft = site.nft(1);
    assert!(nft.contains("arp daddr ip @vips drop"), "{nft}");
    assert!(
        nft.contains(&format!(
            "arp saddr ip @vips arp saddr ip set {}",
            lab.rip(1)
        )),
        "{nft}"
    );
    let ignore = sh(&format!(
        "ip netns exec {} cat /proc/sys/net/ipv4/conf/eth0/arp_ignore",
        lab.servers[1]
    ));
    assert_eq!(ignore.trim(), "1");
    let arpt = sh(&format!("ip netns exec {} arptables -L -n", lab.servers[2]));
    assert!(
        arpt.contains(&format!(
            "-j mangle -s {} --mangle-ip-s {}",
            lab.vip(),
            lab.rip(3)
        )),
        "{arpt}"
    );
    site.assert_only_the_director_answers("after the pushes");
    // Its log goes to a file: plain text, no colour codes.
    let log = _agents[0].log();
    assert!(log.contains("push accepted"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in the agent's log: {log:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn without_nft_no_vip_goes_on() {
    let site = Site::new("af", 66, 1);
    let vip = site.lab.vip();
    // Suppression goes in first, so when nft cannot run the VIP never goes on.
    let _agent = site.start_with(
        1,
        &Opts {
            path: Some("/nonexistent"),
            ..Opts::default()
        },
    );
    let (code, body) = site.push(1, &vips(1, None, &[&vip]));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("nft"), "the cause is named: {body}");
    assert!(!site.holds(1, &vip), "a VIP went on without suppression");
    site.assert_only_the_director_answers("nft missing");
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_refused_address_add_leaves_what_went_on_suppressed() {
    let site = Site::new("aj", 70, 1);
    let vip = site.lab.vip();
    let _agent = site.start(1, "nft");
    // IPv6 disabled on lo: adding the IPv6 VIP fails, after the IPv4 one went on.
    sh(&format!(
        "ip netns exec {} sysctl -qw net.ipv6.conf.lo.disable_ipv6=1",
        site.ns(1)
    ));
    let (code, body) = site.push(1, &vips(1, None, &[&vip, "2001:db8::10"]));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("2001:db8::10"), "the cause is named: {body}");
    assert!(site.holds(1, &vip));
    site.assert_only_the_director_answers("an address add refused");
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_push_that_cannot_be_saved_changes_nothing() {
    let site = Site::new("ak", 71, 1);
    let (vip, vip2) = (site.lab.vip(), format!("10.{}.0.101", site.lab.net));
    let _agent = site.start(1, "nft");
    assert_eq!(site.push(1, &vips(1, None, &[&vip])).0, 200);
    sh(&format!("chmod 555 {}", site.state_dir(1).display()));
    let (code, body) = site.push(1, &vips(2, None, &[&vip, &vip2]));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("saving the state file"), "{body}");
    // Nor at the next resyncs (every second here).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !site.holds(1, &vip2),
        "a push that was not saved was applied"
    );
    assert!(site.holds(1, &vip));
    site.assert_only_the_director_answers("state directory read-only");
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_lost_or_corrupt_state_file_keeps_the_live_vip_suppressed() {
    let site = Site::new("al", 72, 1);
    let (vip, vip2) = (site.lab.vip(), format!("10.{}.0.101", site.lab.net));
    let agent = site.start(1, "nft");
    assert_eq!(site.push(1, &vips(1, None, &[&vip])).0, 200);

    // The agent restarts without its state file: it keeps suppressing the VIP it
    // finds in its own table instead of tearing the table down under it.
    agent.stop();
    std::fs::remove_file(site.state_file(1)).expect("rm state");
    let agent = site.start(1, "nft");
    std::thread::sleep(Duration::from_millis(1500)); // a resync tick
    assert!(site.holds(1, &vip));
    assert!(site.nft(1).contains(&vip), "{}", site.nft(1));
    site.assert_only_the_director_answers("restarted without a state file");

    // The same with a corrupt state file; the first push then takes over.
    agent.stop();
    std::fs::write(site.state_file(1), "{ not json").expect("corrupt");
    let _agent = site.start(1, "nft");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(site.holds(1, &vip));
    site.assert_only_the_director_answers("restarted with a corrupt state file");
    let (code, body) = site.push(1, &vips(1, None, &[&vip2]));
    assert_eq!(code, 200, "{body}");
    assert!(
        !site.holds(1, &vip),
        "the recovered VIP outlived the first push"
    );
    assert!(site.holds(1, &vip2));
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn restart_reapplies_from_the_state_file_and_removes_only_its_own() {
    let site = Site::new("ab", 62, 1);
    let lab = &site.lab;
    let mine = format!("10.{}.0.222", lab.net);
    let vip2 = format!("10.{}.0.101", lab.net);
    sh(&format!("ip -n {} addr add {mine}/32 dev lo", site.ns(1)));
    let agent = site.start(1, "nft");
    let (code, body) = site.push(1, &vips(10, None, &[&lab.vip(), &vip2]));
    assert_eq!(code, 200, "{body}");

    // A reboot: the agent dies, the addresses and rules are gone.
    agent.stop();
    sh(&format!(
        "ip -n {0} addr del {1}/32 dev lo; ip -n {0} addr del {vip2}/32 dev lo; ip netns exec {0} nft delete table arp lvsdr",
        site.ns(1),
        lab.vip()
    ));
    let agent = site.start(1, "nft");
    // Back before the API answered.
    assert!(site.holds(1, &lab.vip()), "{}", site.lo(1));
    assert!(site.nft(1).contains(&vip2));
    assert_eq!(json(&site.status(1).1)["generation"], 10);

    // A VIP dropped from the push goes; the address added by hand stays.
    let (code, body) = site.push(1, &vips(11, None, &[&vip2]));
    assert_eq!(code, 200, "{body}");
    let lo = site.lo(1);
    assert!(!lo.contains(&format!("inet {}/32", lab.vip())), "{lo}");
    assert!(
        lo.contains(&format!("inet {mine}/32")),
        "the hand-added address went: {lo}"
    );

    // A corrupt state file: a clear error, kept for inspection, not overwritten; the
    // VIP in the agent's own table stays held and suppressed.
    agent.stop();
    std::fs::write(site.state_file(1), "{ this is not json").expect("corrupt");
    let _agent = site.start(1, "nft");
    let st = json(&site.status(1).1);
    assert!(
        st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("is not a valid state file")),
        "{st}"
    );
    assert!(site.holds(1, &vip2));
    assert!(
        site.nft(1).contains(&vip2),
        "the live VIP lost its suppression"
    );
    assert!(site.lo(1).contains(&format!("inet {mine}/32")));
    let kept: Vec<_> = std::fs::read_dir(site.state_dir(1))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("agent.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read_to_string(kept[0].path()).expect("kept"),
        "{ this is not json"
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn drift_is_repaired_when_it_happens_not_at_the_next_tick() {
    let site = Site::new("ad", 64, 1);
    let vip = site.lab.vip();
    // The timer would take a minute: whatever repairs faster is the event watch.
    let agent = site.start_with(
        1,
        &Opts {
            extra: "resync_interval = \"60s\"\n",
            ..Opts::default()
        },
    );
    let (code, body) = site.push(1, &vips(1, None, &[&vip]));
    assert_eq!(code, 200, "{body}");
    let timed = |what: &str, cmd: &str, back: &dyn Fn() -> bool| {
        sh(cmd);
        let t0 = Instant::now();
        while !back() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{what} was not repaired within 10 s (the timer is 60 s)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ms = t0.elapsed().as_millis();
        println!("drift repaired: {what}: {ms} ms");
    };
    let ns = site.ns(1).to_string();
    timed(
        "ip addr del of the VIP",
        &format!("ip -n {ns} addr del {vip}/32 dev lo"),
        &|| site.holds(1, &vip),
    );
    timed(
        "nft flush ruleset",
        &format!("ip netns exec {ns} nft flush ruleset"),
        &|| site.nft(1).contains(&vip),
    );
    timed(
        "nft delete table arp lvsdr",
        &format!("ip netns exec {ns} nft delete table arp lvsdr"),
        &|| site.nft(1).contains(&vip),
    );
    site.assert_only_the_director_answers("after the repairs");

    // `lvsdr-agent status` (as root, over the agent's control socket) shows what it
    // holds, read from the kernel, and the VIP it put back.
    let out = std::process::Command::new(BIN)
        .args(["status", "--socket"])
        .arg(site.dir.join("agent1.sock"))
        .output()
        .expect("lvsdr-agent status");
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        shown.contains("not drained")
            && shown.contains("1 VIPs repaired")
            && shown.contains(&format!("{vip}: held, ARP suppressed")),
        "{shown}"
    );
    println!("lvsdr-agent status:\n{shown}");
    // The same for scripts: one JSON object.
    let out = std::process::Command::new(BIN)
        .args(["status", "--json", "--socket"])
        .arg(site.dir.join("agent1.sock"))
        .output()
        .expect("lvsdr-agent status --json");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["status"]["drained"], false, "{v}");
    assert_eq!(v["holds"]["vip_repairs"], 1, "{v}");
    assert!(
        v["holds"]["directors"]
            .to_string()
            .contains(&vip.to_string()),
        "{v}"
    );

    // The watch itself dies: `nft monitor` is started again, and the next ruleset
    // drift is still repaired when it happens (it was left dead, and drift waited for
    // the timer).
    let monitor = || {
        sh(&format!("pgrep -P {} -x nft || true", agent.child.id()))
            .trim()
            .to_string()
    };
    let first = monitor();
    assert!(!first.is_empty(), "no nft monitor under the agent");
    sh(&format!("kill -9 {first}"));
    let again = poll(30, || {
        let m = monitor();
        (!m.is_empty() && m != first).then_some(m)
    });
    assert!(
        again.is_some(),
        "nft monitor was not started again:\n{}",
        agent.log()
    );
    timed(
        "nft flush ruleset, after the monitor was killed",
        &format!("ip netns exec {ns} nft flush ruleset"),
        &|| site.nft(1).contains(&vip),
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn arptables_mode_deletes_only_the_rules_it_added() {
    let site = Site::new("ae", 65, 1);
    let lab = &site.lab;
    let other = format!("10.{}.0.77", lab.net);
    let ns = site.ns(1).to_string();
    sh(&format!(
        "ip netns exec {ns} arptables -A INPUT -d {other} -j DROP && \
         ip netns exec {ns} arptables -A OUTPUT -s {other} -j mangle --mangle-ip-s {}",
        lab.rip(1)
    ));
    let _agent = site.start(1, "arptables");
    let (code, body) = site.push(1, &vips(1, None, &[&lab.vip()]));
    assert_eq!(code, 200, "{body}");
    site.assert_only_the_director_answers("arptables");
    let (code, body) = site.push(1, &vips(2, None, &[]));
    assert_eq!(code, 200, "{body}");
    let rules = sh(&format!("ip netns exec {ns} arptables -L -n"));
    assert!(!rules.contains(&lab.vip()), "its own rules stayed: {rules}");
    assert!(
        rules.contains(&format!("-j DROP -d {other} ")) && rules.contains(&format!("-s {other} ")),
        "a rule it did not add was deleted: {rules}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn two_directors_keep_their_own_sets_and_never_lock_each_other_out() {
    let site = Site::new("ag", 67, 1);
    let lab = &site.lab;
    let (v1, v3) = (lab.vip(), format!("10.{}.0.103", lab.net));
    let _agent = site.start(1, "nft");

    let (code, body) = site.push_as(1, "director", &vips(1000, Some(7), &[&v1]));
    assert_eq!(code, 200, "{body}");
    let (code, body) = site.push_as(1, "director-d2", &vips(1, Some(9), &[&v1, &v3]));
    assert_eq!(code, 200, "a second director got {code}: {body}");
    let st = json(&body);
    assert_eq!(
        st["director"],
        format!("lvsdr-director d2 at 10.{}.0.1", lab.net)
    );
    assert_eq!(
        (st["generation"].clone(), st["in_place"].clone()),
        (1.into(), true.into())
    );
    assert_eq!(st["held"].as_array().map(Vec::len), Some(2));
    let st = json(&site.status(1).1);
    assert_eq!(
        st["generation"], 1000,
        "each director sees its own set: {st}"
    );

    // The first director restarts with its clock set back: a new epoch, generation 1.
    let (code, body) = site.push_as(1, "director", &vips(1, Some(8), &[&v1]));
    assert_eq!(code, 200, "{body}");
    // generation u64::MAX does not lock it out of its next run.
    let (code, body) = site.push_as(1, "director", &vips(u64::MAX, Some(8), &[&v1]));
    assert_eq!(code, 200, "{body}");
    let (code, body) = site.push_as(1, "director", &vips(1, Some(10), &[&v1]));
    assert_eq!(code, 200, "{body}");
    // Within one epoch, a stale push is still refused.
    let (code, body) = site.push_as(1, "director", &vips(0, Some(10), &[]));
    assert_eq!(code, 409, "{body}");

    // One director dropping a VIP the other still wants leaves it in place.
    let (code, _) = site.push_as(1, "director", &vips(2, Some(10), &[]));
    assert_eq!(code, 200);
    assert!(site.holds(1, &v1) && site.holds(1, &v3));
    let (code, _) = site.push_as(1, "director-d2", &vips(2, Some(9), &[&v1]));
    assert_eq!(code, 200);
    assert!(site.holds(1, &v1) && !site.holds(1, &v3));
    let (code, _) = site.push_as(1, "director-d2", &vips(3, Some(9), &[]));
    assert_eq!(code, 200);
    assert!(!site.holds(1, &v1), "{}", site.lo(1));
    assert_eq!(site.nft(1), "", "the table outlived the last VIP");
}

/// Two directors given one certificate (the same files copied to both) keep a set
/// each: keyed by the certificate name alone, each push replaced the other's set, and
/// the VIP only the other wanted came off the real server at every push.
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn two_directors_with_one_certificate_keep_their_own_sets() {
    let site = Site::new("am", 73, 1);
    let lab = &site.lab;
    let (v1, v3) = (lab.vip(), format!("10.{}.0.103", lab.net));
    let agent = site.start(1, "nft");

    let (code, body) = site.push(1, &vips(5, Some(7), &[&v1]));
    assert_eq!(code, 200, "{body}");
    let (code, body) = site.push_from_client(1, &vips(1, Some(9), &[&v3]));
    assert_eq!(code, 200, "{body}");
    assert!(
        site.holds(1, &v1) && site.holds(1, &v3),
        "one director's push took the other's VIP off: {}",
        site.lo(1)
    );
    let st = json(&body);
    assert_eq!(
        st["director"],
        format!("lvsdr-director at 10.{}.0.2", lab.net)
    );
    // Each goes on with its own generations; neither is refused as stale.
    let (code, body) = site.push(1, &vips(6, Some(7), &[&v1]));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["generation"], 6);
    let (code, body) = site.push_from_client(1, &vips(2, Some(9), &[&v3]));
    assert_eq!(code, 200, "{body}");
    assert!(site.holds(1, &v1) && site.holds(1, &v3), "{}", site.lo(1));
    let log = agent.log();
    assert!(
        log.contains("present one certificate name"),
        "the shared name was not reported:\n{log}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn a_vip_the_host_already_has_is_refused_alone() {
    let site = Site::new("ah", 68, 1);
    let lab = &site.lab;
    let taken = format!("10.{}.0.250", lab.net);
    sh(&format!(
        "ip -n {} addr add {taken}/24 dev eth0",
        site.ns(1)
    ));
    let _agent = site.start(1, "nft");
    let (code, body) = site.push(1, &vips(1, None, &[&lab.vip(), &taken]));
    assert_eq!(code, 422, "{body}");
    let b = json(&body);
    assert!(
        b["error"].as_str().is_some_and(|e| e.contains(&taken)),
        "the refused VIP is named: {b}"
    );
    let by_vip = |v: &str| {
        b["status"]["vips"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["vip"] == v).cloned())
            .unwrap_or_else(|| panic!("{v} not in {b}"))
    };
    assert_eq!(by_vip(&lab.vip())["on_device"], true, "{b}");
    assert!(by_vip(&taken)["refused"].is_string(), "{b}");
    assert!(
        site.holds(1, &lab.vip()),
        "the rest of the set was not applied"
    );
    assert!(!site.holds(1, &taken));
    site.assert_only_the_director_answers("one VIP refused");
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn idle_and_half_open_connections_do_not_keep_the_director_out() {
    let site = Site::new("ai", 69, 1);
    let lab = &site.lab;
    // The agent gets the default soft limit of 1,024 descriptors: the flood below
    // must not depend on a generous LimitNOFILE.
    let agent = site.start_with(
        1,
        &Opts {
            nofile: 1024,
            ..Opts::default()
        },
    );
    let target: SocketAddr = format!("{}:9181", lab.rip(1)).parse().expect("addr");
    // From the client's namespace, no certificate: 2,000 silent connections and 200
    // handshakes that stop half-way (a TLS record header and part of a ClientHello),
    // from 50 source addresses (more than the agent lets hold handshakes at once).
    let sources: Vec<std::net::IpAddr> = (0..50)
        .map(|k| format!("10.{}.1.{}", lab.net, k + 1).parse().expect("ip"))
        .collect();
    for a in &sources {
        sh(&format!("ip -n {} addr add {a}/16 dev eth0", lab.client));
    }
    sh(&format!(
        "ip -n {} route add 10.{}.1.0/24 dev eth0",
        site.ns(1),
        lab.net
    ));
    let held = in_ns(&lab.client, move || {
        let mut held = Vec::new();
        let t0 = Instant::now();
        for i in 0..2200 {
            if t0.elapsed() > Duration::from_secs(20) {
                break; // bounded: an agent that stops accepting makes each connect wait
            }
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            sock.bind(&SocketAddr::new(sources[i % sources.len()], 0).into())
                .expect("bind");
            if sock
                .connect_timeout(&target.into(), Duration::from_millis(200))
                .is_err()
            {
                continue;
            }
            let mut s: TcpStream = sock.into();
            if i >= 2000 {
                let _ = s.write_all(&[
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ]);
            }
            held.push(s);
        }
        held
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    let pki = site.dir.join("pki");
    let (code, body, secs) = site.curl(
        1,
        "PUT",
        "/v1/vips",
        Some(&vips(1, None, &[&lab.vip()])),
        Some((&pki, "director")),
    );
    println!(
        "flood: {} connections opened, the agent's process holds {fds} descriptors (ip netns exec wrapper included); the director's push took {secs:.3} s",
        held.len()
    );
    assert_eq!(
        code,
        200,
        "the director's push failed under the flood: {body}\n{}",
        agent.log()
    );
    assert!(secs < 2.0, "the director's push took {secs} s");
    assert!(site.holds(1, &lab.vip()));
    drop(held);
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn bad_pushes_are_refused_and_change_nothing() {
    let site = Site::new("ac", 63, 1);
    let lab = &site.lab;
    let _agent = site.start(1, "nft");
    let good = vips(5, None, &[&lab.vip()]);
    assert_eq!(site.push(1, &good).0, 200);
    let before = (site.status(1).1, site.lo(1));

    // No client certificate, and one from another CA: the handshake fails.
    let (code, _, _) = site.curl(1, "PUT", "/v1/vips", Some(&good), None);
    assert_eq!(code, 0, "a push without a client certificate got an answer");
    let other = site.dir.join("other");
    lvsdr_pki::init(&other, &[]).expect("other CA");
    let (code, _, _) = site.curl(
        1,
        "PUT",
        "/v1/vips",
        Some(&good),
        Some((&other, "director")),
    );
    assert_eq!(
        code, 0,
        "a push with another CA's certificate got an answer"
    );

    let big = format!(
        "{{\"generation\": 6, \"vips\": [{}]}}",
        vec!["\"192.0.2.1\""; 6000].join(",")
    );
    let cases: Vec<(String, u32, &str)> = vec![
        ("{ not json".into(), 400, "invalid push body"),
        (
            "{\"generation\": 6, \"vips\": [], \"extra\": 1}".into(),
            400,
            "unknown field `extra`",
        ),
        (
            "{\"generation\": 6, \"vips\": [\"not-an-ip\"]}".into(),
            400,
            "invalid push body",
        ),
        (big, 413, ""),
        (
            "{\"generation\": 4, \"vips\": []}".into(),
            409,
            "generation 4 is older than the applied generation 5",
        ),
        (
            "{\"generation\": 5, \"vips\": []}".into(),
            409,
            "already applied with another VIP set",
        ),
    ];
    for (body, want, text) in cases {
        let (code, resp) = site.push(1, &body);
        assert_eq!(code, want, "{}: {resp}", &body[..body.len().min(60)]);
        assert!(
            resp.contains(text),
            "{}: {resp}",
            &body[..body.len().min(60)]
        );
    }
    assert_eq!(
        (site.status(1).1, site.lo(1)),
        before,
        "a refused push changed something"
    );
    // The same push again is idempotent.
    assert_eq!(site.push(1, &good).0, 200);

    // Addresses that can never be VIPs are refused one by one (422); the rest of the
    // set is applied.
    let rip = lab.rip(1);
    let cases = [
        ("0.0.0.0", "0.0.0.0 cannot be a VIP: it is unspecified"),
        ("127.0.0.2", "loopback"),
        ("224.0.0.9", "multicast"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        (rip.as_str(), "the real server's own address"),
    ];
    for (n, (bad, text)) in cases.iter().enumerate() {
        let (code, resp) = site.push(1, &vips(6 + n as u64, None, &[&lab.vip(), bad]));
        assert_eq!(code, 422, "{bad}: {resp}");
        assert!(resp.contains(text), "{bad}: {resp}");
        assert!(site.holds(1, &lab.vip()), "{bad}: the good VIP went");
        assert!(
            !site.lo(1).contains(&format!("{bad}/")),
            "{bad} was applied"
        );
    }
    site.assert_only_the_director_answers("after the refusals");
}

/// The agent's own `/metrics` (127.0.0.1:9182 by default): what it holds, by full
/// name, clean for `promtool check metrics`; a VIP removed by hand shows as a repair,
/// and a drain as `lvsdr_agent_drained 1`.
#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn the_agent_serves_what_it_holds_as_metrics() {
    let site = Site::new("an", 75, 1);
    let vip = site.lab.vip();
    let _agent = site.start(1, "nft");
    let (code, body) = site.push(1, &vips(1, None, &[&vip]));
    assert_eq!(code, 200, "{body}");
    let director = format!("lvsdr-director at 10.{}.0.1", site.lab.net);
    let metrics = || {
        sh(&format!(
            "ip netns exec {} curl -sS --max-time 5 http://127.0.0.1:9182/metrics",
            site.ns(1)
        ))
    };
    let text = metrics();
    for line in [
        format!("lvsdr_agent_vips{{director=\"{director}\"}} 1"),
        format!("lvsdr_agent_vip_in_place{{director=\"{director}\",vip=\"{vip}\"}} 1"),
        format!("lvsdr_agent_vip_arp_suppressed{{director=\"{director}\",vip=\"{vip}\"}} 1"),
        format!("lvsdr_agent_vip_refused{{director=\"{director}\",vip=\"{vip}\"}} 0"),
        "lvsdr_agent_vip_repairs_total 0".into(),
        "lvsdr_agent_apply_error 0".into(),
        "lvsdr_agent_drained 0".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    assert!(
        text.contains(&format!(
            "lvsdr_agent_last_push_age_seconds{{director=\"{director}\"}} "
        )),
        "{text}"
    );
    // Prometheus's own checker (Debian's prometheus package; tests/vm/vm.sh setup
    // installs it): a missing promtool fails the test, it does not skip it.
    let checked = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .map(|mut i| i.write_all(text.as_bytes()))
                .transpose()?;
            c.wait_with_output()
        })
        .expect("promtool (Debian's prometheus package) must be installed");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // A VIP removed by hand is put back, and counted.
    sh(&format!("ip -n {} addr del {vip}/32 dev lo", site.ns(1)));
    let repaired = poll(20, || {
        let t = metrics();
        (t.lines().any(|l| l == "lvsdr_agent_vip_repairs_total 1")
            && t.lines().any(|l| {
                l == format!("lvsdr_agent_vip_in_place{{director=\"{director}\",vip=\"{vip}\"}} 1")
            }))
        .then_some(())
    });
    assert!(repaired.is_some(), "no repair counted:\n{}", metrics());
    // The real server's own drain.
    let socket = site.dir.join("agent1.sock");
    let out = Command::new(BIN)
        .args(["drain", "--socket"])
        .arg(&socket)
        .output()
        .expect("lvsdr-agent drain");
    assert!(out.status.success(), "{out:?}");
    assert!(
        metrics().lines().any(|l| l == "lvsdr_agent_drained 1"),
        "{}",
        metrics()
    );
}
