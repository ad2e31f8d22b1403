//! Importing other tools' configurations (`lvsdr-director import FORMAT FILE`):
//! keepalived, ldirectord, Piranha and `ipvsadm -Sn` dumps become an lvsdr config, and
//! every construct that was not translated, or was translated with another meaning,
//! becomes a note with its `file:line`.
//!
//! Each format's module reads text into a [`Draft`] (pure, given the files), and
//! [`emit`] writes the draft as TOML.

pub mod draft;
pub mod emit;
mod include;
pub mod ipvsadm;
pub mod keepalived;
pub mod ldirectord;
pub mod piranha;
mod ports;
mod template;
mod tidy;
mod valid;
mod words;

use std::path::{Path, PathBuf};

pub use draft::{Draft, Level, Note};
pub use tidy::finish;
pub use valid::keep_valid;

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
    import_source(format, &Source::read(path)?)
}

/// Reads `src` (already in memory; keepalived's `include`s are found beside its
/// path) as `format`: the draft, whose config [`emit`] writes and lvsdr accepts.
pub fn import_source(format: Format, src: &Source) -> Result<Draft, ImportError> {
    let mut d = match format {
        Format::Keepalived => keepalived::import(src)?,
        Format::Ldirectord => ldirectord::import(src),
        Format::Piranha => piranha::import(src),
        Format::Ipvsadm => ipvsadm::import(src),
    };
    finish(&mut d);
    keep_valid(&mut d);
    Ok(d)
}
