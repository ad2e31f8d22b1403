//! The director's config: the documented example parses, and bad configs get every
//! error at once, each with its place.

use std::net::IpAddr;
use std::time::Duration;

use lvsdr::config::{self, ConfigErrors};
use lvsdr::health::CheckKind;
use lvsdr::ipvs::{Forwarding, Scheduler, ServiceFlags, ServiceKey};
use lvsdr::model::{OnExit, OnFailure};

/// Valid, and read alike block by block (`config::parse`) and as one document.
fn valid(text: &str) -> lvsdr::model::Desired {
    let d = config::parse(text, "t.toml").unwrap_or_else(|e| panic!("rejected: {e}"));
    let whole = config::parse_whole(text, "t.toml", &config::Host::default());
    assert_eq!(whole.as_ref(), Ok(&d), "read as one document");
    d
}

fn errors(text: &str) -> Vec<String> {
    match config::parse(text, "t.toml") {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(ConfigErrors(es)) => es.iter().map(|e| e.to_string()).collect(),
    }
}

const BASE: &str = r#"
[director]
status_listen = "127.0.0.1:9180"
"#;

#[test]
fn the_documented_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/director.toml");
    let d = config::load(std::path::Path::new(path)).expect("conf/director.toml is valid");
    assert_eq!(d.director.resync_interval, Duration::from_secs(30));
    assert_eq!(d.director.on_exit, OnExit::Keep);
    assert_eq!(d.services.len(), 3);
    let web = &d.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.service.settings.scheduler, Scheduler::Wrr);
    assert!(web
        .service
        .settings
        .flags
        .contains(ServiceFlags::PERSISTENT));
    assert_eq!(web.service.settings.timeout, 300);
    assert_eq!(web.on_failure, OnFailure::Weight0);
    assert_eq!(web.real_servers.len(), 2);
    assert_eq!(web.real_servers[1].dest.settings.weight, 200);
    assert_eq!(web.real_servers[1].dest.port, 80);
    assert_eq!(
        web.real_servers[0].dest.settings.forwarding,
        Forwarding::Route
    );
    let c0 = web.real_servers[0].check.as_ref().expect("check");
    let c1 = web.real_servers[1].check.as_ref().expect("check");
    match (&c0.kind, &c1.kind) {
        (CheckKind::Http(a), CheckKind::Http(b)) => {
            assert_eq!((a.path.as_str(), b.path.as_str()), ("/healthz", "/status"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (c1.rise, c1.fall, c1.interval),
        (2, 3, Duration::from_secs(2))
    );
    assert_eq!(
        web.sorry_server.map(|s| s.addr),
        Some("192.0.2.50".parse::<IpAddr>().expect("ip"))
    );
    assert!(d.services[1]
        .service
        .settings
        .flags
        .contains(ServiceFlags::ONEPACKET));
    assert!(matches!(
        d.services[2].service.key,
        ServiceKey::Fwmark { mark: 7, .. }
    ));
    // The web service's two real servers have different checks, dns shares nothing: 5.
    assert_eq!(d.checks().len(), 5);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let d = valid(
        r#"
[[service]]
name = "a"
vip = "2001:db8::10"
port = 443
[[service.real_server]]
address = "2001:db8::11"
"#,
    );
    assert_eq!(d.director.status_listen.to_string(), "127.0.0.1:9180");
    assert_eq!(d.director.drain_timeout, Duration::from_secs(60));
    let s = &d.services[0];
    assert_eq!(s.service.settings.scheduler, Scheduler::Wrr);
    assert_eq!(s.real_servers[0].dest.settings.weight, 1);
    let c = s.real_servers[0].check.as_ref().expect("default check");
    assert_eq!(c.kind, CheckKind::Tcp);
    assert_eq!(c.target.to_string(), "[2001:db8::11]:443");
}

/// sh and mh fall back by default: without it, a server at weight 0 (failed, drained,
/// leaving) keeps its share of the hash and the kernel refuses those clients (the
/// scenario's persistent client got "connection refused" while its server drained).
/// `scheduler_flags = []` asks for strict hashing.
#[test]
fn hashing_schedulers_fall_back_unless_told_otherwise() {
    let svc = |sched: &str, flags: &str| {
        let d = valid(&format!(
            "[[service]]\nname = \"a\"\nvip = \"192.0.2.1\"\nport = 80\nscheduler = \"{sched}\"\n{flags}\
             [[service.real_server]]\naddress = \"10.0.0.1\"\n"
        ));
        d.services[0].service.settings.flags
    };
    assert_eq!(svc("mh", ""), ServiceFlags::SCHED1);
    assert_eq!(svc("sh", ""), ServiceFlags::SCHED1);
    assert_eq!(svc("mh", "scheduler_flags = []\n"), ServiceFlags::empty());
    assert_eq!(
        svc("mh", "scheduler_flags = [\"mh-port\"]\n"),
        ServiceFlags::SCHED2
    );
    assert_eq!(svc("wrr", ""), ServiceFlags::empty());
    let strict = valid(
        "[[service]]\nname = \"a\"\nvip = \"192.0.2.1\"\nport = 80\nscheduler = \"mh\"\n\
         scheduler_flags = [\"mh-port\"]\n[[service.real_server]]\naddress = \"10.0.0.1\"\n",
    );
    let w = config::warnings(&strict);
    assert!(
        w.iter().any(|w| w.contains("without \"mh-fallback\"")),
        "{w:?}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_place() {
    let e = errors(&format!("{BASE}resync = \"5s\"\n"));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.toml:4:1: unknown field `resync`"),
        "{e:?}"
    );
}

#[test]
fn every_error_is_reported_at_once_with_line_and_column() {
    let text = r#"[director]
on_exit = "maybe"

[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
scheduler = "fastest"
[[service.real_server]]
address = "10.0.0.11"
port = 8080
[[service.real_server]]
address = "10.0.0.12"
weight = 70000
[[service.real_server]]
address = "2001:db8::12"
[[service.real_server]]
address = "10.0.0.13"
[[service.real_server]]
address = "10.0.0.13"

[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
[[service.real_server]]
address = "10.0.0.11"
"#;
    let e = errors(text);
    let expect = [
        "t.toml:2:11: [director]: unknown on_exit \"maybe\" (expected keep, flush)",
        "t.toml:8:13: service \"web\": unknown scheduler \"fastest\"",
        "t.toml:11:8: service \"web\", real_server 10.0.0.11: port 8080 differs from the service port 80: DR cannot rewrite ports",
        "t.toml:14:10: service \"web\", real_server 10.0.0.12: weight 70000 out of range 0-65535",
        "t.toml:16:11: service \"web\", real_server 2001:db8::12: mixed address families",
        "t.toml:19:1: service \"web\": duplicate real server 10.0.0.13:80 (first at line 17)",
        "t.toml:23:8: duplicate service name \"web\" (first at line 5)",
        "t.toml:22:1: service \"web\": service tcp 192.0.2.10:80 is already defined by service \"web\"",
    ];
    for want in expect {
        assert!(
            e.iter().any(|got| got.starts_with(want)),
            "missing {want:?} in:\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));
}

#[test]
fn check_and_service_options_are_validated() {
    let text = r#"
[[service]]
name = "s"
vip = "192.0.2.10"
port = 80
persistence_netmask = "255.255.0.0"
[service.check]
type = "http"
path = "healthz"
expect_body = "(unclosed"
interval = "1s"
timeout = "2s"
rise = 0
query = "x"
[[service.real_server]]
address = "10.0.0.11"

[[service]]
name = "m"
fwmark = 3
port = 80
[[service.real_server]]
address = "10.0.0.12"
"#;
    let e = errors(text).join("\n");
    for want in [
        "persistence_netmask needs persistence",
        "path must start with /",
        "expect_body is not a valid regex",
        "timeout is longer than interval",
        "rise 0 out of range 1-100",
        "query does not apply to this check type",
        "fwmark and port exclude each other",
        "the real server has no port (fwmark service): set check.port",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn an_http_check_path_or_host_that_would_break_the_request_is_refused() {
    let cfg = |check: &str| {
        format!(
            "[[service]]\nname = \"s\"\nvip = \"192.0.2.10\"\nport = 80\n[service.check]\ntype = \"http\"\n{check}\n[[service.real_server]]\naddress = \"10.0.0.11\"\n"
        )
    };
    let e = errors(&cfg("path = \"/a b\"")).join("\n");
    assert!(e.contains("path must not contain spaces"), "{e}");
    let e = errors(&cfg("path = \"/a\\r\\nX-Evil: 1\"")).join("\n");
    assert!(e.contains("path must not contain spaces"), "{e}");
    let e = errors(&cfg("host = \"a\\r\\nX-Evil: 1\"")).join("\n");
    assert!(e.contains("host must not contain spaces"), "{e}");
    assert!(lvsdr::config::parse(
        &cfg("path = \"/health?x=%20\"\nhost = \"www.example\""),
        "t.toml"
    )
    .is_ok());
}

#[test]
fn missing_required_fields_are_named() {
    let e = errors("[[service]]\nname = \"x\"\nport = 80\n").join("\n");
    assert!(
        e.contains("t.toml:1:1: service \"x\": missing vip (or fwmark)"),
        "{e}"
    );
    let e = errors("[[service]]\nvip = \"192.0.2.1\"\n").join("\n");
    assert!(e.contains("missing field `name`"), "{e}");
}

#[test]
fn agents_get_the_vips_of_their_services() {
    let d = valid(
        r#"
[agents]
ca = "/etc/lvsdr/ca.pem"
cert = "/etc/lvsdr/director.pem"
key = "/etc/lvsdr/director.key"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
[[service.real_server]]
address = "10.0.0.11"
[[service.real_server]]
address = "10.0.0.12"
agent = false
[[service]]
name = "web6"
vip = "2001:db8::10"
port = 80
[[service.real_server]]
address = "2001:db8::11"
[[service]]
name = "dns"
vip = "192.0.2.53"
port = 53
protocol = "udp"
[[service.real_server]]
address = "10.0.0.11"
"#,
    );
    let a = d.agents.as_ref().expect("[agents]");
    assert_eq!(
        (a.port, a.require, a.push_interval),
        (9181, true, Duration::from_secs(30))
    );
    let sets = d.agent_vips();
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(
        sets[&ip("10.0.0.11")],
        vec![ip("192.0.2.10"), ip("192.0.2.53")]
    );
    assert_eq!(sets[&ip("2001:db8::11")], vec![ip("2001:db8::10")]);
    assert!(
        !sets.contains_key(&ip("10.0.0.12")),
        "agent = false is set up by hand"
    );

    let none = valid("[[service]]\nname = \"w\"\nvip = \"192.0.2.1\"\nport = 80\n[[service.real_server]]\naddress = \"10.0.0.1\"\n");
    assert!(
        none.agents.is_none() && none.agent_vips().is_empty(),
        "no [agents]: no agents at all"
    );
}

const AGENTS: &str = r#"
[agents]
ca = "/etc/lvsdr/ca.pem"
cert = "/etc/lvsdr/director.pem"
key = "/etc/lvsdr/director.key"
"#;

#[test]
fn a_dual_stack_host_names_one_agent_and_a_fwmark_service_lists_its_vips() {
    let d = valid(&format!(
        r#"{AGENTS}confirm_grace = "10s"
[[service]]
name = "web6"
vip = "2001:db8::10"
port = 80
[[service.real_server]]
address = "2001:db8::11"
agent = "10.0.0.11"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
[[service.real_server]]
address = "10.0.0.11"
[[service]]
name = "marked"
fwmark = 7
vips = ["192.0.2.20", "192.0.2.21"]
check = {{ type = "none" }}
[[service.real_server]]
address = "10.0.0.11"
"#
    ));
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let sets = d.agent_vips();
    assert_eq!(sets.len(), 1, "one agent, one set: {sets:?}");
    assert_eq!(
        sets[&ip("10.0.0.11")],
        ["192.0.2.10", "192.0.2.20", "192.0.2.21", "2001:db8::10"]
            .map(ip)
            .to_vec()
    );
    assert_eq!(
        d.agents.as_ref().map(|a| a.confirm_grace),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn vips_that_cannot_work_are_refused_with_their_place() {
    let es = errors(&format!(
        r#"{AGENTS}[[service]]
name = "a"
vip = "192.0.2.10"
port = 80
[[service.real_server]]
address = "192.0.2.10"
[[service]]
name = "b"
vip = "192.0.2.11"
port = 80
[[service.real_server]]
address = "192.0.2.10"
[[service]]
name = "m"
fwmark = 3
check = {{ type = "none" }}
[[service.real_server]]
address = "10.0.0.5"
[[service]]
name = "n"
vip = "192.0.2.12"
port = 80
vips = ["192.0.2.13"]
"#
    ));
    let want = [
        "t.toml:11:11: service \"a\": real server 192.0.2.10 is the VIP of service \"a\"",
        "t.toml:17:11: service \"b\": real server 192.0.2.10 is the VIP of service \"a\"",
        "t.toml:18:1: service \"m\": its real servers have agents: list the VIPs they must hold in `vips`",
        "t.toml:28:8: service \"n\": vips applies to fwmark services only",
    ];
    for w in want {
        assert!(es.iter().any(|e| e.starts_with(w)), "{w}\nnot in {es:#?}");
    }

    // The director's default gateway cannot be a VIP.
    let host = config::Host {
        gateways: vec!["192.0.2.1".parse().expect("ip")],
        base: None,
    };
    let text = "[[service]]\nname = \"w\"\nvip = \"192.0.2.1\"\nport = 80\n";
    let e = config::parse_on(text, "t.toml", &host).expect_err("gateway accepted");
    assert!(
        e.to_string().contains(
            "t.toml:3:7: service \"w\": vip 192.0.2.1 is this director's default gateway"
        ),
        "{e}"
    );
}

#[test]
fn relative_agent_key_paths_resolve_against_the_credentials_or_config_folder() {
    let host = config::Host {
        gateways: vec![],
        base: Some("/run/credentials/lvsdr-director.service".into()),
    };
    let text =
        "[agents]\nca = \"ca.pem\"\ncert = \"director.pem\"\nkey = \"/etc/lvsdr/director.key\"\n";
    let d = config::parse_on(text, "t.toml", &host).expect("valid");
    let a = d.agents.expect("agents");
    assert_eq!(
        a.ca,
        std::path::Path::new("/run/credentials/lvsdr-director.service/ca.pem")
    );
    assert_eq!(
        a.key,
        std::path::Path::new("/etc/lvsdr/director.key"),
        "absolute paths stay"
    );
}

#[test]
fn durations_are_bounded() {
    let es = errors(
        "[director]\nresync_interval = \"0s\"\ndrain_timeout = \"600000000years\"\nfull_resync_interval = \"31days\"\n",
    );
    assert!(
        es.iter()
            .any(|e| e.contains("t.toml:2:19: [director]: resync_interval must be more than 0")),
        "{es:#?}"
    );
    assert!(
        es.iter()
            .any(|e| e.contains("drain_timeout") && e.contains("longer than 30 days")),
        "{es:#?}"
    );
    assert!(
        es.iter()
            .any(|e| e.contains("full_resync_interval \"31days\" is longer than 30 days")),
        "{es:#?}"
    );
}

#[test]
fn default_gateways_are_read_from_the_kernel_listings() {
    let route =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
              20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
    let gws = config::default_gateways(route, v6);
    assert_eq!(
        gws,
        vec![
            "192.0.2.1".parse::<IpAddr>().expect("ip"),
            "2001:db8::1".parse().expect("ip")
        ]
    );
}

#[test]
fn identical_checks_across_services_run_once() {
    let d = valid(
        r#"
[[service]]
name = "a"
vip = "192.0.2.10"
port = 80
[[service.real_server]]
address = "10.0.0.11"
[[service]]
name = "b"
vip = "192.0.2.11"
port = 80
[[service.real_server]]
address = "10.0.0.11"
"#,
    );
    assert_eq!(
        d.checks().len(),
        1,
        "the same tcp check of 10.0.0.11:80 runs once"
    );
}

#[test]
fn a_half_open_check_and_the_full_resync_interval_are_read() {
    let d = valid(
        r#"
[director]
full_resync_interval = "10m"
[[service]]
name = "a"
vip = "192.0.2.10"
port = 80
[service.check]
type = "tcp-syn"
[[service.real_server]]
address = "10.0.0.11"
"#,
    );
    assert_eq!(d.director.full_resync_interval, Duration::from_secs(600));
    let c = &d.checks()[0];
    assert_eq!(c.kind, CheckKind::TcpSyn);
    assert_eq!(c.label(), "tcp-syn 10.0.0.11:80");
    let bad = errors(
        "[[service]]\nname = \"a\"\nvip = \"192.0.2.10\"\nport = 80\n[service.check]\ntype = \"tcp-syn\"\npath = \"/\"\n[[service.real_server]]\naddress = \"10.0.0.11\"\n",
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("path does not apply"), "{bad:?}");
}

#[test]
fn checks_through_the_vip_get_a_mark_and_a_fwmark_service_per_real_server() {
    let svc = |name: &str, port: u16, kind: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nvip = \"192.0.2.10\"\nport = {port}\n\
             [service.check]\ntype = \"{kind}\"\nvia = \"vip\"\n\
             [[service.real_server]]\naddress = \"10.0.0.12\"\n\
             [[service.real_server]]\naddress = \"10.0.0.11\"\n"
        )
    };
    let d = valid(&format!("{}{}", svc("a", 80, "http"), svc("b", 25, "smtp")));
    // Two real server addresses: two check services, marks in address order.
    let checks: Vec<_> = d
        .services
        .iter()
        .filter(|s| s.name.starts_with("check-via-vip-"))
        .collect();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].name, "check-via-vip-10.0.0.11");
    assert_eq!(
        checks[0].service.key,
        lvsdr::ipvs::ServiceKey::Fwmark {
            mark: lvsdr::model::CHECK_MARK_BASE,
            family: lvsdr::ipvs::Family::V4
        }
    );
    assert_eq!(checks[0].real_servers.len(), 1);
    assert!(checks[0].real_servers[0].check.is_none());
    let a = &d.services[0];
    let via = |i: usize| {
        a.real_servers[i]
            .check
            .as_ref()
            .and_then(|c| c.via)
            .expect("via")
    };
    assert_eq!(via(0).mark, lvsdr::model::CHECK_MARK_BASE + 1); // 10.0.0.12
    assert_eq!(via(1).mark, lvsdr::model::CHECK_MARK_BASE);
    assert_eq!(via(0).vip, "192.0.2.10:80".parse().expect("addr"));

    // Where it cannot work: a clear error each.
    for (bad, why) in [
        (
            svc("a", 443, "https"),
            "applies to tcp, http, tcp-expect and smtp",
        ),
        (
            svc("a", 80, "tcp-syn"),
            "applies to tcp, http, tcp-expect and smtp",
        ),
        (
            svc("a", 80, "http").replace("port = 80\n", "port = 80\nforwarding = \"nat\"\n"),
            "forwarded by DR",
        ),
        (
            format!(
                "{}[[service]]\nname = \"m\"\nfwmark = {}\n[service.check]\ntype = \"none\"\n\
                 [[service.real_server]]\naddress = \"10.0.0.13\"\n",
                svc("a", 80, "http"),
                lvsdr::model::CHECK_MARK_BASE + 1
            ),
            "one lvsdr gives to checks through the DR path",
        ),
        (
            svc("a", 80, "http").replace("via = \"vip\"", "via = \"elsewhere\""),
            "\"server\" (default) or \"vip\"",
        ),
    ] {
        let e = errors(&bad);
        assert!(e.iter().any(|e| e.contains(why)), "{why}: {e:#?}");
    }
}

#[test]
fn announce_and_sync_are_read_and_their_mistakes_named() {
    let svc = "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\nscheduler = \"mh\"\n\
               [[service.real_server]]\naddress = \"10.0.0.11\"\n";
    let d = valid(&format!(
        "[announce]\nmin_up = 2\nwithdraw_grace = \"2s\"\n[sync]\ninterface = \"lo\"\nsync_id = 7\nttl = 2\n{svc}"
    ));
    let a = d.announce.as_ref().expect("announce");
    assert_eq!((a.device.as_str(), a.min_up), ("lvsdr0", 2));
    assert_eq!(a.withdraw_grace, Duration::from_secs(2));
    let s = d.sync.as_ref().expect("sync");
    assert_eq!((s.interface.as_str(), s.sync_id, s.ttl), ("lo", 7, Some(2)));
    assert!(
        config::warnings(&d).is_empty(),
        "{:?}",
        config::warnings(&d)
    );
    // wrr behind ECMP: a warning, not an error.
    let wrr = valid(&format!("[announce]\n{}", svc.replace("\"mh\"", "\"wrr\"")));
    assert!(config::warnings(&wrr)
        .iter()
        .any(|w| w.contains("mh (or sh)")));
    for (bad, why) in [
        ("[sync]\ninterface = \"eth0\"\nsync_id = 300\n", "sync_id"),
        (
            "[sync]\ninterface = \"eth0\"\nsync_id = 1\nmcast_group = \"10.0.0.1\"\n",
            "not a multicast address",
        ),
        (
            "[announce]\ndevice = \"a-very-long-device-name\"\n",
            "not an interface name",
        ),
        ("[announce]\nmin_up = 0\n", "min_up"),
        ("[announce]\nbird = 1\n", "unknown field"),
        // Accepted before, then refused by the kernel on every pass.
        (
            "[sync]\ninterface = \"eth 0\"\nsync_id = 1\n",
            "interface \"eth 0\" is not an interface name",
        ),
        (
            "[sync]\ninterface = \"../x\"\nsync_id = 1\n",
            "not an interface name",
        ),
        // Raised to 1024 by the kernel: the daemons never matched the config.
        (
            "[sync]\ninterface = \"lo\"\nsync_id = 1\nmaxlen = 100\n",
            "maxlen",
        ),
    ] {
        let e = errors(&format!("{bad}{svc}"));
        assert!(e.iter().any(|e| e.contains(why)), "{why}: {e:#?}");
    }
    // A name this host lacks: valid (the config may be for another host), warned.
    let missing = valid(&format!(
        "[sync]\ninterface = \"nosuchif0\"\nsync_id = 1\n{svc}"
    ));
    assert!(
        config::warnings(&missing)
            .iter()
            .any(|w| w.contains("\"nosuchif0\" does not exist on this host")),
        "{:?}",
        config::warnings(&missing)
    );
}

/// The kernel refuses a lower threshold above the upper one or without one (EINVAL,
/// then held): check-config accepted both.
#[test]
fn thresholds_the_kernel_refuses_are_refused() {
    let svc = |extra: &str| {
        format!(
            "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n\
             [[service.real_server]]\naddress = \"10.0.0.11\"\n{extra}"
        )
    };
    let e = errors(&svc("upper_threshold = 10\nlower_threshold = 20\n"));
    assert!(
        e.iter()
            .any(|e| e.contains("lower_threshold 20 is above upper_threshold 10")),
        "{e:#?}"
    );
    let e = errors(&svc("lower_threshold = 5\n"));
    assert!(
        e.iter().any(|e| e.contains("needs an upper_threshold")),
        "{e:#?}"
    );
    let d = valid(&svc("upper_threshold = 20\nlower_threshold = 10\n"));
    let t = d.services[0].real_servers[0].dest.settings;
    assert_eq!((t.upper_threshold, t.lower_threshold), (20, 10));
}

/// `[[notify]]`: exactly one of `exec` and `url`, an http:// URL, known event kinds;
/// every kind by default.
#[test]
fn notify_hooks_are_validated() {
    let d = valid(
        "[[notify]]\nexec = [\"/usr/local/bin/hook\", \"-v\"]\n\
         [[notify]]\nurl = \"http://127.0.0.1:9/events\"\nevents = [\"server\", \"admin\"]\ntimeout = \"2s\"\n",
    );
    assert_eq!(d.notify.len(), 2);
    assert_eq!(d.notify[0].events, ["server", "admin", "vip", "config"]);
    assert_eq!(d.notify[1].timeout, Duration::from_secs(2));
    let e = errors(
        "[[notify]]\nexec = [\"/x\"]\nurl = \"http://a/\"\n\
         [[notify]]\nurl = \"ftp://a/\"\n\
         [[notify]]\nexec = [\"/x\"]\nevents = [\"reboot\"]\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("exactly one of exec and url"), "{e:?}");
    assert!(e[1].contains("not an http:// URL"), "{e:?}");
    assert!(
        e[2].contains("\"reboot\" is not one of server, admin, vip, config"),
        "{e:?}"
    );
}
