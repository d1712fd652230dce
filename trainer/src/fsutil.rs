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

/// A temporary file next to `path`, readable by others like any finished output (0644).
pub fn temp_for(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path)?;
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
        .prefix(".partial-")
        .suffix(suffix)
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
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
