//! What can go wrong talking to IPVS, naming the operation and the object.

use super::wire::{DecodeError, EncodeError};

/// An IPVS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The `IPVS` generic-netlink family is missing: the module is not loaded.
    #[error(
        "generic netlink family IPVS not found in network namespace {netns}: \
         the ip_vs kernel module is not loaded (modprobe ip_vs)"
    )]
    ModuleNotLoaded {
        /// The namespace asked, as `net:[inode]`.
        netns: String,
    },
    /// EEXIST: the object is already there.
    #[error("{object} already exists")]
    Exists {
        /// E.g. "service tcp 192.0.2.10:80".
        object: String,
    },
    /// ESRCH or ENOENT: the object (or the service it belongs to) is not there.
    #[error("{op}: no such {object}")]
    NotFound {
        /// E.g. "delete destination".
        op: String,
        /// What is missing.
        object: String,
    },
    /// EPERM: the caller lacks the capability.
    #[error("{op} {object}: permission denied; IPVS changes need CAP_NET_ADMIN")]
    PermissionDenied {
        /// The operation.
        op: String,
        /// Its object.
        object: String,
    },
    /// EINVAL: the kernel refused the values.
    #[error("{op} {object}: the kernel refused it as invalid (EINVAL); sent {sent}")]
    Invalid {
        /// The operation.
        op: String,
        /// Its object.
        object: String,
        /// The request, as sent.
        sent: String,
    },
    /// Any other errno.
    #[error("{op} {object}: {source}")]
    Kernel {
        /// The operation.
        op: String,
        /// Its object.
        object: String,
        /// The errno, as an I/O error.
        source: std::io::Error,
    },
    /// No answer came in time: the reply was lost (or the socket is stuck). The
    /// handle is marked broken and replaced before its next use.
    #[error(
        "{op} {object}: no answer from the kernel within {after:?}; the socket will be replaced"
    )]
    Timeout {
        /// The operation.
        op: String,
        /// Its object.
        object: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// The netlink socket itself failed.
    #[error("netlink socket ({context}): {detail}")]
    Socket {
        /// What was being done.
        context: String,
        /// neli's report.
        detail: String,
    },
    /// A request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A reply could not be parsed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// `/proc/net/ip_vs` could not be read.
    #[error("reading {path}: {source}")]
    ProcRead {
        /// The file.
        path: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `/proc/net/ip_vs` held a line this crate does not understand.
    #[error(transparent)]
    ProcParse(#[from] super::proc::ProcError),
}

impl IpvsError {
    /// The errno behind a kernel refusal, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IpvsError::Exists { .. } => Some(libc::EEXIST),
            IpvsError::PermissionDenied { .. } => Some(libc::EPERM),
            IpvsError::Invalid { .. } => Some(libc::EINVAL),
            IpvsError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
