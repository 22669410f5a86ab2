//! `opset_conversion`: upgrades the default ONNX domain to a newer opset (13 or later), rewriting
//! the operators whose signature changed on the way.
//!
//! Rewrites (each keeps the computation identical, so the pass is **exact**):
//! - opset 9 (from 7-8): `BatchNormalization`'s `spatial=1` is dropped (spatial=0, per-activation
//!   statistics, is refused);
//! - opset 10: `Slice`'s `starts`/`ends`/`axes` and `TopK`'s `k` attributes become inputs;
//!   `Upsample` (opset 7-9, deprecated in 10 and gone later) becomes the `Resize` that replaced it:
//!   `coordinate_transformation_mode=asymmetric` (and `nearest_mode=floor` for nearest), the scales
//!   as input 2 (from the opset 7/8 attribute or the opset 9 input), an empty `roi`;
//! - opset 11: `Pad`'s `pads`/`value` and `Clip`'s `min`/`max` attributes become inputs (float
//!   data only); an opset-10 `Resize` gets the same explicit modes and empty `roi` (its meaning
//!   was asymmetric with floor rounding; opset 11 changed the defaults);
//! - opset 12: `Dropout`'s `ratio` attribute becomes an input (a leftover opset-6 `is_test`
//!   attribute is dropped: Dropout is the identity in inference either way);
//! - opset 13: `Squeeze`, `Unsqueeze`, `ReduceSum` take `axes` as an input instead of an attribute;
//!   `Split` takes `split` as an input; `Softmax`/`LogSoftmax`/`Hardmax` switch from "flatten at
//!   `axis`" to "along `axis`" semantics, which agree when `axis` is the last axis (other axes are
//!   refused);
//! - opset 18: the other reductions (`ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`,
//!   `ReduceL1`, `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceSumSquare`) take `axes` as
//!   an input.
//!
//! Every other operator in the graph must be one whose semantics for the model's types did not
//! change between the two opsets ([`UNCHANGED`]); any other operator makes the pass fail with its
//! name, rather than emit a model that may compute something else. Subgraphs are converted too.
//! Needed before per-channel quantization of old models: per-axis `DequantizeLinear` is opset 13.

use serde::{Deserialize, Serialize};
use whittle_graph::{Graph, Model, NodeId, Tensor};

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The opset to convert to (13 to 21); checked when the pipeline is read.
    #[serde(deserialize_with = "target_in_range")]
    pub target: i64,
}

/// `target` must be one of the opsets the pass converts to: refused when the pipeline is read,
/// with its position, not when the step runs.
fn target_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if !(MIN_TARGET..=MAX_TARGET).contains(&v) {
        return Err(serde::de::Error::custom(format!("target opset {v} is outside the supported range {MIN_TARGET} to {MAX_TARGET}")));
    }
    Ok(v)
}

impl Default for Params {
    fn default() -> Self {
        Params { target: 13 }
    }
}

pub struct OpsetConversion(Params);

impl PassDef for OpsetConversion {
    const NAME: &'static str = "opset_conversion";
    const SUMMARY: &'static str = "Upgrade the default-domain opset (to 13 or later), rewriting changed operators";
    const EXACT: bool = true;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[("target", "integer", "opset to convert to (13 to 21)")];
    fn new(params: Params) -> Self {
        OpsetConversion(params)
    }
}

pub const MIN_TARGET: i64 = 13;
pub const MAX_TARGET: i64 = 21;
/// The oldest opset the rewrites start from.
pub const MIN_SOURCE: i64 = 7;

/// Operators whose inference semantics (for float and integer types) do not change between opset 9
/// and 21, apart from the ones rewritten here. Version bumps of these only add element types or
/// optional attributes whose defaults keep the old behaviour.
pub const UNCHANGED: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "Div",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "LRN",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "NonZero",
    "Not",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "Relu",
    "Reshape",
    "Round",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Sqrt",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "Tile",
    "TopK",
    "Transpose",
    "Where",
    "Xor",
    "Constant",
    "Dropout",
    "Squeeze",
    "Unsqueeze",
    "ReduceSum",
    "Split",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "If",
    "Loop",
    "NonMaxSuppression",
    "Einsum",
    "LayerNormalization",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "Celu",
    "Gelu",
    "Mish",
    "Trilu",
    // Rewritten below when they come from an older opset.
    "Upsample",
    "Resize",
    "Pad",
    "Clip",
    "Slice",
    "TopK",
];

/// Opset in which each op's attribute moved to an input, and the attribute's name.
fn attr_to_input(op: &str) -> Option<(i64, &'static str, usize)> {
    Some(match op {
        "TopK" => (10, "k", 1),
        "Dropout" => (12, "ratio", 1),
        "Squeeze" | "Unsqueeze" | "ReduceSum" => (13, "axes", 1),
        "Split" => (13, "split", 1),
        "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp"
        | "ReduceSumSquare" => (18, "axes", 1),
        _ => return None,
    })
}

impl OpsetConversion {
    /// Checks every node of a graph (and subgraphs) before anything changes.
    fn check(&self, g: &Graph, from: i64, problems: &mut Vec<String>) {
        for id in g.node_ids() {
            let n = g.node(id).expect("listed");
            if !n.domain().is_empty() {
                continue;
            }
            if !UNCHANGED.contains(&n.op_type()) {
                problems.push(format!("{} ({}): no conversion rule for this op", g.node_label(id), n.op_type()));
            }
            if matches!(n.op_type(), "Softmax" | "LogSoftmax" | "Hardmax") && from < 13 {
                let rank = n.input(0).and_then(|x| g.value(x).shape.as_ref().map(|s| s.rank() as i64));
                let axis = n.attr_int("axis").unwrap_or(1);
                let last = match rank {
                    Some(r) => axis == -1 || axis == r - 1,
                    None => axis == -1,
                };
                if !last {
                    problems.push(format!(
                        "{} ({}): axis {axis} is not the last axis (rank {}), and the meaning of axis changed in opset 13",
                        g.node_label(id),
                        n.op_type(),
                        rank.map_or("unknown".into(), |r| r.to_string())
                    ));
                }
            }
            let label = || format!("{} ({})", g.node_label(id), n.op_type());
            let f32_data = || n.input(0).and_then(|x| g.value(x).dtype) == Some(whittle_graph::DataType::Float);
            match n.op_type() {
                "BatchNormalization" if from < 9 && n.attr_int("spatial").unwrap_or(1) == 0 => {
                    problems.push(format!("{}: spatial=0 (per-activation statistics) has no equivalent from opset 9", label()))
                }
                "Upsample" if from < 9 && n.attr_floats("scales").is_none() => problems.push(format!("{}: no `scales` attribute", label())),
                "Upsample" if from >= 9 && n.input(1).is_none() => problems.push(format!("{}: no scales input", label())),
                "Upsample" | "Resize"
                    if (n.op_type() == "Upsample" || from == 10)
                        && !matches!(n.attr_string("mode").as_deref().unwrap_or("nearest"), "nearest" | "linear") =>
                {
                    problems.push(format!("{}: mode {:?} has no Resize equivalent here", label(), n.attr_string("mode")))
                }
                "Pad" | "Clip" if from < 11 && !f32_data() => {
                    problems.push(format!("{}: its attributes become inputs of the data's type, converted here for f32 data only", label()))
                }
                "Dropout" if from < 10 && n.output(1).is_some_and(|m| !g.value(m).uses().is_empty() || g.is_graph_output(m)) => {
                    problems.push(format!("{}: its mask output is read, and the mask's type changed to bool in opset 10", label()))
                }
                "Pad" if from < 11 && n.attr_ints("pads").is_none() => problems.push(format!("{}: no `pads` attribute", label())),
                "Slice" if from < 10 && (n.attr_ints("starts").is_none() || n.attr_ints("ends").is_none()) => {
                    problems.push(format!("{}: no `starts`/`ends` attributes", label()))
                }
                _ => {}
            }
            for a in &n.attributes {
                for sub in &a.subgraphs {
                    self.check(sub, from, problems);
                }
            }
        }
    }

    fn convert(&self, g: &mut Graph, from: i64, report: &mut PassReport) {
        let ids: Vec<NodeId> = g.node_ids();
        for id in ids {
            let n = g.node(id).expect("listed");
            if !n.domain().is_empty() {
                continue;
            }
            let op = n.op_type().to_string();
            if matches!(op.as_str(), "Softmax" | "LogSoftmax" | "Hardmax") && from < 13 && n.attr_int("axis").is_none() {
                // The default axis changed from 1 to -1; the check made sure 1 is the last axis.
                g.node_mut(id).expect("listed").set_attr(whittle_graph::builder::attr_int("axis", 1));
                report.applied += 1;
            }
            if let Some((since, attr, slot)) = attr_to_input(&op)
                && from < since
                && self.0.target >= since
                && let Some(a) = g.node(id).expect("listed").attr(attr).map(|a| a.proto.clone())
            {
                let label = g.node_label(id);
                let tensor = match attr {
                    "ratio" => Tensor::from_f32("", &[], &[a.f.unwrap_or(0.5)]),
                    "k" => Tensor::from_i64("", &[1], &[a.i.unwrap_or(0)]),
                    _ => Tensor::from_i64("", &[a.ints.len() as i64], &a.ints),
                };
                let c = g.add_constant(&format!("{label}_{attr}"), tensor);
                let node = g.node_mut(id).expect("listed");
                node.remove_attr(attr);
                // Inputs before the new one must exist (possibly empty) for the slot to line up.
                g.set_input(id, slot, Some(c));
                report.applied += 1;
            }
            self.convert_moved_inputs(g, id, &op, from, report);
            let subs: usize = g.node(id).map(|n| n.attributes.iter().map(|a| a.subgraphs.len()).sum()).unwrap_or(0);
            if subs > 0 {
                let node = g.node_mut(id).expect("listed");
                for a in &mut node.attributes {
                    for sub in &mut a.subgraphs {
                        self.convert(sub, from, report);
                    }
                }
            }
        }
    }
}

impl OpsetConversion {
    /// The rewrites of ops whose several attributes became inputs, or that were replaced.
    fn convert_moved_inputs(&self, g: &mut Graph, id: NodeId, op: &str, from: i64, report: &mut PassReport) {
        let label = g.node_label(id);
        let take = |g: &mut Graph, attr: &str| -> Option<whittle_graph::onnx::AttributeProto> {
            let a = g.node(id)?.attr(attr).map(|a| a.proto.clone());
            g.node_mut(id)?.remove_attr(attr);
            a
        };
        let constant = |g: &mut Graph, suffix: &str, t: Tensor| g.add_constant(&format!("{label}_{suffix}"), t);
        match op {
            "BatchNormalization" if from < 9 && take(g, "spatial").is_some() => report.applied += 1,
            // Opset 6's training switch, still written by some converters: inference either way.
            "Dropout" if take(g, "is_test").is_some() => report.applied += 1,
            "Slice" if from < 10 && self.0.target >= 10 => {
                let (starts, ends, axes) = (take(g, "starts"), take(g, "ends"), take(g, "axes"));
                let ints = |a: Option<whittle_graph::onnx::AttributeProto>| a.map(|a| a.ints).unwrap_or_default();
                let (starts, ends) = (ints(starts), ints(ends));
                let axes: Vec<i64> = axes.map(|a| a.ints).unwrap_or_else(|| (0..starts.len() as i64).collect());
                let n = starts.len() as i64;
                let s = constant(g, "starts", Tensor::from_i64("", &[n], &starts));
                let e = constant(g, "ends", Tensor::from_i64("", &[n], &ends));
                let a = constant(g, "axes", Tensor::from_i64("", &[axes.len() as i64], &axes));
                inputs_after_data(g, id, &[Some(s), Some(e), Some(a)]);
                report.applied += 1;
            }
            // Upsample, and an opset-10 Resize: (X, scales) becomes (X, roi = "", scales) with the
            // modes made explicit; Upsample's opset 7/8 scales come from its attribute.
            "Upsample" | "Resize" if op == "Upsample" || from == 10 => {
                let mode = g.node(id).and_then(|n| n.attr_string("mode")).unwrap_or_else(|| "nearest".into());
                let scales = match take(g, "scales") {
                    Some(a) => Some(constant(g, "scales", Tensor::from_f32("", &[a.floats.len() as i64], &a.floats))),
                    None => g.node(id).and_then(|n| n.input(1)),
                };
                inputs_after_data(g, id, &[None, scales]);
                self.resize_modes(g, id, &mode);
                if let Some(n) = g.node_mut(id) {
                    n.residual.op_type = Some("Resize".into());
                }
                report.applied += 1;
            }
            "Pad" if from < 11 && self.0.target >= 11 => {
                let pads = take(g, "pads").map(|a| a.ints).unwrap_or_default();
                let value = take(g, "value").and_then(|a| a.f).unwrap_or(0.0);
                let p = constant(g, "pads", Tensor::from_i64("", &[pads.len() as i64], &pads));
                let v = constant(g, "value", Tensor::from_f32("", &[], &[value]));
                inputs_after_data(g, id, &[Some(p), Some(v)]);
                report.applied += 1;
            }
            "Clip" if from < 11 && self.0.target >= 11 => {
                // An absent bound stays absent (no clipping on that side), as before.
                let lo = take(g, "min").and_then(|a| a.f).map(|v| constant(g, "min", Tensor::from_f32("", &[], &[v])));
                let hi = take(g, "max").and_then(|a| a.f).map(|v| constant(g, "max", Tensor::from_f32("", &[], &[v])));
                let bounds = if hi.is_some() { vec![lo, hi] } else { vec![lo] };
                inputs_after_data(g, id, &bounds);
                report.applied += 1;
            }
            // From opset 18 an even Split names its number of outputs.
            "Split"
                if from < 18
                    && self.0.target >= 18
                    && g.node(id).is_some_and(|n| n.input(1).is_none() && n.attr("num_outputs").is_none()) =>
            {
                let outputs = g.node(id).map_or(0, |n| n.outputs().len());
                if let Some(n) = g.node_mut(id) {
                    n.set_attr(whittle_graph::builder::attr_int("num_outputs", outputs as i64));
                }
                report.applied += 1;
            }
            _ => {}
        }
    }

    /// The explicit modes of a Resize that computes what Upsample (and opset-10 Resize) did.
    fn resize_modes(&self, g: &mut Graph, id: NodeId, mode: &str) {
        use whittle_graph::builder::attr_string;
        let Some(n) = g.node_mut(id) else { return };
        n.set_attr(attr_string("mode", mode));
        n.set_attr(attr_string("coordinate_transformation_mode", "asymmetric"));
        if mode == "nearest" {
            n.set_attr(attr_string("nearest_mode", "floor"));
        }
    }
}

/// Keeps a node's data input (input 0) and gives it these inputs after it (`None`: omitted).
fn inputs_after_data(g: &mut Graph, id: NodeId, rest: &[Option<whittle_graph::ValueId>]) {
    g.truncate_inputs(id, 1);
    for v in rest {
        g.push_input(id, *v);
    }
}

impl Pass for OpsetConversion {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let target = self.0.target;
        if !(MIN_TARGET..=MAX_TARGET).contains(&target) {
            return Err(PassError::new(format!("target opset {target} is outside the supported range {MIN_TARGET}..={MAX_TARGET}")));
        }
        let from = model.opset("").ok_or_else(|| PassError::unsupported_model("the model does not import the default ONNX domain"))?;
        let mut report = PassReport::default();
        if from >= target {
            report.notes.push(format!("opset {from} is already at or above {target}: nothing to do"));
            return Ok(report);
        }
        if from < MIN_SOURCE {
            return Err(PassError::unsupported_model(format!("converting from opset {from} is not supported (oldest: {MIN_SOURCE})")));
        }
        let mut problems = Vec::new();
        self.check(&model.graph, from, &mut problems);
        if !problems.is_empty() {
            return Err(PassError::unsupported_model(format!("cannot convert opset {from} to {target}: {}", problems.join("; "))));
        }
        self.convert(&mut model.graph, from, &mut report);
        model.set_opset("", target);
        // IR version 7 cannot hold opset 13+ models for every checker; bump to the IR that matches.
        let min_ir = match target {
            13..=14 => 7,
            15..=18 => 8,
            19..=20 => 9,
            _ => 10,
        };
        if model.ir_version() < min_ir {
            model.meta.ir_version = Some(min_ir);
        }
        report.notes.push(format!("opset {from} -> {target}"));
        Ok(report)
    }
}
