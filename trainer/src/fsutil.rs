//! Atomic file writing: everything the project writes (datasets, checkpoints,
//! exports, metrics) goes to a temporary file in the target's directory and is
//! renamed into place, so a crash never leaves a half-written file behind.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory a file will live in (`.` for a bare file name), created if missing.
pub fn parent_dir(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    Ok(dir)
}

/// The prefix of a temporary file of ours: `.partial-<pid>-`, so that a later run can
/// tell the debris of a killed process from the file another live process is writing.
pub fn temp_prefix(kind: &str) -> String {
    format!(".{kind}-{}-", std::process::id())
}

/// The kinds of temporary names this project creates (`.partial-*` files, `.checkpoint-*`
/// directories).
const TEMP_KINDS: [&str; 2] = ["partial", "checkpoint"];

/// Remove, from `dir`, the temporary files and directories that killed runs left behind:
/// those named by [`temp_prefix`] whose process is gone, and older unnamed ones
/// (`.partial-XXXXXX`, from before names carried the process) untouched for an hour.
/// Returns what was removed, and says so on stderr. Never fails: a sweep that cannot
/// read the directory removes nothing.
pub fn sweep_stale(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = TEMP_KINDS
            .iter()
            .find_map(|k| name.strip_prefix(&format!(".{k}-")))
        else {
            continue;
        };
        let pid = rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) => pid != std::process::id() && !process_alive(pid),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600),
        };
        if !stale {
            continue;
        }
        let path = e.path();
        let size = dir_size(&path);
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            eprintln!(
                "removed {} ({:.1} MB), left by an interrupted run",
                path.display(),
                size as f64 / 1e6
            );
            removed.push(path);
        }
    }
    removed
}

fn dir_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Whether process `pid` exists (on systems without `/proc`, assume it does: nothing
/// named by a live process is ever removed).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// A temporary file next to `path`, readable by others like any finished output (0644).
/// Stale temporaries of killed runs in that directory are removed first.
pub fn temp_for(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path)?;
    sweep_stale(&dir);
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
        .prefix(&temp_prefix("partial"))
        .suffix(suffix)
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// Let `write` produce `path` through a file of its own (a plotting backend that
/// opens the path it is given), atomically: `write` gets a temporary path next to
/// `path` with the same extension, which is synced and renamed into place only if
/// `write` succeeds, and removed if it fails.
pub fn atomically<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = temp_for(path, &ext)?.into_temp_path();
    let out = write(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("moving into place {}", path.display()))?;
    Ok(out)
}

/// Write `bytes` to `path` atomically (temporary file, sync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_for(path, ".tmp")?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("moving into place {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debris of a dead process goes; a live process's temporary and other files stay.
    #[test]
    fn sweep_removes_only_what_dead_processes_left() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its pid names no process.
        let dead = std::process::Command::new("true")
            .spawn()
            .and_then(|mut c| c.wait().map(|_| c.id()))
            .unwrap();
        let dead_file = dir.path().join(format!(".partial-{dead}-abc.npz"));
        std::fs::write(&dead_file, vec![0u8; 1000]).unwrap();
        let dead_dir = dir.path().join(format!(".checkpoint-{dead}-xyz"));
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("model.bpk"), b"x").unwrap();
        let live = dir
            .path()
            .join(format!(".partial-{}-mine.tmp", std::process::id()));
        std::fs::write(&live, b"being written").unwrap();
        let fresh_legacy = dir.path().join(".partial-Ab3dE9.tmp");
        std::fs::write(&fresh_legacy, b"maybe someone's").unwrap();
        let keep = dir.path().join("data.npz");
        std::fs::write(&keep, b"a dataset").unwrap();

        let mut removed = sweep_stale(dir.path());
        removed.sort();
        let mut want = vec![dead_dir.clone(), dead_file.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(!dead_file.exists() && !dead_dir.exists());
        assert!(live.exists() && fresh_legacy.exists() && keep.exists());
    }
}
