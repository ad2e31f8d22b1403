//! The kernel settings a config needs. lvsdr-director runs without the right to write
//! them; `lvsdr-director prepare` sets them as root (the unit's `ExecStartPre=+`), and
//! the daemon warns when one differs.

use crate::model::Desired;

/// A flow that lands on this director mid-stream (the other one failed, or ECMP moved
/// it) is scheduled, not dropped: needed by `[announce]` and `[sync]`.
pub const SLOPPY_TCP: &str = "/proc/sys/net/ipv4/vs/sloppy_tcp";

/// Checks through the DR path get their answers from the VIP, a local address.
pub const ACCEPT_LOCAL: &str = "/proc/sys/net/ipv4/conf/all/accept_local";

/// A connection whose real server was deleted is expired at its next packet, and
/// that packet scheduled again: UDP flows and connections of a removed or failed
/// server move instead of meeting a dead server.
pub const EXPIRE_NODEST_CONN: &str = "/proc/sys/net/ipv4/vs/expire_nodest_conn";

/// A persistence template pointing at a real server of weight 0 (failed, or drained)
/// expires when the next connection of its client would use it: persistent clients
/// move, instead of following their template to that server for up to its timeout.
pub const EXPIRE_QUIESCENT_TEMPLATE: &str = "/proc/sys/net/ipv4/vs/expire_quiescent_template";

/// The settings `desired` needs, as (path, value).
pub fn wanted(desired: &Desired) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if !desired.services.is_empty() {
        v.push((EXPIRE_NODEST_CONN, "1"));
    }
    if desired.services.iter().any(|s| s.is_persistent()) {
        v.push((EXPIRE_QUIESCENT_TEMPLATE, "1"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Desired {
        let text = format!(
            "[[service]]\nname = \"web\"\nvip = \"192.0.2.10\"\nport = 80\n{extra}\
             [service.check]\ntype = \"none\"\n[[service.real_server]]\naddress = \"10.0.0.11\"\n"
        );
        crate::config::parse(&text, "t.toml").expect("config")
    }

    /// Persistent and UDP clients leave a failed or drained server only with these.
    #[test]
    fn every_table_expires_connections_of_deleted_servers_and_persistence_its_templates() {
        let plain = wanted(&config(""));
        assert!(plain.contains(&(EXPIRE_NODEST_CONN, "1")), "{plain:?}");
        assert!(!plain.iter().any(|(p, _)| *p == EXPIRE_QUIESCENT_TEMPLATE));
        let sticky = wanted(&config("persistence = \"300s\"\n"));
        assert!(
            sticky.contains(&(EXPIRE_QUIESCENT_TEMPLATE, "1")),
            "{sticky:?}"
        );
        let none = crate::config::parse("", "empty.toml").expect("config");
        assert!(wanted(&none).is_empty());
    }
}
