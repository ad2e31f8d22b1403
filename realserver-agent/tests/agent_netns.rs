//! The agent on the host, in network namespaces (no IPVS needed): a bridge with a
//! "director" namespace holding the VIP, real-server namespaces running `lvsdr-agent`,
//! and a client that asks who has the VIP. Needs root; `tests/run` runs these.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use support::lab::Lab;
use support::{poll, sh};

const BIN: &str = env!("CARGO_BIN_EXE_lvsdr-agent");

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        lvsdr::pki::init(&dir.join("pki"), &agents).expect("pki init");
        Site { lab, dir }
    }

    fn config(&self, i: usize, arp: &str) -> PathBuf {
        let rip = self.lab.rip(i);
        let pki = self.dir.join("pki");
        let path = self.dir.join(format!("agent{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "[agent]\nlisten = \"0.0.0.0:9181\"\nstate_file = \"{}/state{i}.json\"\narp = \"{arp}\"\nresync_interval = \"1s\"\n\
                 [agent.tls]\ncert = \"{p}/agent-{rip}.pem\"\nkey = \"{p}/agent-{rip}.key\"\nclient_ca = \"{p}/ca.pem\"\n",
                self.dir.display(),
                p = pki.display()
            ),
        )
        .expect("write config");
        path
    }

    fn state_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state{i}.json"))
    }

    fn start(&self, i: usize, arp: &str) -> Agent {
        let config = self.config(i, arp);
        let log = self.dir.join(format!(
            "agent{i}.log.{}",
            std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos())
        ));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab.servers[i - 1], BIN, "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the agent");
        let a = Agent { child, log };
        let up = poll(10, || (self.status(i).0 == 200).then_some(()));
        assert!(
            up.is_some(),
            "agent {i} did not come up:\n{}",
            std::fs::read_to_string(&a.log).unwrap_or_default()
        );
        a
    }

    /// `curl` from the director's namespace: (HTTP code, body). `cert`: which PKI's
    /// director certificate to present, if any.
    fn curl(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        cert: Option<&PathBuf>,
    ) -> (u32, String) {
        let out = self.dir.join("out");
        let mut cmd = format!(
            "ip netns exec {} curl -sS -o {} -w '%{{http_code}}' --max-time 5 --cacert {}/pki/ca.pem -X {method}",
            self.lab.director,
            out.display(),
            self.dir.display()
        );
        if let Some(c) = cert {
            cmd.push_str(&format!(
                " --cert {0}/director.pem --key {0}/director.key",
                c.display()
            ));
        }
        if let Some(b) = body {
            let f = self.dir.join("body");
            std::fs::write(&f, b).expect("body");
            cmd.push_str(&format!(" --data-binary @{}", f.display()));
        }
        cmd.push_str(&format!(" https://{}:9181{path}", self.lab.rip(i)));
        let o = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read_to_string(&out).unwrap_or_default())
    }

    fn push(&self, i: usize, body: &str) -> (u32, String) {
        let pki = self.dir.join("pki");
        self.curl(i, "PUT", "/v1/vips", Some(body), Some(&pki))
    }

    fn status(&self, i: usize) -> (u32, String) {
        let pki = self.dir.join("pki");
        self.curl(i, "GET", "/v1/status", None, Some(&pki))
    }

    fn lo(&self, i: usize) -> String {
        sh(&format!(
            "ip -n {} -o addr show dev lo",
            self.lab.servers[i - 1]
        ))
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
    let push = format!(
        "{{\"generation\": 1, \"vips\": [\"{}\", \"2001:db8::10\"]}}",
        lab.vip()
    );
    for (i, mode) in modes.iter().enumerate() {
        let (code, body) = site.push(i + 1, &push);
        assert_eq!(code, 200, "{mode}: {body}");
        let st = json(&body);
        assert_eq!(st["in_place"], true, "{mode}: {st}");
        assert_eq!(st["arp_mode"], *mode);
        assert_eq!(st["real_ip"], lab.rip(i + 1));
        assert!(
            site.lo(i + 1).contains(&format!("inet {}/32", lab.vip())),
            "{mode}"
        );
        assert!(site.lo(i + 1).contains("inet6 2001:db8::10/128"), "{mode}");
    }
    let nft = sh(&format!(
        "ip netns exec {} nft list table arp lvsdr",
        lab.servers[0]
    ));
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

    let answers = lab.arp_answers();
    assert_eq!(
        answers,
        vec![lab.mac(&lab.director)],
        "only the director may answer ARP for the VIP"
    );
}

#[test]
#[ignore = "needs root and network namespaces: runs in tests/run"]
fn restart_reapplies_from_the_state_file_and_removes_only_its_own() {
    let site = Site::new("ab", 62, 1);
    let lab = &site.lab;
    let mine = format!("10.{}.0.222", lab.net);
    let vip2 = format!("10.{}.0.101", lab.net);
    sh(&format!(
        "ip -n {} addr add {mine}/32 dev lo",
        lab.servers[0]
    ));
    let mut agent = site.start(1, "nft");
    let (code, body) = site.push(
        1,
        &format!(
            "{{\"generation\": 10, \"vips\": [\"{}\", \"{vip2}\"]}}",
            lab.vip()
        ),
    );
    assert_eq!(code, 200, "{body}");

    // A reboot: the agent dies, the addresses and rules are gone.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    sh(&format!(
        "ip -n {0} addr del {1}/32 dev lo; ip -n {0} addr del {vip2}/32 dev lo; ip netns exec {0} nft delete table arp lvsdr",
        lab.servers[0],
        lab.vip()
    ));
    agent = site.start(1, "nft");
    // Back before the API answered.
    assert!(
        site.lo(1).contains(&format!("inet {}/32", lab.vip())),
        "{}",
        site.lo(1)
    );
    assert!(sh(&format!(
        "ip netns exec {} nft list table arp lvsdr",
        lab.servers[0]
    ))
    .contains(&vip2));
    assert_eq!(json(&site.status(1).1)["generation"], 10);

    // A VIP dropped from the push goes; the address added by hand stays.
    let (code, body) = site.push(
        1,
        &format!("{{\"generation\": 11, \"vips\": [\"{vip2}\"]}}"),
    );
    assert_eq!(code, 200, "{body}");
    let lo = site.lo(1);
    assert!(!lo.contains(&format!("inet {}/32", lab.vip())), "{lo}");
    assert!(
        lo.contains(&format!("inet {mine}/32")),
        "the hand-added address went: {lo}"
    );

    // Drift: a VIP removed by hand comes back (resync_interval 1 s).
    sh(&format!(
        "ip -n {} addr del {vip2}/32 dev lo",
        lab.servers[0]
    ));
    let back = poll(5, || {
        site.lo(1)
            .contains(&format!("inet {vip2}/32"))
            .then_some(())
    });
    assert!(back.is_some(), "drift was not repaired");

    // A corrupt state file: a clear error, kept for inspection, not overwritten.
    drop(agent);
    std::fs::write(site.state_file(1), "{ this is not json").expect("corrupt");
    let _agent = site.start(1, "nft");
    let st = json(&site.status(1).1);
    assert!(
        st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("is not a valid state file")),
        "{st}"
    );
    let kept: Vec<_> = std::fs::read_dir(&site.dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state1.json.corrupt-")
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
fn bad_pushes_are_refused_and_change_nothing() {
    let site = Site::new("ac", 63, 1);
    let lab = &site.lab;
    let _agent = site.start(1, "nft");
    let good = format!("{{\"generation\": 5, \"vips\": [\"{}\"]}}", lab.vip());
    assert_eq!(site.push(1, &good).0, 200);
    let before = (site.status(1).1, site.lo(1));

    // No client certificate, and one from another CA: the handshake fails.
    let (code, _) = site.curl(1, "PUT", "/v1/vips", Some(&good), None);
    assert_eq!(code, 0, "a push without a client certificate got an answer");
    let other = site.dir.join("other");
    lvsdr::pki::init(&other, &[]).expect("other CA");
    let (code, _) = site.curl(1, "PUT", "/v1/vips", Some(&good), Some(&other));
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
            "{\"generation\": 6, \"vips\": [\"0.0.0.0\"]}".into(),
            422,
            "0.0.0.0 cannot be a VIP: it is unspecified",
        ),
        (
            "{\"generation\": 6, \"vips\": [\"127.0.0.2\"]}".into(),
            422,
            "loopback",
        ),
        (
            "{\"generation\": 6, \"vips\": [\"224.0.0.9\"]}".into(),
            422,
            "multicast",
        ),
        (
            "{\"generation\": 6, \"vips\": [\"169.254.1.1\"]}".into(),
            422,
            "link-local",
        ),
        (
            "{\"generation\": 6, \"vips\": [\"fe80::1\"]}".into(),
            422,
            "link-local",
        ),
        (
            format!("{{\"generation\": 6, \"vips\": [\"{}\"]}}", lab.rip(1)),
            422,
            "the real server's own address",
        ),
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
}
