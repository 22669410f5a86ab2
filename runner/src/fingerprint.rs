//! The fingerprint of a run: what the output depends on. Same fingerprint, same output bytes,
//! so a run whose output already carries the fingerprint can be skipped.
//!
//! SHA-256 over, in order and each length-prefixed: a format tag, the whittle version, the model
//! as tract receives it (every tensor inline, so external data counts), the pipeline file's
//! text, the effective settings after command-line overrides (input shapes, data specs, stop
//! step) as canonical JSON, and the name and contents of every data file read. Paths of the
//! model and the output do not count: moving a checkout does not invalidate its outputs.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Metadata key of the fingerprint in the output model's `metadata_props`.
pub const METADATA_KEY: &str = "whittle.fingerprint";

/// Builds a fingerprint piece by piece.
pub struct Fingerprint(Sha256);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint::new()
    }
}

impl Fingerprint {
    pub fn new() -> Fingerprint {
        let mut f = Fingerprint(Sha256::new());
        f.add("tag", b"whittle-fingerprint-v1");
        f.add("version", env!("CARGO_PKG_VERSION").as_bytes());
        f
    }

    /// Adds a labelled piece.
    pub fn add(&mut self, label: &str, bytes: &[u8]) {
        for part in [label.as_bytes(), bytes] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }

    /// Adds a file's name (not its folder) and contents.
    pub fn add_file(&mut self, path: &Path) -> std::io::Result<()> {
        let bytes = std::fs::read(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.add(&format!("file {name}"), &bytes);
        Ok(())
    }

    /// `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

/// The fingerprint stored in a model file, if it has one.
pub fn stored(path: &Path) -> Option<String> {
    let model = whittle_graph::load_model(path).ok()?;
    model.metadata(METADATA_KEY).map(str::to_string)
}

/// Sets (or replaces) the fingerprint in a model's metadata.
pub fn stamp(model: &mut whittle_graph::Model, fingerprint: &str) {
    let props = &mut model.meta.metadata_props;
    props.retain(|p| p.key.as_deref() != Some(METADATA_KEY));
    props.push(whittle_graph::onnx::StringStringEntryProto { key: Some(METADATA_KEY.to_string()), value: Some(fingerprint.to_string()) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_delimited() {
        let one = |a: &[u8], b: &[u8]| {
            let mut f = Fingerprint::new();
            f.add("x", a);
            f.add("y", b);
            f.finish()
        };
        assert_eq!(one(b"ab", b"c"), one(b"ab", b"c"));
        assert_ne!(one(b"ab", b"c"), one(b"a", b"bc"));
        assert!(one(b"", b"").starts_with("sha256:"));
    }
}
