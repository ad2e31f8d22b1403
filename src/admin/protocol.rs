//! The control socket's protocol: one JSON object per line each way, a request
//! then its answer; a connection may carry several. Scripts may speak it directly:
//!
//! ```text
//! → {"op":"drain","servers":["10.0.0.11"],"reason":"kernel upgrade"}
//! ← {"ok":true,"message":"10.0.0.11 in every service: drain (2 real servers)"}
//! → {"op":"conns","servers":["10.0.0.11"]}
//! ← {"ok":true,"conns":[{"service":"web","server":"10.0.0.11:80","weight":0,"active":3,"inactive":1}]}
//! ```
//!
//! `op` is one of `drain`, `disable`, `enable`, `weight` (with `"weight": "N"` or
//! `"P%"`), `list` and `conns`; `service` (a name) narrows a command to one service.

use serde::{Deserialize, Serialize};

use super::{Override, Target, WeightSpec};

/// The longest request line read.
pub const MAX_LINE: usize = 64 * 1024;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Weight 0 for these servers.
    Drain {
        /// The servers.
        servers: Vec<Target>,
        /// Only in this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// Out of the table.
    Disable {
        /// The servers.
        servers: Vec<Target>,
        /// Only in this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// Back under their health checks: the overrides within this scope go.
    Enable {
        /// The servers.
        servers: Vec<Target>,
        /// Only in this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// A runtime weight.
    Weight {
        /// The servers.
        servers: Vec<Target>,
        /// Only in this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// The weight.
        weight: WeightSpec,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// Every override.
    List,
    /// The kernel's connection counts of these servers.
    Conns {
        /// The servers.
        servers: Vec<Target>,
        /// Only in this service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
}

impl Request {
    /// Its name, for the audit log.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Drain { .. } => "drain",
            Request::Disable { .. } => "disable",
            Request::Enable { .. } => "enable",
            Request::Weight { .. } => "weight",
            Request::List => "list",
            Request::Conns { .. } => "conns",
        }
    }
}

/// A real server's connections in one service, as the kernel counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnCount {
    /// The service's name.
    pub service: String,
    /// The destination, `ADDR:PORT`.
    pub server: String,
    /// Its weight in the kernel (`None`: not in the kernel).
    pub weight: Option<u32>,
    /// Established connections.
    pub active: u32,
    /// Others (handshakes, closing).
    pub inactive: u32,
}

/// An answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `list`: every override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// For `conns`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conns: Vec<ConnCount>,
}

impl Response {
    /// A refusal.
    pub fn error(why: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(why.into()),
            ..Response::default()
        }
    }

    /// Done, with a message.
    pub fn done(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Response::default()
        }
    }
}
