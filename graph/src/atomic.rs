//! Atomic file writes with recognizable, removable temporary files.
//!
//! Every file whittle writes (models, their external data, reports) is written to a temporary file
//! in the destination folder and renamed into place, so a reader never sees a partial file. The
//! temporary file is named `.NAME.XXXXXX.whittle-tmp` (`NAME` the destination's file name, six
//! random characters), so that a leftover is recognizable, and every pending one is recorded in
//! a process-wide list: [`remove_pending`] deletes them, and the CLI calls it from its SIGINT /
//! SIGTERM handler before exiting. Only a SIGKILL (or a power cut) can leave one behind.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The suffix of every temporary file whittle creates.
pub const TEMP_SUFFIX: &str = ".whittle-tmp";

/// Temporary files created and not yet renamed or removed.
static PENDING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn pending() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic while the lock was held leaves the set itself intact.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file beside its destination, renamed into place by [`AtomicFile::commit`] and
/// removed when dropped uncommitted.
#[derive(Debug)]
pub struct AtomicFile {
    /// `None` only after `commit` took it.
    tmp: Option<tempfile::NamedTempFile>,
    destination: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file for `destination` in its folder (which must exist).
    pub fn new(destination: &Path) -> std::io::Result<AtomicFile> {
        let dir = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = destination.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(TEMP_SUFFIX).rand_bytes(6).tempfile_in(dir)?;
        pending().insert(tmp.path().to_path_buf());
        Ok(AtomicFile { tmp: Some(tmp), destination: destination.to_path_buf() })
    }

    /// The open temporary file, to write into.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_mut().expect("not committed").as_file_mut()
    }

    /// Flushes the data to disk, gives the file ordinary permissions (0644; temporary files are
    /// created 0600) and renames it to the destination.
    pub fn commit(mut self) -> std::io::Result<()> {
        let tmp = self.tmp.take().expect("committed once");
        let path = tmp.path().to_path_buf();
        // Whatever happens below, `tmp` is renamed or removed (by its drop) before this returns.
        let _unlist = Unlist(path);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.destination).map(drop).map_err(|e| e.error)
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        self.tmp.as_ref().expect("not committed").path()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: `tmp` removes its file when it is dropped after this.
        if let Some(tmp) = &self.tmp {
            pending().remove(tmp.path());
        }
    }
}

/// Takes a path off the pending list when dropped.
struct Unlist(PathBuf);

impl Drop for Unlist {
    fn drop(&mut self) {
        pending().remove(&self.0);
    }
}

/// Writes `bytes` to `path` atomically; creates the folder.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = AtomicFile::new(path)?;
    file.file().write_all(bytes)?;
    file.commit()
}

/// Removes every temporary file still pending (for a signal handler: the process is about to
/// exit). Returns how many were removed.
pub fn remove_pending() -> usize {
    let paths = std::mem::take(&mut *pending());
    paths.iter().filter(|p| std::fs::remove_file(p).is_ok()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_are_named_listed_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.onnx");
        let mut f = AtomicFile::new(&dest).unwrap();
        f.file().write_all(b"abc").unwrap();
        let name = f.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".m.onnx.") && name.ends_with(TEMP_SUFFIX), "{name}");
        assert!(pending().contains(f.path()));
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the destination is left");

        // Dropped uncommitted: removed, destination untouched.
        let f = AtomicFile::new(&dest).unwrap();
        let tmp = f.path().to_path_buf();
        drop(f);
        assert!(!tmp.exists() && !pending().contains(&tmp));
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");

        // remove_pending (the signal handler) is tested end to end: tests/cli_guards.rs.
    }
}
