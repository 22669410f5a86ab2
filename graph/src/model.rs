//! A whole model: the main graph plus the model-level fields, kept verbatim.

use crate::ir::Graph;
use crate::onnx::{ModelProto, OperatorSetIdProto};

/// An ONNX model in the IR. `meta` is the `ModelProto` without its graph: IR version, opset
/// imports, producer, metadata, functions, training info and device configurations, untouched.
#[derive(Clone, Debug)]
pub struct Model {
    pub meta: ModelProto,
    pub graph: Graph,
}

impl Model {
    /// The opset version imported for a domain ("" = the default ONNX domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| if d == "ai.onnx" { String::new() } else { d.to_string() };
        self.meta.opset_import.iter().find(|o| norm(o.domain.as_deref().unwrap_or("")) == norm(domain)).and_then(|o| o.version)
    }

    /// Sets the opset version of a domain, adding the import if missing.
    pub fn set_opset(&mut self, domain: &str, version: i64) {
        match self.meta.opset_import.iter_mut().find(|o| o.domain.as_deref().unwrap_or("") == domain) {
            Some(o) => o.version = Some(version),
            None => self.meta.opset_import.push(OperatorSetIdProto { domain: Some(domain.to_string()), version: Some(version) }),
        }
    }

    pub fn ir_version(&self) -> i64 {
        self.meta.ir_version.unwrap_or(0)
    }

    /// A metadata_props value of the model.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.meta.metadata_props.iter().find(|p| p.key.as_deref() == Some(key)).and_then(|p| p.value.as_deref())
    }
}
