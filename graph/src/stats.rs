//! Model statistics: parameters and bytes by element type, op histogram, and multiply-accumulate
//! counts (MACs) per Conv/ConvTranspose/Gemm/MatMul layer at the shapes currently known (run shape
//! inference with concrete input shapes first).
//!
//! MACs: Conv = output elements × (C_in / group) × kernel area; ConvTranspose = input elements ×
//! (C_out / group) × kernel area; Gemm and MatMul = output elements × K. A layer whose shapes are not
//! fully known counts as unknown, never as zero.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::channels::WeightAxes;
use crate::ir::{Graph, NodeId};
use crate::model::Model;

/// Element count and bytes of the constants of one element type.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DtypeTotals {
    pub elements: u64,
    /// Elements that are not zero (see [`crate::Tensor::nonzero_count`]).
    pub nonzero: u64,
    pub bytes: u64,
}

/// MACs of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerMacs {
    pub node: String,
    pub op_type: String,
    /// `None` when the layer's shapes are not fully known.
    pub macs: Option<u64>,
}

/// Statistics of a model's main graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelStats {
    pub nodes: usize,
    /// Nodes of each op type (Constant nodes count as `Constant`).
    pub op_histogram: BTreeMap<String, usize>,
    /// Elements of all constant tensors (initializers and Constant-node weights), subgraphs'
    /// included.
    pub parameters: u64,
    /// Of those, the elements that are not zero.
    pub nonzero_parameters: u64,
    pub parameter_bytes: u64,
    pub by_dtype: BTreeMap<String, DtypeTotals>,
    /// Sum over the layers with known MACs.
    pub total_macs: u64,
    /// Layers whose MACs could not be computed (shapes unknown).
    pub layers_with_unknown_macs: usize,
    /// Every Conv/ConvTranspose/Gemm/MatMul layer in topological order.
    pub layers: Vec<LayerMacs>,
}

impl ModelStats {
    /// The `n` layers with the most MACs, heaviest first (ties by name).
    pub fn heaviest(&self, n: usize) -> Vec<&LayerMacs> {
        let mut known: Vec<&LayerMacs> = self.layers.iter().filter(|l| l.macs.is_some()).collect();
        known.sort_by(|a, b| b.macs.cmp(&a.macs).then_with(|| a.node.cmp(&b.node)));
        known.truncate(n);
        known
    }
}

/// Computes the statistics of a model.
pub fn model_stats(model: &Model) -> ModelStats {
    let g = &model.graph;
    let mut op_histogram = BTreeMap::new();
    let mut nodes = 0;
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    for id in &order {
        if let Some(n) = g.node(*id) {
            *op_histogram.entry(n.op_type().to_string()).or_insert(0) += 1;
            nodes += 1;
        }
    }
    let mut by_dtype: BTreeMap<String, DtypeTotals> = BTreeMap::new();
    for v in g.value_ids() {
        let Some(c) = g.value(v).constant() else { continue };
        if let crate::ir::ConstOrigin::Node { proto, .. } = &c.origin {
            *op_histogram.entry(proto.op_type.clone().unwrap_or_default()).or_insert(0) += 1;
            nodes += 1;
        }
    }
    add_constants(g, &mut by_dtype);
    let layers: Vec<LayerMacs> = order
        .iter()
        .filter_map(|id| {
            let n = g.node(*id)?;
            (n.domain().is_empty() && crate::channels::LAYER_OPS.contains(&n.op_type())).then(|| LayerMacs {
                node: g.node_label(*id),
                op_type: n.op_type().to_string(),
                macs: node_macs(g, *id),
            })
        })
        .collect();
    ModelStats {
        nodes,
        op_histogram,
        parameters: by_dtype.values().map(|t| t.elements).sum(),
        nonzero_parameters: by_dtype.values().map(|t| t.nonzero).sum(),
        parameter_bytes: by_dtype.values().map(|t| t.bytes).sum(),
        by_dtype,
        total_macs: layers.iter().filter_map(|l| l.macs).sum(),
        layers_with_unknown_macs: layers.iter().filter(|l| l.macs.is_none()).count(),
        layers,
    }
}

/// Adds the constants of `g` and of every subgraph in it (the weights of If/Loop/Scan branches
/// are parameters too).
fn add_constants(g: &Graph, by_dtype: &mut BTreeMap<String, DtypeTotals>) {
    for v in g.value_ids() {
        let Some(c) = g.value(v).constant() else { continue };
        let totals = by_dtype.entry(c.tensor.dtype().to_string()).or_default();
        totals.elements += c.tensor.numel();
        totals.nonzero += c.tensor.nonzero_count();
        totals.bytes += c.tensor.byte_size();
    }
    for id in g.node_ids() {
        for sub in g.node(id).into_iter().flat_map(|n| n.attributes.iter()).flat_map(|a| a.subgraphs.iter()) {
            add_constants(sub, by_dtype);
        }
    }
}

/// Multiply-accumulates of one Conv/ConvTranspose/Gemm/MatMul node, when its shapes are known
/// (the weight layouts come from [`crate::channels`]).
pub fn node_macs(g: &Graph, id: NodeId) -> Option<u64> {
    let n = g.node(id)?;
    let dims = |v: Option<crate::ir::ValueId>| -> Option<Vec<i64>> { g.value(v?).shape.as_ref()?.concrete() };
    let prod = |d: &[i64]| d.iter().try_fold(1u64, |a, &b| a.checked_mul(u64::try_from(b).ok()?));
    let w = dims(n.input(crate::channels::weight_input(n.op_type())?))?;
    // A vector right operand of MatMul: each output element is a dot product over its length.
    let (per_element, per_input) = match WeightAxes::of_node(n, w.len()) {
        Some(axes) => (axes.macs_per_element(&w)?, axes.output_per_group),
        None if n.is("MatMul") && w.len() == 1 => (u64::try_from(w[0]).ok()?, false),
        None => return None,
    };
    let driving = if per_input { dims(n.input(0))? } else { dims(n.output(0))? };
    prod(&driving)?.checked_mul(per_element)
}
