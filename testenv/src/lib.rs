//! The one place that decides whether a test that needs `../shared` (the PP-OCR models and data)
//! or the Python peer tools (`.venv-peer` with onnx, onnxruntime and numpy) runs.
//!
//! On a user's fresh clone neither exists: such tests print `SKIPPED: <reason>` and pass. Under
//! CI they must never pass by skipping: `.ci/run` sets `WHITTLE_REQUIRE_SHARED=1` and
//! `WHITTLE_REQUIRE_PEER=1`, and then a missing folder or tool fails the test with the reason.

use std::path::{Path, PathBuf};

/// Set (to anything but `0`) by `.ci/run`: a missing `../shared` fails instead of skipping.
pub const REQUIRE_SHARED: &str = "WHITTLE_REQUIRE_SHARED";
/// Set by `.ci/run`: missing Python peer tools fail instead of skipping.
pub const REQUIRE_PEER: &str = "WHITTLE_REQUIRE_PEER";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testenv/ has a parent").to_path_buf()
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Skips (prints the reason, returns `None`) or, when `var` is set, fails the test.
fn missing<T>(var: &str, reason: &str) -> Option<T> {
    if required(var) {
        panic!("{reason}; {var} is set (by .ci/run), so this test may not skip");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// `../shared` beside the repository, with its `models` and `data` folders.
pub fn shared_dir() -> Option<PathBuf> {
    shared_dir_at(&repo_root().join("../shared"))
}

/// [`shared_dir`] for a given folder.
pub fn shared_dir_at(dir: &Path) -> Option<PathBuf> {
    let dir = dir.to_path_buf();
    if dir.join("models").is_dir() && dir.join("data").is_dir() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    missing(REQUIRE_SHARED, &format!("{} (models/, data/) is not present beside the repository", dir.display()))
}

/// A file of `../shared/models`.
pub fn shared_model(file: &str) -> Option<PathBuf> {
    let path = shared_dir()?.join("models").join(file);
    if path.is_file() {
        return Some(path);
    }
    missing(REQUIRE_SHARED, &format!("{} is missing", path.display()))
}

/// The Python of `.venv-peer` when it can import onnx, onnxruntime and numpy (what
/// `../shared/peer/compare.py` needs).
pub fn peer_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv-peer/bin/python");
    let works =
        std::process::Command::new(&python).args(["-c", "import onnx, onnxruntime, numpy"]).output().is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    missing(
        REQUIRE_PEER,
        &format!(
            "{} cannot import onnx, onnxruntime and numpy (python3 -m venv .venv-peer && .venv-peer/bin/pip install onnx onnxruntime numpy)",
            python.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this crate that touches the environment (tests of one binary share it).
    #[test]
    fn a_missing_folder_skips_unless_required() {
        let nowhere = Path::new("/nonexistent/whittle-shared");
        // SAFETY: no other test of this binary reads or writes the environment.
        unsafe { std::env::remove_var(REQUIRE_SHARED) };
        assert_eq!(shared_dir_at(nowhere), None);
        unsafe { std::env::set_var(REQUIRE_SHARED, "0") };
        assert_eq!(shared_dir_at(nowhere), None, "0 means not required");
        unsafe { std::env::set_var(REQUIRE_SHARED, "1") };
        let failed = std::panic::catch_unwind(|| shared_dir_at(nowhere));
        unsafe { std::env::remove_var(REQUIRE_SHARED) };
        let message = failed.expect_err("required and missing must fail");
        let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("/nonexistent/whittle-shared") && text.contains(REQUIRE_SHARED), "{text}");
    }
}
