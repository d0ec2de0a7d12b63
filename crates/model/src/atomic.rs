//! Writes that never leave a half-written file or directory where a good one was: data goes to
//! a hidden sibling first and is renamed into place (atomic on POSIX filesystems). The trainer's
//! checkpoints and every export go through here.
//!
//! Durable, not only atomic: a file's contents are fsynced before its rename and its directory
//! after, so a finished write survives a power loss too. Replacing an existing directory swaps
//! the two in one step (`renameat2(RENAME_EXCHANGE)` on Linux), so there is no moment when
//! neither the old nor the new one is in place; elsewhere, or on a filesystem without the swap,
//! two renames are used, and [`remove_stale`] puts the old directory back if a crash fell
//! between them.
//!
//! Hidden siblings are named `.{name}.{tmp|staging|old|trash}-{pid}`; a process killed mid-write leaves
//! its own behind, and [`remove_stale`] (called by the trainer at start) removes those whose
//! process is gone. [`crash_point`] marks the moments the fault-injection tests stop at.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ModelError, Result};

fn write_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Write { origin: path.display().to_string().into(), reason: e.to_string() }
}

/// The roles a hidden sibling plays; its name carries the role and the writing process's id.
const SIBLING_TAGS: [&str; 4] = ["tmp", "staging", "old", "trash"];

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// `.{name}.{tag}-{pid}` → `(name, tag, pid)`.
fn parse_sibling(file_name: &str) -> Option<(&str, &str, u32)> {
    let rest = file_name.strip_prefix('.')?;
    let (rest, pid) = rest.rsplit_once('-')?;
    let pid = pid.parse().ok()?;
    let (name, tag) = rest.rsplit_once('.')?;
    (!name.is_empty() && SIBLING_TAGS.contains(&tag)).then_some((name, tag, pid))
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        Path::new("/proc").join(pid.to_string()).exists()
    }
    // Without a cheap liveness check, another process's sibling counts as abandoned: two
    // processes writing one run directory at once is not supported anyway.
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Makes the entries of `dir` (a rename into it, a file created in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates `dir` (and its parents) if missing, durably: a new directory's own entry is synced
/// into its parent.
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    sync_dir(parent_of(dir)).map_err(|e| write_error(dir, e))
}

static CRASH_AT: OnceLock<Option<u64>> = OnceLock::new();
static CRASH_POINTS_PASSED: AtomicU64 = AtomicU64::new(0);

/// A moment inside a durable write where a crash must lose nothing already committed. The
/// fault-injection tests set `ROSETTA_CRASH_AT=N`: the process then aborts at the N-th crash
/// point it passes (no destructors run, as with SIGKILL), after naming it on stderr. Unset, a
/// crash point is one atomic add.
pub fn crash_point(label: &str) {
    let Some(stop_at) = *CRASH_AT.get_or_init(|| std::env::var("ROSETTA_CRASH_AT").ok().and_then(|v| v.parse().ok())) else {
        return;
    };
    if CRASH_POINTS_PASSED.fetch_add(1, Ordering::SeqCst) + 1 == stop_at {
        eprintln!("ROSETTA_CRASH_AT={stop_at}: crashing at `{label}`");
        std::process::abort();
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically through `fill`, which streams the contents (files too large to
/// build in memory first): a hidden sibling is written, synced and renamed into place; on
/// failure it is removed and `path` is untouched.
pub fn write_file_with(path: &Path, fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>) -> Result<()> {
    ensure_dir(parent_of(path))?;
    let tmp = sibling(path, "tmp");
    let result = (|| -> std::io::Result<()> {
        let mut writer = std::io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        crash_point("file written, not yet renamed");
        fs::rename(&tmp, path)?;
        crash_point("file renamed, directory not yet synced");
        sync_dir(parent_of(path))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    Ok(())
}

/// A directory being written: files go into a hidden staging directory, which
/// [`StagedDir::commit`] moves to the final name. Dropping it uncommitted removes the staging.
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts writing `target`. Fails if it exists and `overwrite` is false, so nothing a user
    /// made is replaced by accident.
    pub fn new(target: &Path, overwrite: bool) -> Result<Self> {
        recover_interrupted_replace(target)?;
        if target.exists() && !overwrite {
            return Err(write_error(
                target,
                "already exists; choose another output or allow replacing it (the overwrite option, --overwrite on the command line)",
            ));
        }
        ensure_dir(parent_of(target))?;
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
        file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| write_error(&path, e))?;
        crash_point("staged file written");
        Ok(())
    }

    /// Moves the finished directory into place, replacing an old one only now that the new one
    /// is complete, and with no moment where `target` is missing (see the module's doc).
    pub fn commit(mut self) -> Result<PathBuf> {
        let (staging, target) = (&self.staging, &self.target);
        sync_dir(staging).map_err(|e| write_error(staging, e))?;
        crash_point("staging complete, not yet moved");
        if !target.exists() {
            fs::rename(staging, target).map_err(|e| write_error(target, e))?;
        } else if exchange(staging, target).map_err(|e| write_error(target, e))? {
            // `staging` now holds the old directory.
            crash_point("directories swapped, old one not yet removed");
            fs::remove_dir_all(staging).map_err(|e| write_error(staging, e))?;
        } else {
            let old = sibling(target, "old");
            fs::rename(target, &old).map_err(|e| write_error(target, e))?;
            crash_point("old directory moved aside, new one not yet in place");
            fs::rename(staging, target).map_err(|e| write_error(target, e))?;
            fs::remove_dir_all(&old).map_err(|e| write_error(&old, e))?;
        }
        crash_point("directory in place, parent not yet synced");
        sync_dir(parent_of(target)).map_err(|e| write_error(target, e))?;
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

/// Removes a directory so that it is either whole or gone: it is renamed away first (one
/// step), then deleted; a crash during the deletion leaves a hidden sibling [`remove_stale`]
/// clears, never a half-deleted directory under its own name.
pub fn remove_dir(path: &Path) -> Result<()> {
    let trash = sibling(path, "trash");
    fs::rename(path, &trash).map_err(|e| write_error(path, e))?;
    sync_dir(parent_of(path)).map_err(|e| write_error(path, e))?;
    crash_point("directory renamed away, not yet deleted");
    fs::remove_dir_all(&trash).map_err(|e| write_error(&trash, e))
}

/// Swaps two directory entries in one step; `Ok(false)` where the platform or filesystem
/// cannot (the caller then falls back to two renames).
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: two NUL-terminated paths that outlive the call; renameat2 reads nothing else.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if rc == 0 {
            return Ok(true);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
            _ => Err(error),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Puts an old directory back where a crash fell between the two renames of the fallback
/// replace (target missing, its `.old-{pid}` sibling present and its writer gone).
fn recover_interrupted_replace(target: &Path) -> Result<()> {
    if target.exists() {
        return Ok(());
    }
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Ok(()) };
    let Ok(entries) = fs::read_dir(parent_of(target)) else { return Ok(()) };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some((of, "old", pid)) = parse_sibling(&file_name)
            && of == name
            && !process_alive(pid)
        {
            fs::rename(entry.path(), target).map_err(|e| write_error(target, e))?;
            return sync_dir(parent_of(target)).map_err(|e| write_error(target, e));
        }
    }
    Ok(())
}

/// Cleans up after writers that were killed in `dir`: an interrupted replace is undone (the old
/// directory put back), and every other hidden sibling whose process is gone — a half-written
/// file, a staging directory holding a whole model — is removed. Returns what was removed and
/// its size in bytes.
pub fn remove_stale(dir: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok((Vec::new(), 0)) };
    let mut stale = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some((name, tag, pid)) = parse_sibling(&file_name)
            && !process_alive(pid)
        {
            if tag == "old" {
                recover_interrupted_replace(&dir.join(name))?;
            }
            if entry.path().symlink_metadata().is_ok() {
                stale.push(entry.path());
            }
        }
    }
    let mut bytes = 0;
    for path in &stale {
        bytes += size_of_tree(path);
        let removed = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
        removed.map_err(|e| write_error(path, e))?;
    }
    Ok((stale, bytes))
}

fn size_of_tree(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|entries| entries.filter_map(|e| e.ok()).map(|e| size_of_tree(&e.path())).sum()).unwrap_or(0)
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

    #[test]
    fn sibling_names_round_trip() {
        let path = sibling(Path::new("/x/step-000004"), "staging");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_sibling(name), Some(("step-000004", "staging", std::process::id())));
        assert_eq!(parse_sibling(".final.old-12"), Some(("final", "old", 12)));
        for not_ours in ["final", ".final", ".final.tmp", ".final.backup-12", "..tmp-1", ".a.tmp-x"] {
            assert_eq!(parse_sibling(not_ours), None, "{not_ours}");
        }
    }

    /// What a killed writer leaves behind is cleaned up; an interrupted fallback replace is
    /// undone; a live writer's siblings and the user's own hidden files are left alone.
    #[test]
    fn stale_siblings_of_dead_writers_are_removed() {
        let root = std::env::temp_dir().join(format!("rosetta-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join(".step-000004.staging-999999999")).unwrap();
        fs::write(root.join(".step-000004.staging-999999999/model.bpk"), [0u8; 1000]).unwrap();
        fs::write(root.join(".metrics.jsonl.tmp-999999998"), b"half").unwrap();
        fs::create_dir_all(root.join(".final.old-999999997")).unwrap();
        fs::write(root.join(".final.old-999999997/config.json"), b"{}").unwrap();
        let ours = sibling(&root.join("step-000008"), "staging");
        fs::create_dir_all(&ours).unwrap();
        fs::write(root.join(".keep-me"), b"user file").unwrap();
        let (removed, bytes) = remove_stale(&root).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert_eq!(bytes, 1004);
        assert!(root.join("final/config.json").exists(), "the interrupted replace was not undone");
        assert!(ours.exists() && root.join(".keep-me").exists());
        fs::remove_dir_all(root).unwrap();
    }
}
