//! The state file: each director's VIP set and what the agent added, written
//! atomically (temp file, fsync, rename, fsync of the folder). The applier saves the
//! addresses it is about to add *before* it adds them, so a kill between the two never
//! orphans a VIP; and it saves a new set before it changes anything in memory.
//!
//! A symlink in place of the file (or of its temp file) is refused: the agent runs
//! with CAP_NET_ADMIN and must not be steered into writing elsewhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// One director's set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorSet {
    /// The director process's epoch (0: the pusher sent none).
    pub epoch: u64,
    /// Its generation within the epoch.
    pub generation: u64,
    /// The VIPs it asked for.
    pub vips: Vec<IpAddr>,
    /// Not pushed by a director: recovered at start (a lost state file, an older
    /// format). It is held until the first push from any director replaces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The VIP set of each director, by its certificate name and address
    /// ([`crate::sets::director_key`]).
    #[serde(default)]
    pub sets: BTreeMap<String, DirectorSet>,
    /// VIP addresses the agent put on the device (it removes only these).
    pub owned_addresses: Vec<IpAddr>,
    /// VIPs whose arptables rules the agent added (it deletes only these).
    #[serde(default)]
    pub owned_arptables: Vec<Ipv4Addr>,
    /// The real IP learned from the last push (when not configured).
    #[serde(default)]
    pub real_ip: Option<IpAddr>,
    /// sysctl values the agent changed, with what they were before.
    pub saved_sysctls: Vec<(String, String)>,
    /// The real server's own drain (`lvsdr-agent drain`), kept until `ready`: a
    /// drained server that reboots stays drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<lvsdr_agent_api::AgentDrain>,
    /// The single set of the format before per-director sets (read, never written).
    #[serde(default, skip_serializing)]
    generation: Option<u64>,
    /// See `generation`.
    #[serde(default, skip_serializing)]
    vips: Option<Vec<IpAddr>>,
}

/// The name a set from the single-set format is kept under.
pub const EARLIER_FORMAT: &str = "(earlier state file)";

impl State {
    /// Every VIP some director asks for, sorted, each once.
    pub fn union(&self) -> Vec<IpAddr> {
        let mut all: Vec<IpAddr> = self.sets.values().flat_map(|s| s.vips.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    fn upgrade(mut self) -> State {
        if let Some(vips) = self.vips.take() {
            let set = DirectorSet {
                epoch: 0,
                generation: self.generation.take().unwrap_or(0),
                vips,
                provisional: true,
            };
            self.sets.insert(EARLIER_FORMAT.to_string(), set);
        }
        self
    }
}

/// Loading found a file that does not parse: it is moved aside, never overwritten.
#[derive(Debug)]
pub struct Corrupt {
    pub moved_to: PathBuf,
    pub error: String,
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

fn refuse_symlink(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!(
                "{} is a symbolic link; refusing to follow it (the state file must be a plain file)",
                path.display()
            )
        }
        _ => Ok(()),
    }
}

/// Reads the state; a missing file is an empty state. A temp file left by a crash
/// between write and rename is removed: the file it was to replace is still whole.
pub fn load(path: &Path) -> anyhow::Result<(State, Option<Corrupt>)> {
    refuse_symlink(path)?;
    let tmp = tmp_path(path);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        std::fs::remove_file(&tmp)
            .with_context(|| format!("removing the left-over {}", tmp.display()))?;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((State::default(), None)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_str::<State>(&text) {
        Ok(s) => Ok((s.upgrade(), None)),
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

/// Writes the state file, skipping the write (and its fsyncs) when the bytes would
/// not change.
#[derive(Debug)]
pub struct Saver {
    path: PathBuf,
    last: Option<String>,
}

impl Saver {
    pub fn new(path: PathBuf) -> Saver {
        Saver { path, last: None }
    }

    /// Saves `state` unless it is what was saved last. The file work (two fsyncs)
    /// runs off the runtime thread.
    pub async fn save(&mut self, state: &State) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(state)?;
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let path = self.path.clone();
        let written = text.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &written))
            .await
            .context("the state file writer panicked")??;
        self.last = Some(text);
        Ok(())
    }
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    refuse_symlink(path)?;
    let tmp = tmp_path(path);
    if std::fs::symlink_metadata(&tmp).is_ok() {
        std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()));
    drop(f);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lvsdr-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn one_set() -> State {
        let mut s = State::default();
        s.sets.insert(
            "d1".into(),
            DirectorSet {
                epoch: 3,
                generation: 7,
                vips: vec!["192.0.2.10".parse().expect("ip")],
                provisional: false,
            },
        );
        s
    }

    #[tokio::test]
    async fn saves_atomically_and_moves_a_corrupt_file_aside() {
        let dir = scratch("a");
        let path = dir.join("agent.json");
        let s = one_set();
        Saver::new(path.clone()).save(&s).await.expect("save");
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

    #[tokio::test]
    async fn an_unchanged_state_is_not_written_again() {
        let dir = scratch("b");
        let path = dir.join("agent.json");
        let mut saver = Saver::new(path.clone());
        saver.save(&one_set()).await.expect("save");
        // Replace the file behind the saver's back: an unchanged save must not touch it.
        std::fs::write(&path, "sentinel").expect("write");
        saver.save(&one_set()).await.expect("save again");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "sentinel");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_symlinked_state_file_is_refused_and_a_left_over_temp_file_cleaned() {
        let dir = scratch("c");
        let path = dir.join("agent.json");
        let target = dir.join("elsewhere");
        std::fs::write(&target, "do not touch").expect("write");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let e = load(&path).expect_err("symlink loaded");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = Saver::new(path.clone())
            .save(&one_set())
            .await
            .expect_err("symlink written");
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "do not touch"
        );

        std::fs::remove_file(&path).expect("rm");
        std::fs::write(tmp_path(&path), "half").expect("tmp");
        assert_eq!(load(&path).expect("load").0, State::default());
        assert!(!tmp_path(&path).exists(), "the left-over temp file stayed");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_single_set_format_is_read_as_a_provisional_set() {
        let dir = scratch("d");
        let path = dir.join("agent.json");
        std::fs::write(
            &path,
            r#"{"generation": 5, "vips": ["192.0.2.10"], "owned_addresses": ["192.0.2.10"], "real_ip": null, "saved_sysctls": []}"#,
        )
        .expect("write");
        let (s, corrupt) = load(&path).expect("load");
        assert!(corrupt.is_none());
        let set = &s.sets[EARLIER_FORMAT];
        assert!(set.provisional);
        assert_eq!(set.generation, 5);
        assert_eq!(s.union(), vec!["192.0.2.10".parse::<IpAddr>().expect("ip")]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
