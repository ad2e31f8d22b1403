//! The director's TOML config: parse (unknown keys rejected) and validate into a
//! [`Desired`](crate::model::Desired), reporting every error at once with its place.

mod blocks;
mod loader;
mod schema;
mod validate;

pub use loader::{LoadStats, Loader};

use std::fmt;
use std::path::Path;

use crate::model::Desired;

/// One problem in a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Which part of the config, e.g. `service "web", real_server 10.0.0.11`.
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the config",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Facts about the director host that the config is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// The default gateways (a VIP must not be one).
    pub gateways: Vec<std::net::IpAddr>,
    /// Where relative paths in `[agents]` resolve: `$CREDENTIALS_DIRECTORY` under
    /// systemd (`LoadCredential=`), else the config file's folder.
    pub base: Option<std::path::PathBuf>,
}

impl Host {
    /// Reads this host's default gateways from `/proc/net/route` and
    /// `/proc/net/ipv6_route` (nothing, where they cannot be read).
    pub fn read() -> Host {
        let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        Host {
            gateways: default_gateways(&v4, &v6),
            base: std::env::var_os("CREDENTIALS_DIRECTORY").map(Into::into),
        }
    }
}

/// The gateways of the default routes in the kernel's route listings.
pub fn default_gateways(route: &str, ipv6_route: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    // Iface Destination Gateway Flags …: hex, in host (little-endian) byte order.
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let (Some(&"00000000"), Some(gw)) = (f.get(1), f.get(2)) {
            if let Ok(n) = u32::from_str_radix(gw, 16) {
                if n != 0 {
                    out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                        n.swap_bytes(),
                    )));
                }
            }
        }
    }
    // dest plen src plen nexthop …: 32 hex digits each, network order.
    for line in ipv6_route.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[0].chars().all(|c| c == '0') && f[1] == "00" {
            if let Ok(n) = u128::from_str_radix(f[4], 16) {
                if n != 0 {
                    out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(n)));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Reads and validates a config file, against this host's facts.
pub fn load(path: &Path) -> Result<Desired, ConfigErrors> {
    Loader::default().load(path)
}

/// A config file's text, its name for errors, and this host's facts (relative paths
/// resolve in the file's folder unless systemd gave credentials).
fn read(path: &Path) -> Result<(String, String, Host), ConfigErrors> {
    let name = path.display().to_string();
    let refuse = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            context: String::new(),
            message,
        }])
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
    // An empty file parses as a valid config without services: a reload that caught
    // a file between its truncation and its write would retire every service. Nobody
    // means that by an empty file; a config without services says `[director]`.
    if text.trim().is_empty() {
        return Err(refuse(
            "the file is empty (caught while it was being written? write the new config \
             beside it and rename it into place)"
                .to_string(),
        ));
    }
    let mut host = Host::read();
    if host.base.is_none() {
        host.base = path.parent().map(Path::to_path_buf);
    }
    Ok((text, name, host))
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Desired, ConfigErrors> {
    parse_on(text, file, &Host::default())
}

/// Parses and validates config text against `host`'s facts.
pub fn parse_on(text: &str, file: &str, host: &Host) -> Result<Desired, ConfigErrors> {
    Loader::default().parse_on(text, file, host)
}

/// Parses and validates config text as one document, every error with its place (what
/// [`Loader`] falls back to).
pub fn parse_whole(text: &str, file: &str, host: &Host) -> Result<Desired, ConfigErrors> {
    let raw: schema::File = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line,
            column,
            context: String::new(),
            message: e.message().to_string(),
        }])
    })?;
    validate::validate(&raw, text, file, host)
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// What a valid config may still get wrong, for `check-config` and the daemon's log:
/// with `[announce]` (several directors behind ECMP) a service should use `mh` (or
/// `sh`), so that a flow that moves to another director meets the same real server,
/// and quiesce failed servers (`on_failure = "weight0"`), so that every director keeps
/// the same Maglev table.
pub fn warnings(desired: &Desired) -> Vec<String> {
    use crate::ipvs::Scheduler;
    let mut w = Vec::new();
    if let Some(sync) = &desired.sync {
        // Valid by name, but the kernel refuses a daemon on a device this host lacks.
        let dev = std::path::Path::new("/sys/class/net").join(&sync.interface);
        if !dev.exists() {
            w.push(format!(
                "[sync] interface {:?} does not exist on this host: the kernel will refuse \
                 the sync daemons until it does",
                sync.interface
            ));
        }
    }
    for s in &desired.services {
        let sched = &s.service.settings.scheduler;
        let fallback = s
            .service
            .settings
            .flags
            .contains(crate::ipvs::ServiceFlags::SCHED1);
        if matches!(sched, Scheduler::Mh | Scheduler::Sh) && !fallback {
            w.push(format!(
                "service {:?} uses {sched} without \"{sched}-fallback\": a real server at weight \
                 0 (failed, drained, leaving) keeps its share of the hash, and the kernel refuses \
                 the clients that hash to it",
                s.name
            ));
        }
    }
    if desired.announce.is_none() {
        return w;
    }
    for s in &desired.services {
        if s.name.starts_with("check-via-vip-") {
            continue;
        }
        let sched = &s.service.settings.scheduler;
        if !matches!(sched, Scheduler::Mh | Scheduler::Sh) {
            w.push(format!(
                "service {:?} uses {sched}: with [announce] a flow that moves to another \
                 director is scheduled again there; mh (or sh) picks the same real server on \
                 every director",
                s.name
            ));
        }
        if s.on_failure == crate::model::OnFailure::Remove {
            w.push(format!(
                "service {:?}: on_failure = \"remove\" with [announce]: a server deleted and \
                 added again lands elsewhere in mh's table; weight0 keeps every director's \
                 table the same",
                s.name
            ));
        }
    }
    w
}
