//! `type = "udp-dns"`: a query over UDP (`query`, the root by default) whose answer
//! must carry `expect_rcode` (NOERROR by default).

use crate::config::schema::CheckSection;
use crate::config::validate::values::V;
use crate::health::CheckKind;

use super::Ctx;

/// The keys a `udp-dns` check takes.
pub const KEYS: &[&str] = &["query", "expect_rcode"];

/// A `udp-dns` check.
pub fn build(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<CheckKind> {
    let query = c
        .query
        .as_ref()
        .map_or(".".to_string(), |q| q.get_ref().clone());
    let rcode = match &c.expect_rcode {
        None => 0,
        Some(r) => {
            let Some(n) = rcode(r.get_ref()) else {
                let m = format!("expect_rcode {:?} is not an rcode (noerror, formerr, servfail, nxdomain, notimp, refused, or 0-15)", r.get_ref());
                v.err(r.span(), ctx.what, m);
                return None;
            };
            n
        }
    };
    Some(CheckKind::Dns { query, rcode })
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
