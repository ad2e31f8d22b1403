//! What can go wrong in a pass, typed: the loop decides on it ([`super::retry`]) and
//! the published state carries its text.

use super::stall::Stalled;
use crate::ipvs::IpvsError;

/// A pass's failure (each is retried: the next pass reads the whole table).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Reading the table failed (nothing was planned).
    #[error("{0}")]
    Read(#[source] IpvsError),
    /// The kernel refused an op for now (a permanent refusal is held, not an error).
    #[error("{0}")]
    Refused(#[source] IpvsError),
    /// The sync daemons could not be read.
    #[error("reading the sync daemons: {0}")]
    SyncRead(#[source] IpvsError),
    /// A sync daemon could not be started or stopped.
    #[error("{op}: {source}")]
    Sync {
        /// E.g. "start master sync daemon on eth0, sync id 1".
        op: String,
        /// The kernel's answer.
        source: IpvsError,
    },
    /// The kernel answered nothing for too long: the pass was abandoned.
    #[error("the pass stopped moving ({0}); abandoned, the next one reads the whole table")]
    Stalled(Stalled),
}
