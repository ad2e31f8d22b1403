//! A real server as an operator names it: `ADDR` (every port) or `ADDR:PORT`
//! (`[V6]:PORT` for IPv6).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// An address, and a port if given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Target {
    /// The real server's address.
    pub addr: IpAddr,
    /// Its port; `None`: every port.
    pub port: Option<u16>,
}

/// A server that is neither `ADDR` nor `ADDR:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a real server: expected ADDR, ADDR:PORT or [IPV6]:PORT")]
pub struct TargetError(pub String);

impl Target {
    /// Whether it names the destination `addr`:`port`.
    pub fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.addr == addr && self.port.is_none_or(|p| p == port)
    }

    /// Whether everything `other` names, this names too.
    pub fn covers(&self, other: &Target) -> bool {
        self.addr == other.addr && (self.port.is_none() || self.port == other.port)
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(Target { addr, port: None });
        }
        s.parse::<SocketAddr>()
            .map(|a| Target {
                addr: a.ip(),
                port: Some(a.port()),
            })
            .map_err(|_| TargetError(s.to_string()))
    }
}

impl TryFrom<String> for Target {
    type Error = TargetError;
    fn try_from(s: String) -> Result<Self, TargetError> {
        s.parse()
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{}", self.addr),
            Some(p) => write!(f, "{}", SocketAddr::new(self.addr, p)),
        }
    }
}
