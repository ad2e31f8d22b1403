//! The kernel settings a config needs. lvsdr-director runs without the right to write
//! them; `lvsdr-director prepare` sets them as root (the unit's `ExecStartPre=+`), and
//! the daemon warns when one differs.

use crate::model::Desired;

/// A flow that lands on this director mid-stream (the other one failed, or ECMP moved
/// it) is scheduled, not dropped: needed by `[announce]` and `[sync]`.
pub const SLOPPY_TCP: &str = "/proc/sys/net/ipv4/vs/sloppy_tcp";

/// Checks through the DR path get their answers from the VIP, a local address.
pub const ACCEPT_LOCAL: &str = "/proc/sys/net/ipv4/conf/all/accept_local";

/// The settings `desired` needs, as (path, value).
pub fn wanted(desired: &Desired) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if desired.announce.is_some() || desired.sync.is_some() {
        v.push((SLOPPY_TCP, "1"));
    }
    if desired.checks().iter().any(|c| c.via.is_some()) {
        v.push((ACCEPT_LOCAL, "1"));
    }
    v
}

/// The wanted settings that differ now, with what they are (a missing file counts).
pub fn differing(desired: &Desired) -> Vec<String> {
    wanted(desired)
        .into_iter()
        .filter_map(|(path, value)| {
            let now = std::fs::read_to_string(path).map(|s| s.trim().to_string());
            match now {
                Ok(n) if n == value => None,
                Ok(n) => Some(format!("{path} is {n}, the config needs {value}")),
                Err(e) => Some(format!("{path}: {e} (the config needs {value})")),
            }
        })
        .collect()
}
