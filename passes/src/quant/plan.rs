//! Quantization points: which nodes are quantized and which tensors get a QDQ pair, decided on
//! the float graph before any calibration (as onnxruntime's QDQ quantizer and NNCF do).
//!
//! Each op has one role:
//! - **weighted** (Conv, ConvTranspose, Gemm, MatMul with a constant weight): the activation input
//!   and the output are quantization points; the weight becomes int8 (per output channel), the
//!   bias int32 with scale `input scale × weight scale`;
//! - **compute** (Add, Mul, Concat, pooling, linear Resize, Softmax, Sigmoid...; MatMul of two
//!   activations): float activation inputs and the output are points;
//! - **data movement** (Reshape, Transpose, Slice, Split, Squeeze, Unsqueeze, Flatten, MaxPool,
//!   nearest Resize, Identity): when its input is a point, its outputs are points with the same
//!   parameters, so `Q(move(DQ(q))) = move(q)` adds no error and runtimes keep them in int8.
//!
//! A quantized op's output read by exactly one `Relu` (or `Clip` from 0) is quantized after the
//! activation and the activation is dropped when activations are asymmetric: the range then
//! starts at 0, the zero point is the type's minimum and `QuantizeLinear` saturates negatives
//! exactly as the activation would (onnxruntime does the same), which lets `DQ → Conv → Q` fuse
//! into one integer kernel. Graph outputs are never quantized.

use std::collections::{BTreeMap, BTreeSet};

use whittle_graph::channels::WeightAxes;
use whittle_graph::{DataType, Graph, NodeId, ValueId};

/// What quantizing an op means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The weight (`slot`), its per-channel axis (`None`: per tensor) and the bias slot.
    Weighted {
        weight: usize,
        axis: Option<usize>,
        bias: Option<usize>,
    },
    Compute,
    DataMovement,
}

/// Every op type the static quantizer knows (the default of its `op_types`).
pub const STATIC_OP_TYPES: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Concat",
    "AveragePool",
    "GlobalAveragePool",
    "MaxPool",
    "GlobalMaxPool",
    "Resize",
    "Softmax",
    "Sigmoid",
    "HardSigmoid",
    "LeakyRelu",
    "Reshape",
    "Transpose",
    "Slice",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
];

fn is_float_constant(g: &Graph, v: Option<ValueId>) -> bool {
    v.and_then(|v| g.constant(v)).is_some_and(|t| t.dtype() == DataType::Float)
}

/// The role of `node` for quantization, or why it cannot be quantized.
pub fn role(g: &Graph, id: NodeId) -> Result<Option<Role>, String> {
    let n = g.node(id).expect("live node");
    if !n.domain().is_empty() {
        return Ok(None);
    }
    let reads_dequantized = n
        .inputs()
        .iter()
        .flatten()
        .any(|v| g.value(*v).producer().and_then(|p| g.node(p)).is_some_and(|p| p.is("DequantizeLinear") || p.is("QuantizeLinear")));
    if reads_dequantized {
        return Err("it is already quantized (it reads a DequantizeLinear)".into());
    }
    let weight_rank = || n.input(1).and_then(|w| g.constant(w)).map_or(0, |t| t.dims().len());
    // Per-channel axis: the weight's output-channel axis in the one channel-layout table.
    let output_axis = || WeightAxes::of_node(n, weight_rank()).map(|a| a.output);
    let bias = |slot: usize| is_float_constant(g, n.input(slot)).then_some(slot);
    let weighted = is_float_constant(g, n.input(1)) && output_axis().is_some();
    Ok(Some(match n.op_type() {
        "Conv" if weighted => Role::Weighted { weight: 1, axis: output_axis(), bias: bias(2) },
        "ConvTranspose" if weighted => {
            // Weight [C_in, C_out/group, k...]: per output channel only without groups.
            let per_channel = n.attr_int("group").unwrap_or(1) == 1;
            Role::Weighted { weight: 1, axis: output_axis().filter(|_| per_channel), bias: if per_channel { bias(2) } else { None } }
        }
        "Gemm" if weighted => {
            let plain = n.attr_float("alpha").unwrap_or(1.0) == 1.0 && n.attr_float("beta").unwrap_or(1.0) == 1.0;
            let out_features = g.constant(n.input(1).expect("checked")).zip(output_axis()).map(|(t, a)| t.dims()[a]);
            let c_is_bias =
                plain && n.input(2).and_then(|c| g.constant(c)).is_some_and(|t| t.dims().len() == 1 && Some(t.dims()[0]) == out_features);
            Role::Weighted { weight: 1, axis: output_axis(), bias: if c_is_bias { bias(2) } else { None } }
        }
        "MatMul" if weighted => Role::Weighted { weight: 1, axis: output_axis(), bias: None },
        "MatMul" if is_float_constant(g, n.input(0)) => return Err("its first operand is a constant (only B is taken as a weight)".into()),
        "Gemm" | "Conv" | "ConvTranspose" if n.input(1).is_some_and(|w| g.constant(w).is_some()) => {
            return Err("its weight is not float".into());
        }
        "Resize" => {
            if n.attr_string("mode").as_deref().unwrap_or("nearest") == "nearest" {
                Role::DataMovement
            } else {
                Role::Compute
            }
        }
        "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "Add" | "Mul" | "Concat" | "AveragePool" | "GlobalAveragePool" | "Softmax"
        | "Sigmoid" | "HardSigmoid" | "LeakyRelu" => Role::Compute,
        "MaxPool" if n.outputs().iter().flatten().count() > 1 => return Err("it has an Indices output".into()),
        "Reshape" | "Transpose" | "Slice" | "Split" | "Squeeze" | "Unsqueeze" | "Flatten" | "MaxPool" | "GlobalMaxPool" | "Identity" => {
            Role::DataMovement
        }
        _ => return Ok(None),
    }))
}

/// Where the parameters of a point come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Params {
    /// Calibrated on this value of the float model.
    Calibrated(ValueId),
    /// The parameters of the point on this value (data movement).
    SameAs(ValueId),
}

/// A tensor that gets a QDQ pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// What `QuantizeLinear` reads.
    pub source: ValueId,
    /// Whose node readers read the `DequantizeLinear` instead (`source`, or the output of the
    /// dropped activation).
    pub replaces: ValueId,
    pub params: Params,
    /// The activation dropped in front of the pair.
    pub fused: Option<NodeId>,
}

/// The decided points and the quantized nodes.
#[derive(Debug, Default)]
pub struct Plan {
    /// By the value they replace.
    pub points: BTreeMap<ValueId, Point>,
    pub nodes: BTreeMap<NodeId, Role>,
    /// (node, op, reason) for ops of the selected types that stay float.
    pub declined: Vec<(NodeId, String)>,
}

impl Plan {
    /// The values to calibrate (by name), in a stable order.
    pub fn calibrated(&self) -> BTreeSet<ValueId> {
        self.points.values().filter_map(|p| if let Params::Calibrated(v) = p.params { Some(v) } else { None }).collect()
    }

    /// Keeps the values `float` in float: their points go, and with them the points of data
    /// movement that took their parameters. A fused activation whose point goes stays in the graph.
    pub fn keep_float(&mut self, float: &BTreeSet<ValueId>) {
        self.points.retain(|v, _| !float.contains(v));
        loop {
            let orphans: Vec<ValueId> = self
                .points
                .iter()
                .filter(|(_, p)| matches!(p.params, Params::SameAs(root) if !self.points.contains_key(&root)))
                .map(|(&v, _)| v)
                .collect();
            if orphans.is_empty() {
                break;
            }
            for v in orphans {
                self.points.remove(&v);
            }
        }
    }

    /// The point whose parameters `v`'s point uses (following data movement).
    pub fn root(&self, mut v: ValueId) -> Option<ValueId> {
        for _ in 0..self.points.len() + 1 {
            match self.points.get(&v)?.params {
                Params::Calibrated(c) => return Some(c),
                Params::SameAs(other) => v = other,
            }
        }
        None
    }
}

fn is_float_activation(g: &Graph, v: ValueId) -> bool {
    g.constant(v).is_none() && g.value(v).dtype == Some(DataType::Float)
}

/// A `Relu`, or `Clip` with a constant minimum of 0, that may be dropped in front of a
/// `QuantizeLinear` whose range starts at 0.
fn fusable_activation(g: &Graph, v: ValueId) -> Option<NodeId> {
    if g.is_graph_output(v) {
        return None;
    }
    let [(reader, 0)] = g.value(v).uses() else { return None };
    let n = g.node(*reader)?;
    let out = n.output(0)?;
    if g.is_graph_output(out) || n.outputs().len() != 1 {
        return None;
    }
    let ok = n.is("Relu")
        || (n.is("Clip")
            && n.input(1).and_then(|m| g.constant(m)).and_then(|t| t.to_f32().ok()).is_some_and(|m| m.len() == 1 && m[0] == 0.0));
    ok.then_some(*reader)
}

/// Decides the points for the nodes `selected` says to quantize (see the module documentation).
pub fn plan(g: &Graph, order: &[NodeId], selected: &dyn Fn(NodeId) -> bool, fuse_activations: bool) -> Plan {
    let mut plan = Plan::default();
    let point = |v: ValueId| Point { source: v, replaces: v, params: Params::Calibrated(v), fused: None };
    for &id in order {
        if !selected(id) {
            continue;
        }
        let role = match role(g, id) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(why) => {
                plan.declined.push((id, why));
                continue;
            }
        };
        plan.nodes.insert(id, role);
        if role == Role::DataMovement {
            continue;
        }
        let n = g.node(id).expect("live");
        let (skip_a, skip_b) = match role {
            Role::Weighted { weight, bias, .. } => (Some(weight), bias),
            _ => (None, None),
        };
        for (slot, v) in n.inputs().iter().enumerate() {
            let Some(v) = *v else { continue };
            if Some(slot) == skip_a || Some(slot) == skip_b || !is_float_activation(g, v) {
                continue;
            }
            plan.points.entry(v).or_insert_with(|| point(v));
        }
        for v in n.outputs().iter().flatten().copied() {
            if !is_float_activation(g, v) || g.value(v).uses().is_empty() {
                continue;
            }
            match fuse_activations.then(|| fusable_activation(g, v)).flatten() {
                Some(act) => {
                    let out = g.node(act).and_then(|a| a.output(0)).expect("checked");
                    plan.points.insert(out, Point { source: v, replaces: out, params: Params::Calibrated(out), fused: Some(act) });
                }
                None => {
                    plan.points.entry(v).or_insert_with(|| point(v));
                }
            }
        }
    }
    // Data movement: outputs share their input's parameters (topological order: chains follow).
    for &id in order {
        if plan.nodes.get(&id) != Some(&Role::DataMovement) {
            continue;
        }
        let n = g.node(id).expect("live");
        let Some(input) = n.input(0).filter(|v| plan.points.contains_key(v)) else { continue };
        for v in n.outputs().iter().flatten().copied() {
            if is_float_activation(g, v) && !g.value(v).uses().is_empty() {
                plan.points.insert(v, Point { source: v, replaces: v, params: Params::SameAs(input), fused: None });
            }
        }
    }
    // A fused activation's input must not be a point of its own.
    let fused_inputs: Vec<ValueId> = plan.points.values().filter(|p| p.fused.is_some()).map(|p| p.source).collect();
    for v in fused_inputs {
        plan.points.remove(&v);
    }
    plan
}
