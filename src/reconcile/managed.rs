//! The record of what the director manages (`[director] state_file`): the services of
//! the config in force and those still draining. A service dropped from the config
//! while the director was down is then known at the next start, and drained and
//! removed like one dropped by a reload, instead of staying in the kernel unmanaged.
//!
//! Written atomically (temp file, fsync, rename, fsync of the folder), off the
//! runtime thread, and only when the set changes.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipvs::{Family, Protocol, ServiceKey};

/// One service, as the file spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Entry {
    Addr {
        protocol: String,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        family: String,
        mark: u32,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    managed: Vec<Entry>,
}

fn entry(k: &ServiceKey) -> Entry {
    match k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => Entry::Addr {
            protocol: protocol.to_string(),
            addr: *addr,
            port: *port,
        },
        ServiceKey::Fwmark { family, mark } => Entry::Fwmark {
            family: match family {
                Family::V4 => "ipv4".into(),
                Family::V6 => "ipv6".into(),
            },
            mark: *mark,
        },
    }
}

fn key(e: &Entry) -> Result<ServiceKey, String> {
    Ok(match e {
        Entry::Addr {
            protocol,
            addr,
            port,
        } => ServiceKey::Addr {
            protocol: protocol.parse::<Protocol>()?,
            addr: *addr,
            port: *port,
        },
        Entry::Fwmark { family, mark } => ServiceKey::Fwmark {
            family: match family.as_str() {
                "ipv4" => Family::V4,
                "ipv6" => Family::V6,
                other => return Err(format!("unknown family {other:?}")),
            },
            mark: *mark,
        },
    })
}

/// Reading the record failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct RecordError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

/// The state file and what was last written to it.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    written: Option<BTreeSet<ServiceKey>>,
}

impl Record {
    /// A record at `path` not written yet (its content unknown or unusable).
    pub fn new(path: &Path) -> Record {
        Record {
            path: path.to_path_buf(),
            written: None,
        }
    }

    /// Reads the services recorded at `path` (none if the file does not exist).
    pub fn load(path: &Path) -> Result<(Record, BTreeSet<ServiceKey>), RecordError> {
        let err = |why: String| RecordError {
            path: path.to_path_buf(),
            why,
        };
        let recorded = match std::fs::read_to_string(path) {
            Ok(text) => {
                let f: File = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
                f.managed
                    .iter()
                    .map(key)
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        let record = Record {
            path: path.to_path_buf(),
            written: Some(recorded.clone()),
        };
        Ok((record, recorded))
    }

    /// Writes `keys` if they differ from what was written last.
    pub async fn save(&mut self, keys: BTreeSet<ServiceKey>) -> Result<(), RecordError> {
        if self.written.as_ref() == Some(&keys) {
            return Ok(());
        }
        let file = File {
            managed: keys.iter().map(entry).collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| RecordError {
            path: self.path.clone(),
            why: e.to_string(),
        })?;
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &text))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match written {
            Ok(()) => {
                self.written = Some(keys);
                Ok(())
            }
            Err(why) => Err(RecordError {
                path: self.path.clone(),
                why,
            }),
        }
    }
}

pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_round_trip_and_an_unchanged_set_is_not_written() {
        let dir = std::env::temp_dir().join(format!("lvsdr-managed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("director.json");
        let keys: BTreeSet<ServiceKey> = [
            ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: "2001:db8::10".parse().expect("ip"),
                port: 53,
            },
            ServiceKey::Fwmark {
                family: Family::V6,
                mark: 7,
            },
        ]
        .into();
        let (mut r, none) = Record::load(&path).expect("load");
        assert!(none.is_empty());
        r.save(keys.clone()).await.expect("save");
        assert_eq!(Record::load(&path).expect("load").1, keys);
        std::fs::write(&path, "sentinel").expect("write");
        r.save(keys).await.expect("save");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "sentinel");
        let e = Record::load(&path).expect_err("corrupt");
        assert!(e.to_string().contains("director.json"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
