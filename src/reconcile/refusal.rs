//! What an op the kernel refused means, and so what the driver does next. Pure.
//!
//! - **Converged**: EEXIST on an add, ENOENT/ESRCH on a delete or on the edit of a
//!   destination (it is gone: a server leaving the config is set to weight 0 before its
//!   delete). Someone else (another writer, an operator) got there first; the kernel
//!   may already be right. The service is read again at once, without backoff.
//! - **Permanent**: EINVAL, ERANGE (a value out of the kernel's range), a scheduler or
//!   persistence engine the kernel does not have, EPERM. Retrying cannot help: the op is held back (reported in `/status` and
//!   `/metrics`) until the config changes or a full read finds the kernel changed.
//! - **Transient**: anything else (a lost socket, ENOMEM, EBUSY): retried with backoff.

use super::op::Op;
use crate::ipvs::IpvsError;

/// See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Re-read the service now.
    Converged,
    /// Hold the op back until the config or the kernel changes.
    Permanent,
    /// Retry with backoff.
    Transient,
}

/// How to treat `e`, the kernel's answer to `op`.
pub fn classify(op: &Op, e: &IpvsError) -> Refusal {
    let add = matches!(op, Op::AddService(_) | Op::AddDest(..));
    let delete = matches!(op, Op::DelService(_) | Op::DelDest(..));
    match e {
        IpvsError::Exists { .. } if add => Refusal::Converged,
        IpvsError::NotFound { .. } if delete || matches!(op, Op::EditDest(..)) => {
            Refusal::Converged
        }
        // On an add or edit of a service, ENOENT names a missing scheduler or engine.
        IpvsError::NotFound { .. } if matches!(op, Op::AddService(_) | Op::EditService(_)) => {
            Refusal::Permanent
        }
        IpvsError::Invalid { .. } | IpvsError::PermissionDenied { .. } => Refusal::Permanent,
        IpvsError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ERANGE) => {
            Refusal::Permanent
        }
        _ => Refusal::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::error::kernel_error;
    use crate::ipvs::{
        Dest, DestSettings, Protocol, Scheduler, Service, ServiceKey, ServiceSettings,
    };

    #[test]
    fn each_errno_lands_in_its_class() {
        let key = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "192.0.2.10".parse().expect("ip"),
            port: 80,
        };
        let svc = Service {
            settings: ServiceSettings::new(Scheduler::Wrr, key.family()),
            key: key.clone(),
        };
        let dest = Dest {
            addr: "10.0.0.11".parse().expect("ip"),
            port: 80,
            settings: DestSettings::route(1),
        };
        let cases = [
            (
                Op::AddService(svc.clone()),
                libc::EEXIST,
                Refusal::Converged,
            ),
            (
                Op::AddDest(key.clone(), dest),
                libc::EEXIST,
                Refusal::Converged,
            ),
            (Op::DelService(key.clone()), libc::ESRCH, Refusal::Converged),
            (
                Op::DelDest(key.clone(), dest.addr, 80),
                libc::ENOENT,
                Refusal::Converged,
            ),
            (
                Op::AddService(svc.clone()),
                libc::ENOENT,
                Refusal::Permanent,
            ),
            // A leaving server's weight 0 meets a destination another writer deleted.
            (
                Op::EditDest(key.clone(), dest),
                libc::ENOENT,
                Refusal::Converged,
            ),
            (
                Op::EditDest(key.clone(), dest),
                libc::EINVAL,
                Refusal::Permanent,
            ),
            (Op::AddService(svc.clone()), libc::EPERM, Refusal::Permanent),
            // Retried for ever with backoff before: a value the kernel will never take.
            (
                Op::AddDest(key.clone(), dest),
                libc::ERANGE,
                Refusal::Permanent,
            ),
            (
                Op::AddDest(key.clone(), dest),
                libc::ENOMEM,
                Refusal::Transient,
            ),
            (Op::EditService(svc), libc::EBUSY, Refusal::Transient),
        ];
        for (op, errno, want) in cases {
            let e = kernel_error(&op.request(), errno);
            assert_eq!(classify(&op, &e), want, "{op}: {e}");
        }
        let lost = IpvsError::Timeout {
            op: "new".into(),
            object: "destination".into(),
            after: std::time::Duration::from_secs(10),
        };
        assert_eq!(classify(&Op::DelService(key), &lost), Refusal::Transient);
    }
}
