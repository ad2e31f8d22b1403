//! What can go wrong talking to IPVS, naming the operation and the object; a kernel
//! errno mapped to one of these ([`kernel_error`]), for the handle and the batch writer.

use super::wire::{DecodeError, EncodeError, Request, ServiceAttrs};

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

fn svc_name(s: &ServiceAttrs) -> String {
    format!("service {}", s.key)
}

fn dest_name(s: &ServiceAttrs, addr: &std::net::IpAddr, port: u16) -> String {
    format!(
        "destination {} of service {}",
        super::types::fmt_addr_port(addr, port),
        s.key
    )
}

/// The operation and its object, in words, for errors.
pub fn describe(req: &Request) -> (&'static str, String) {
    match req {
        Request::GetInfo => ("get", "IPVS info".into()),
        Request::GetConfig => ("get", "timeouts".into()),
        Request::SetConfig(_) => ("set", "timeouts".into()),
        Request::Flush => ("flush", "all services".into()),
        Request::Zero(None) => ("zero", "all counters".into()),
        Request::Zero(Some(s)) => ("zero", svc_name(s)),
        Request::NewService(s) => ("add", format!("service {}", s.key)),
        Request::SetService(s) => ("edit", format!("service {}", s.key)),
        Request::DelService(s) => ("delete", svc_name(s)),
        Request::GetService(s) => ("get", svc_name(s)),
        Request::DumpServices => ("list", "services".into()),
        Request::NewDest(s, d) => ("add", dest_name(s, &d.addr, d.port)),
        Request::SetDest(s, d) => ("edit", dest_name(s, &d.addr, d.port)),
        Request::DelDest(s, d) => ("delete", dest_name(s, &d.addr, d.port)),
        Request::DumpDests(s) => ("list destinations of", svc_name(s)),
        Request::NewDaemon(d) => ("start", format!("{} sync daemon", d.state)),
        Request::DelDaemon(d) => ("stop", format!("{} sync daemon", d.state)),
        Request::DumpDaemons => ("list", "sync daemons".into()),
    }
}

/// Maps a kernel errno for `req` to a typed error naming its object.
pub fn kernel_error(req: &Request, errno: i32) -> IpvsError {
    let (op, object) = describe(req);
    let service_of = |req: &Request| match req {
        Request::NewDest(s, _) | Request::SetDest(s, _) | Request::DelDest(s, _) => {
            Some(svc_name(s))
        }
        _ => None,
    };
    match errno {
        libc::EEXIST => IpvsError::Exists { object },
        // ESRCH: the service is missing (also when a destination was the target).
        libc::ESRCH => IpvsError::NotFound {
            op: format!("{op} {object}"),
            object: service_of(req).unwrap_or(object),
        },
        libc::ENOENT => match req {
            // For a service, ENOENT means its scheduler or persistence engine is unknown.
            Request::NewService(s) | Request::SetService(s) => IpvsError::NotFound {
                op: format!("{op} service {}", s.key),
                object: format!(
                    "scheduler {:?} or persistence engine {:?} (is its ip_vs_ module available?)",
                    s.settings.scheduler.name(),
                    s.settings.pe_name.as_deref().unwrap_or("")
                ),
            },
            _ => IpvsError::NotFound {
                op: op.to_string(),
                object,
            },
        },
        libc::EPERM => IpvsError::PermissionDenied {
            op: op.into(),
            object,
        },
        libc::EINVAL => IpvsError::Invalid {
            op: op.into(),
            object,
            sent: format!("{req:?}"),
        },
        other => IpvsError::Kernel {
            op: op.into(),
            object,
            source: std::io::Error::from_raw_os_error(other),
        },
    }
}
