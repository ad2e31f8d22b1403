//! What a health check is: its target, its kind and its timing. Two real servers whose
//! specs are equal share one running check.

use std::net::SocketAddr;
use std::time::Duration;

/// One health check, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// Where it connects (the real server's address, the check's port).
    pub target: SocketAddr,
    /// What it does.
    pub kind: CheckKind,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// `via = "vip"`: the check goes to the VIP and reaches this real server through
    /// the DR path (see [`Via`]); `None` connects to the real server's own address.
    pub via: Option<Via>,
}

/// A check through the DR path: it connects to `vip` from the director's own address
/// with firewall mark `mark` on its socket; an IPVS fwmark service for that mark that
/// holds only this real server sends it there, rewriting the MAC as for clients. A real
/// server that lost the VIP, or answers on the wrong address, fails such a check while
/// its own address still answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Via {
    /// The VIP and the port to connect to.
    pub vip: SocketAddr,
    /// The firewall mark (`SO_MARK`) of the check's socket.
    pub mark: u32,
}

/// The kinds of check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// A half-open TCP check: SYN, then SYN-ACK (up) or RST (down); no connection.
    TcpSyn,
    /// An HTTP(S) request.
    Http(HttpCheck),
    /// A DNS query over UDP: an answer to it with the expected rcode is up.
    Dns {
        /// The name asked for (type A).
        query: String,
        /// The rcode the answer must carry (0, NOERROR, by default).
        rcode: u8,
    },
    /// A TCP exchange: connect, send `send` (if any), and read until the answer matches
    /// `expect` (a regex, validated when the config is read).
    TcpExpect {
        /// Sent once connected; empty sends nothing.
        send: String,
        /// What the answer must match.
        expect: String,
    },
    /// An SMTP server's greeting: a 220 banner, then QUIT.
    Smtp,
    /// A command: exit 0 is up. It gets the target in `LVSDR_RS_ADDR`/`LVSDR_RS_PORT`.
    Exec {
        /// Run with `sh -c`.
        command: String,
    },
}

/// An HTTP(S) check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// HTTPS.
    pub tls: bool,
    /// Skip certificate verification (HTTPS).
    pub insecure: bool,
    /// Request path.
    pub path: String,
    /// Host header; the target address when absent.
    pub host: Option<String>,
    /// Statuses that mean up.
    pub expect_status: StatusSet,
    /// A regex the body must match, validated when the config is read.
    pub expect_body: Option<String>,
    /// HTTPS: the server name sent (SNI) and verified in the certificate; the
    /// connection still goes to the real server's address.
    pub sni: Option<String>,
    /// HTTPS: a CA file (PEM) to verify with instead of the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// Keep the connection open between checks where the server allows it
    /// (`keepalive`, default true); every [`HttpCheck::FRESH_EVERY`]th check asks
    /// the server to close it, so the listener itself is tried that often.
    pub keepalive: bool,
}

impl HttpCheck {
    /// With keep-alive, one check in this many goes on a new connection.
    pub const FRESH_EVERY: u64 = 10;

    /// `GET path`, 200 expected, plain HTTP, keep-alive.
    pub fn get(path: &str) -> HttpCheck {
        HttpCheck {
            tls: false,
            insecure: false,
            path: path.to_string(),
            host: None,
            expect_status: StatusSet::one(200),
            expect_body: None,
            sni: None,
            ca: None,
            keepalive: true,
        }
    }
}

/// HTTP statuses, as ranges: `200`, `"200-299"`, `"200,301-302"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// One status.
    pub fn one(status: u16) -> StatusSet {
        StatusSet(vec![(status, status)])
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// Parses `"200"`, `"200-299"`, `"200,301-302"` (statuses 100-599).
    pub fn parse(s: &str) -> Option<StatusSet> {
        let mut set = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = part.parse().ok()?;
                    (n, n)
                }
            };
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return None;
            }
            set.push((lo, hi));
        }
        (!set.is_empty()).then_some(StatusSet(set))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl CheckSpec {
    /// A short label for logs and status, e.g. `http 10.0.0.11:80/healthz`, with
    /// ` via VIP:PORT` for a check through the DR path.
    pub fn label(&self) -> String {
        match &self.via {
            None => self.kind_label(),
            Some(v) => format!("{} via {}", self.kind_label(), v.vip),
        }
    }

    fn kind_label(&self) -> String {
        match &self.kind {
            CheckKind::Tcp => format!("tcp {}", self.target),
            CheckKind::TcpSyn => format!("tcp-syn {}", self.target),
            CheckKind::Http(h) => format!(
                "{} {}{}",
                if h.tls { "https" } else { "http" },
                self.target,
                h.path
            ),
            CheckKind::Dns { query, .. } => format!("udp-dns {} {query}", self.target),
            CheckKind::Exec { command } => format!("exec {} {command:?}", self.target),
            CheckKind::TcpExpect { expect, .. } => {
                format!("tcp-expect {} {expect:?}", self.target)
            }
            CheckKind::Smtp => format!("smtp {}", self.target),
        }
    }
}
