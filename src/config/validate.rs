//! Turns the parsed file into the desired state, collecting every error with its place
//! instead of stopping at the first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::schema::{
    AgentField, AgentsSection, AnnounceSection, CheckSection, DirectorSection, File,
    RealServerSection, ServiceSection, StatusField, SyncSection,
};
use super::{line_col, ConfigError, ConfigErrors, Host};
use crate::health::{CheckKind, CheckSpec, HttpCheck, StatusSet, Via};
use crate::ipvs::{
    Dest, DestSettings, Family, Forwarding, Netmask, Protocol, Scheduler, Service, ServiceFlags,
    ServiceKey, ServiceSettings, Tunnel, TunnelKind,
};
use crate::model::{
    AgentSettings, AnnounceSettings, Desired, DesiredService, DirectorSettings, OnExit, OnFailure,
    RealServer, SyncSettings, CHECK_MARK_BASE,
};

/// The largest weight ipvsadm accepts; operators' tooling assumes it.
pub const MAX_WEIGHT: i64 = 65_535;

/// The longest duration any key takes.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

struct V<'a> {
    text: &'a str,
    file: &'a str,
    host: &'a Host,
    errors: Vec<ConfigError>,
}

impl V<'_> {
    fn err(&mut self, span: Range<usize>, context: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            context: context.to_string(),
            message: message.into(),
        });
    }

    /// The line of a byte offset. It scans the text: call it only to report an error,
    /// never per entry (that made a 10,000-service config take minutes).
    fn line_of(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    /// A duration above 0 and at most [`MAX_DURATION`]: a zero interval would spin,
    /// a huge one overflows `Instant` arithmetic in the timers.
    fn duration(&mut self, v: &Spanned<String>, ctx: &str, what: &str) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() && d <= MAX_DURATION => Some(d),
            Ok(d) if d.is_zero() => {
                self.err(v.span(), ctx, format!("{what} must be more than 0"));
                None
            }
            Ok(_) => {
                self.err(
                    v.span(),
                    ctx,
                    format!("{what} {:?} is longer than 30 days", v.get_ref()),
                );
                None
            }
            Err(e) => {
                self.err(
                    v.span(),
                    ctx,
                    format!(
                        "{what} {:?} is not a duration like \"2s\": {e}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn int(&mut self, v: &Spanned<i64>, lo: i64, hi: i64, ctx: &str, what: &str) -> Option<u32> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            u32::try_from(n).ok()
        } else {
            self.err(v.span(), ctx, format!("{what} {n} out of range {lo}-{hi}"));
            None
        }
    }

    fn addr(&mut self, v: &Spanned<String>, ctx: &str, what: &str) -> Option<IpAddr> {
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    ctx,
                    format!("{what} {:?} is not an IPv4 or IPv6 address", v.get_ref()),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        v: &Spanned<String>,
        options: &[(&str, T)],
        ctx: &str,
        what: &str,
    ) -> Option<T> {
        if let Some((_, t)) = options.iter().find(|(n, _)| n == v.get_ref()) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.err(
            v.span(),
            ctx,
            format!(
                "unknown {what} {:?} (expected {})",
                v.get_ref(),
                names.join(", ")
            ),
        );
        None
    }
}

pub fn validate(raw: &File, text: &str, file: &str, host: &Host) -> Result<Desired, ConfigErrors> {
    let mut v = V {
        text,
        file,
        host,
        errors: Vec::new(),
    };
    let default = DirectorSection::default();
    let director = director(
        &mut v,
        raw.director.as_ref().map_or(&default, |d| d.get_ref()),
    );
    let mut services: Vec<DesiredService> = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<ServiceKey, String> = HashMap::new();
    for s in &raw.services {
        let name = s.get_ref().name.get_ref();
        if let Some(first) = names.get(name.as_str()) {
            let line = v.line_of(*first);
            let span = s.get_ref().name.span();
            v.err(
                span,
                "",
                format!("duplicate service name {name:?} (first at line {line})"),
            );
        } else {
            names.insert(name, s.get_ref().name.span().start);
        }
        let (key, ds) = service(&mut v, s);
        if let Some(key) = key {
            if let Some(other) = keys.get(&key) {
                let msg = format!("service {key} is already defined by service {other:?}");
                v.err(s.span(), &format!("service {name:?}"), msg);
            } else {
                keys.insert(key, name.clone());
            }
        }
        services.extend(ds);
    }
    let agents = raw
        .agents
        .as_ref()
        .and_then(|a| agents(&mut v, a.get_ref()));
    if agents.is_none() {
        // Without [agents], every real server is set up by hand.
        for rs in services.iter_mut().flat_map(|s| s.real_servers.iter_mut()) {
            rs.agent = None;
        }
    }
    vips_against_real_servers(&mut v, raw, &services);
    dr_path_checks(&mut v, raw, &mut services);
    let announce = raw
        .announce
        .as_ref()
        .and_then(|a| announce(&mut v, a.get_ref()));
    let sync = raw.sync.as_ref().and_then(|s| sync(&mut v, s.get_ref()));
    let notify: Vec<_> = raw
        .notify
        .iter()
        .filter_map(|n| notify(&mut v, n))
        .collect();
    match (director, v.errors.is_empty()) {
        (Some(director), true) => Ok(Desired {
            director,
            services,
            agents,
            announce,
            sync,
            notify,
        }),
        _ => Err(ConfigErrors(v.errors)),
    }
}

/// One `[[notify]]`: exactly one of `exec` and `url`; known event kinds.
fn notify(
    v: &mut V<'_>,
    n: &Spanned<super::schema::NotifySection>,
) -> Option<crate::model::NotifySettings> {
    use crate::model::{HookTarget, NotifySettings, EVENT_KINDS};
    let ctx = "[[notify]]";
    let r = n.get_ref();
    let target = match (&r.exec, &r.url) {
        (Some(e), None) if !e.get_ref().is_empty() => Some(HookTarget::Exec(e.get_ref().clone())),
        (Some(e), None) => {
            v.err(e.span(), ctx, "exec is empty: name a program");
            None
        }
        (None, Some(u)) if u.get_ref().starts_with("http://") => {
            Some(HookTarget::Url(u.get_ref().clone()))
        }
        (None, Some(u)) => {
            let msg = format!("url {:?} is not an http:// URL", u.get_ref());
            v.err(u.span(), ctx, msg);
            None
        }
        _ => {
            v.err(n.span(), ctx, "give exactly one of exec and url");
            None
        }
    };
    let events = match &r.events {
        None => EVENT_KINDS.iter().map(|k| k.to_string()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for e in list.get_ref() {
                if EVENT_KINDS.contains(&e.as_str()) {
                    out.push(e.clone());
                } else {
                    let msg = format!("event {e:?} is not one of {}", EVENT_KINDS.join(", "));
                    v.err(list.span(), ctx, msg);
                }
            }
            out
        }
    };
    let timeout = match &r.timeout {
        None => Some(Duration::from_secs(10)),
        Some(t) => v.duration(t, ctx, "timeout"),
    };
    Some(NotifySettings {
        target: target?,
        events,
        timeout: timeout?,
    })
}

/// Checks through the DR path (`via = "vip"`): each real server address that has one
/// gets a firewall mark, from [`CHECK_MARK_BASE`] up in address order, and a fwmark
/// service of its own that holds only that real server (weight 1, no check: the
/// checks must reach it whatever its health). The config's own fwmark services must
/// stay out of that range.
fn dr_path_checks(v: &mut V<'_>, raw: &File, services: &mut Vec<DesiredService>) {
    let addrs: std::collections::BTreeSet<IpAddr> = services
        .iter()
        .flat_map(|s| &s.real_servers)
        .filter(|rs| rs.check.as_ref().is_some_and(|c| c.via.is_some()))
        .map(|rs| rs.dest.addr)
        .collect();
    if addrs.is_empty() {
        return;
    }
    let marks: HashMap<IpAddr, u32> = addrs
        .iter()
        .zip(CHECK_MARK_BASE..)
        .map(|(a, m)| (*a, m))
        .collect();
    let top = CHECK_MARK_BASE + marks.len() as u32;
    for s in &raw.services {
        if let Some(m) = &s.get_ref().fwmark {
            if (i64::from(CHECK_MARK_BASE)..i64::from(top)).contains(m.get_ref()) {
                v.err(
                    m.span(),
                    &format!("service {:?}", s.get_ref().name.get_ref()),
                    format!(
                        "fwmark {:#x} is one lvsdr gives to checks through the DR path ({:#x}-{:#x})",
                        m.get_ref(),
                        CHECK_MARK_BASE,
                        top - 1
                    ),
                );
            }
        }
    }
    for rs in services.iter_mut().flat_map(|s| s.real_servers.iter_mut()) {
        if let Some(c) = &rs.check {
            if let Some(via) = c.via {
                let mut spec = (**c).clone();
                spec.via = Some(Via {
                    mark: marks[&rs.dest.addr],
                    ..via
                });
                rs.check = Some(Arc::new(spec));
            }
        }
    }
    for (addr, mark) in addrs.iter().map(|a| (*a, marks[a])) {
        let family = Family::of(&addr);
        services.push(DesiredService {
            name: format!("check-via-vip-{addr}"),
            service: Service {
                key: ServiceKey::Fwmark { mark, family },
                settings: ServiceSettings::new(Scheduler::Rr, family),
            },
            on_failure: OnFailure::Weight0,
            sorry_server: None,
            real_servers: vec![RealServer {
                dest: Dest {
                    addr,
                    port: 0,
                    settings: DestSettings::route(1),
                },
                check: None,
                agent: None,
                admin: None,
                slow_start: None,
            }],
            vips: Vec::new(),
        });
    }
}

/// A VIP that is also a real server's (or an agent's) address would have the agent
/// refuse it and the server never get traffic; a fwmark service whose real servers
/// have agents must say which VIPs they hold, or nothing would be pushed for it.
fn vips_against_real_servers(v: &mut V<'_>, raw: &File, services: &[DesiredService]) {
    let vips: HashMap<IpAddr, &str> = services
        .iter()
        .flat_map(|s| s.vips.iter().map(move |a| (*a, s.name.as_str())))
        .collect();
    // By name: a search per service would be quadratic (10,000 services: 50 million
    // name comparisons, most of the config load's time).
    let by_name: HashMap<&str, &DesiredService> =
        services.iter().map(|d| (d.name.as_str(), d)).collect();
    for s in &raw.services {
        let r = s.get_ref();
        let ctx = format!("service {:?}", r.name.get_ref());
        for rs in &r.real_server {
            let addr = rs.get_ref().address.get_ref().parse::<IpAddr>().ok();
            if let Some(name) = addr.and_then(|a| vips.get(&a)) {
                let msg = format!(
                    "real server {} is the VIP of service {name:?}: a real server cannot hold its own address as a VIP",
                    rs.get_ref().address.get_ref()
                );
                v.err(rs.get_ref().address.span(), &ctx, msg);
            }
        }
        let Some(svc) = by_name.get(r.name.get_ref().as_str()) else {
            continue;
        };
        let agented = svc.real_servers.iter().any(|rs| rs.agent.is_some());
        if matches!(svc.service.key, ServiceKey::Fwmark { .. }) && svc.vips.is_empty() && agented {
            v.err(
                s.span(),
                &ctx,
                "its real servers have agents: list the VIPs they must hold in `vips` (or set agent = false on each)",
            );
        }
    }
}

fn agents(v: &mut V<'_>, a: &AgentsSection) -> Option<AgentSettings> {
    let ctx = "[agents]";
    let port = match &a.port {
        None => Some(9181),
        Some(p) => v
            .int(p, 1, 65_535, ctx, "port")
            .and_then(|p| u16::try_from(p).ok()),
    };
    let push_interval = match &a.push_interval {
        None => Some(Duration::from_secs(30)),
        Some(d) => v.duration(d, ctx, "push_interval"),
    };
    let confirm_grace = match &a.confirm_grace {
        None => Some(Duration::from_secs(30)),
        Some(d) => v.duration(d, ctx, "confirm_grace"),
    };
    let base = v.host.base.clone();
    let path = |s: &Spanned<String>| {
        let p = std::path::PathBuf::from(s.get_ref());
        match &base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }
    };
    Some(AgentSettings {
        port: port?,
        ca: path(&a.ca),
        cert: path(&a.cert),
        key: path(&a.key),
        require: a.require.unwrap_or(true),
        push_interval: push_interval?,
        confirm_grace: confirm_grace?,
    })
}

fn director(v: &mut V<'_>, d: &DirectorSection) -> Option<DirectorSettings> {
    let ctx = "[director]";
    let status_listen = match &d.status_listen {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9180))),
        Some(s) => s.get_ref().parse().ok().or_else(|| {
            let msg = format!("status_listen {:?} is not an address:port", s.get_ref());
            v.err(s.span(), ctx, msg);
            None
        }),
    };
    let dur = |v: &mut V<'_>, s: &Option<Spanned<String>>, what, default| match s {
        None => Some(Duration::from_secs(default)),
        Some(s) => v.duration(s, ctx, what),
    };
    let resync_interval = dur(v, &d.resync_interval, "resync_interval", 30);
    let full_resync_interval = dur(v, &d.full_resync_interval, "full_resync_interval", 300);
    let drain_timeout = dur(v, &d.drain_timeout, "drain_timeout", 60);
    let on_exit = match &d.on_exit {
        None => Some(OnExit::Keep),
        Some(s) => v.choice(
            s,
            &[("keep", OnExit::Keep), ("flush", OnExit::Flush)],
            ctx,
            "on_exit",
        ),
    };
    Some(DirectorSettings {
        status_listen: status_listen?,
        resync_interval: resync_interval?,
        full_resync_interval: full_resync_interval?,
        on_exit: on_exit?,
        drain_timeout: drain_timeout?,
        state_file: d
            .state_file
            .as_ref()
            .map(|p| std::path::PathBuf::from(p.get_ref())),
        control_socket: d.control_socket.as_ref().map_or_else(
            || crate::admin::DEFAULT_SOCKET.into(),
            |p| p.get_ref().into(),
        ),
        control_group: d.control_group.as_ref().map(|g| g.get_ref().clone()),
        admin_file: d
            .admin_file
            .as_ref()
            .map_or_else(|| crate::admin::DEFAULT_FILE.into(), |p| p.get_ref().into()),
    })
}

/// An interface name: 1 to 15 bytes (IFNAMSIZ), no slash, space or colon, not `.`
/// or `..` (what the kernel's `dev_valid_name` takes).
fn is_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace)
}

fn announce(v: &mut V<'_>, a: &AnnounceSection) -> Option<AnnounceSettings> {
    let ctx = "[announce]";
    let device = a
        .device
        .as_ref()
        .map_or("lvsdr0".to_string(), |d| d.get_ref().clone());
    if !is_ifname(&device) {
        if let Some(d) = &a.device {
            v.err(
                d.span(),
                ctx,
                format!("device {device:?} is not an interface name"),
            );
        }
        return None;
    }
    let min_up = match &a.min_up {
        None => 1,
        Some(m) => v.int(m, 1, 65_535, ctx, "min_up")?,
    };
    let withdraw_grace = match &a.withdraw_grace {
        None => Duration::from_secs(5),
        Some(g) => v.duration(g, ctx, "withdraw_grace")?,
    };
    Some(AnnounceSettings {
        device,
        min_up,
        withdraw_grace,
        bird_socket: a
            .bird_socket
            .as_ref()
            .map(|p| std::path::PathBuf::from(p.get_ref())),
    })
}

fn sync(v: &mut V<'_>, s: &SyncSection) -> Option<SyncSettings> {
    let ctx = "[sync]";
    let sync_id = v.int(&s.sync_id, 0, 255, ctx, "sync_id");
    let mcast_group = match &s.mcast_group {
        None => Some(None),
        Some(g) => match g.get_ref().parse::<IpAddr>() {
            Ok(a) if a.is_multicast() => Some(Some(a)),
            _ => {
                v.err(
                    g.span(),
                    ctx,
                    format!("mcast_group {:?} is not a multicast address", g.get_ref()),
                );
                None
            }
        },
    };
    let small = |v: &mut V<'_>, x: &Option<Spanned<i64>>, lo, hi, what| match x {
        None => Some(None),
        Some(x) => v.int(x, lo, hi, ctx, what).map(Some),
    };
    let port = small(v, &s.port, 1, 65_535, "port");
    let ttl = small(v, &s.ttl, 1, 255, "ttl");
    // The kernel raises a backup daemon's maxlen below 1024 to 1024 (and lowers any
    // to the interface's MTU less the headers): below 1024 the running daemon would
    // never match the config, and be stopped and started again on every pass.
    let maxlen = small(v, &s.maxlen, 1024, 65_000, "maxlen");
    let interface = s.interface.get_ref();
    if !is_ifname(interface) {
        v.err(
            s.interface.span(),
            ctx,
            format!("interface {interface:?} is not an interface name"),
        );
        return None;
    }
    Some(SyncSettings {
        interface: s.interface.get_ref().clone(),
        sync_id: sync_id?,
        mcast_group: mcast_group?,
        port: port?.map(|p| p as u16),
        ttl: ttl?.map(|t| t as u8),
        maxlen: maxlen?.map(|m| m as u16),
    })
}

fn service_key(v: &mut V<'_>, s: &Spanned<ServiceSection>, ctx: &str) -> Option<ServiceKey> {
    let r = s.get_ref();
    if let Some(mark) = &r.fwmark {
        for (present, what) in [
            (r.vip.is_some(), "vip"),
            (r.port.is_some(), "port"),
            (r.protocol.is_some(), "protocol"),
        ] {
            if present {
                v.err(
                    mark.span(),
                    ctx,
                    format!("fwmark and {what} exclude each other"),
                );
            }
        }
        let family = match &r.family {
            None => Some(Family::V4),
            Some(f) => v.choice(
                f,
                &[("ipv4", Family::V4), ("ipv6", Family::V6)],
                ctx,
                "family",
            ),
        };
        let mark = v.int(mark, 1, i64::from(u32::MAX), ctx, "fwmark");
        return Some(ServiceKey::Fwmark {
            family: family?,
            mark: mark?,
        });
    }
    if let Some(f) = &r.family {
        v.err(
            f.span(),
            ctx,
            "family applies to fwmark services only (a VIP has its own)",
        );
    }
    let Some(vip) = &r.vip else {
        v.err(s.span(), ctx, "missing vip (or fwmark)");
        return None;
    };
    let Some(port) = &r.port else {
        v.err(s.span(), ctx, "missing port");
        return None;
    };
    let protocol = match &r.protocol {
        None => Some(Protocol::Tcp),
        Some(p) => v.choice(
            p,
            &[
                ("tcp", Protocol::Tcp),
                ("udp", Protocol::Udp),
                ("sctp", Protocol::Sctp),
            ],
            ctx,
            "protocol",
        ),
    };
    let addr = v.addr(vip, ctx, "vip");
    if let Some(a) = addr.filter(|a| v.host.gateways.contains(a)) {
        v.err(
            vip.span(),
            ctx,
            format!("vip {a} is this director's default gateway"),
        );
    }
    let port = v.int(port, 0, 65_535, ctx, "port");
    Some(ServiceKey::Addr {
        protocol: protocol?,
        addr: addr?,
        port: u16::try_from(port?).ok()?,
    })
}

fn settings(
    v: &mut V<'_>,
    r: &ServiceSection,
    key: &ServiceKey,
    ctx: &str,
) -> Option<ServiceSettings> {
    let family = key.family();
    let mut ok = true;
    let scheduler = match &r.scheduler {
        None => Scheduler::Wrr,
        Some(s) => {
            let sched = Scheduler::from_name(s.get_ref());
            if let Scheduler::Other(name) = &sched {
                let known: Vec<&str> = Scheduler::known_names().collect();
                let msg = format!(
                    "unknown scheduler {name:?} (expected one of {})",
                    known.join(" ")
                );
                v.err(s.span(), ctx, msg);
                ok = false;
            }
            sched
        }
    };
    let mut s = ServiceSettings::new(scheduler.clone(), family);
    if let Some(flags) = &r.scheduler_flags {
        for f in flags.get_ref() {
            let flag = match (f.as_str(), &scheduler) {
                ("sh-fallback", Scheduler::Sh) | ("mh-fallback", Scheduler::Mh) => {
                    ServiceFlags::SCHED1
                }
                ("sh-port", Scheduler::Sh) | ("mh-port", Scheduler::Mh) => ServiceFlags::SCHED2,
                _ => {
                    let msg = format!("scheduler flag {f:?} does not apply to scheduler {scheduler} (sh-fallback, sh-port for sh; mh-fallback, mh-port for mh)");
                    v.err(flags.span(), ctx, msg);
                    ok = false;
                    continue;
                }
            };
            s.flags |= flag;
        }
    } else if matches!(scheduler, Scheduler::Sh | Scheduler::Mh) {
        // Without fallback, a server at weight 0 (failed, drained, leaving) keeps its
        // share of the hash and the kernel refuses the clients that hash to it ("no
        // destination available": the director answers their SYN with a RST). With it,
        // they go to the next server; clients of the others stay where they are.
        // `scheduler_flags = []` asks for strict hashing.
        s.flags |= ServiceFlags::SCHED1;
    }
    if r.one_packet == Some(true) {
        if matches!(
            key,
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                ..
            }
        ) {
            s.flags |= ServiceFlags::ONEPACKET;
        } else {
            v.err(
                r.name.span(),
                ctx,
                "one_packet applies to UDP services only",
            );
            ok = false;
        }
    }
    if let Some(p) = &r.persistence {
        match v.duration(p, ctx, "persistence") {
            Some(d) => {
                s.flags |= ServiceFlags::PERSISTENT;
                s.timeout = u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
            }
            None => ok = false,
        }
    }
    if let Some(m) = &r.persistence_netmask {
        if r.persistence.is_none() {
            v.err(m.span(), ctx, "persistence_netmask needs persistence");
            ok = false;
        }
        let text = m.get_ref().trim_start_matches('/');
        match family {
            Family::V4 => match text.parse::<Ipv4Addr>() {
                Ok(mask) => s.netmask = Netmask::V4(mask),
                Err(_) => {
                    let msg = format!(
                        "persistence_netmask {:?} is not an IPv4 mask like 255.255.255.0",
                        m.get_ref()
                    );
                    v.err(m.span(), ctx, msg);
                    ok = false;
                }
            },
            Family::V6 => match text.parse::<u8>() {
                Ok(p) if p <= 128 => s.netmask = Netmask::V6(p),
                _ => {
                    let msg = format!(
                        "persistence_netmask {:?} is not an IPv6 prefix length 0-128",
                        m.get_ref()
                    );
                    v.err(m.span(), ctx, msg);
                    ok = false;
                }
            },
        }
    }
    if let Some(pe) = &r.persistence_engine {
        if r.persistence.is_none() || pe.get_ref().is_empty() || pe.get_ref().len() > 15 {
            v.err(
                pe.span(),
                ctx,
                "persistence_engine needs persistence and a name of 1-15 characters",
            );
            ok = false;
        }
        s.pe_name = Some(pe.get_ref().clone());
    }
    ok.then_some(s)
}

fn forwarding(v: &mut V<'_>, r: &ServiceSection, ctx: &str) -> Option<Forwarding> {
    #[derive(Clone, Copy)]
    enum F {
        Dr,
        Nat,
        Tun,
    }
    let f = match &r.forwarding {
        None => F::Dr,
        Some(f) => v.choice(
            f,
            &[("dr", F::Dr), ("nat", F::Nat), ("tun", F::Tun)],
            ctx,
            "forwarding",
        )?,
    };
    if !matches!(f, F::Tun) {
        if let Some(t) = r
            .tunnel
            .as_ref()
            .map(|t| t.span())
            .or(r.tunnel_port.as_ref().map(|t| t.span()))
        {
            v.err(
                t,
                ctx,
                "tunnel and tunnel_port apply to forwarding = \"tun\" only",
            );
            return None;
        }
    }
    Some(match f {
        F::Dr => Forwarding::Route,
        F::Nat => Forwarding::Masq,
        F::Tun => {
            let kind = match &r.tunnel {
                None => TunnelKind::Ipip,
                Some(t) => v.choice(
                    t,
                    &[
                        ("ipip", TunnelKind::Ipip),
                        ("gue", TunnelKind::Gue),
                        ("gre", TunnelKind::Gre),
                    ],
                    ctx,
                    "tunnel",
                )?,
            };
            let port = match &r.tunnel_port {
                Some(p) => u16::try_from(v.int(p, 1, 65_535, ctx, "tunnel_port")?).ok()?,
                None if matches!(kind, TunnelKind::Gue) => {
                    v.err(r.name.span(), ctx, "a gue tunnel needs tunnel_port");
                    return None;
                }
                None => 0,
            };
            Forwarding::Tunnel(Tunnel {
                kind,
                port,
                flags: 0,
            })
        }
    })
}

/// The service's key (when it has a valid one, for the duplicate check) and the
/// service (when it is valid as a whole).
fn service(
    v: &mut V<'_>,
    s: &Spanned<ServiceSection>,
) -> (Option<ServiceKey>, Option<DesiredService>) {
    let key = service_key(v, s, &format!("service {:?}", s.get_ref().name.get_ref()));
    let ds = key.clone().and_then(|k| service_body(v, s, k));
    (key, ds)
}

fn service_body(
    v: &mut V<'_>,
    s: &Spanned<ServiceSection>,
    key: ServiceKey,
) -> Option<DesiredService> {
    let r = s.get_ref();
    let ctx = format!("service {:?}", r.name.get_ref());
    let settings = settings(v, r, &key, &ctx);
    let fwd = forwarding(v, r, &ctx);
    let on_failure = match &r.on_failure {
        None => Some(OnFailure::Weight0),
        Some(f) => v.choice(
            f,
            &[
                ("weight0", OnFailure::Weight0),
                ("remove", OnFailure::Remove),
            ],
            &ctx,
            "on_failure",
        ),
    };
    let fwd = fwd?;
    let family = key.family();
    let svc_port = match &key {
        ServiceKey::Addr { port, .. } => *port,
        ServiceKey::Fwmark { .. } => 0,
    };
    let sorry_server = r.sorry_server.as_ref().and_then(|a| {
        let addr = v.addr(a, &ctx, "sorry_server")?;
        if Family::of(&addr) != family {
            v.err(
                a.span(),
                &ctx,
                format!("sorry_server {addr} is not an {family} address like the service"),
            );
            return None;
        }
        Some(Dest {
            addr,
            port: svc_port,
            settings: DestSettings {
                forwarding: fwd,
                ..DestSettings::route(1)
            },
        })
    });
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    let mut real_servers = Vec::new();
    let slow_start = r
        .slow_start
        .as_ref()
        .and_then(|s| v.duration(s, &ctx, "slow_start"));
    for rs in &r.real_server {
        if let Some(x) = real_server(
            v,
            rs,
            r.check.as_ref().map(|c| c.get_ref()),
            &key,
            (fwd, slow_start),
            &ctx,
        ) {
            let id = (x.dest.addr, x.dest.port);
            if let Some(first) = seen.get(&id) {
                let line = v.line_of(*first);
                let msg = format!(
                    "duplicate real server {} (first at line {line})",
                    x.dest.addr_port()
                );
                v.err(rs.span(), &ctx, msg);
                continue;
            }
            seen.insert(id, rs.span().start);
            real_servers.push(x);
        }
    }
    let vips = match (&key, &r.vips) {
        (ServiceKey::Addr { addr, .. }, None) => vec![*addr],
        (ServiceKey::Addr { addr, .. }, Some(l)) => {
            v.err(
                l.span(),
                &ctx,
                "vips applies to fwmark services only (this one has its vip)",
            );
            vec![*addr]
        }
        (ServiceKey::Fwmark { .. }, None) => Vec::new(),
        (ServiceKey::Fwmark { .. }, Some(l)) => {
            let mut out = Vec::new();
            for a in l.get_ref() {
                match a.parse::<IpAddr>() {
                    Ok(ip) if Family::of(&ip) == family => out.push(ip),
                    Ok(ip) => v.err(
                        l.span(),
                        &ctx,
                        format!("vips: {ip} is not an {family} address like the service"),
                    ),
                    Err(_) => v.err(l.span(), &ctx, format!("vips: {a:?} is not an IP address")),
                }
                if let Ok(ip) = a.parse::<IpAddr>() {
                    if v.host.gateways.contains(&ip) {
                        v.err(
                            l.span(),
                            &ctx,
                            format!("vips: {ip} is this director's default gateway"),
                        );
                    }
                }
            }
            out.sort();
            out.dedup();
            out
        }
    };
    Some(DesiredService {
        vips,
        name: r.name.get_ref().clone(),
        service: Service {
            key,
            settings: settings?,
        },
        on_failure: on_failure?,
        sorry_server,
        real_servers,
    })
}

fn real_server(
    v: &mut V<'_>,
    rs: &Spanned<RealServerSection>,
    service_check: Option<&CheckSection>,
    key: &ServiceKey,
    (fwd, svc_slow_start): (Forwarding, Option<Duration>),
    svc_ctx: &str,
) -> Option<RealServer> {
    let r = rs.get_ref();
    let ctx = format!("{svc_ctx}, real_server {}", r.address.get_ref());
    let slow_start = match &r.slow_start {
        None => svc_slow_start,
        Some(s) => v.duration(s, &ctx, "slow_start"),
    };
    let addr = v.addr(&r.address, &ctx, "address")?;
    let family = key.family();
    let svc_port = match key {
        ServiceKey::Addr { port, .. } => Some(*port),
        ServiceKey::Fwmark { .. } => None,
    };
    let mut ok = true;
    if Family::of(&addr) != family && !matches!(fwd, Forwarding::Tunnel(_)) {
        let msg = format!("mixed address families: the service is {family}, this real server is {}; only tunnelling can mix them", Family::of(&addr));
        v.err(r.address.span(), &ctx, msg);
        ok = false;
    }
    let port = match (&r.port, svc_port) {
        (None, p) => p.unwrap_or(0),
        (Some(p), svc) => {
            let port = u16::try_from(v.int(p, 0, 65_535, &ctx, "port")?).ok()?;
            if fwd == Forwarding::Route && svc.is_some_and(|s| s != port) {
                let msg = format!(
                    "port {port} differs from the service port {}: DR cannot rewrite ports",
                    svc.unwrap_or(0)
                );
                v.err(p.span(), &ctx, msg);
                ok = false;
            }
            if fwd == Forwarding::Route && svc.is_none() && port != 0 {
                v.err(
                    p.span(),
                    &ctx,
                    "a DR real server of a fwmark service takes no port",
                );
                ok = false;
            }
            port
        }
    };
    let weight = match &r.weight {
        None => Some(1),
        Some(w) => v.int(w, 0, MAX_WEIGHT, &ctx, "weight"),
    };
    let threshold = |v: &mut V<'_>, t: &Option<Spanned<i64>>, what| match t {
        None => Some(0),
        Some(t) => v.int(t, 0, i64::from(u32::MAX), &ctx, what),
    };
    let upper = threshold(v, &r.upper_threshold, "upper_threshold");
    let lower = threshold(v, &r.lower_threshold, "lower_threshold");
    // The kernel takes a lower threshold only under an upper one (it re-enables an
    // overloaded server below `lower`; with no upper there is no overload).
    if let (Some(u), Some(l), Some(span)) = (upper, lower, r.lower_threshold.as_ref()) {
        if l > 0 && u == 0 {
            v.err(
                span.span(),
                &ctx,
                "lower_threshold needs an upper_threshold (the kernel refuses it alone)",
            );
        } else if l > u {
            v.err(
                span.span(),
                &ctx,
                format!("lower_threshold {l} is above upper_threshold {u}"),
            );
        }
    }
    let merged = merge(service_check, r.check.as_ref().map(|c| c.get_ref()));
    // A check through the DR path needs the VIP and DR forwarding.
    let vip = match (key, fwd) {
        (ServiceKey::Addr { addr, .. }, Forwarding::Route) => Some(*addr),
        _ => None,
    };
    let check = check(v, &merged, addr, port, vip, &ctx, rs.span());
    let dest = Dest {
        addr,
        port,
        settings: DestSettings {
            forwarding: fwd,
            weight: weight?,
            upper_threshold: upper?,
            lower_threshold: lower?,
        },
    };
    let agent = match r.agent.as_ref().map(|a| (a, a.get_ref())) {
        None | Some((_, AgentField::On(true))) => Some(addr),
        Some((_, AgentField::On(false))) => None,
        Some((span, AgentField::At(text))) => match text.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    span.span(),
                    &ctx,
                    format!("agent {text:?} is neither true, false nor an IP address"),
                );
                ok = false;
                None
            }
        },
    };
    let check = check?;
    ok.then_some(RealServer {
        dest,
        check,
        agent,
        admin: None,
        slow_start,
    })
}

/// A DNS rcode by name or number.
fn rcode(s: &str) -> Option<u8> {
    let named = [
        "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused",
    ];
    named
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
        .or_else(|| s.parse::<u8>().ok().filter(|n| *n <= 15))
}

/// A real server's check fields override its service's, one by one.
fn merge(service: Option<&CheckSection>, rs: Option<&CheckSection>) -> CheckSection {
    let base = service.cloned().unwrap_or_default();
    let Some(o) = rs.cloned() else { return base };
    CheckSection {
        kind: o.kind.or(base.kind),
        port: o.port.or(base.port),
        path: o.path.or(base.path),
        expect_status: o.expect_status.or(base.expect_status),
        expect_body: o.expect_body.or(base.expect_body),
        host: o.host.or(base.host),
        insecure_skip_verify: o.insecure_skip_verify.or(base.insecure_skip_verify),
        sni: o.sni.or(base.sni),
        ca: o.ca.or(base.ca),
        keepalive: o.keepalive.or(base.keepalive),
        query: o.query.or(base.query),
        expect_rcode: o.expect_rcode.or(base.expect_rcode),
        command: o.command.or(base.command),
        send: o.send.or(base.send),
        via: o.via.or(base.via),
        expect: o.expect.or(base.expect),
        interval: o.interval.or(base.interval),
        timeout: o.timeout.or(base.timeout),
        rise: o.rise.or(base.rise),
        fall: o.fall.or(base.fall),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum K {
    None,
    Tcp,
    TcpSyn,
    Http,
    Https,
    Dns,
    Exec,
    TcpExpect,
    Smtp,
}

/// Builds a check spec; `Some(None)` is `type = "none"`, `None` an error.
#[allow(clippy::too_many_arguments)]
fn check(
    v: &mut V<'_>,
    c: &CheckSection,
    addr: IpAddr,
    rs_port: u16,
    vip: Option<IpAddr>,
    ctx: &str,
    rs_span: Range<usize>,
) -> Option<Option<Arc<CheckSpec>>> {
    let ctx = format!("{ctx}, check");
    let kind = match &c.kind {
        None => K::Tcp,
        Some(k) => v.choice(
            k,
            &[
                ("none", K::None),
                ("tcp", K::Tcp),
                ("tcp-syn", K::TcpSyn),
                ("http", K::Http),
                ("https", K::Https),
                ("udp-dns", K::Dns),
                ("exec", K::Exec),
                ("tcp-expect", K::TcpExpect),
                ("smtp", K::Smtp),
            ],
            &ctx,
            "check type",
        )?,
    };
    if kind == K::None {
        return Some(None);
    }
    let mut ok = true;
    let is_http = matches!(kind, K::Http | K::Https);
    let misplaced: [(Option<Range<usize>>, &str, bool); 12] = [
        (c.keepalive.as_ref().map(|x| x.span()), "keepalive", is_http),
        (
            c.send.as_ref().map(|x| x.span()),
            "send",
            kind == K::TcpExpect,
        ),
        (
            c.expect.as_ref().map(|x| x.span()),
            "expect",
            kind == K::TcpExpect,
        ),
        (c.sni.as_ref().map(|x| x.span()), "sni", kind == K::Https),
        (c.ca.as_ref().map(|x| x.span()), "ca", kind == K::Https),
        (
            c.expect_rcode.as_ref().map(|x| x.span()),
            "expect_rcode",
            kind == K::Dns,
        ),
        (c.path.as_ref().map(|x| x.span()), "path", is_http),
        (
            c.expect_status.as_ref().map(|x| x.span()),
            "expect_status",
            is_http,
        ),
        (
            c.expect_body.as_ref().map(|x| x.span()),
            "expect_body",
            is_http,
        ),
        (c.host.as_ref().map(|x| x.span()), "host", is_http),
        (c.query.as_ref().map(|x| x.span()), "query", kind == K::Dns),
        (
            c.command.as_ref().map(|x| x.span()),
            "command",
            kind == K::Exec,
        ),
    ];
    for (span, what, allowed) in misplaced {
        if let (Some(span), false) = (span, allowed) {
            v.err(
                span,
                &ctx,
                format!("{what} does not apply to this check type"),
            );
            ok = false;
        }
    }
    let port = match &c.port {
        Some(p) => u16::try_from(v.int(p, 1, 65_535, &ctx, "port")?).ok()?,
        None if rs_port == 0 && kind != K::Exec => {
            v.err(
                rs_span,
                &ctx,
                "the real server has no port (fwmark service): set check.port",
            );
            return None;
        }
        None => rs_port,
    };
    let interval = match &c.interval {
        None => Some(Duration::from_secs(2)),
        Some(d) => v.duration(d, &ctx, "interval"),
    };
    let timeout = match &c.timeout {
        None => Some(Duration::from_secs(1)),
        Some(d) => v.duration(d, &ctx, "timeout"),
    };
    if let (Some(i), Some(t), Some(span)) =
        (interval, timeout, c.timeout.as_ref().map(|t| t.span()))
    {
        if t > i {
            v.err(
                span,
                &ctx,
                "timeout is longer than interval: checks would overlap",
            );
            ok = false;
        }
    }
    let count = |v: &mut V<'_>, x: &Option<Spanned<i64>>, what, default| match x {
        None => Some(default),
        Some(x) => v.int(x, 1, 100, &ctx, what),
    };
    let rise = count(v, &c.rise, "rise", 2);
    let fall = count(v, &c.fall, "fall", 3);
    let kind = match kind {
        K::Tcp => CheckKind::Tcp,
        K::TcpSyn => CheckKind::TcpSyn,
        K::Http | K::Https => {
            let path = c
                .path
                .as_ref()
                .map_or("/".to_string(), |p| p.get_ref().clone());
            if !path.starts_with('/') {
                if let Some(p) = &c.path {
                    v.err(p.span(), &ctx, "path must start with /");
                }
                ok = false;
            }
            let expect_status = match &c.expect_status {
                None => StatusSet::one(200),
                Some(s) => {
                    let set = match s.get_ref() {
                        StatusField::One(n) => u16::try_from(*n)
                            .ok()
                            .and_then(|n| (100..=599).contains(&n).then(|| StatusSet::one(n))),
                        StatusField::Set(t) => StatusSet::parse(t),
                    };
                    match set {
                        Some(set) => set,
                        None => {
                            v.err(
                                s.span(),
                                &ctx,
                                "expect_status must be a status (100-599) or a set such as \"200-299\" or \"200,301-302\"",
                            );
                            return None;
                        }
                    }
                }
            };
            if let Some(b) = &c.expect_body {
                if let Err(e) = regex::Regex::new(b.get_ref()) {
                    v.err(
                        b.span(),
                        &ctx,
                        format!("expect_body is not a valid regex: {e}"),
                    );
                    ok = false;
                }
            }
            if c.insecure_skip_verify == Some(true) && kind == K::Http {
                v.err(
                    rs_span.clone(),
                    &ctx,
                    "insecure_skip_verify applies to https checks only",
                );
                ok = false;
            }
            CheckKind::Http(HttpCheck {
                tls: kind == K::Https,
                insecure: c.insecure_skip_verify.unwrap_or(false),
                path,
                host: c.host.as_ref().map(|h| h.get_ref().clone()),
                expect_status,
                expect_body: c.expect_body.as_ref().map(|b| b.get_ref().clone()),
                sni: c.sni.as_ref().map(|s| s.get_ref().clone()),
                keepalive: c.keepalive.as_ref().is_none_or(|k| *k.get_ref()),
                ca: c.ca.as_ref().map(|p| {
                    let p = std::path::PathBuf::from(p.get_ref());
                    match &v.host.base {
                        Some(b) if p.is_relative() => b.join(p),
                        _ => p,
                    }
                }),
            })
        }
        K::Dns => CheckKind::Dns {
            query: c
                .query
                .as_ref()
                .map_or(".".to_string(), |q| q.get_ref().clone()),
            rcode: match &c.expect_rcode {
                None => 0,
                Some(r) => match rcode(r.get_ref()) {
                    Some(n) => n,
                    None => {
                        v.err(
                            r.span(),
                            &ctx,
                            format!("expect_rcode {:?} is not an rcode (noerror, formerr, servfail, nxdomain, notimp, refused, or 0-15)", r.get_ref()),
                        );
                        return None;
                    }
                },
            },
        },
        K::Exec => match &c.command {
            Some(cmd) => CheckKind::Exec {
                command: cmd.get_ref().clone(),
            },
            None => {
                v.err(rs_span, &ctx, "an exec check needs command");
                return None;
            }
        },
        K::TcpExpect => {
            let expect = match &c.expect {
                Some(e) => e,
                None => {
                    v.err(rs_span, &ctx, "a tcp-expect check needs expect (a regex)");
                    return None;
                }
            };
            if let Err(e) = regex::Regex::new(expect.get_ref()) {
                v.err(
                    expect.span(),
                    &ctx,
                    format!("expect is not a valid regex: {e}"),
                );
                return None;
            }
            CheckKind::TcpExpect {
                send: c
                    .send
                    .as_ref()
                    .map_or(String::new(), |s| s.get_ref().clone()),
                expect: expect.get_ref().clone(),
            }
        }
        K::Smtp => CheckKind::Smtp,
        K::None => return Some(None),
    };
    let via = match &c.via {
        None => None,
        Some(w) => match w.get_ref().as_str() {
            "server" => None,
            "vip" => {
                let fits = matches!(
                    kind,
                    CheckKind::Tcp
                        | CheckKind::TcpExpect { .. }
                        | CheckKind::Smtp
                        | CheckKind::Http(HttpCheck { tls: false, .. })
                );
                match vip {
                    _ if !fits => {
                        v.err(
                            w.span(),
                            &ctx,
                            "via = \"vip\" applies to tcp, http, tcp-expect and smtp checks",
                        );
                        return None;
                    }
                    None => {
                        v.err(
                            w.span(),
                            &ctx,
                            "via = \"vip\" needs a service with a VIP (not a fwmark service) forwarded by DR",
                        );
                        return None;
                    }
                    // The mark is given once every real server is known (see
                    // `dr_path_checks`).
                    Some(vip) => Some(Via {
                        vip: SocketAddr::new(vip, port),
                        mark: 0,
                    }),
                }
            }
            other => {
                v.err(
                    w.span(),
                    &ctx,
                    format!("via {other:?}: \"server\" (default) or \"vip\""),
                );
                return None;
            }
        },
    };
    let spec = CheckSpec {
        via,
        target: SocketAddr::new(addr, port),
        kind,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    };
    ok.then(|| Some(Arc::new(spec)))
}
