//! A real server's `check`: the keys every type takes (port, interval, timeout, rise,
//! fall, via) here; what is particular to a type in that type's file. [`TYPES`] is the
//! one list of check types: the name a config gives, the keys only it takes, and how
//! its [`CheckKind`] is built.

mod dns;
mod exec;
mod http;
mod tcp_expect;

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::values::V;
use crate::config::schema::CheckSection;
use crate::health::{CheckKind, CheckSpec, Via};

/// What a type's builder is told besides the section.
pub(super) struct Ctx<'a> {
    /// "service …, real_server …, check", for errors.
    pub what: &'a str,
    /// The real server's place, for errors about a key that is missing.
    pub span: Range<usize>,
}

/// One check type.
struct Type {
    /// As `type = "…"` names it.
    name: &'static str,
    /// The type-particular keys it takes (see [`particular`]); any other is an error.
    keys: &'static [&'static str],
    /// Whether it needs a port (an exec check may run without one).
    needs_port: bool,
    /// Whether it can run through the DR path (`via = "vip"`): a plain TCP connection.
    via_vip: bool,
    /// Its kind, from the section (`None`: an error was reported).
    build: fn(&mut V<'_>, &CheckSection, &Ctx<'_>) -> Option<CheckKind>,
}

/// Every check type but `none`, in the order the error for an unknown one lists them.
const TYPES: &[Type] = &[
    Type {
        name: "tcp",
        keys: &[],
        needs_port: true,
        via_vip: true,
        build: |_, _, _| Some(CheckKind::Tcp),
    },
    Type {
        name: "tcp-syn",
        keys: &[],
        needs_port: true,
        via_vip: false,
        build: |_, _, _| Some(CheckKind::TcpSyn),
    },
    Type {
        name: "http",
        keys: http::KEYS,
        needs_port: true,
        via_vip: true,
        build: http::plain,
    },
    Type {
        name: "https",
        keys: http::TLS_KEYS,
        needs_port: true,
        via_vip: false,
        build: http::tls,
    },
    Type {
        name: "udp-dns",
        keys: dns::KEYS,
        needs_port: true,
        via_vip: false,
        build: dns::build,
    },
    Type {
        name: "exec",
        keys: exec::KEYS,
        needs_port: false,
        via_vip: false,
        build: exec::build,
    },
    Type {
        name: "tcp-expect",
        keys: tcp_expect::KEYS,
        needs_port: true,
        via_vip: true,
        build: tcp_expect::build,
    },
    Type {
        name: "smtp",
        keys: &[],
        needs_port: true,
        via_vip: true,
        build: |_, _, _| Some(CheckKind::Smtp),
    },
];

/// The keys of `c` that belong to some check types only, with their places.
fn particular(c: &CheckSection) -> [(&'static str, Option<Range<usize>>); 12] {
    fn at<T>(x: &Option<Spanned<T>>) -> Option<Range<usize>> {
        x.as_ref().map(Spanned::span)
    }
    [
        ("keepalive", at(&c.keepalive)),
        ("send", at(&c.send)),
        ("expect", at(&c.expect)),
        ("sni", at(&c.sni)),
        ("ca", at(&c.ca)),
        ("expect_rcode", at(&c.expect_rcode)),
        ("path", at(&c.path)),
        ("expect_status", at(&c.expect_status)),
        ("expect_body", at(&c.expect_body)),
        ("host", at(&c.host)),
        ("query", at(&c.query)),
        ("command", at(&c.command)),
    ]
}

/// The type `c` names (`tcp` when it names none); `Some(None)` is `type = "none"`.
fn type_of(v: &mut V<'_>, c: &CheckSection, ctx: &str) -> Option<Option<&'static Type>> {
    let Some(k) = &c.kind else {
        return Some(TYPES.first());
    };
    let mut options: Vec<(&str, Option<&'static Type>)> = vec![("none", None)];
    options.extend(TYPES.iter().map(|t| (t.name, Some(t))));
    v.choice(k, &options, ctx, "check type")
}

/// Builds a check spec; `Some(None)` is `type = "none"`, `None` an error.
pub(super) fn check(
    v: &mut V<'_>,
    c: &CheckSection,
    addr: IpAddr,
    rs_port: u16,
    vip: Option<IpAddr>,
    ctx: &str,
    rs_span: Range<usize>,
) -> Option<Option<Arc<CheckSpec>>> {
    let ctx = format!("{ctx}, check");
    let Some(ty) = type_of(v, c, &ctx)? else {
        return Some(None);
    };
    let mut ok = true;
    for (key, span) in particular(c) {
        if let (Some(span), false) = (span, ty.keys.contains(&key)) {
            v.err(
                span,
                &ctx,
                format!("{key} does not apply to this check type"),
            );
            ok = false;
        }
    }
    let port = match &c.port {
        Some(p) => u16::try_from(v.int(p, 1, 65_535, &ctx, "port")?).ok()?,
        None if rs_port == 0 && ty.needs_port => {
            let m = "the real server has no port (fwmark service): set check.port";
            v.err(rs_span, &ctx, m);
            return None;
        }
        None => rs_port,
    };
    let (interval, timeout) = timing(v, c, &ctx, &mut ok);
    let count = |v: &mut V<'_>, x: &Option<Spanned<i64>>, what, default| match x {
        None => Some(default),
        Some(x) => v.int(x, 1, 100, &ctx, what),
    };
    let rise = count(v, &c.rise, "rise", 2);
    let fall = count(v, &c.fall, "fall", 3);
    let built = Ctx {
        what: &ctx,
        span: rs_span,
    };
    // An error in a type's keys is reported; the section's other errors still are.
    let kind = (ty.build)(v, c, &built);
    ok &= kind.is_some();
    let via = via(v, c, ty, vip, port, &ctx)?;
    let spec = CheckSpec {
        via,
        target: SocketAddr::new(addr, port),
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    };
    ok.then(|| Some(Arc::new(spec)))
}

/// `interval` (2 s by default) and `timeout` (1 s), the timeout no longer than the
/// interval (the checks would overlap).
fn timing(
    v: &mut V<'_>,
    c: &CheckSection,
    ctx: &str,
    ok: &mut bool,
) -> (Option<Duration>, Option<Duration>) {
    let interval = match &c.interval {
        None => Some(Duration::from_secs(2)),
        Some(d) => v.duration(d, ctx, "interval"),
    };
    let timeout = match &c.timeout {
        None => Some(Duration::from_secs(1)),
        Some(d) => v.duration(d, ctx, "timeout"),
    };
    if let (Some(i), Some(t), Some(span)) = (interval, timeout, c.timeout.as_ref()) {
        if t > i {
            let m = "timeout is longer than interval: checks would overlap";
            v.err(span.span(), ctx, m);
            *ok = false;
        }
    }
    (interval, timeout)
}

/// `via`: `"server"` (the default) checks the real server's own address; `"vip"` the
/// VIP through the DR path (the mark is given once every real server is known, see
/// `dr_path_checks`). `None`: an error was reported.
fn via(
    v: &mut V<'_>,
    c: &CheckSection,
    ty: &Type,
    vip: Option<IpAddr>,
    port: u16,
    ctx: &str,
) -> Option<Option<Via>> {
    let Some(w) = &c.via else { return Some(None) };
    match (w.get_ref().as_str(), vip) {
        ("server", _) => Some(None),
        ("vip", _) if !ty.via_vip => {
            let m = "via = \"vip\" applies to tcp, http, tcp-expect and smtp checks";
            v.err(w.span(), ctx, m);
            None
        }
        ("vip", None) => {
            let m =
                "via = \"vip\" needs a service with a VIP (not a fwmark service) forwarded by DR";
            v.err(w.span(), ctx, m);
            None
        }
        ("vip", Some(vip)) => Some(Some(Via {
            vip: SocketAddr::new(vip, port),
            mark: 0,
        })),
        (other, _) => {
            let m = format!("via {other:?}: \"server\" (default) or \"vip\"");
            v.err(w.span(), ctx, m);
            None
        }
    }
}
