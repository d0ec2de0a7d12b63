//! Writes that never leave a half-written file where a good one was: data goes to a temporary
//! sibling first and is renamed into place (atomic on POSIX filesystems), after an fsync.
//! The trainer's checkpoints and every export go through here.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

fn write_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Write { origin: path.display().to_string().into(), reason: e.to_string() }
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically through `fill`, which streams the contents (files too large to
/// build in memory first): a hidden sibling is written, synced and renamed into place; on
/// failure it is removed and `path` is untouched.
pub fn write_file_with(path: &Path, fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
    }
    let tmp = sibling(path, "tmp");
    let result = (|| -> std::io::Result<()> {
        let mut writer = std::io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    Ok(())
}

/// A directory being written: files go into a hidden staging directory, which
/// [`StagedDir::commit`] renames to the final name. Dropping it uncommitted removes the staging.
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts writing `target`. Fails if it exists and `overwrite` is false, so nothing a user
    /// made is replaced by accident.
    pub fn new(target: &Path, overwrite: bool) -> Result<Self> {
        if target.exists() && !overwrite {
            return Err(write_error(
                target,
                "already exists; choose another output or allow replacing it (the overwrite option, --overwrite on the command line)",
            ));
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
        }
        let staging = sibling(target, "staging");
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| write_error(&staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| write_error(&staging, e))?;
        Ok(StagedDir { target: target.to_path_buf(), staging, committed: false })
    }

    pub fn path(&self) -> &Path {
        &self.staging
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.staging.join(name);
        let mut file = fs::File::create(&path).map_err(|e| write_error(&path, e))?;
        file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| write_error(&path, e))
    }

    /// Moves the finished directory into place (replacing an old one only now that the new one
    /// is complete).
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.target.exists() {
            let old = sibling(&self.target, "old");
            fs::rename(&self.target, &old).map_err(|e| write_error(&self.target, e))?;
            fs::rename(&self.staging, &self.target).map_err(|e| write_error(&self.target, e))?;
            fs::remove_dir_all(&old).map_err(|e| write_error(&old, e))?;
        } else {
            fs::rename(&self.staging, &self.target).map_err(|e| write_error(&self.target, e))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_dir_replaces_only_on_commit() {
        let root = std::env::temp_dir().join(format!("rosetta-atomic-{}", std::process::id()));
        let target = root.join("out");
        fs::create_dir_all(&target).unwrap();
        fs::write(target.join("keep.txt"), "old").unwrap();
        assert!(StagedDir::new(&target, false).is_err());
        {
            let staged = StagedDir::new(&target, true).unwrap();
            staged.write("new.txt", b"new").unwrap();
            // dropped without commit: the old directory is untouched
        }
        assert_eq!(fs::read_to_string(target.join("keep.txt")).unwrap(), "old");
        let staged = StagedDir::new(&target, true).unwrap();
        staged.write("new.txt", b"new").unwrap();
        staged.commit().unwrap();
        assert!(!target.join("keep.txt").exists());
        assert_eq!(fs::read_to_string(target.join("new.txt")).unwrap(), "new");
        write_file(&root.join("f.bin"), b"abc").unwrap();
        assert_eq!(fs::read(root.join("f.bin")).unwrap(), b"abc");
        fs::remove_dir_all(root).unwrap();
    }
}
