//! `type = "exec"`: a command run with `sh -c`; exit 0 is up.

use crate::config::schema::CheckSection;
use crate::config::validate::values::V;
use crate::health::CheckKind;

use super::Ctx;

/// The keys an `exec` check takes.
pub const KEYS: &[&str] = &["command"];

/// An `exec` check: `command` is required.
pub fn build(v: &mut V<'_>, c: &CheckSection, ctx: &Ctx<'_>) -> Option<CheckKind> {
    let Some(cmd) = &c.command else {
        v.err(ctx.span.clone(), ctx.what, "an exec check needs command");
        return None;
    };
    Some(CheckKind::Exec {
        command: cmd.get_ref().clone(),
    })
}
