//! The importers on inputs of our own writing (import/tests/inputs/), one per format, covering
//! the constructs each format has: the config written must validate, carry what the
//! input said, and every construct not translated must be reported at its line.

use std::path::PathBuf;

use lvsdr_import::{self as import, Format, Level};
use toml::Value;

fn input(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inputs")).join(name)
}

/// The imported TOML (validated by lvsdr's own parser) and the notes as
/// `(file name, line, level)`.
fn run(format: Format, name: &str) -> (Value, Vec<(String, usize, Level, String)>) {
    let d = import::import(format, &input(name)).expect("import");
    let text = import::emit::toml(&d);
    if let Err(e) = lvsdr::config::parse(&text, "imported.toml") {
        panic!("the imported config does not validate:\n{e}\n{text}");
    }
    let notes = d
        .notes
        .iter()
        .map(|n| {
            let file = n.at.file.rsplit('/').next().unwrap_or_default().to_string();
            (file, n.at.line, n.level, n.message.clone())
        })
        .collect();
    (Value::Table(toml::from_str(&text).expect("toml")), notes)
}

fn service<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["service"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn names(v: &Value) -> Vec<&str> {
    v["service"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect()
}

fn rs(s: &Value, i: usize) -> &Value {
    &s["real_server"][i]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn int(v: &Value) -> i64 {
    v.as_integer()
        .unwrap_or_else(|| panic!("not an integer: {v:?}"))
}

/// The notes of `level`, as (file, line).
fn at(notes: &[(String, usize, Level, String)], level: Level) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = notes
        .iter()
        .filter(|n| n.2 == level)
        .map(|n| (n.0.as_str(), n.1))
        .collect();
    v.sort();
    v
}

#[test]
fn keepalived() {
    let (v, notes) = run(Format::Keepalived, "keepalived.conf");
    assert_eq!(
        names(&v),
        [
            "tcp-192.0.2.10-80",
            "tcp-192.0.2.11-443",
            "udp-192.0.2.12-53",
            "fwmark-5",
            "tcp-192.0.2.20-80",
            "tcp-192.0.2.21-80",
            "fwmark-7",
            "tcp-192.0.2.13-25",
        ]
    );
    let web = service(&v, "tcp-192.0.2.10-80");
    assert_eq!(s(&web["scheduler"]), "wrr");
    assert_eq!(s(&web["persistence"]), "300s");
    assert_eq!(s(&web["persistence_netmask"]), "255.255.255.0");
    assert_eq!(s(&web["on_failure"]), "weight0"); // inhibit_on_failure
    assert_eq!(s(&web["sorry_server"]), "192.0.2.99");
    let c = &web["check"];
    assert_eq!(
        (
            s(&c["type"]),
            int(&c["port"]),
            s(&c["path"]),
            s(&c["expect_body"])
        ),
        ("http", 8080, "/healthz", "ok|ready")
    );
    assert_eq!(int(&c["expect_status"]), 200);
    // delay_loop, connect_timeout, retry 2 → fall 3.
    assert_eq!((s(&c["interval"]), s(&c["timeout"])), ("3s", "2s"));
    assert_eq!((int(&c["rise"]), int(&c["fall"])), (1, 3));
    assert_eq!(
        (int(&rs(web, 0)["weight"]), int(&rs(web, 1)["weight"])),
        (100, 200)
    );
    assert_eq!(int(&rs(web, 0)["upper_threshold"]), 500);
    assert_eq!(int(&rs(web, 0)["lower_threshold"]), 10);

    let tls = service(&v, "tcp-192.0.2.11-443");
    assert_eq!(s(&tls["scheduler"]), "sh");
    assert_eq!(tls["scheduler_flags"].as_array().map(Vec::len), Some(1));
    assert_eq!(s(&tls["on_failure"]), "remove"); // keepalived's default
    let c0 = &rs(tls, 0)["check"];
    assert_eq!(s(&c0["type"]), "https");
    assert_eq!(s(&c0["sni"]), "www.example.test"); // enable_sni + virtualhost
    assert_eq!(s(&c0["expect_status"]), "200-299"); // keepalived's default
    assert_eq!(c0["insecure_skip_verify"].as_bool(), Some(true));
    assert_eq!(s(&rs(tls, 1)["check"]["type"]), "tcp");

    let dns = service(&v, "udp-192.0.2.12-53");
    assert_eq!(s(&dns["protocol"]), "udp");
    assert_eq!(dns["one_packet"].as_bool(), Some(true));
    assert_eq!(
        (s(&dns["check"]["type"]), s(&dns["check"]["query"])),
        ("udp-dns", "example.test")
    );

    let mark = service(&v, "fwmark-5");
    assert_eq!(int(&mark["fwmark"]), 5);
    assert!(
        rs(mark, 0).get("port").is_none(),
        "a DR fwmark real server has no port"
    );
    assert_eq!(
        s(&rs(mark, 0)["check"]["command"]),
        "/usr/local/bin/check-mail --quick"
    );
    assert_eq!(s(&rs(mark, 0)["check"]["timeout"]), "4s");
    assert_eq!(s(&rs(mark, 1)["check"]["type"]), "smtp");
    assert_eq!(int(&rs(mark, 1)["check"]["port"]), 25);

    let mail = service(&v, "tcp-192.0.2.13-25"); // from the included file
    assert_eq!(s(&mail["forwarding"]), "nat");
    assert_eq!(int(&rs(mail, 0)["port"]), 2525);
    assert_eq!(s(&mail["scheduler"]), "lc");

    assert_eq!(
        at(&notes, Level::Review),
        [
            ("keepalived.conf", 65),  // digest
            ("keepalived.conf", 108), // omega
            ("keepalived.conf", 109), // quorum 2
            ("keepalived.conf", 114), // misc_dynamic
            ("keepalived.conf", 122), // notify_down
            ("keepalived.conf", 136), // vrrp_instance
        ],
        "{notes:#?}"
    );
    assert_eq!(at(&notes, Level::Ignored), [("keepalived.conf", 2)]);
}

#[test]
fn ldirectord() {
    let (v, notes) = run(Format::Ldirectord, "ldirectord.cf");
    assert_eq!(v["service"].as_array().map(Vec::len), Some(6));
    let web = service(&v, "tcp-192.0.2.10-80");
    assert_eq!(s(&web["on_failure"]), "weight0"); // quiescent=yes
    assert_eq!(s(&web["persistence"]), "600s");
    assert_eq!(s(&web["sorry_server"]), "127.0.0.1"); // fallback
                                                      // The second real= line has its own request/receive.
    let (c0, c1) = (&rs(web, 0)["check"], &rs(web, 1)["check"]);
    assert_eq!(
        (s(&c0["path"]), s(&c0["expect_body"])),
        ("/status.html", "Test (Page|OK)")
    );
    assert_eq!(
        (s(&c1["path"]), s(&c1["expect_body"])),
        ("/other.html", "Other")
    );
    assert_eq!(s(&c0["host"]), "www.example.test");
    // checkinterval 5, checktimeout 3, failurecount 2.
    assert_eq!(
        (s(&c0["interval"]), s(&c0["timeout"]), int(&c0["fall"])),
        ("5s", "3s", 2)
    );

    let tls = service(&v, "tcp-192.0.2.11-443");
    assert_eq!(s(&tls["on_failure"]), "remove"); // quiescent=no
    let addrs: Vec<&str> = tls["real_server"]
        .as_array()
        .expect("rs")
        .iter()
        .map(|r| s(&r["address"]))
        .collect();
    assert_eq!(addrs, ["10.0.0.21", "10.0.0.22", "10.0.0.23"]); // a range
    assert_eq!(s(&tls["check"]["expect_body"]), r"\(\?<=x\)y"); // literal, reported

    let tcp = service(&v, "tcp-192.0.2.12-5000");
    let c = &tcp["check"];
    assert_eq!((s(&c["type"]), int(&c["port"])), ("tcp-expect", 5001));
    assert_eq!((s(&c["send"]), s(&c["expect"])), (r"PING\r\n", "PONG"));

    let ssh = service(&v, "tcp-192.0.2.13-22");
    assert_eq!(
        (s(&ssh["check"]["type"]), s(&ssh["check"]["timeout"])),
        ("tcp", "2s")
    );
    let smtp = service(&v, "tcp-192.0.2.14-25");
    assert_eq!(s(&smtp["check"]["command"]), "/usr/local/bin/check-smtp");
    let mark = service(&v, "fwmark-9");
    assert_eq!(
        (s(&mark["scheduler"]), int(&mark["check"]["port"])),
        ("sh", 80)
    );

    assert_eq!(
        at(&notes, Level::Review),
        [
            ("ldirectord.cf", 27), // a Perl-only regex
            ("ldirectord.cf", 46), // gate and masq in one virtual
            ("ldirectord.cf", 49), // external: arguments → environment
            ("ldirectord.cf", 55), // ping
        ],
        "{notes:#?}"
    );
    assert_eq!(
        at(&notes, Level::Ignored),
        [
            ("ldirectord.cf", 5),
            ("ldirectord.cf", 6),
            ("ldirectord.cf", 50)
        ]
    );
}

#[test]
fn piranha() {
    let (v, notes) = run(Format::Piranha, "lvs.cf");
    assert_eq!(names(&v), ["web", "mail", "marked"]);
    let web = service(&v, "web");
    assert_eq!(s(&web["forwarding"]), "dr"); // network = direct
    assert_eq!(
        (s(&web["persistence"]), s(&web["persistence_netmask"])),
        ("300s", "255.255.255.0")
    );
    assert_eq!(s(&web["sorry_server"]), "192.0.2.99");
    let c = &web["check"];
    assert_eq!(s(&c["type"]), "tcp-expect");
    assert_eq!(s(&c["send"]), "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(s(&c["expect"]), "HTTP/1.[01] 200"); // use_regex = 1
                                                    // keepalive 3: timeout 9 → 3 failures, reentry 15 → 5 successes.
    assert_eq!(
        (s(&c["interval"]), int(&c["fall"]), int(&c["rise"])),
        ("3s", 3, 5)
    );
    let weights: Vec<i64> = web["real_server"]
        .as_array()
        .expect("rs")
        .iter()
        .map(|r| int(&r["weight"]))
        .collect();
    assert_eq!(weights, [10, 20], "web3 is not active");
    assert_eq!(s(&service(&v, "mail")["check"]["expect"]), "220"); // literal
    let marked = service(&v, "marked");
    assert_eq!(int(&marked["fwmark"]), 12);
    assert_eq!(marked["vips"][0].as_str(), Some("192.0.2.12"));
    assert_eq!(
        s(&marked["check"]["command"]),
        "/usr/local/bin/probe $LVSDR_RS_ADDR"
    );
    assert_eq!(
        at(&notes, Level::Review)
            .iter()
            .map(|a| a.1)
            .collect::<Vec<_>>(),
        [2, 4, 5, 6, 7, 9, 12, 13, 14, 56],
        "{notes:#?}"
    );
    assert_eq!(
        at(&notes, Level::Ignored)
            .iter()
            .map(|a| a.1)
            .collect::<Vec<_>>(),
        [1, 3, 11, 76]
    );
}

#[test]
fn ipvsadm() {
    let (v, notes) = run(Format::Ipvsadm, "ipvsadm.dump");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        names(&v),
        [
            "tcp-192.0.2.10-80",
            "udp-192.0.2.12-53",
            "tcp-2001:db8::10-443",
            "fwmark-7",
            "fwmark6-8",
            "tcp-192.0.2.13-25",
        ]
    );
    let web = service(&v, "tcp-192.0.2.10-80");
    assert_eq!(
        (s(&web["persistence"]), s(&web["persistence_netmask"])),
        ("300s", "255.255.255.0")
    );
    assert_eq!(int(&rs(web, 1)["upper_threshold"]), 1000);
    assert_eq!(int(&rs(web, 1)["lower_threshold"]), 10);
    assert_eq!(s(&web["check"]["type"]), "none");
    assert_eq!(
        service(&v, "udp-192.0.2.12-53")["one_packet"].as_bool(),
        Some(true)
    );
    let v6 = service(&v, "tcp-2001:db8::10-443");
    assert_eq!(v6["scheduler_flags"].as_array().map(Vec::len), Some(2));
    // `-s sh` without -b: strict hashing, said out loud (lvsdr's default for sh and mh
    // is the fallback flag), and the same in the kernel once imported.
    let strict = service(&v, "fwmark-7");
    assert_eq!(strict["scheduler_flags"].as_array().map(Vec::len), Some(0));
    let d = import::import(Format::Ipvsadm, &input("ipvsadm.dump")).expect("import");
    let back = lvsdr::config::parse(&import::emit::toml(&d), "i.toml").expect("valid");
    let fw7 = back
        .services
        .iter()
        .find(|s| s.name == "fwmark-7")
        .expect("fwmark-7");
    assert!(
        fw7.service.settings.flags.is_empty(),
        "{:?}",
        fw7.service.settings.flags
    );
    assert_eq!(s(&service(&v, "fwmark6-8")["family"]), "ipv6");
    assert_eq!(
        s(&rs(service(&v, "fwmark6-8"), 0)["address"]),
        "2001:db8::31"
    );
    let nat = service(&v, "tcp-192.0.2.13-25");
    assert_eq!(
        (s(&nat["forwarding"]), int(&rs(nat, 0)["port"])),
        ("nat", 2525)
    );
}

#[test]
fn unknown_statements_are_reported_never_dropped() {
    let dir = std::env::temp_dir().join(format!("lvsdr-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("k.conf");
    std::fs::write(
        &f,
        "virtual_server 192.0.2.10 80 {\n  frobnicate 3\n  real_server 10.0.0.1 80 {\n    \
         weight 1\n    wobble\n  }\n}\nmystery_block {\n}\n",
    )
    .expect("write");
    let d = import::import(Format::Keepalived, &f).expect("import");
    let lines: Vec<usize> = d.notes.iter().map(|n| n.at.line).collect();
    // 1: the service has no lb_kind (keepalived's NAT).
    assert_eq!(lines, [2, 1, 5, 8], "{:#?}", d.notes);
    assert!(d.needs_review());
    // An include that names no file is reported too.
    std::fs::write(&f, "include nothing-here/*.conf\n").expect("write");
    let d = import::import(Format::Keepalived, &f).expect("import");
    assert_eq!(d.notes.len(), 1, "{:#?}", d.notes);
    let _ = std::fs::remove_dir_all(dir);
}

/// keepalived's defaults, read as keepalived reads them: no (valid) `lb_kind` is NAT, an
/// `lb_algo` that is no IPVS scheduler is wlc, `persistence_timeout 0` is no
/// persistence, and `net_namespace` is said to move the whole table. Each with a report
/// line at its own line, in words (no Rust debug text). Before, all of these came out
/// as DR, the scheduler copied through (refused by check-config), `persistence = "0s"`
/// (refused), and "unknown statement".
#[test]
fn keepalived_defaults_are_read_as_keepalived_reads_them() {
    let dir = std::env::temp_dir().join(format!("lvsdr-import-d-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("k.conf"),
        "net_namespace lb\n\
         global_defs {\n  net_namespace lb\n}\n\
         virtual_server 192.0.2.30 80 {\n  real_server 10.0.0.11 80 {\n    weight 1\n  }\n}\n\
         virtual_server 192.0.2.31 80 {\n  lb_kind FNAT\n  lb_algo conhash\n  persistence_timeout 0\n  \
         protocol TCPP\n  real_server 10.0.0.11 80 {\n    weight 1\n  }\n}\n",
    )
    .expect("write");
    std::fs::copy(dir.join("k.conf"), input("defaults.tmp.conf")).expect("copy");
    let (v, notes) = run(Format::Keepalived, "defaults.tmp.conf");
    let _ = std::fs::remove_file(input("defaults.tmp.conf"));
    let _ = std::fs::remove_dir_all(&dir);
    let plain = service(&v, "tcp-192.0.2.30-80");
    assert_eq!(s(&plain["forwarding"]), "nat");
    let odd = service(&v, "tcp-192.0.2.31-80");
    assert_eq!(
        (s(&odd["forwarding"]), s(&odd["scheduler"])),
        ("nat", "wlc")
    );
    assert!(odd.get("persistence").is_none(), "{odd:?}");
    let said = |line: usize, words: &str| {
        assert!(
            notes
                .iter()
                .any(|n| n.1 == line && n.2 == Level::Review && n.3.contains(words)),
            "no report at line {line} with {words:?}: {notes:#?}"
        )
    };
    said(
        1,
        "net_namespace lb: keepalived runs in that network namespace",
    );
    said(3, "net_namespace lb");
    said(5, "no lb_kind: keepalived uses NAT");
    said(11, "FNAT is full NAT");
    said(12, "conhash: no IPVS scheduler");
    said(14, "protocol TCPP");
    assert!(
        notes.iter().all(|n| !n.3.contains("Some(")),
        "Rust debug text in a report: {notes:#?}"
    );
}

/// Ports by name (ldirectord's `:www`, `ipvsadm -S` without `-n`) come from a table
/// of well-known services, the same on every host. Before, every such service was
/// refused: one production ldirectord.cf lost 56 of its 70 services to it.
#[test]
fn ports_by_name_are_read_from_a_built_in_table() {
    let (v, notes) = run(Format::Ldirectord, "names.cf");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(names(&v).len(), 2, "{v:?}");
    let web = &v["service"].as_array().expect("services")[0];
    assert_eq!(int(&web["port"]), 80);
    assert_eq!(web["real_server"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        int(&v["service"].as_array().expect("services")[1]["port"]),
        3306
    );
    let (v, notes) = run(Format::Ipvsadm, "names.dump");
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(names(&v), ["tcp-192.0.2.30-80", "udp-192.0.2.31-53"]);
}

/// A `misc_timeout` (or `connect_timeout`) longer than `delay_loop`: lvsdr's checks do
/// not overlap, so the timeout is cut to the interval, and the report says so at the
/// statement. Before, it was cut without a word.
#[test]
fn a_timeout_longer_than_the_interval_is_cut_with_a_report_line() {
    std::fs::write(
        input("timeout.tmp.conf"),
        "virtual_server 192.0.2.40 80 {\n  delay_loop 10\n  lb_kind DR\n  \
         real_server 10.0.0.11 80 {\n    weight 1\n    MISC_CHECK {\n      \
         misc_path \"/bin/true\"\n      misc_timeout 30\n    }\n  }\n}\n",
    )
    .expect("write");
    let (v, notes) = run(Format::Keepalived, "timeout.tmp.conf");
    let _ = std::fs::remove_file(input("timeout.tmp.conf"));
    let check = &service(&v, "tcp-192.0.2.40-80")["check"];
    assert_eq!(s(&check["timeout"]), "10s", "{v:?}");
    assert!(
        notes.iter().any(|n| n.1 == 8
            && n.2 == Level::Review
            && n.3
                .contains("misc_timeout 30s is longer than delay_loop 10s")),
        "{notes:#?}"
    );
}

/// keepalived's `notify_up`/`notify_down` become `[[notify]]` hooks that run the script
/// for that server's event only (lvsdr tells a hook every server event), with a review
/// line. Shown by running the translated hook on events as lvsdr writes them.
#[test]
fn notify_scripts_become_hooks_for_their_own_server() {
    let dir = std::env::temp_dir().join(format!("lvsdr-import-n-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mark = dir.join("ran");
    std::fs::write(
        input("notify.tmp.conf"),
        format!(
            "virtual_server 192.0.2.50 80 {{\n  lb_kind DR\n  real_server 10.0.0.11 80 {{\n    \
             notify_up \"/usr/bin/touch {}\"\n    TCP_CHECK {{\n    }}\n  }}\n}}\n",
            mark.display()
        ),
    )
    .expect("write");
    let (v, notes) = run(Format::Keepalived, "notify.tmp.conf");
    let _ = std::fs::remove_file(input("notify.tmp.conf"));
    assert!(
        notes
            .iter()
            .any(|n| n.1 == 4 && n.2 == Level::Review && n.3.contains("[[notify]]")),
        "{notes:#?}"
    );
    let hook = &v["notify"].as_array().expect("[[notify]]")[0];
    assert_eq!(hook["events"].as_array().map(Vec::len), Some(1));
    let argv: Vec<&str> = hook["exec"]
        .as_array()
        .expect("exec")
        .iter()
        .map(|a| a.as_str().expect("string"))
        .collect();
    let fire = |event: &str| {
        let _ = std::fs::remove_file(&mark);
        let mut child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("hook");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(event.as_bytes())
            .expect("event");
        assert!(child.wait().expect("wait").success());
        mark.exists()
    };
    let ev = |server: &str, state: &str| {
        format!(
            r#"{{"event":"server","service":"tcp-192.0.2.50-80","server":"{server}","state":"{state}","previous":"down","at":1.0}}"#
        )
    };
    assert!(
        fire(&ev("10.0.0.11:80", "up")),
        "its own server up: the script runs"
    );
    assert!(!fire(&ev("10.0.0.11:80", "down")), "down: it does not");
    assert!(
        !fire(&ev("10.0.0.111:80", "up")),
        "another server: it does not"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Asserts a review line at `file:line` whose message holds `words`.
fn said(notes: &[(String, usize, Level, String)], file: &str, line: usize, words: &str) {
    assert!(
        notes
            .iter()
            .any(|n| n.0 == file && n.1 == line && n.2 == Level::Review && n.3.contains(words)),
        "no review line at {file}:{line} with {words:?}: {notes:#?}"
    );
}

fn addresses(s: &Value) -> Vec<&str> {
    s["real_server"]
        .as_array()
        .expect("real servers")
        .iter()
        .map(|r| r["address"].as_str().expect("address"))
        .collect()
}

/// A service given twice is one service, a real server given twice (or by DR on two
/// ports) one destination, the VIP as a real server is left out, a port-less
/// `virtual_server` is port 0, and an empty group (which panicked) is no service; each
/// with a report line at the construct. Before, the first three wrote a config
/// check-config refused, and the last aborted the import.
#[test]
fn keepalived_duplicates_merge_and_each_odd_construct_is_reported_at_its_line() {
    let (v, notes) = run(Format::Keepalived, "merge.conf");
    let f = "merge.conf";
    assert_eq!(
        names(&v),
        ["tcp-192.0.2.60-80", "tcp-192.0.2.61-0", "tcp-192.0.2.62-80"]
    );
    let web = service(&v, "tcp-192.0.2.60-80");
    assert_eq!(s(&web["scheduler"]), "rr", "the first block's");
    assert_eq!(
        addresses(web),
        ["10.0.0.61", "10.0.0.62", "10.0.0.63", "10.0.0.64"]
    );
    // A note about a real server is at the real server's line.
    said(
        &notes,
        f,
        25,
        "real server 10.0.0.64 port 8080: dr forwards to the service's port 80",
    );
    said(&notes, f, 19, "given again (first at ");
    said(
        &notes,
        f,
        19,
        "its own scheduler (not the first's) is not used",
    );
    said(&notes, f, 9, "10.0.0.61 is given again (first at ");
    said(&notes, f, 15, "given on ports 80 and 8080");
    let any = service(&v, "tcp-192.0.2.61-0");
    assert_eq!((int(&any["port"]), s(&any["persistence"])), (0, "300s"));
    said(&notes, f, 29, "without a port: keepalived takes port 0");
    let nat = service(&v, "tcp-192.0.2.62-80");
    assert_eq!(addresses(nat), ["10.0.0.65"]);
    said(&notes, f, 38, "real server 192.0.2.62 is the service's VIP");
    said(&notes, f, 47, "\"EMPTY\" has no member");
}

/// ldirectord: a `virtual=` given twice is one service, a `real=` twice one server, and
/// a forwarding method ldirectord does not know leaves its server out in words (it
/// was DR, with a debug-quoted name).
#[test]
fn ldirectord_duplicates_merge_and_an_unknown_method_is_never_dr() {
    let (v, notes) = run(Format::Ldirectord, "merge.cf");
    assert_eq!(names(&v), ["tcp-192.0.2.70-80"]);
    let web = service(&v, "tcp-192.0.2.70-80");
    assert_eq!(addresses(web), ["10.0.0.71", "10.0.0.72"]);
    said(&notes, "merge.cf", 7, "given again (first at ");
    said(&notes, "merge.cf", 5, "10.0.0.71 is given again");
    said(
        &notes,
        "merge.cf",
        9,
        "real=10.0.0.73:80 fnat: not a forwarding method ldirectord knows",
    );
}

/// Piranha: a fwmark `virtual` with `port = 21` or `port = http` keeps that port for
/// its check (a fwmark service has no port of its own).
#[test]
fn piranha_fwmark_virtuals_keep_their_check_port() {
    let (v, notes) = run(Format::Piranha, "fwmark.cf");
    assert!(at(&notes, Level::Review).is_empty(), "{notes:#?}");
    let port_of = |name: &str| {
        let svc = service(&v, name);
        let c = svc.get("check").unwrap_or_else(|| &rs(svc, 0)["check"]);
        int(&c["port"])
    };
    assert_eq!((port_of("ftp"), port_of("web")), (21, 80));
}

/// A template (Jinja2, ERB) is named as such in one line, and nothing of it imported.
#[test]
fn an_unrendered_template_is_named_in_one_line() {
    for (format, name, line) in [
        (Format::Keepalived, "template.conf", 2),
        (Format::Ldirectord, "template.cf", 3),
    ] {
        let d = import::import(format, &input(name)).expect("import");
        assert!(d.services.is_empty(), "{d:?}");
        assert_eq!(d.notes.len(), 1, "{:#?}", d.notes);
        assert_eq!(d.notes[0].at.line, line);
        assert!(
            d.notes[0].message.contains("unrendered template")
                && d.notes[0].message.contains("render it first"),
            "{:?}",
            d.notes[0]
        );
    }
}

/// An `ipvsadm -Ln` listing or `/proc/net/ip_vs` given to `import ipvsadm`: one line
/// that says what to give (it was one "not an -A or -a line" per line).
#[test]
fn a_listing_is_named_in_one_line() {
    for name in ["listing.txt", "proc.txt"] {
        let d = import::import(Format::Ipvsadm, &input(name)).expect("import");
        assert!(d.services.is_empty());
        assert_eq!(d.notes.len(), 1, "{:#?}", d.notes);
        assert!(d.notes[0].message.contains("give `ipvsadm -Sn` output"));
    }
}

/// ipvsadm's "(null)" forwarder (FULLNAT): said in words, the server left out, never DR.
#[test]
fn an_ipvsadm_forwarder_without_a_name_is_said_in_words_and_left_out() {
    let (v, notes) = run(Format::Ipvsadm, "fnat.dump");
    assert_eq!(addresses(service(&v, "tcp-192.0.2.90-80")), ["10.0.0.92"]);
    said(&notes, "fnat.dump", 2, "FULLNAT");
}

/// Hostile includes: a file that includes itself four times (4^8 reads before), an
/// include of `/dev/zero` (read for ever before), of a FIFO (blocked for ever) and of a
/// kernel file, and one of a file of secrets, whose words must not reach the report.
#[test]
fn hostile_includes_are_bounded_and_never_echoed() {
    let dir = std::env::temp_dir().join(format!("lvsdr-import-h-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    for f in ["fanout.conf", "secret.txt"] {
        std::fs::copy(input("hostile").join(f), dir.join(f)).expect("copy");
    }
    let fifo = dir.join("fifo.conf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Not text: left out with a line, the rest imported (it ended the import before).
    std::fs::write(
        dir.join("binary.conf"),
        [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0],
    )
    .expect("write");
    let mut text = std::fs::read_to_string(dir.join("fanout.conf")).expect("read");
    text.push_str("include fifo.conf\ninclude binary.conf\n");
    std::fs::write(dir.join("fanout.conf"), text).expect("write");

    let d = import::import(Format::Keepalived, &dir.join("fanout.conf")).expect("import");
    let report = d.report().join("\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !report.contains("hunter2") && !report.contains("$6$"),
        "{report}"
    );
    for words in [
        "read already (a loop, or included twice); read once (and 3 more times",
        "include \"/dev/zero\" names no regular file",
        "include \"fifo.conf\" names no regular file",
        "include \"/proc/self/status\": a kernel file, not a config; not read",
        "2 statements of this included file not keepalived's (not shown)",
        "binary.conf\": not UTF-8 text (a binary file?); left out",
    ] {
        assert!(report.contains(words), "no {words:?} in:\n{report}");
    }
}

/// 100,000 `{` (a stack overflow before): a clear line, and what can be read is read.
#[test]
fn deep_nesting_is_an_error_not_an_abort() {
    let name = "deep.tmp.conf";
    std::fs::write(
        input(name),
        format!("virtual_server 192.0.2.99 80 {}\n", "{".repeat(100_000)),
    )
    .expect("write");
    let d = import::import(Format::Keepalived, &input(name)).expect("import");
    let _ = std::fs::remove_file(input(name));
    assert!(
        d.notes
            .iter()
            .any(|n| n.message.contains("blocks nested deeper than 32")),
        "{:#?}",
        d.notes
    );
}

/// What lvsdr would refuse is left out with the reason, and the rest imported: the
/// import never writes a config check-config refuses (before, the whole output did
/// not validate).
#[test]
fn a_service_lvsdr_refuses_is_left_out_with_the_reason() {
    let (v, notes) = run(Format::Keepalived, "refused.conf");
    assert_eq!(names(&v), ["tcp-192.0.2.101-80"]);
    said(
        &notes,
        "refused.conf",
        3,
        "service tcp-192.0.2.100-80 is left out: lvsdr refuses it: service \"tcp-192.0.2.100-80\": persistence_netmask",
    );
}
