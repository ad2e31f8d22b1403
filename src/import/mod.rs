//! Importing other tools' configurations (`lvsdr-director import FORMAT FILE`):
//! keepalived, ldirectord, Piranha and `ipvsadm -Sn` dumps become an lvsdr config, and
//! every construct that was not translated, or was translated with another meaning,
//! becomes a note with its `file:line`.
//!
//! Each format's module reads text into a [`Draft`] (pure, given the files), and
//! [`emit`] writes the draft as TOML.

pub mod draft;
pub mod emit;
pub mod ipvsadm;
pub mod keepalived;
pub mod ldirectord;
pub mod piranha;
mod ports;
mod words;

use std::path::{Path, PathBuf};

pub use draft::{Draft, Level, Note};

/// The formats `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// keepalived.conf (its `virtual_server` blocks).
    Keepalived,
    /// ldirectord.cf.
    Ldirectord,
    /// Piranha's lvs.cf.
    Piranha,
    /// The output of `ipvsadm-save -n` / `ipvsadm -Sn`.
    Ipvsadm,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "keepalived" => Ok(Format::Keepalived),
            "ldirectord" => Ok(Format::Ldirectord),
            "piranha" => Ok(Format::Piranha),
            "ipvsadm" => Ok(Format::Ipvsadm),
            _ => Err(format!(
                "unknown format {s:?}: keepalived, ldirectord, piranha or ipvsadm"
            )),
        }
    }
}

/// An input file's text and its name for messages.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as given.
    pub name: String,
    /// Where it is (for `include`).
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// An input that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file (or an included one) could not be read.
    #[error("{file}: {source}")]
    Read {
        /// Which file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Source {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Source, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read {
            file: path.display().to_string(),
            source: e,
        })?;
        Ok(Source {
            name: path.display().to_string(),
            path: path.to_path_buf(),
            text,
        })
    }
}

/// Reads `path` as `format`.
pub fn import(format: Format, path: &Path) -> Result<Draft, ImportError> {
    let src = Source::read(path)?;
    let mut d = match format {
        Format::Keepalived => keepalived::import(&src)?,
        Format::Ldirectord => ldirectord::import(&src),
        Format::Piranha => piranha::import(&src),
        Format::Ipvsadm => ipvsadm::import(&src),
    };
    finish(&mut d);
    Ok(d)
}

/// What holds for every format: a real server forwarded by DR or tunnel goes to the
/// service's port (a fwmark service's have none), and names are unique.
pub fn finish(d: &mut Draft) {
    let mut notes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for s in &mut d.services {
        let port = s.port();
        if port == 0 {
            checks_get_ports(s);
        }
        for r in &mut s.real_servers {
            match r.port {
                Some(p) if p == port => r.port = None,
                Some(_) if port == 0 && s.forwarding != "nat" => r.port = None,
                Some(p) if s.forwarding != "nat" => {
                    notes.push((
                        s.at.clone(),
                        format!(
                            "real server {} port {p}: {} forwards to the service's port {port}",
                            r.address, s.forwarding
                        ),
                    ));
                    r.port = None;
                }
                _ => {}
            }
        }
        let base = s.name.clone();
        let mut n = 1;
        while !names.insert(s.name.clone()) {
            n += 1;
            s.name = format!("{base}-{n}");
        }
    }
    for (at, m) in notes {
        d.note(&at, Level::Review, m);
    }
}

/// A fwmark service's checks connect to the port each real server was given (the
/// real servers themselves have none in the kernel).
fn checks_get_ports(s: &mut draft::Service) {
    let needs = |c: &draft::Check| !["exec", "none"].contains(&c.kind.as_str()) && c.port.is_none();
    if let Some(c) = s.check.clone().filter(|c| needs(c)) {
        let ports: std::collections::BTreeSet<u16> =
            s.real_servers.iter().filter_map(|r| r.port).collect();
        if ports.len() == 1 {
            s.check = Some(draft::Check {
                port: ports.first().copied(),
                ..c
            });
        } else {
            s.check = None;
            for r in &mut s.real_servers {
                r.check = Some(c.clone());
            }
        }
    }
    for r in &mut s.real_servers {
        if let Some(c) = r.check.as_mut().filter(|c| needs(c)) {
            c.port = r.port;
        }
    }
}
