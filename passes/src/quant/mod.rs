//! What the quantizing passes share: parameters and their arithmetic ([`params`]), streaming
//! calibration ([`calibrate`]), quantization points ([`plan`]), the IR operations ([`qdq`]), node
//! selection by op type and name pattern, and applying a plan to a graph.

pub mod bias_correction;
pub mod calibrate;
pub mod params;
pub mod plan;
pub mod qdq;
pub mod stats_file;

use std::collections::{BTreeMap, BTreeSet};

use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{Graph, Model, NodeId, Tensor, ValueId};

use crate::measure::{Measure, MeasureError};
use crate::pass::{PassError, PassReport};
use calibrate::Stats;
use params::{QParams, QType};
use plan::{Plan, Role};

/// Which nodes a quantizer touches: op types, then name patterns (`*` and `?` wildcards).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selection {
    /// Op types to quantize (empty: the pass's default list).
    pub op_types: Vec<String>,
    /// Node names to quantize (empty: all).
    pub include: Vec<String>,
    /// Node names and op types never quantized.
    pub exclude: Vec<String>,
}

impl Selection {
    /// Whether `node` is selected, given the pass's default op types.
    pub fn selects(&self, g: &Graph, id: NodeId, default_ops: &[&str]) -> bool {
        let Some(n) = g.node(id) else { return false };
        let op_ok =
            if self.op_types.is_empty() { default_ops.contains(&n.op_type()) } else { self.op_types.iter().any(|o| o == n.op_type()) };
        let name = n.name();
        op_ok
            && (self.include.is_empty() || self.include.iter().any(|p| wildcard(p, name)))
            && !self.exclude.iter().any(|p| wildcard(p, name) || p == n.op_type())
    }

    /// Patterns that are not valid.
    pub fn check(&self) -> Result<(), String> {
        for p in self.include.iter().chain(&self.exclude) {
            glob::Pattern::new(p).map_err(|e| format!("bad name pattern `{p}`: {e}"))?;
        }
        Ok(())
    }
}

fn wildcard(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

/// Raises the model to opset 13 when per-axis `DequantizeLinear` needs it (the ONNX checker and
/// onnxruntime reject an `axis` below 13); returns the note for the report.
pub fn ensure_opset_13(model: &mut Model) -> Result<Option<String>, PassError> {
    use crate::pass::{Pass, PassDef};
    let from = model.opset("").unwrap_or(1);
    if from >= 13 {
        return Ok(None);
    }
    let pass = crate::opset_conversion::OpsetConversion::new(crate::opset_conversion::Params { target: 13 });
    pass.run(model, &Default::default())
        .map_err(|e| PassError::unsupported_model(format!("per-channel quantization needs opset 13, and the upgrade failed: {e}")))?;
    Ok(Some(format!("opset raised from {from} to 13 (per-axis DequantizeLinear needs it)")))
}

/// Streams `values` of `model` over the calibration data into one [`Stats`] each.
pub fn calibrate(measure: &dyn Measure, model: &Model, values: &[String]) -> Result<Vec<Stats>, MeasureError> {
    calibrate_with_means(measure, model, values, &[]).map(|(s, _)| s)
}

/// [`calibrate`], and in the same pass over the data the per-channel means of `means` (value
/// name, channel axis).
pub fn calibrate_with_means(
    measure: &dyn Measure,
    model: &Model,
    values: &[String],
    means: &[(String, usize)],
) -> Result<(Vec<Stats>, Vec<calibrate::ChannelMeans>), MeasureError> {
    use rayon::prelude::*;
    let mut stats = vec![Stats::default(); values.len()];
    let mut channel_means: Vec<calibrate::ChannelMeans> = means.iter().map(|(_, axis)| calibrate::ChannelMeans::new(*axis)).collect();
    // Each value is asked for once, even when it needs both a histogram and channel means.
    let mut all: Vec<String> = values.to_vec();
    let mean_at: Vec<usize> = means
        .iter()
        .map(|(n, _)| {
            all.iter().position(|a| a == n).unwrap_or_else(|| {
                all.push(n.clone());
                all.len() - 1
            })
        })
        .collect();
    measure.stream(model, &all, &mut |_, arrays| {
        stats
            .par_iter_mut()
            .zip(arrays[..values.len()].par_iter())
            .for_each(|(s, a)| s.add(a.as_standard_layout().as_slice().expect("standard layout")));
        channel_means.par_iter_mut().zip(mean_at.par_iter()).for_each(|(m, &k)| m.add(&arrays[k]));
        Ok(())
    })?;
    Ok((stats, channel_means))
}

/// Quantization of the activation points.
#[derive(Clone, Copy, Debug)]
pub struct ActivationScheme {
    pub qtype: QType,
    pub symmetric: bool,
    pub method: calibrate::Method,
    pub percentile: f64,
}

impl ActivationScheme {
    pub fn params(&self, s: &Stats) -> QParams {
        let (lo, hi) = s.choose_range(self.method, self.percentile, self.qtype, self.symmetric);
        QParams::for_range(lo, hi, self.qtype, self.symmetric)
    }
}

/// A weight replaced by int8 (per channel along `axis`, or per tensor) read through
/// `DequantizeLinear`; returns the patch and the scales (for the bias).
pub fn quantize_weight(g: &Graph, node: NodeId, slot: usize, axis: Option<usize>) -> Result<(Patch, Vec<f32>), String> {
    let n = g.node(node).expect("live");
    let w = n.input(slot).ok_or("no weight")?;
    if !crate::rewrite::is_exclusive_constant(g, w, node) {
        return Err("its weight is shared with another node".into());
    }
    let t = g.constant(w).expect("checked");
    let data = t.to_f32().map_err(|e| e.to_string())?;
    let (q, scales) = params::quantize_weights(&data, t.dims(), axis);
    let name = g.value(w).name.clone();
    let mut p = Patch::new(format!("{}: weight {} -> int8{}", g.node_label(node), name, if axis.is_some() { " per channel" } else { "" }));
    let order = g.order_after(n.order);
    let dq = qdq::add_dequantized_constant(&mut p, &name, Tensor::from_i8(&name, t.dims(), &q), &scales, axis, None, order);
    p.set_input(node, slot, Some(dq));
    Ok((p, scales))
}

/// A float bias replaced by int32 with scale `input scale × weight scale` (per channel).
fn quantize_bias(
    g: &Graph,
    node: NodeId,
    slot: usize,
    input_scale: f32,
    weight_scales: &[f32],
    per_channel: bool,
) -> Result<Patch, String> {
    let n = g.node(node).expect("live");
    let b = n.input(slot).ok_or("no bias")?;
    if !crate::rewrite::is_exclusive_constant(g, b, node) {
        return Err("its bias is shared with another node".into());
    }
    let t = g.constant(b).expect("checked");
    let data = t.to_f32().map_err(|e| e.to_string())?;
    if t.dims().len() != 1 || (weight_scales.len() != 1 && weight_scales.len() != data.len()) {
        return Err("its bias does not have one value per output channel".into());
    }
    let scales: Vec<f32> = (0..data.len()).map(|c| input_scale * weight_scales[if weight_scales.len() == 1 { 0 } else { c }]).collect();
    let mut q = Vec::with_capacity(data.len());
    for (v, s) in data.iter().zip(&scales) {
        let r = (*v as f64 / *s as f64).round();
        if r.is_nan() || r.abs() >= i32::MAX as f64 {
            return Err("its bias does not fit int32 at scale input × weight".into());
        }
        q.push(r as i32);
    }
    let name = g.value(b).name.clone();
    let mut p = Patch::new(format!("{}: bias {} -> int32", g.node_label(node), name));
    let order = g.order_after(n.order);
    let (scales, axis) = if per_channel { (scales, Some(0)) } else { (vec![scales[0]], None) };
    let dq = qdq::add_dequantized_constant(&mut p, &name, Tensor::from_i32(&name, t.dims(), &q), &scales, axis, None, order);
    p.set_input(node, slot, Some(dq));
    Ok(p)
}

/// Applies a checked patch or records why not.
pub fn apply_or_decline(g: &mut Graph, report: &mut PassReport, node: NodeId, patch: Result<Patch, String>) -> bool {
    let (label, op) = g.node(node).map(|n| (g.node_label(node), n.op_type().to_string())).unwrap_or_default();
    match patch.and_then(|p| p.check(g).map(|()| p).map_err(|e| e.0)) {
        Ok(p) => {
            report.record(p.description.clone());
            // Applying drops the float constant the node no longer reads.
            p.apply(g);
            true
        }
        Err(why) => {
            report.decline(label, op, why);
            false
        }
    }
}

/// Inserts the plan's QDQ pairs with `params` (by calibrated value), quantizes the weighted
/// nodes' weights and biases, and drops the fused activations.
pub fn apply_plan(g: &mut Graph, plan: &Plan, params: &BTreeMap<ValueId, QParams>, report: &mut PassReport) {
    let point_params = |v: ValueId| plan.root(v).and_then(|r| params.get(&r).copied());
    for point in plan.points.values() {
        let Some(q) = point_params(point.replaces) else { continue };
        let readers = qdq::node_readers(g, point.replaces);
        if readers.is_empty() {
            continue;
        }
        let name = g.value(point.replaces).name.clone();
        let order = g.value(point.source).producer().and_then(|p| g.node(p)).map_or_else(Default::default, |n| g.order_after(n.order));
        let mut p = Patch::new(format!("{name}: QDQ {:?} scale {:.3e} zero point {}", q.qtype, q.scale, q.zero_point));
        let dq = qdq::add_qdq(&mut p, Wire::Value(point.source), &name, q, order);
        p.redirect(point.replaces, dq, readers);
        if let Some(act) = point.fused {
            p.remove_node(act);
        }
        let anchor = point.fused.or_else(|| g.value(point.source).producer());
        match p.check(g) {
            Ok(()) => {
                report.record(p.description.clone());
                p.apply(g);
            }
            Err(e) => {
                let (label, op) =
                    anchor.and_then(|a| g.node(a).map(|n| (g.node_label(a), n.op_type().to_string()))).unwrap_or((name, String::new()));
                report.decline(label, op, format!("no QDQ pair: {}", e.0));
            }
        }
    }
    for (&node, role) in &plan.nodes {
        let Role::Weighted { weight, axis, bias } = *role else { continue };
        let input_scale = g.node(node).and_then(|n| n.input(0)).and_then(|x| {
            // The node now reads the DequantizeLinear of its input point.
            let dq = g.value(x).producer().and_then(|p| g.node(p)).filter(|d| d.is("DequantizeLinear"))?;
            g.constant(dq.input(1)?)?.to_f32().ok().filter(|s| s.len() == 1).map(|s| s[0])
        });
        let mut scales = None;
        let ok = apply_or_decline(
            g,
            report,
            node,
            quantize_weight(g, node, weight, axis).map(|(p, s)| {
                scales = Some(s);
                p
            }),
        );
        if let (true, Some(slot), Some(sx), Some(sw)) = (ok, bias, input_scale, scales) {
            let patch = quantize_bias(g, node, slot, sx, &sw, axis.is_some());
            apply_or_decline(g, report, node, patch);
        }
    }
}

/// Names of values, for the measurement interface.
pub fn names(g: &Graph, values: &BTreeSet<ValueId>) -> Vec<String> {
    values.iter().map(|&v| g.value(v).name.clone()).collect()
}
