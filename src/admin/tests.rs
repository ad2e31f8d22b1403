//! Overrides: the words operators type, what each covers, and what requests do.

use std::net::IpAddr;

use super::handle::{handle, Caller};
use super::protocol::Request;
use super::*;
use crate::ipvs::{Dest, DestSettings, Protocol, Scheduler, Service, ServiceKey, ServiceSettings};
use crate::model::{DesiredService, OnFailure};
use crate::reconcile::Observed;

fn rs(addr: &str, port: u16, weight: u32) -> RealServer {
    RealServer {
        dest: Dest {
            addr: addr.parse().expect("ip"),
            port,
            settings: DestSettings::route(weight),
        },
        check: None,
        agent: None,
        admin: None,
        slow_start: None,
    }
}

fn config() -> Desired {
    let svc = |name: &str, port: u16, servers| {
        let key = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "192.0.2.10".parse::<IpAddr>().expect("ip"),
            port,
        };
        DesiredService {
            name: name.into(),
            service: Service {
                settings: ServiceSettings::new(Scheduler::Wrr, key.family()),
                key,
            },
            on_failure: OnFailure::Weight0,
            sorry_server: None,
            real_servers: servers,
            vips: Vec::new(),
        }
    };
    let mut d = crate::config::parse("[director]\n", "t.toml").expect("config");
    d.services = vec![
        svc(
            "web",
            80,
            vec![rs("10.0.0.11", 80, 10), rs("10.0.0.12", 80, 10)],
        ),
        svc("tls", 443, vec![rs("10.0.0.11", 443, 3)]),
    ]
    .into_iter()
    .map(std::sync::Arc::new)
    .collect();
    d
}

#[test]
fn weights_and_targets_parse_as_operators_write_them() {
    assert_eq!("3".parse(), Ok(WeightSpec::Absolute(3)));
    assert_eq!("50%".parse(), Ok(WeightSpec::Percent(50)));
    assert!("65536".parse::<WeightSpec>().is_err());
    assert!("-1".parse::<WeightSpec>().is_err());
    assert!("1001%".parse::<WeightSpec>().is_err());
    assert_eq!(WeightSpec::Percent(50).resolve(3), 2, "1.5 rounds up");
    assert_eq!(
        WeightSpec::Percent(1).resolve(3),
        1,
        "above 0% keeps some traffic"
    );
    assert_eq!(WeightSpec::Percent(0).resolve(3), 0);
    let t: Target = "[2001:db8::1]:80".parse().expect("v6");
    assert_eq!(t.to_string(), "[2001:db8::1]:80");
    assert_eq!("2001:db8::1".parse::<Target>().expect("v6").port, None);
    let e = "web1".parse::<Target>().expect_err("a name");
    assert!(e.to_string().contains("\"web1\""), "{e}");
}

#[test]
fn overrides_round_trip_through_json_and_refuse_unknown_fields() {
    let o = Override {
        server: "10.0.0.11:80".parse().expect("t"),
        service: Some("web".into()),
        state: Kind::Weight,
        weight: Some(WeightSpec::Percent(25)),
        reason: "canary".into(),
        by: 1000,
        since: 1_700_000_000,
    };
    let all = Overrides {
        overrides: vec![o],
        ..Overrides::default()
    };
    let text = serde_json::to_string(&all).expect("json");
    assert!(text.contains("\"weight\":\"25%\""), "{text}");
    assert_eq!(serde_json::from_str::<Overrides>(&text).expect("back"), all);
    let bad = text.replace("\"by\"", "\"uid\"");
    assert!(serde_json::from_str::<Overrides>(&bad).is_err());
}

#[test]
fn the_latest_override_wins_and_one_whose_server_left_is_pruned() {
    let d = config();
    let mut o = Overrides::default();
    let ov = |server: &str, service: Option<&str>, state| Override {
        server: server.parse().expect("t"),
        service: service.map(Into::into),
        state,
        weight: None,
        reason: String::new(),
        by: 0,
        since: 0,
    };
    o.set(ov("10.0.0.11", None, Kind::Drain));
    o.set(ov("10.0.0.11", Some("tls"), Kind::Disabled));
    let marked = o.apply(&d);
    let state = |svc: usize, i: usize| {
        marked.services[svc].real_servers[i]
            .admin
            .as_ref()
            .map(|a| a.state)
    };
    assert_eq!(state(0, 0), Some(crate::model::AdminState::Drain));
    assert_eq!(state(1, 0), Some(crate::model::AdminState::Disabled));
    assert_eq!(state(0, 1), None);
    o.set(ov("10.0.0.11", None, Kind::Drain));
    assert_eq!(
        o.overrides.len(),
        2,
        "the same scope is replaced, not added"
    );
    assert_eq!(
        o.apply(&d).services[1].real_servers[0]
            .admin
            .as_ref()
            .map(|a| a.state),
        Some(crate::model::AdminState::Drain),
        "set again later: the drain of every service wins in tls too"
    );
    let mut smaller = d.clone();
    smaller.services.truncate(1);
    std::sync::Arc::make_mut(&mut smaller.services[0])
        .real_servers
        .remove(0);
    let gone = o.prune(&smaller);
    assert_eq!(gone.len(), 2);
    assert!(o.overrides.is_empty());
}

#[test]
fn requests_name_what_they_cannot_find_and_enable_says_what_still_holds() {
    let d = config();
    let mut o = Overrides::default();
    let me = Caller { uid: 0, now: 5 };
    let obs = Observed::default();
    let ask = |o: &mut Overrides, j: &str| {
        let r = serde_json::from_str::<Request>(j).expect("request");
        handle(r, o, &d, &obs, me)
    };
    let (r, changed) = ask(&mut o, r#"{"op":"drain","servers":["10.0.0.99"]}"#);
    assert!(!changed);
    assert_eq!(
        r.error.as_deref(),
        Some("10.0.0.99 is not a real server of any service in the config")
    );
    let (r, _) = ask(
        &mut o,
        r#"{"op":"drain","servers":["10.0.0.11"],"service":"db"}"#,
    );
    assert_eq!(
        r.error.as_deref(),
        Some("no service named \"db\" in the config")
    );
    let (r, changed) = ask(
        &mut o,
        r#"{"op":"drain","servers":["10.0.0.11"],"reason":"kernel upgrade"}"#,
    );
    assert!(changed && r.ok, "{r:?}");
    assert_eq!(
        r.message.as_deref(),
        Some("10.0.0.11 in every service: drain (2 real servers)")
    );
    let (r, changed) = ask(
        &mut o,
        r#"{"op":"enable","servers":["10.0.0.11"],"service":"web"}"#,
    );
    assert!(!changed);
    assert_eq!(
        r.message.as_deref(),
        Some("nothing to enable: no override within that scope; still drain: 10.0.0.11 in every service (set by uid 0)")
    );
    let (r, _) = ask(&mut o, r#"{"op":"list"}"#);
    assert_eq!(r.overrides.len(), 1);
    assert_eq!(r.overrides[0].reason, "kernel upgrade");
    let (r, _) = ask(&mut o, r#"{"op":"conns","servers":["10.0.0.11"]}"#);
    assert_eq!(r.conns.len(), 2, "{r:?}");
    assert!(r.conns.iter().all(|c| c.weight.is_none() && c.active == 0));
    let (r, changed) = ask(&mut o, r#"{"op":"enable","servers":["10.0.0.11"]}"#);
    assert!(changed && r.ok);
    assert!(o.overrides.is_empty());
    assert!(serde_json::from_str::<Request>(r#"{"op":"drain","servers":["x"]}"#).is_err());
    assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
}
