//! The state file: the desired VIP set and what the agent added, written atomically
//! (temp file, fsync, rename, fsync of the folder) before it is applied, and read back
//! at start so that a rebooted real server comes back with its VIPs.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The generation of `vips`.
    pub generation: u64,
    /// The desired VIPs.
    pub vips: Vec<IpAddr>,
    /// VIP addresses the agent put on the device (it removes only these).
    pub owned_addresses: Vec<IpAddr>,
    /// The real IP learned from the last push (when not configured).
    #[serde(default)]
    pub real_ip: Option<IpAddr>,
    /// sysctl values the agent changed, with what they were before.
    pub saved_sysctls: Vec<(String, String)>,
}

/// Loading found a file that does not parse: it is moved aside, never overwritten.
#[derive(Debug)]
pub struct Corrupt {
    pub moved_to: PathBuf,
    pub error: String,
}

/// Reads the state; a missing file is an empty state.
pub fn load(path: &Path) -> anyhow::Result<(State, Option<Corrupt>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((State::default(), None)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_str(&text) {
        Ok(s) => Ok((s, None)),
        Err(e) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let moved_to = path.with_extension(format!("json.corrupt-{stamp}"));
            std::fs::rename(path, &moved_to)
                .with_context(|| format!("moving the corrupt {} aside", path.display()))?;
            Ok((
                State::default(),
                Some(Corrupt {
                    moved_to,
                    error: format!("{} is not a valid state file: {e}", path.display()),
                }),
            ))
        }
    }
}

/// Writes the state atomically.
pub fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_moves_a_corrupt_file_aside() {
        let dir = std::env::temp_dir().join(format!("lvsdr-state-{}", std::process::id()));
        let path = dir.join("agent.json");
        let s = State {
            generation: 7,
            vips: vec!["192.0.2.10".parse().expect("ip")],
            ..State::default()
        };
        save(&path, &s).expect("save");
        assert_eq!(load(&path).expect("load").0, s);
        std::fs::write(&path, "{ not json").expect("write");
        let (empty, corrupt) = load(&path).expect("load");
        assert_eq!(empty, State::default());
        let c = corrupt.expect("reported");
        assert!(c.error.contains("is not a valid state file"), "{}", c.error);
        assert_eq!(
            std::fs::read_to_string(&c.moved_to).expect("kept"),
            "{ not json"
        );
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
