//! The config read block by block (`config::Loader`) says what the file read as one
//! document says (`config::parse_whole`), error for error, at a start and across
//! reloads; a reload reads again only the `[[service]]` blocks that changed.

use std::net::IpAddr;

use lvsdr::config::{self, Host, Loader};

/// A config with something of each kind the checks across services look at: agents,
/// a fwmark service with its VIPs, checks through the DR path, notify hooks.
const BASE: &str = r#"# the director
[director]
status_listen = "127.0.0.1:9180"
[[notify]]
url = "http://127.0.0.1:9/hook"
[agents]
ca = "/etc/lvsdr/ca.pem"
cert = "/etc/lvsdr/director.pem"
key = "/etc/lvsdr/director.key"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
scheduler = "wrr"
[service.check]
type = "http"
via = "vip"
[[service.real_server]]
address = "10.0.0.11"
weight = 2
[[service.real_server]]
address = "10.0.0.12"
agent = false
[[service]]
name = "mark"
fwmark = 7
vips = ["192.0.2.20"]
[[service.real_server]]
address = "10.0.0.13"
[service.real_server.check]
type = "tcp"
port = 80
[[service]]
name = "dns"
vip = "192.0.2.53"
port = 53
protocol = "udp"
[[service.real_server]]
address = "10.0.0.14"
[sync]
interface = "lo"
sync_id = 1
"#;

/// Read block by block: `blocks` in the file, `read` of them anew.
fn fast(blocks: usize, read: usize) -> config::LoadStats {
    config::LoadStats {
        blocks,
        read,
        whole: false,
    }
}

fn whole(text: &str, host: &Host) -> Result<lvsdr::model::Desired, config::ConfigErrors> {
    config::parse_whole(text, "t.toml", host)
}

/// `text` read by `loader` as it reads it, and as one document, the same.
fn same(loader: &mut Loader, text: &str, host: &Host) {
    let blocks = loader.parse_on(text, "t.toml", host);
    assert_eq!(blocks, whole(text, host), "read block by block:\n{text}");
}

#[test]
fn the_base_is_valid_and_read_alike() {
    let mut l = Loader::default();
    let d = l.parse_on(BASE, "t.toml", &Host::default()).expect("valid");
    assert_eq!(Ok(&d), whole(BASE, &Host::default()).as_ref());
    assert!(d
        .services
        .iter()
        .any(|s| s.name.starts_with("check-via-vip-")));
    assert_eq!(l.last_read(), fast(3, 3));
}

#[test]
fn every_line_dropped_or_doubled_reads_alike_cold_and_warm() {
    let host = Host::default();
    let lines: Vec<&str> = BASE.lines().collect();
    let mut warm = Loader::default();
    warm.parse_on(BASE, "t.toml", &host).expect("valid");
    for i in 0..lines.len() {
        let mut dropped = lines.clone();
        dropped.remove(i);
        let mut doubled = lines.clone();
        doubled.insert(i, lines[i]);
        for text in [dropped.join("\n"), doubled.join("\n")] {
            same(&mut Loader::default(), &text, &host);
            same(&mut warm, &text, &host);
        }
    }
}

#[test]
fn what_is_wrong_across_blocks_is_refused_with_its_place() {
    let host = Host::default();
    let svc = |name: &str, vip: &str, rs: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\n\
             [[service.real_server]]\naddress = \"{rs}\"\n"
        )
    };
    let cases = [
        // The same name twice.
        format!("{}{}", svc("a", "192.0.2.1", "10.0.0.1"), svc("a", "192.0.2.2", "10.0.0.2")),
        // The same address and port twice.
        format!("{}{}", svc("a", "192.0.2.1", "10.0.0.1"), svc("b", "192.0.2.1", "10.0.0.2")),
        // A real server that is another service's VIP (with agents).
        format!(
            "[agents]\nca = \"/c\"\ncert = \"/d\"\nkey = \"/k\"\n{}{}",
            svc("a", "192.0.2.1", "10.0.0.1"),
            svc("b", "192.0.2.2", "192.0.2.1")
        ),
        // A fwmark service whose real servers have agents, without VIPs.
        "[agents]\nca = \"/c\"\ncert = \"/d\"\nkey = \"/k\"\n\
         [[service]]\nname = \"m\"\nfwmark = 9\n[[service.real_server]]\naddress = \"10.0.0.1\"\n"
            .to_string(),
        // A fwmark service in the marks of checks through the DR path.
        format!(
            "{}[service.check]\ntype = \"tcp\"\nvia = \"vip\"\n\
             [[service]]\nname = \"m\"\nfwmark = {}\n[[service.real_server]]\naddress = \"10.0.0.9\"\n",
            svc("a", "192.0.2.1", "10.0.0.1"),
            lvsdr::model::CHECK_MARK_BASE
        ),
        // A top-level key before the first table, and a service table not an array.
        format!("service = []\n{}", svc("a", "192.0.2.1", "10.0.0.1")),
        format!("{}[service]\nname = \"x\"\n", svc("a", "192.0.2.1", "10.0.0.1")),
    ];
    for text in &cases {
        let mut l = Loader::default();
        let e = l.parse_on(text, "t.toml", &host).expect_err(text);
        assert!(e.0.iter().all(|e| e.line > 0), "{e}");
        assert_eq!(Err(e), whole(text, &host), "{text}");
        // And after a valid load that filled the loader.
        let mut warm = Loader::default();
        warm.parse_on(&svc("a", "192.0.2.1", "10.0.0.1"), "t.toml", &host)
            .expect("valid");
        same(&mut warm, text, &host);
    }
}

/// `n` services of 3 real servers; service `mid`'s first server at weight `w`.
fn big(n: usize, mid: usize, w: u32) -> String {
    let mut t = String::from("[director]\nstatus_listen = \"127.0.0.1:9180\"\n");
    for i in 0..n {
        t += &format!(
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.{}.{}\"\nport = 80\n",
            i / 250,
            i % 250 + 1
        );
        for j in 0..3 {
            let weight = if i == mid && j == 0 { w } else { j + 1 };
            t += &format!(
                "[[service.real_server]]\naddress = \"10.{}.{}.{}\"\nweight = {weight}\n",
                j + 1,
                i / 250,
                i % 250 + 1
            );
        }
    }
    t
}

#[test]
fn a_reload_reads_only_the_blocks_that_changed_and_a_refused_one_keeps_them() {
    let host = Host::default();
    let mut l = Loader::default();
    let first = big(600, 300, 1);
    same(&mut l, &first, &host);
    assert_eq!(l.last_read(), fast(600, 600));

    let changed = big(600, 300, 100);
    same(&mut l, &changed, &host);
    assert_eq!(l.last_read(), fast(600, 1));

    // A refused reload (a bad weight in another block): the errors of the whole file,
    // and the blocks kept are still those of the accepted config.
    let bad = changed.replace("name = \"s7\"\nvip", "name = \"s7\"\nport = 81\nvip");
    assert!(l.parse_on(&bad, "t.toml", &host).is_err());
    same(&mut l, &bad, &host);
    assert!(l.last_read().whole);
    same(&mut l, &big(600, 300, 1), &host);
    assert_eq!(l.last_read(), fast(600, 1));

    // A service added at the top: every block moved, the others found by their text.
    let moved = format!(
        "[[service]]\nname = \"new\"\nvip = \"198.19.0.1\"\nport = 80\n{}",
        big(600, 300, 1)
    );
    same(&mut l, &moved, &host);
    assert_eq!(l.last_read(), fast(601, 1));

    // Another host (a gateway that is now a VIP): every block read again.
    let gw: IpAddr = "198.18.0.5".parse().expect("ip");
    let other = Host {
        gateways: vec![gw],
        base: None,
    };
    same(&mut l, &first, &other);
    assert!(l.last_read().whole, "the VIP that is a gateway is an error");
    let fine = Host {
        gateways: vec!["192.0.2.254".parse().expect("ip")],
        base: None,
    };
    same(&mut l, &first, &fine);
    assert_eq!(l.last_read(), fast(600, 600));
}

#[test]
fn files_the_cut_declines_are_read_as_one_document() {
    let host = Host::default();
    for text in [
        // A multi-line string.
        "[[service]]\nname = \"\"\"web\"\"\"\nvip = \"192.0.2.1\"\nport = 80\n",
        // A sub-table after another section: TOML gives it to the last service.
        "[[service]]\nname = \"a\"\nvip = \"192.0.2.1\"\nport = 80\n[sync]\ninterface = \"lo\"\nsync_id = 1\n\
         [service.check]\ntype = \"tcp\"\n",
        // A header with a quoted key.
        "[[service]]\nname = \"a\"\nvip = \"192.0.2.1\"\nport = 80\n[service.\"check\"]\ntype = \"tcp\"\n",
    ] {
        let mut l = Loader::default();
        same(&mut l, text, &host);
        assert!(l.last_read().whole, "{text}");
    }
}

#[test]
fn a_block_changed_in_place_into_a_clash_across_services_is_refused() {
    // A reload that changes blocks only where the checks across services do not look
    // (a weight) keeps their verdict; any change they see has them run again.
    let host = Host::default();
    let agents = "[agents]\nca = \"/c\"\ncert = \"/d\"\nkey = \"/k\"\n";
    let svc = |name: &str, key: &str, rs: &str, extra: &str| {
        format!("[[service]]\nname = \"{name}\"\n{key}{extra}[[service.real_server]]\naddress = \"{rs}\"\nweight = 1\n")
    };
    let mark = lvsdr::model::CHECK_MARK_BASE + 1;
    let fwmark = format!("fwmark = {mark}\nvips = [\"192.0.2.9\"]\n");
    let base = |a: &str, b: &str| {
        format!(
            "{agents}{a}{b}{}",
            svc(
                "m",
                &fwmark,
                "10.0.0.3",
                "[service.check]\ntype = \"none\"\n"
            )
        )
    };
    let two = "[[service.real_server]]\naddress = \"10.0.0.5\"\n";
    let via = "[service.check]\ntype = \"tcp\"\nvia = \"vip\"\n";
    let a_with =
        |extra: &str| svc("a", "vip = \"192.0.2.1\"\nport = 80\n", "10.0.0.1", extra) + two;
    let a = a_with("");
    let b = svc("b", "vip = \"192.0.2.2\"\nport = 80\n", "10.0.0.2", "");
    let valid = base(&a, &b);
    let mut l = Loader::default();
    if let Err(e) = l.parse_on(&valid, "t.toml", &host) {
        panic!("{e}\n{valid}");
    }

    // A weight: one block read, nothing across it changed.
    same(
        &mut l,
        &base(&a, &b.replace("weight = 1", "weight = 7")),
        &host,
    );
    assert_eq!(l.last_read(), fast(3, 1));
    same(&mut l, &valid, &host);

    let clashes = [
        // b takes a's name; b takes a's address and port.
        base(&a, &b.replace("name = \"b\"", "name = \"a\"")),
        base(&a, &b.replace("192.0.2.2", "192.0.2.1")),
        // b's real server is a's VIP.
        base(&a, &b.replace("10.0.0.2", "192.0.2.1")),
        // m's VIPs gone (its real servers have agents).
        base(&a, &b).replace("vips = [\"192.0.2.9\"]\n", ""),
        // Its two real servers checked through the DR path: their marks reach m's.
        base(&a_with(via), &b),
    ];
    for text in &clashes {
        assert!(l.parse_on(text, "t.toml", &host).is_err(), "{text}");
        same(&mut l, text, &host);
        same(&mut l, &valid, &host);
        assert_eq!(l.last_read(), fast(3, 0), "the kept blocks stayed");
    }
    // One real server through the DR path takes a mark below m's: valid.
    let one_via = base(
        &svc(
            "a",
            "vip = \"192.0.2.1\"\nport = 80\n",
            "10.0.0.1",
            "[service.check]\ntype = \"tcp\"\nvia = \"vip\"\n",
        ),
        &b,
    );
    same(&mut l, &one_via, &host);
    assert!(l.parse_on(&one_via, "t.toml", &host).is_ok());
    // m without VIPs is valid while its real server has no agent, not once it has.
    let bare = valid.replace("vips = [\"192.0.2.9\"]\n", "");
    let no_agent = bare.replace("\"10.0.0.3\"\n", "\"10.0.0.3\"\nagent = false\n");
    same(&mut l, &no_agent, &host);
    assert!(l.parse_on(&no_agent, "t.toml", &host).is_ok());
    let agent = no_agent.replace("agent = false", "agent = true");
    assert!(l.parse_on(&agent, "t.toml", &host).is_err(), "{agent}");
    same(&mut l, &agent, &host);
    // Without [agents] (the rest changed), and back.
    same(&mut l, &valid.replace(agents, ""), &host);
    same(&mut l, &valid, &host);
}

#[test]
fn an_empty_file_is_refused_and_the_loader_keeps_what_it_had() {
    // A reload that reads a file between its truncation and its write sees nothing;
    // parsed, that is a valid config without services, and every service would go.
    let dir = std::env::temp_dir().join(format!("lvsdr-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("director.toml");
    let mut l = Loader::default();
    std::fs::write(&path, BASE).expect("write");
    let before = l.load(&path).expect("the base config loads");
    for empty in ["", "\n", "  \n\t\n"] {
        std::fs::write(&path, empty).expect("write");
        let e = l
            .load(&path)
            .expect_err("an empty file must be refused")
            .to_string();
        assert!(e.contains("director.toml") && e.contains("empty"), "{e}");
    }
    // What the loader kept is the base config's: read again, nothing is new.
    std::fs::write(&path, BASE).expect("write");
    let after = l.load(&path).expect("the base config loads again");
    assert_eq!(after.services.len(), before.services.len());
    // (Read block by block, every block kept: a whole-document read also says 0 read.)
    let kept = l.last_read();
    assert!(!kept.whole && kept.blocks > 0 && kept.read == 0, "{kept:?}");
    // A config without services says so with its sections.
    std::fs::write(&path, "[director]\n").expect("write");
    assert_eq!(
        l.load(&path).expect("no services is fine").services.len(),
        0
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
