//! No input is ever overwritten: every path a run writes (the model, its external data file, the
//! report, the dump folder) must differ from every path it reads (the model and its external
//! data, the pipeline, the calibration and evaluation files and image folders), through symbolic
//! links, hard links and `..`. Checked before any work starts.

use std::path::{Path, PathBuf};

/// The same file: one inode when both exist (hard and symbolic links), else the same path once
/// the existing part is resolved (for a file not written yet).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `path` with its existing ancestors resolved (links followed), the rest appended as written.
pub fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(resolved(parent)?.join(name))
}

/// Whether `path` is `dir` or lies inside it (after resolving both).
pub fn inside(path: &Path, dir: &Path) -> bool {
    match (resolved(path), resolved(dir)) {
        (Some(p), Some(d)) => p.starts_with(d),
        _ => false,
    }
}

/// One path a run reads, with what it is (for messages).
#[derive(Debug, Clone)]
pub struct Read {
    pub path: PathBuf,
    pub what: String,
    /// A folder whose files are all read (images): nothing may be written inside it.
    pub folder: bool,
}

/// The first conflict between a written path and the read ones, as a message.
pub fn conflict(written: &Path, written_what: &str, reads: &[Read]) -> Option<String> {
    reads.iter().find_map(|r| {
        let clash = if r.folder { inside(written, &r.path) } else { same_file(written, &r.path) };
        clash.then(|| {
            let (w, what, path) = (written.display(), &r.what, r.path.display());
            if r.folder {
                format!(
                    "the {written_what} {w} would be written inside the folder of {what} {path}: whittle never writes over what it reads"
                )
            } else {
                format!("the {written_what} {w} would overwrite the {what} {path}: whittle never writes over what it reads")
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_dots_name_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.onnx");
        std::fs::write(&a, b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(same_file(&a, &dir.path().join("sub/../a.onnx")));
        std::fs::hard_link(&a, dir.path().join("hard.onnx")).unwrap();
        assert!(same_file(&a, &dir.path().join("hard.onnx")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&a, dir.path().join("soft.onnx")).unwrap();
            assert!(same_file(&dir.path().join("soft.onnx"), &a));
            std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("link")).unwrap();
            assert!(same_file(&dir.path().join("link/new.json"), &dir.path().join("sub/new.json")));
        }
        assert!(!same_file(&a, &dir.path().join("b.onnx")));
        assert!(inside(&dir.path().join("sub/x.png"), &dir.path().join("sub")));
        assert!(!inside(&dir.path().join("x.png"), &dir.path().join("sub")));
    }
}
