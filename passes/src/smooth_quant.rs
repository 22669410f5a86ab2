//! `smooth_quant`: migrates activation outliers into the weights of MatMul and Gemm layers before
//! INT8 quantization (Xiao et al. 2023, "SmoothQuant"), measured on the calibration data.
//!
//! A per-tensor activation scale is set by the largest channel: one input channel `j` of `X`
//! with `|X_j|` ten times the others leaves them a tenth of the 256 levels. For `Y = X·W`
//! (`W` of shape `[K, N]`, `X` of shape `[..., K]`),
//!
//! `Y = (X·diag(1/s))·(diag(s)·W)`, with `s_j = max|X_j|^α / max_n |W_jn|^(1−α)`,
//!
//! divides activation channel `j` by `s_j` and multiplies weight row `j` by it: `α` (default 0.5)
//! is how much of the spread moves into the weights, whose per-output-channel scales absorb it
//! better. `max|X_j|` is streamed over the calibration samples (one pass, a running maximum per
//! channel). Several layers reading the same `X` (separate q, k, v projections) share one `s`,
//! their weights' row maxima combined.
//!
//! The division by `s` is folded into what produces `X`, walking back through a chain of
//! per-channel ops with constants along the last axis (`Add`/`Sub` by a constant: the constant
//! divided by `s`, and on; `Relu`/`LeakyRelu`: on) until one absorbs the scale: a `Mul` by a
//! constant (a decomposed LayerNorm's `γ`), a `Div` by one, a `LayerNormalization` over the last
//! axis (`scale` and `bias` divided), or a MatMul/Gemm with a constant weight (its output columns
//! and bias). **Exact** in float, up to rounding: the outputs do not change; the next
//! quantization loses less.
//!
//! Declined, with the reason: an `X` read by anything but the smoothed layers and `Shape` (a
//! residual path would need the unsmoothed value), a chain that reaches an op that cannot absorb
//! a scale (no Mul is inserted), a constant that does not broadcast along the last axis only, a
//! value on the chain whose last axis is not known to hold the channels, a Gemm with `transA`,
//! shared weights. MatMuls of two activations are no candidates. Sites are smoothed downstream
//! first, so a second run finds every scale at 1 (unless one was clamped to its bounds).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use whittle_graph::patch::Patch;
use whittle_graph::{DataType, Graph, Model, NodeId, Tensor, ValueId};

use crate::affine::{channel_ranges, check_scalable, per_channel_constant, scale_input_channels, scale_output_channels};
use crate::driver::topo_order;
use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::Selection;
use crate::rewrite::is_exclusive_constant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Migration strength: the share of each channel's range moved into the weights (0..=1).
    pub alpha: f64,
    /// Op types smoothed (MatMul, Gemm; empty: both).
    pub op_types: Vec<String>,
    /// Node name patterns smoothed (`*`, `?`; empty: all).
    pub include: Vec<String>,
    /// Node name patterns or op types left alone.
    pub exclude: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params { alpha: 0.5, op_types: Vec::new(), include: Vec::new(), exclude: Vec::new() }
    }
}

pub struct SmoothQuant {
    params: Params,
}

impl PassDef for SmoothQuant {
    const NAME: &'static str = "smooth_quant";
    const SUMMARY: &'static str =
        "Move activation outliers of MatMul/Gemm inputs into their weights, per channel, folded into the op before (exact; helps INT8)";
    const EXACT: bool = true;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("alpha", "float", "migration strength: the share of each input channel's range moved into the weights (0 to 1)"),
        ("op_types", "list", "op types smoothed: MatMul, Gemm (empty: both)"),
        ("include", "list", "node name patterns smoothed (empty: all)"),
        ("exclude", "list", "node name patterns or op types left alone"),
    ];
    fn new(params: Params) -> Self {
        SmoothQuant { params }
    }
}

const LAYER_OPS: &[&str] = &["MatMul", "Gemm"];
/// Scales this close to 1 are left alone, so that a second run changes nothing.
const SETTLED: f64 = 1e-3;
/// Bounds of a scale, so that a dead channel or weight row does not blow up the other side.
const SCALE_BOUNDS: (f64, f64) = (1e-5, 1e5);

/// Where `1/s` goes.
#[derive(Clone, Copy, Debug)]
enum Absorber {
    /// Constant input `slot` of an elementwise op or a LayerNormalization: divided by `s`
    /// (multiplied for the divisor of a Div).
    Operand { node: NodeId, slot: usize, multiply: bool },
    /// A MatMul/Gemm producing `X`: its output channels scaled by `1/s`.
    Layer(NodeId),
}

/// One smoothed activation: the value, its channel count, the layers reading it and where
/// `1/s` is folded.
struct Site {
    x: ValueId,
    /// Rank of `x` and its channel count (last axis).
    rank: usize,
    channels: usize,
    layers: Vec<NodeId>,
    absorbers: Vec<Absorber>,
}

/// The layer reads `x` as its activation input: a MatMul with a constant weight of rank 2, or
/// a Gemm without transA.
fn reads_activation(g: &Graph, id: NodeId) -> Result<ValueId, String> {
    let n = g.node(id).ok_or("removed")?;
    if n.is("Gemm") && n.attr_int("transA").unwrap_or(0) != 0 {
        return Err("the Gemm has transA: its input channels are not the last axis".into());
    }
    let x = n.input(0).ok_or("no activation input")?;
    if g.constant(x).is_some() {
        return Err("its first operand is a constant".into());
    }
    let w = n.input(1).and_then(|w| g.constant(w)).ok_or("its weight is not a constant (an activation x activation product)")?;
    if w.dims().len() != 2 {
        return Err(format!("its weight has rank {}, not 2", w.dims().len()));
    }
    check_scalable(g, id)?;
    Ok(x)
}

/// Whether every reader of `v` other than `allowed` only reads its shape.
fn only_read_by(g: &Graph, v: ValueId, allowed: &[NodeId]) -> Result<(), String> {
    if g.is_graph_output(v) {
        return Err(format!("`{}` is a graph output", g.value(v).name));
    }
    for &(reader, _) in g.value(v).uses() {
        let n = g.node(reader).ok_or("removed reader")?;
        if !allowed.contains(&reader) && !n.is("Shape") {
            return Err(format!(
                "`{}` is also read by {} {} (it would need the unsmoothed value)",
                g.value(v).name,
                n.op_type(),
                g.node_label(reader)
            ));
        }
    }
    Ok(())
}

/// Values of a constant applying one value per channel along the last axis of a rank-`rank`
/// value with `k` channels. f32 only: the smoothed constant replaces it as f32.
fn per_last_axis(t: &Tensor, rank: usize, k: usize) -> Result<Vec<f64>, String> {
    if t.dtype() != DataType::Float {
        return Err(format!("the constant is {}, not f32", t.dtype()));
    }
    per_channel_constant(t, rank, rank.saturating_sub(1), k)
}

/// Walks back from `x` (of rank `rank`, `k` channels) to where `1/s` can be folded.
fn absorbers(g: &Graph, x: ValueId, rank: usize, k: usize, layers: &[NodeId]) -> Result<Vec<Absorber>, String> {
    only_read_by(g, x, layers)?;
    let mut found = Vec::new();
    let mut v = x;
    loop {
        // A constant widened from one value to `k` must not change the shape of what it makes.
        let last = g.value(v).shape.as_ref().and_then(|s| s.0.last()).and_then(|d| d.known());
        if last != Some(k as i64) {
            return Err(format!("the last axis of `{}` is not known to hold the {k} channels", g.value(v).name));
        }
        let p =
            g.value(v).producer().ok_or_else(|| format!("`{}` is a graph input: nothing before it absorbs a scale", g.value(v).name))?;
        let n = g.node(p).ok_or("removed")?;
        let constant_operand = |slot: usize| -> Result<Option<Vec<f64>>, String> {
            n.input(slot).and_then(|c| g.constant(c)).map(|t| per_last_axis(t, rank, k)).transpose()
        };
        let next = match (n.domain(), n.op_type()) {
            ("", op @ ("Add" | "Sub" | "Mul" | "Div")) => {
                let slot = match (constant_operand(0)?, constant_operand(1)?) {
                    (None, Some(_)) => 1,
                    (Some(_), None) if op != "Div" => 0,
                    (Some(_), None) => return Err(format!("Div {} divides a constant by the activation", g.node_label(p))),
                    _ => return Err(format!("{op} {} does not apply a constant per channel (two activations)", g.node_label(p))),
                };
                found.push(Absorber::Operand { node: p, slot, multiply: op == "Div" });
                if matches!(op, "Mul" | "Div") {
                    return Ok(found);
                }
                n.input(1 - slot)
            }
            ("", "Relu" | "LeakyRelu") => n.input(0),
            ("", "LayerNormalization") => {
                let axis = n.attr_int("axis").unwrap_or(-1);
                if axis != -1 && axis != rank as i64 - 1 {
                    return Err(format!("LayerNormalization {} normalizes from axis {axis}, not the last", g.node_label(p)));
                }
                for slot in [1, 2] {
                    if n.input(slot).is_some() {
                        constant_operand(slot)?
                            .ok_or_else(|| format!("LayerNormalization {} has a non-constant input {slot}", g.node_label(p)))?;
                        found.push(Absorber::Operand { node: p, slot, multiply: false });
                    }
                }
                return Ok(found);
            }
            ("", "MatMul" | "Gemm") => {
                reads_activation(g, p)
                    .map_err(|why| format!("{} {} before it cannot absorb a scale: {why}", n.op_type(), g.node_label(p)))?;
                found.push(Absorber::Layer(p));
                return Ok(found);
            }
            (_, op) => {
                return Err(format!(
                    "`{}` comes from {op} {}, which cannot absorb a per-channel scale (a Mul or Div by a constant, a \
                     LayerNormalization or a MatMul/Gemm with a constant weight can)",
                    g.value(v).name,
                    g.node_label(p)
                ));
            }
        };
        v = next.ok_or("an op without its input")?;
        // The value before must feed only this op (Shape readers aside).
        only_read_by(g, v, &[p])?;
    }
}

impl SmoothQuant {
    fn selection(&self) -> Selection {
        Selection { op_types: self.params.op_types.clone(), include: self.params.include.clone(), exclude: self.params.exclude.clone() }
    }

    /// The sites to smooth; what cannot be is declined in `report`.
    fn sites(&self, g: &Graph, report: &mut PassReport) -> Result<Vec<Site>, PassError> {
        let selection = self.selection();
        let order = topo_order(g)?;
        let mut by_input: BTreeMap<ValueId, Vec<NodeId>> = BTreeMap::new();
        for &id in &order {
            if !selection.selects(g, id, LAYER_OPS) {
                continue;
            }
            let op = g.node(id).map_or("", |n| n.op_type()).to_string();
            match reads_activation(g, id) {
                Ok(x) => by_input.entry(x).or_default().push(id),
                // An activation x activation MatMul is no candidate: nothing to say.
                Err(_) if g.node(id).and_then(|n| n.input(1)).is_some_and(|w| g.constant(w).is_none()) => {}
                Err(why) => report.decline(g.node_label(id), op, why),
            }
        }
        let position: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut sites = Vec::new();
        for (x, layers) in by_input {
            let ks: Vec<usize> = layers.iter().map(|&l| channel_ranges(g, l, false).map(|r| r.len()).unwrap_or(0)).collect();
            let rank = g.value(x).shape.as_ref().map(|s| s.rank());
            let site = match rank {
                _ if ks.iter().any(|&k| k != ks[0] || k == 0) => {
                    Err(format!("the layers reading `{}` disagree on its channels: {ks:?}", g.value(x).name))
                }
                None => Err(format!("the rank of `{}` is unknown", g.value(x).name)),
                Some(rank) => absorbers(g, x, rank, ks[0], &layers).map(|absorbers| Site {
                    x,
                    rank,
                    channels: ks[0],
                    layers: layers.clone(),
                    absorbers,
                }),
            };
            match site {
                Ok(site) => sites.push(site),
                Err(why) => {
                    for &l in &layers {
                        report.decline(g.node_label(l), g.node(l).map_or("", |n| n.op_type()), why.clone());
                    }
                }
            }
        }
        // Downstream first: a layer that absorbs the scale of a later site (its columns) has them
        // final before its own rows are measured for its input's site, so a second run finds
        // every scale at 1.
        sites.sort_by_key(|s| std::cmp::Reverse(g.value(s.x).producer().and_then(|p| position.get(&p).copied())));
        Ok(sites)
    }

    /// `s_j = max|X_j|^α / max|W_j|^(1−α)`, bounded; 1 where either side is zero.
    fn scales(&self, g: &Graph, site: &Site, activation_max: &[f64]) -> Result<Vec<f64>, String> {
        let mut weight_max = vec![0.0f64; site.channels];
        for &l in &site.layers {
            for (m, r) in weight_max.iter_mut().zip(channel_ranges(g, l, false)?) {
                *m = m.max(r);
            }
        }
        let alpha = self.params.alpha;
        Ok(activation_max
            .iter()
            .zip(&weight_max)
            .map(
                |(&a, &w)| {
                    if a > 0.0 && w > 0.0 { (a.powf(alpha) / w.powf(1.0 - alpha)).clamp(SCALE_BOUNDS.0, SCALE_BOUNDS.1) } else { 1.0 }
                },
            )
            .collect())
    }
}

/// The patch smoothing `site` by `s`.
fn smoothing_patch(g: &Graph, site: &Site, s: &[f64], description: String) -> Result<Patch, String> {
    let mut patch = Patch::new(description);
    let inverse: Vec<f64> = s.iter().map(|v| 1.0 / v).collect();
    for &l in &site.layers {
        scale_input_channels(g, l, s, &mut patch)?;
    }
    for a in &site.absorbers {
        match *a {
            Absorber::Layer(layer) => scale_output_channels(g, layer, &inverse, &mut patch)?,
            Absorber::Operand { node, slot, multiply } => {
                let c = g.node(node).and_then(|n| n.input(slot)).ok_or("no operand")?;
                let t = g.constant(c).ok_or("the operand is no longer a constant")?;
                let values = per_last_axis(t, site.rank, site.channels)?;
                let factor = if multiply { s } else { &inverse };
                let scaled: Vec<f32> = values.iter().zip(factor).map(|(v, f)| (v * f) as f32).collect();
                let mut dims = if t.dims().is_empty() { vec![1] } else { t.dims().to_vec() };
                *dims.last_mut().expect("rank >= 1") = site.channels as i64;
                let tensor = Tensor::from_f32(t.name(), &dims, &scaled);
                if is_exclusive_constant(g, c, node) {
                    patch.replace_constant(c, tensor, node);
                } else {
                    let w = patch.add_constant(&format!("{}_smoothed", t.name()), tensor);
                    patch.set_input(node, slot, Some(w));
                }
            }
        }
    }
    patch.check(g).map_err(|e| e.0)?;
    Ok(patch)
}

/// Largest over median channel maximum: how far the outliers stand out.
fn spread(maxima: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = maxima.iter().copied().filter(|v| *v > 0.0).collect();
    if sorted.is_empty() {
        return 1.0;
    }
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() - 1] / sorted[sorted.len() / 2]
}

fn absorber_label(g: &Graph, a: &Absorber) -> String {
    match *a {
        Absorber::Layer(l) | Absorber::Operand { node: l, .. } => g.node_label(l),
    }
}

impl Pass for SmoothQuant {
    fn run(&self, model: &mut Model, ctx: &PassContext) -> Result<PassReport, PassError> {
        if !(0.0..=1.0).contains(&self.params.alpha) {
            return Err(PassError::new(format!("smooth_quant: alpha {} is not in [0, 1]", self.params.alpha)));
        }
        self.selection().check().map_err(PassError::new)?;
        if let Some(op) = self.params.op_types.iter().find(|o| !LAYER_OPS.contains(&o.as_str())) {
            return Err(PassError::new(format!("smooth_quant: op_types may hold MatMul and Gemm, not {op}")));
        }
        let mut report = PassReport::default();
        let sites = self.sites(&model.graph, &mut report)?;
        if sites.is_empty() {
            return Ok(report);
        }
        let measure = ctx.require_measure(Self::NAME)?;
        let g = &model.graph;
        let names: Vec<String> = sites.iter().map(|s| g.value(s.x).name.clone()).collect();
        let mut maxima: Vec<Vec<f64>> = vec![Vec::new(); sites.len()];
        measure.log(&format!("smooth_quant: streaming {} activations for their channel maxima", sites.len()));
        measure
            .stream(model, &names, &mut |_, values| {
                for ((m, x), name) in maxima.iter_mut().zip(values).zip(&names) {
                    let last = x.ndim().checked_sub(1).ok_or_else(|| crate::measure::MeasureError(format!("{name} is a scalar")))?;
                    crate::linalg::max_abs_per_channel(m, x, last).map_err(|e| crate::measure::MeasureError(format!("{name}: {e}")))?;
                }
                Ok(())
            })
            .map_err(|e| PassError::new(format!("smooth_quant: {e}")))?;
        let g = &mut model.graph;
        let mut smoothed = 0;
        for (site, max) in sites.iter().zip(&maxima) {
            let label = site.layers.iter().map(|&l| g.node_label(l)).collect::<Vec<_>>().join(", ");
            let op = g.node(site.layers[0]).map_or("", |n| n.op_type()).to_string();
            if max.len() != site.channels {
                report.decline(
                    label,
                    op,
                    format!("`{}` has {} channels on its last axis, its readers {}", g.value(site.x).name, max.len(), site.channels),
                );
                continue;
            }
            let built = self.scales(g, site, max).and_then(|s| {
                if s.iter().all(|v| v.ln().abs() < SETTLED) {
                    return Ok(None);
                }
                let after: Vec<f64> = max.iter().zip(&s).map(|(m, s)| m / s).collect();
                let into = site.absorbers.iter().map(|a| absorber_label(g, a)).collect::<Vec<_>>().join(", ");
                let description = format!(
                    "{label}: input `{}` smoothed (alpha {}), channel max spread {:.1}x -> {:.1}x, folded into {into}",
                    g.value(site.x).name,
                    self.params.alpha,
                    spread(max),
                    spread(&after)
                );
                smoothing_patch(g, site, &s, description).map(Some)
            });
            match built {
                Ok(Some(patch)) => {
                    report.record(patch.description.clone());
                    patch.apply(g);
                    smoothed += 1;
                }
                Ok(None) => {}
                Err(why) => report.decline(label, op, why),
            }
        }
        if smoothed > 0 {
            report.notes.push(format!("{smoothed} activations smoothed on {} calibration samples", measure.samples()));
        }
        Ok(report)
    }
}
