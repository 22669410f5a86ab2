//! Shared helpers for the integration tests: locating the shared models and test data.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `../shared` beside the repository, when present (CI has it; a fresh clone may not).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared");
    dir.join("models").is_dir().then(|| dir.canonicalize().unwrap_or(dir))
}

/// The three PP-OCR models, or `None` with a printed reason when ../shared is missing.
pub fn shared_models() -> Option<Vec<PathBuf>> {
    let Some(dir) = shared_dir() else {
        eprintln!("SKIPPED: ../shared/models is not present beside the repository");
        return None;
    };
    Some(SHARED_MODELS.iter().map(|m| dir.join("models").join(m)).collect())
}

pub const SHARED_MODELS: [&str; 3] = ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"];

/// A file in `testdata/`.
pub fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata").join(name)
}

pub mod fixtures;

/// The Python of `.venv-peer` when it can import onnx, onnxruntime and numpy (what
/// `../shared/peer/compare.py` needs); otherwise `None` with a printed reason.
pub fn peer_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv-peer/bin/python");
    let works =
        std::process::Command::new(&python).args(["-c", "import onnx, onnxruntime, numpy"]).output().is_ok_and(|o| o.status.success());
    if works {
        Some(python)
    } else {
        eprintln!(
            "SKIPPED: {} cannot import onnx, onnxruntime and numpy (python3 -m venv .venv-peer && .venv-peer/bin/pip install onnx onnxruntime numpy)",
            python.display()
        );
        None
    }
}
