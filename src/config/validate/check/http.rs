//! `type = "http"` and `"https"`: a request, the status and (optionally) the body it
//! must answer with, on a kept connection unless `keepalive = false`.

use crate::config::schema::{CheckSection, StatusField};
use crate::config::validate::values::V;
use crate::health::{CheckKind, HttpCheck, StatusSet};

use super::Ctx;

/// The keys an `http` check takes.
pub const KEYS: &[&str] = &["keepalive", "path", "expect_status", "expect_body", "host"];
/// The keys an `https` check takes.
pub const TLS_KEYS: &[&str] = &[
    "keepalive",
    "path",
    "expect_status",
    "expect_body",
    "host",
    "sni",
    "ca",
];

/// An `http` check.
pub fn plain(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<CheckKind> {
    if c.insecure_skip_verify == Some(true) {
        let m = "insecure_skip_verify applies to https checks only";
        v.err(ctx.span.clone(), ctx.what, m);
        // The rest is still looked at, for its own errors.
        let _ = build(v, c, ctx, false);
        return None;
    }
    build(v, c, ctx, false)
}

/// An `https` check.
pub fn tls(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<CheckKind> {
    build(v, c, ctx, true)
}

fn build(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>, tls: bool) -> Option<CheckKind> {
    let mut ok = true;
    let path = c
        .path
        .as_ref()
        .map_or("/".to_string(), |p| p.get_ref().clone());
    if let Some(p) = c.path.as_ref().filter(|_| !path.starts_with('/')) {
        v.err(p.span(), ctx.what, "path must start with /");
        ok = false;
    }
    // Either would break the request line or a header the check writes.
    if let Some(p) = c
        .path
        .as_ref()
        .filter(|_| path.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        v.err(
            p.span(),
            ctx.what,
            "path must not contain spaces or control characters (escape them: %20)",
        );
        ok = false;
    }
    if let Some(h) = c.host.as_ref().filter(|h| {
        h.get_ref()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    }) {
        v.err(
            h.span(),
            ctx.what,
            "host must not contain spaces or control characters",
        );
        ok = false;
    }
    let expect_status = expect_status(v, c, ctx)?;
    if let Some(b) = &c.expect_body {
        if let Err(e) = regex::Regex::new(b.get_ref()) {
            let m = format!("expect_body is not a valid regex: {e}");
            v.err(b.span(), ctx.what, m);
            ok = false;
        }
    }
    let ca = c.ca.as_ref().map(|p| {
        let p = std::path::PathBuf::from(p.get_ref());
        match &v.host.base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }
    });
    let check = HttpCheck {
        tls,
        insecure: c.insecure_skip_verify.unwrap_or(false),
        path,
        host: c.host.as_ref().map(|h| h.get_ref().clone()),
        expect_status,
        expect_body: c.expect_body.as_ref().map(|b| b.get_ref().clone()),
        sni: c.sni.as_ref().map(|s| s.get_ref().clone()),
        keepalive: c.keepalive.as_ref().is_none_or(|k| *k.get_ref()),
        ca,
    };
    ok.then_some(CheckKind::Http(check))
}

/// `expect_status`: one status (100-599) or a set such as "200-299" (200 by default).
fn expect_status(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<StatusSet> {
    let Some(s) = &c.expect_status else {
        return Some(StatusSet::one(200));
    };
    let set = match s.get_ref() {
        StatusField::One(n) => u16::try_from(*n)
            .ok()
            .and_then(|n| (100..=599).contains(&n).then(|| StatusSet::one(n))),
        StatusField::Set(t) => StatusSet::parse(t),
    };
    if set.is_none() {
        let m = "expect_status must be a status (100-599) or a set such as \"200-299\" or \"200,301-302\"";
        v.err(s.span(), ctx.what, m);
    }
    set
}
