//! What an importer builds: a config in lvsdr's terms, before it is written out as
//! TOML, with the notes a person should read (in the file as comments, and on stderr
//! as the report).

use std::fmt;
use std::net::IpAddr;

/// A place in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The file, as named (an `include`d file by its path).
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Left out because it has no bearing on the IPVS table or the checks (logging,
    /// e-mail, the daemon's own settings).
    Ignored,
    /// Not translated, or translated with another meaning: a person must look.
    Review,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where the construct is.
    pub at: At,
    /// How much it matters.
    pub level: Level,
    /// What happened to it.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ignored => "ignored",
            Level::Review => "review",
        };
        write!(f, "{}: {level}: {}", self.at, self.message)
    }
}

/// The imported config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// Comments for the top of the file.
    pub header: Vec<String>,
    /// The services, in input order.
    pub services: Vec<Service>,
    /// The report.
    pub notes: Vec<Note>,
    /// `[[notify]]` hooks (their `exec`), told of server events only.
    pub hooks: Vec<Vec<String>>,
}

impl Draft {
    /// Records a note.
    pub fn note(&mut self, at: &At, level: Level, message: impl Into<String>) {
        self.notes.push(Note {
            at: at.clone(),
            level,
            message: message.into(),
        });
    }

    /// The report's lines: a note repeated word for word at other places is one line
    /// that counts them and names the first few places.
    pub fn report(&self) -> Vec<String> {
        let mut groups: Vec<(&Note, Vec<&At>)> = Vec::new();
        let mut index: std::collections::HashMap<(Level, &str), usize> =
            std::collections::HashMap::new();
        for n in &self.notes {
            match index.get(&(n.level, n.message.as_str())) {
                Some(&i) => groups[i].1.push(&n.at),
                None => {
                    index.insert((n.level, n.message.as_str()), groups.len());
                    groups.push((n, Vec::new()));
                }
            }
        }
        groups
            .into_iter()
            .map(|(n, more)| match more.len() {
                0 => n.to_string(),
                k => {
                    let shown: Vec<String> = more.iter().take(5).map(|a| a.to_string()).collect();
                    let rest = if k > 5 { ", …" } else { "" };
                    format!("{n} (and {k} more times: {}{rest})", shown.join(", "))
                }
            })
            .collect()
    }

    /// Whether a person must look at something.
    pub fn needs_review(&self) -> bool {
        self.notes.iter().any(|n| n.level == Level::Review)
    }
}

/// How a service is keyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// VIP, port and protocol ("tcp", "udp", "sctp").
    Addr {
        protocol: String,
        vip: IpAddr,
        port: u16,
    },
    /// A firewall mark, IPv6 or not.
    Fwmark { mark: u32, ipv6: bool },
}

/// One virtual service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Its name in the config.
    pub name: String,
    /// What the kernel keys it by.
    pub key: Key,
    /// For a fwmark service: the VIPs its real servers hold.
    pub vips: Vec<IpAddr>,
    /// The scheduler's name.
    pub scheduler: String,
    /// Scheduler flags ("sh-port", "mh-fallback", …).
    pub flags: Vec<String>,
    /// One-packet scheduling.
    pub one_packet: bool,
    /// Persistence, in seconds.
    pub persistence: Option<u32>,
    /// Persistence netmask (IPv4 mask or IPv6 prefix length).
    pub netmask: Option<String>,
    /// Persistence engine ("sip").
    pub persistence_engine: Option<String>,
    /// "dr", "nat" or "tun".
    pub forwarding: String,
    /// "weight0" or "remove".
    pub on_failure: Option<String>,
    /// Added while no real server is up.
    pub sorry_server: Option<IpAddr>,
    /// The check every real server gets (unless its own differs).
    pub check: Option<Check>,
    /// The real servers.
    pub real_servers: Vec<RealServer>,
    /// Comments written above the service.
    pub comments: Vec<String>,
    /// Where it was defined.
    pub at: At,
}

impl Service {
    /// A service with the defaults every format starts from.
    pub fn new(name: String, key: Key, at: At) -> Service {
        Service {
            name,
            key,
            vips: Vec::new(),
            scheduler: "wlc".into(),
            flags: Vec::new(),
            one_packet: false,
            persistence: None,
            netmask: None,
            persistence_engine: None,
            forwarding: "dr".into(),
            on_failure: None,
            sorry_server: None,
            check: None,
            real_servers: Vec::new(),
            comments: Vec::new(),
            at,
        }
    }

    /// The service's port, or 0 for a fwmark service.
    pub fn port(&self) -> u16 {
        match &self.key {
            Key::Addr { port, .. } => *port,
            Key::Fwmark { .. } => 0,
        }
    }
}

/// One real server.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port, when it differs from the service's.
    pub port: Option<u16>,
    /// Its weight.
    pub weight: u32,
    /// Connection limits (0: none).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// Its check, when the service has none or it differs.
    pub check: Option<Check>,
    /// Comments written above it.
    pub comments: Vec<String>,
    /// Where it was given (a note about it points here).
    pub at: At,
}

impl RealServer {
    /// A real server given at `at`, with weight 1 and no limits.
    pub fn new(address: IpAddr, at: At) -> RealServer {
        RealServer {
            at,
            address,
            port: None,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            check: None,
            comments: Vec::new(),
        }
    }
}

/// A health check in lvsdr's terms; what is `None` takes lvsdr's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Check {
    /// "tcp", "http", "https", "udp-dns", "exec", "tcp-expect", "smtp", "none".
    pub kind: String,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// A status or a set such as "200-299".
    pub expect_status: Option<String>,
    pub expect_body: Option<String>,
    pub host: Option<String>,
    pub sni: Option<String>,
    pub insecure_skip_verify: bool,
    pub query: Option<String>,
    pub command: Option<String>,
    pub send: Option<String>,
    pub expect: Option<String>,
    /// Milliseconds.
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// Comments written above the check.
    pub comments: Vec<String>,
}

impl Check {
    /// A check of `kind` with lvsdr's defaults.
    pub fn of(kind: &str) -> Check {
        Check {
            kind: kind.into(),
            ..Check::default()
        }
    }
}

/// A regex that matches `text` literally.
pub fn literal(text: &str) -> String {
    regex::escape(text)
}

/// Whether `re` compiles as lvsdr's (Rust) regex: Perl-only syntax (look-around,
/// back-references) does not.
pub fn regex_ok(re: &str) -> bool {
    regex::Regex::new(re).is_ok()
}

impl Service {
    /// Moves a check every real server shares up to the service; when they differ,
    /// each keeps its own, and one with none gets `type = "none"` (the service's
    /// default would otherwise be a TCP check it never had).
    pub fn hoist_checks(&mut self) {
        let each: Vec<Check> = self
            .real_servers
            .iter()
            .map(|r| r.check.clone().unwrap_or_else(|| Check::of("none")))
            .collect();
        match each.first() {
            Some(first) if each.iter().all(|c| c == first) => {
                self.check = Some(first.clone());
                for r in &mut self.real_servers {
                    r.check = None;
                }
            }
            Some(_) => {
                self.check = None;
                for (r, c) in self.real_servers.iter_mut().zip(each) {
                    r.check = Some(c);
                }
            }
            None => self.check = Some(Check::of("none")),
        }
    }
}
