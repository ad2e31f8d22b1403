//! The sections besides the services: `[director]`, `[agents]`, `[announce]`,
//! `[sync]` and each `[[notify]]`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::values::V;
use crate::config::schema::{AgentsSection, AnnounceSection, DirectorSection, SyncSection};
use crate::model::{AgentSettings, AnnounceSettings, DirectorSettings, OnExit, SyncSettings};

/// One `[[notify]]`: exactly one of `exec` and `url`; known event kinds.
pub(super) fn notify(
    v: &mut V<'_>,
    n: &Spanned<crate::config::schema::NotifySection>,
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

pub(super) fn agents(v: &mut V<'_>, a: &AgentsSection) -> Option<AgentSettings> {
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

pub(super) fn director(v: &mut V<'_>, d: &DirectorSection) -> Option<DirectorSettings> {
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
pub(super) fn is_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace)
}

pub(super) fn announce(v: &mut V<'_>, a: &AnnounceSection) -> Option<AnnounceSettings> {
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

pub(super) fn sync(v: &mut V<'_>, s: &SyncSection) -> Option<SyncSettings> {
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
