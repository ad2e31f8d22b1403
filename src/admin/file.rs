//! Where overrides are kept (`[director] admin_file`): JSON, written atomically
//! before a command is answered, so that an acknowledged drain survives `kill -9`.
//! Its one writer is the control task; a file of its own, apart from the
//! reconciler's `state_file`, keeps one writer per file.

use std::path::{Path, PathBuf};

use super::Overrides;

/// Reading or writing the file failed.
#[derive(Debug, thiserror::Error)]
#[error("the overrides file {path}: {why}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub why: String,
}

/// The overrides kept at `path` (none if the file does not exist).
pub fn load(path: &Path) -> Result<Overrides, FileError> {
    let err = |why: String| FileError {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes `o` to `path` atomically (blocking: call it off the runtime thread).
pub fn save(path: &Path, o: &Overrides) -> Result<(), FileError> {
    let err = |why: String| FileError {
        path: path.to_path_buf(),
        why,
    };
    let text = serde_json::to_string_pretty(o).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    crate::reconcile::managed::write_atomically(path, &text).map_err(|e| err(e.to_string()))
}
