//! `type = "tcp-expect"`: connect, send `send` (if any), and read until the answer
//! matches `expect` (a regex, required).

use crate::config::schema::CheckSection;
use crate::config::validate::values::V;
use crate::health::CheckKind;

use super::Ctx;

/// The keys a `tcp-expect` check takes.
pub const KEYS: &[&str] = &["send", "expect"];

/// A `tcp-expect` check.
pub fn build(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<CheckKind> {
    let Some(expect) = &c.expect else {
        let m = "a tcp-expect check needs expect (a regex)";
        v.err(ctx.span.clone(), ctx.what, m);
        return None;
    };
    if let Err(e) = regex::Regex::new(expect.get_ref()) {
        let m = format!("expect is not a valid regex: {e}");
        v.err(expect.span(), ctx.what, m);
        return None;
    }
    Some(CheckKind::TcpExpect {
        send: c
            .send
            .as_ref()
            .map_or(String::new(), |s| s.get_ref().clone()),
        expect: expect.get_ref().clone(),
    })
}
