//! One real server of a service: address, port, weight, thresholds, slow start, and its
//! check (the service's `[service.check]` overridden key by key).

use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use super::check::check;
use super::values::V;
use super::MAX_WEIGHT;
use crate::config::schema::{AgentField, CheckSection, RealServerSection};
use crate::ipvs::{Dest, DestSettings, Family, Forwarding, ServiceKey};
use crate::model::RealServer;

pub(super) fn real_server(
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

/// A real server's check fields override its service's, one by one.
pub(super) fn merge(service: Option<&CheckSection>, rs: Option<&CheckSection>) -> CheckSection {
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
