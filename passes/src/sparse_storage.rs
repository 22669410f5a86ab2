//! `sparse_storage`: stores constants that are mostly zeros in ONNX's sparse form, the way to ship
//! what `prune_magnitude` produced when the raw file size matters.
//!
//! A sparse weight becomes a `Constant` node with a `sparse_value` attribute: the nonzero values
//! and, for each, its position as an int64 (the only index type the ONNX standard allows). Its
//! output is an ordinary tensor, so Conv, Gemm and MatMul take it and `onnx.checker`'s full check
//! passes; a graph-level `sparse_initializer` would not (ONNX types it `sparse_tensor`, which those
//! operators reject; see `whittle_graph::sparse`). A float32 weight with `z` zeros out of `n` takes
//! `12 (n - z)` bytes instead of `4 n`: smaller only above 2/3 sparsity. The pass stores a constant
//! sparse exactly when that makes it smaller, and says how many it kept dense. Compressing the file
//! (zstd, gzip) already squeezes runs of zeros, so the gain in *compressed* size is smaller than in
//! raw size; the report shows both.
//!
//! **Exact**: the data is the same, only its encoding changes. Runtimes are given the dense form
//! (`encode_for_runtime`), so tract checks the same numbers; onnxruntime reads `sparse_value`
//! itself. Storage never speeds up a dense runtime. Needs IR version 6 and opset 11 or later
//! (`sparse_value` appeared there); older models are left as they are, with a note.

use serde::{Deserialize, Serialize};
use whittle_graph::{Model, ValueId, sparse};

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Constants with fewer elements stay dense (biases, shapes, scales).
    pub min_size: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { min_size: 1024 }
    }
}

/// The first ONNX IR version with sparse tensors (March 2019), and the first opset whose
/// `Constant` takes a `sparse_value`.
const SPARSE_IR_VERSION: i64 = 6;
const SPARSE_OPSET: i64 = 11;

pub struct SparseStorage {
    params: Params,
}

impl PassDef for SparseStorage {
    const NAME: &'static str = "sparse_storage";
    const SUMMARY: &'static str = "Store mostly-zero constants in ONNX's sparse form (Constant sparse_value) where that makes them smaller: above 2/3 sparsity for float32";
    const EXACT: bool = true;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] =
        &[("min_size", "integer", "constants with fewer elements stay dense")];
    fn new(params: Params) -> Self {
        SparseStorage { params }
    }
}

impl Pass for SparseStorage {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let opset = model.opset("").unwrap_or(0);
        if model.ir_version() < SPARSE_IR_VERSION || opset < SPARSE_OPSET {
            report.notes.push(format!(
                "nothing stored sparse: the model (IR version {}, opset {opset}) predates Constant's sparse_value (IR \
                 {SPARSE_IR_VERSION}, opset {SPARSE_OPSET}); run opset_conversion first",
                model.ir_version()
            ));
            return Ok(report);
        }
        let g = &mut model.graph;
        let candidates: Vec<ValueId> = g
            .value_ids()
            .filter(|v| g.value(*v).constant().is_some_and(|c| c.tensor.numel() >= self.params.min_size && !g.is_graph_input(*v)))
            .collect();
        let (mut dense_bytes, mut sparse_bytes, mut kept_dense) = (0u64, 0u64, 0usize);
        for v in candidates {
            let Some(c) = g.value(v).constant().filter(|c| !c.is_sparse()) else { continue };
            let t = &c.tensor;
            let (Some(nonzero), Some(stored_sparse)) = (sparse::nonzero_elements(t), sparse::sparse_data_bytes(t)) else { continue };
            let (name, dense, numel) = (g.value(v).name.clone(), t.byte_size(), t.numel());
            if nonzero == numel {
                continue;
            }
            if stored_sparse >= dense {
                kept_dense += 1;
                continue;
            }
            if g.store_sparse(v) {
                dense_bytes += dense;
                sparse_bytes += stored_sparse;
                report.record(format!(
                    "{name}: sparse, {nonzero} of {numel} nonzero ({:.1}% sparse): {dense} -> {stored_sparse} bytes",
                    100.0 * (numel - nonzero) as f64 / numel as f64
                ));
            }
        }
        if report.applied > 0 {
            report.notes.push(format!(
                "{} constants stored sparse (Constant sparse_value): {dense_bytes} -> {sparse_bytes} bytes of data; runtimes are given the dense form, \
                 and a dense runtime runs no faster",
                report.applied
            ));
        }
        if kept_dense > 0 {
            report.notes.push(format!(
                "{kept_dense} constants with zeros kept dense: the sparse form (an int64 index per nonzero, the only index type ONNX \
                 allows) would be larger, as it is below 2/3 sparsity for float32"
            ));
        }
        Ok(report)
    }
}
