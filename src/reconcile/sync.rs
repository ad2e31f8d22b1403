//! The kernel's connection sync daemon, as `[sync]` wants it: both roles (master and
//! backup) always, with one sync id, so a director that fails back still has the
//! connections its peer learned meanwhile. Pure: [`plan`] compares the wanted daemons
//! with the running ones. Without `[sync]` nothing is touched (daemons an operator
//! started stay).

use crate::ipvs::{Daemon, DaemonState};
use crate::model::SyncSettings;

/// A change to the running daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOp {
    /// Stop the daemon of this role (its settings differ).
    Stop(DaemonState),
    /// Start this daemon.
    Start(Daemon),
}

impl std::fmt::Display for SyncOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncOp::Stop(s) => write!(f, "stop the {s} sync daemon"),
            SyncOp::Start(d) => write!(
                f,
                "start the {} sync daemon on {} (sync id {})",
                d.state, d.ifname, d.sync_id
            ),
        }
    }
}

/// The daemon of role `state` that `want` asks for.
pub fn wanted(want: &SyncSettings, state: DaemonState) -> Daemon {
    Daemon {
        state,
        ifname: want.interface.clone(),
        sync_id: want.sync_id,
        sync_maxlen: want.maxlen,
        mcast_group: want.mcast_group,
        mcast_port: want.port,
        mcast_ttl: want.ttl,
    }
}

/// Whether a running daemon is the wanted one; what the config leaves out, the kernel
/// chooses.
fn matches(have: &Daemon, want: &Daemon) -> bool {
    fn same<T: PartialEq>(want: Option<T>, have: Option<T>) -> bool {
        want.is_none() || want == have
    }
    // The kernel lowers maxlen to the interface's MTU less the headers (validation
    // keeps it above the floor it raises to): a smaller running value is the clamp.
    let maxlen = match (want.sync_maxlen, have.sync_maxlen) {
        (None, _) => true,
        (Some(w), Some(h)) => h <= w,
        (Some(_), None) => false,
    };
    have.ifname == want.ifname
        && have.sync_id == want.sync_id
        && maxlen
        && same(want.mcast_group, have.mcast_group)
        && same(want.mcast_port, have.mcast_port)
        && same(want.mcast_ttl, have.mcast_ttl)
}

/// What to do so that the running daemons are the wanted ones.
pub fn plan(want: Option<&SyncSettings>, have: &[Daemon]) -> Vec<SyncOp> {
    let Some(want) = want else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    for state in [DaemonState::Master, DaemonState::Backup] {
        let w = wanted(want, state);
        match have.iter().find(|d| d.state == state) {
            Some(h) if matches(h, &w) => {}
            Some(_) => {
                ops.push(SyncOp::Stop(state));
                ops.push(SyncOp::Start(w));
            }
            None => ops.push(SyncOp::Start(w)),
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> SyncSettings {
        SyncSettings {
            interface: "eth0".into(),
            sync_id: 7,
            mcast_group: None,
            port: None,
            ttl: None,
            maxlen: None,
        }
    }

    /// The kernel reports its defaults for what was left out.
    fn running(state: DaemonState, ifname: &str, sync_id: u32) -> Daemon {
        Daemon {
            state,
            ifname: ifname.into(),
            sync_id,
            sync_maxlen: Some(1472),
            mcast_group: Some("224.0.0.81".parse().expect("ip")),
            mcast_port: Some(8848),
            mcast_ttl: Some(1),
        }
    }

    #[test]
    fn both_roles_start_then_nothing_more() {
        let ops = plan(Some(&want()), &[]);
        assert_eq!(ops.len(), 2);
        // Applying the plan and planning again yields nothing.
        let have = [
            running(DaemonState::Master, "eth0", 7),
            running(DaemonState::Backup, "eth0", 7),
        ];
        assert!(plan(Some(&want()), &have).is_empty());
    }

    #[test]
    fn a_daemon_with_other_settings_is_replaced_and_none_is_touched_without_sync() {
        let have = [
            running(DaemonState::Master, "eth0", 7),
            running(DaemonState::Backup, "eth1", 7),
        ];
        assert_eq!(
            plan(Some(&want()), &have),
            [
                SyncOp::Stop(DaemonState::Backup),
                SyncOp::Start(wanted(&want(), DaemonState::Backup))
            ]
        );
        let mut ttl = want();
        ttl.ttl = Some(2);
        assert_eq!(
            plan(Some(&ttl), &have[..1]).len(),
            3,
            "master replaced, backup started"
        );
        assert!(plan(None, &have).is_empty());
    }

    /// A maxlen above the interface's MTU is clamped by the kernel (1472 on a 1500
    /// MTU); comparing it as given stopped and started both daemons on every pass.
    #[test]
    fn a_maxlen_the_kernel_clamped_to_the_mtu_matches() {
        let mut w = want();
        w.maxlen = Some(65_000);
        let have = [
            running(DaemonState::Master, "eth0", 7),
            running(DaemonState::Backup, "eth0", 7),
        ];
        assert!(plan(Some(&w), &have).is_empty());
        w.maxlen = Some(1200);
        assert_eq!(
            plan(Some(&w), &have).len(),
            4,
            "a smaller maxlen is applied"
        );
    }
}
