//! Why a check failed: the real server (it is down), or this host (out of file
//! descriptors or buffers, no route). A local failure says nothing about the server,
//! so it never takes one down: the check goes to *unknown*, which keeps the weight
//! the kernel has.

use std::fmt;

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// The server did not pass: refused, timed out, wrong answer.
    Down(String),
    /// This host could not run the check.
    Local(String),
    /// No answer within the timeout. Down, unless this director stalled meanwhile
    /// (the supervisor decides, from [`crate::lag::Stalls`]).
    TimedOut(std::time::Duration),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Down(m) => f.write_str(m),
            CheckFailure::Local(m) => write!(f, "unknown (local error): {m}"),
            CheckFailure::TimedOut(d) => write!(f, "timed out after {d:?}"),
        }
    }
}

impl From<String> for CheckFailure {
    fn from(m: String) -> CheckFailure {
        CheckFailure::Down(m)
    }
}

/// Errnos that are this host's trouble, not the server's.
fn local_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE
            | libc::ENFILE
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::ENETUNREACH
            | libc::EADDRNOTAVAIL
            | libc::EAGAIN
    )
}

/// `context: e`, local or down by the errno.
pub fn io_failure(context: &str, e: &std::io::Error) -> CheckFailure {
    let msg = format!("{context}: {e}");
    match e.raw_os_error() {
        Some(n) if local_errno(n) => CheckFailure::Local(msg),
        _ => CheckFailure::Down(msg),
    }
}

/// The innermost cause of an error chain ("connection refused", not "error sending
/// request for url"), and whether it is a local one.
pub fn root_cause(context: &str, e: &(dyn std::error::Error + 'static)) -> CheckFailure {
    let mut cur = e;
    let mut io = None;
    while let Some(next) = cur.source() {
        if let Some(i) = next.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        cur = next;
    }
    match io {
        Some(i) => io_failure(context, i),
        None => CheckFailure::Down(format!("{context}: {cur}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_local_and_refused_is_down() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(matches!(
            io_failure("connect", &emfile),
            CheckFailure::Local(_)
        ));
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let f = io_failure("connect 10.0.0.1:80", &refused);
        assert_eq!(
            f,
            CheckFailure::Down("connect 10.0.0.1:80: Connection refused (os error 111)".into())
        );
        let noroute = std::io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert!(io_failure("connect", &noroute)
            .to_string()
            .starts_with("unknown (local error)"));
        // Down to the innermost cause of a chain.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request for url")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let w = Wrapper(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let f = root_cause("GET http://10.0.0.1/", &w);
        assert!(f.to_string().contains("Connection refused"), "{f}");
        assert!(!f.to_string().contains("error sending request"), "{f}");
    }
}
