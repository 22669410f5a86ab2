//! `prune_magnitude`: zeroes the weights of smallest magnitude (Zhu & Gupta 2017; TensorFlow
//! Model Optimization's `prune_low_magnitude`), one-shot, without retraining.
//!
//! Layers: the float constant weights of Conv, ConvTranspose, Gemm and MatMul (initializers and
//! `Constant` nodes alike), selected by op type and name pattern, with at least `min_size`
//! elements. A weight shared by several nodes is declined (pruning it for one prunes it for all).
//!
//! - `pattern: unstructured`, `scope: per_layer`: in each layer the `round(s·n)` elements of
//!   smallest `|w|` become 0 (ties by position), so each layer's sparsity is exactly `s` up to
//!   one element. `overrides` give some layers (by name pattern; the longest matching pattern
//!   wins) their own `s`.
//! - `scope: global`: one threshold over the pooled scores of every layer without an override,
//!   `round(s·N)` elements of the pool zeroed (layers of small weights lose more).
//! - `scope: sensitivity`: each layer (without an override) is pruned alone at every point of
//!   `sensitivity_grid` and the model's output SQNR measured on calibration samples; per-layer
//!   sparsities then reach `s` over all these layers with the least summed output noise
//!   ([`crate::sensitivity`]: convex hull of each curve, greedy by noise per removed weight). The
//!   table can be saved and reused (`sensitivity_file`, with a CSV and an SVG heat map beside).
//! - `score: wanda` ranks weights by `|w_ij|·‖x_j‖` instead of `|w_ij|` (Sun et al. 2023, "A
//!   Simple and Effective Pruning Approach for LLMs"): `‖x_j‖` is the L2 norm of input channel
//!   `j` of the layer over the calibration data, streamed (sums of squares, nothing stored), so a
//!   small weight on a loud input is kept over a larger one on a quiet input.
//! - `pattern: "N:M"` (e.g. `"2:4"`): along the reduction axis of each weight (Conv: input
//!   channels at each output channel and kernel position; Gemm/MatMul: K), every group of `M`
//!   consecutive elements keeps its `N` largest `|w|`: the layout sparse tensor cores accelerate.
//!   A layer whose reduction axis is not a multiple of `M` is declined. With `scope:
//!   sensitivity`, the layers where N:M costs least are chosen until `s` of the weights are gone
//!   (each layer all or nothing).
//! - `reconstruct: true` refits each pruned layer's kept weights by least squares on the
//!   calibration inputs, mask fixed ([`crate::reconstruct`]); the change line gives the layer's
//!   output SNR before and after.
//!
//! **Lossy**, judged by the gate. Zeros make a file compress better; they do not make a dense
//! runtime (tract, onnxruntime's CPU kernels) faster, and the pass says so in its report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use whittle_graph::channels::WeightAxes;
use whittle_graph::patch::Patch;
use whittle_graph::{DataType, Graph, Model, NodeId, Tensor, ValueId};

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::Selection;
use crate::quant::plan::{self, Role};
use crate::quantize_weights::WEIGHT_OP_TYPES;
use crate::rewrite::is_exclusive_constant;

/// Where the zeros go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Pattern {
    Unstructured,
    /// Keep `n` of every `m` consecutive weights along the reduction axis.
    NOfM {
        n: usize,
        m: usize,
    },
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Pattern, String> {
        if s == "unstructured" {
            return Ok(Pattern::Unstructured);
        }
        let parsed = s.split_once(':').and_then(|(n, m)| Some((n.trim().parse::<usize>().ok()?, m.trim().parse::<usize>().ok()?)));
        match parsed {
            Some((n, m)) if n >= 1 && n < m => Ok(Pattern::NOfM { n, m }),
            _ => Err(format!("pattern `{s}`: give `unstructured` or N:M with 1 <= N < M, e.g. \"2:4\"")),
        }
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        match p {
            Pattern::Unstructured => "unstructured".into(),
            Pattern::NOfM { n, m } => format!("{n}:{m}"),
        }
    }
}

/// How the sparsity is spread over the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every layer at the same sparsity.
    PerLayer,
    /// One score threshold over all layers.
    Global,
    /// Per-layer sparsities from the measured sensitivity of each layer.
    Sensitivity,
}

/// What ranks the weights of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// `|w|`.
    Magnitude,
    /// `|w|·‖x‖` of the weight's input channel on the calibration data.
    Wanda,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Share of each layer's (or, global, of all layers') weights set to zero, in [0, 1).
    pub sparsity: f64,
    pub scope: Scope,
    pub pattern: Pattern,
    pub score: Score,
    /// Sparsities each layer is measured at (`scope: sensitivity`; the last bounds every layer).
    pub sensitivity_grid: Vec<f64>,
    /// Calibration samples each sensitivity point is measured on (0: all).
    pub sensitivity_samples: usize,
    /// JSON file the sensitivity table is saved to and reused from (CSV and SVG written beside).
    pub sensitivity_file: Option<String>,
    /// Refit the kept weights of each pruned layer by least squares on calibration inputs.
    pub reconstruct: bool,
    /// Ridge of the refit, relative to the mean input energy.
    pub reconstruct_ridge: f64,
    /// At most this many input rows (pixels, tokens) of each sample enter a layer's refit.
    pub reconstruct_rows: usize,
    /// Layers with fewer weights are left dense.
    pub min_size: usize,
    /// Per-layer sparsity by node name pattern (the longest matching pattern wins).
    pub overrides: BTreeMap<String, f64>,
    /// Op types to prune (empty: Conv, ConvTranspose, Gemm, MatMul).
    pub op_types: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sparsity: 0.5,
            scope: Scope::PerLayer,
            pattern: Pattern::Unstructured,
            score: Score::Magnitude,
            sensitivity_grid: vec![0.25, 0.5, 0.7, 0.85, 0.95],
            sensitivity_samples: 4,
            sensitivity_file: None,
            reconstruct: false,
            reconstruct_ridge: 0.01,
            reconstruct_rows: 2048,
            min_size: 1024,
            overrides: BTreeMap::new(),
            op_types: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

pub struct PruneMagnitude {
    params: Params,
    selection: Selection,
}

impl PassDef for PruneMagnitude {
    const NAME: &'static str = "prune_magnitude";
    const SUMMARY: &'static str = "Zero the smallest-magnitude weights: unstructured (per layer or global) or N:M along the reduction axis";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("sparsity", "float", "share of weights set to zero, per layer or over all layers (scope)"),
        ("scope", "per_layer|global|sensitivity", "same sparsity per layer, one threshold over all, or allocated by measured sensitivity"),
        ("pattern", "unstructured|N:M", "anywhere, or N kept of every M along the reduction axis (\"2:4\")"),
        ("score", "magnitude|wanda", "rank weights by |w|, or by |w| times their input channel's norm on calibration data"),
        ("sensitivity_grid", "list", "sparsities each layer is measured at (scope: sensitivity)"),
        ("sensitivity_samples", "int", "calibration samples per sensitivity point (0: all)"),
        ("sensitivity_file", "path", "JSON sensitivity table saved and reused (CSV, SVG beside)"),
        ("reconstruct", "bool", "refit the kept weights by least squares on calibration inputs (mask fixed)"),
        ("reconstruct_ridge", "float", "ridge of the refit, relative to the mean input energy"),
        ("reconstruct_rows", "int", "input rows (pixels, tokens) per sample used by the refit"),
        ("min_size", "int", "layers with fewer weights stay dense"),
        ("overrides", "map", "sparsity per node name pattern (longest matching pattern wins)"),
        ("op_types", "list", "op types to prune (empty: Conv, ConvTranspose, Gemm, MatMul)"),
        ("include", "list", "node name patterns to prune (empty: all)"),
        ("exclude", "list", "node name patterns or op types kept dense"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: params.op_types.clone(), include: params.include.clone(), exclude: params.exclude.clone() };
        PruneMagnitude { params, selection }
    }
}

/// One prunable layer.
struct Layer {
    node: NodeId,
    label: String,
    weight: ValueId,
    dims: Vec<i64>,
    values: Vec<f32>,
    axes: WeightAxes,
    /// The Conv's `group` (1 for other ops).
    group: usize,
    /// The layer's data input and its channel axis (the one the weight's input axis reduces).
    input: ValueId,
    input_axis: usize,
    /// This layer's own sparsity (an override), else the pass's.
    sparsity: Option<f64>,
}

/// What happens to one layer's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    /// The `k` lowest-scored weights become 0.
    Zero(usize),
    /// `n` of every `m` kept along the reduction axis.
    NOfM(usize, usize),
}

impl Action {
    /// Zero `round(s·n)` of the layer's `n` weights.
    fn share(l: &Layer, s: f64) -> Action {
        Action::Zero((s * l.values.len() as f64).round() as usize)
    }
}

impl PruneMagnitude {
    fn check_params(&self) -> Result<(), String> {
        self.selection.check()?;
        let p = &self.params;
        let bad = |s: f64| !(0.0..1.0).contains(&s);
        if bad(p.sparsity) {
            return Err(format!("prune_magnitude: sparsity {} is out of range [0, 1)", p.sparsity));
        }
        if let Some((pat, s)) = p.overrides.iter().find(|(_, s)| bad(**s)) {
            return Err(format!("prune_magnitude: override `{pat}`: sparsity {s} is out of range [0, 1)"));
        }
        for pat in p.overrides.keys() {
            glob::Pattern::new(pat).map_err(|e| format!("prune_magnitude: bad override pattern `{pat}`: {e}"))?;
        }
        if matches!(p.pattern, Pattern::NOfM { .. }) && (!p.overrides.is_empty() || p.scope == Scope::Global) {
            return Err("prune_magnitude: an N:M pattern fixes each layer's sparsity (1 - N/M): overrides and scope: global do not \
                        apply (scope: sensitivity chooses the layers)"
                .into());
        }
        let grid = &p.sensitivity_grid;
        if p.scope == Scope::Sensitivity
            && p.pattern == Pattern::Unstructured
            && (grid.is_empty() || grid.iter().any(|&s| !(s > 0.0 && s < 1.0)) || grid.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err(format!("prune_magnitude: sensitivity_grid {grid:?}: give increasing sparsities in (0, 1)"));
        }
        Ok(())
    }

    /// The override for a node name: the longest matching pattern's sparsity.
    fn override_for(&self, name: &str) -> Option<f64> {
        self.params
            .overrides
            .iter()
            .filter(|(p, _)| glob::Pattern::new(p).is_ok_and(|g| g.matches(name)))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, s)| *s)
    }

    /// The layer `id` as a prunable layer, `Ok(None)` when it is too small, or why not.
    fn layer(&self, g: &Graph, id: NodeId) -> Result<Option<Layer>, String> {
        let n = g.node(id).ok_or("removed")?;
        let Some(Role::Weighted { weight: slot, .. }) = plan::role(g, id)? else { return Err("no constant float weight".into()) };
        let weight = n.input(slot).ok_or("no weight")?;
        let t = g.constant(weight).ok_or("its weight is not a constant")?;
        if t.dtype() != DataType::Float {
            return Err(format!("its weight is {}, only f32 is pruned", t.dtype()));
        }
        if !is_exclusive_constant(g, weight, id) {
            return Err("its weight is shared with another node".into());
        }
        let dims = t.dims().to_vec();
        let axes = WeightAxes::of_node(n, dims.len()).ok_or("no weight layout for this op")?;
        let values = t.to_f32().map_err(|e| e.to_string())?;
        if values.len() < self.params.min_size {
            return Ok(None);
        }
        if let Pattern::NOfM { m, .. } = self.params.pattern {
            let len = dims[axes.input];
            if len % m as i64 != 0 {
                return Err(format!("its reduction axis has {len} elements, not a multiple of {m}"));
            }
        }
        let input = n.input(0).ok_or("no data input")?;
        let input_axis = match n.op_type() {
            "MatMul" => g.value(input).shape.as_ref().map_or(0, |s| s.rank()).checked_sub(1).ok_or("its input has no known rank")?,
            "Gemm" if n.attr_int("transA").unwrap_or(0) != 0 => 0,
            _ => 1,
        };
        let group = if n.is("Conv") { n.attr_int("group").unwrap_or(1).max(1) as usize } else { 1 };
        Ok(Some(Layer {
            node: id,
            label: g.node_label(id),
            weight,
            dims,
            values,
            axes,
            group,
            input,
            input_axis,
            sparsity: self.override_for(n.name()),
        }))
    }

    /// The score of every weight of every layer: `|w|`, or Wanda's `|w|·‖x‖` with the input
    /// channel norms streamed from the calibration data.
    fn scores(&self, model: &Model, layers: &[Layer], ctx: &PassContext<'_>, notes: &mut Vec<String>) -> Result<Vec<Vec<f32>>, PassError> {
        let magnitudes = || layers.iter().map(|l| l.values.iter().map(|v| v.abs()).collect()).collect();
        if self.params.score == Score::Magnitude || layers.is_empty() {
            return Ok(magnitudes());
        }
        let measure = ctx.require_measure("prune_magnitude with score: wanda")?;
        let g = &model.graph;
        let names: Vec<String> = layers.iter().map(|l| g.value(l.input).name.clone()).collect();
        let mut sums: Vec<Vec<f64>> = layers.iter().map(|_| Vec::new()).collect();
        measure.log(&format!("prune_magnitude: streaming the inputs of {} layers for Wanda's channel norms", layers.len()));
        measure
            .stream(model, &names, &mut |_, values| {
                for ((l, sum), x) in layers.iter().zip(sums.iter_mut()).zip(values) {
                    crate::linalg::accumulate_per_channel(sum, x, l.input_axis, |v| (v as f64) * (v as f64))
                        .map_err(|e| crate::measure::MeasureError(format!("{}: {e}", l.label)))?;
                }
                Ok(())
            })
            .map_err(|e| PassError::new(format!("prune_magnitude: {e}")))?;
        let mut scores = Vec::with_capacity(layers.len());
        for (l, sum) in layers.iter().zip(&sums) {
            let norms: Vec<f32> = sum.iter().map(|e| e.sqrt() as f32).collect();
            scores.push(wanda_scores(l, &norms).map_err(|e| PassError::new(format!("prune_magnitude: {}: {e}", l.label)))?);
        }
        notes.push(format!("scores: Wanda |w|·‖x‖, input channel norms measured on {} calibration samples", measure.samples()));
        Ok(scores)
    }

    /// Each layer's action for `pattern` and `scope` (sensitivity measured through `ctx`).
    fn plan(
        &self,
        model: &Model,
        layers: &[Layer],
        scores: &[Vec<f32>],
        ctx: &PassContext<'_>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Option<Action>>, PassError> {
        let p = &self.params;
        let count = Action::share;
        // Layers with an override are fixed; the others share the pass's sparsity.
        let mut actions: Vec<Option<Action>> = layers.iter().map(|l| l.sparsity.map(|s| count(l, s))).collect();
        let free: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].sparsity.is_none()).collect();
        match (p.pattern, p.scope) {
            (Pattern::NOfM { n, m }, Scope::PerLayer) => actions.iter_mut().for_each(|a| *a = Some(Action::NOfM(n, m))),
            (Pattern::Unstructured, Scope::PerLayer) => free.iter().for_each(|&i| actions[i] = Some(count(&layers[i], p.sparsity))),
            (Pattern::Unstructured, Scope::Global) => {
                // One pool: (score, layer, element) of every free layer.
                let mut pool: Vec<(f32, usize, usize)> =
                    free.iter().flat_map(|&i| scores[i].iter().enumerate().map(move |(e, v)| (*v, i, e))).collect();
                let k = (p.sparsity * pool.len() as f64).round() as usize;
                pool.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                let mut per_layer = vec![0usize; layers.len()];
                for &(_, i, _) in &pool[..k] {
                    per_layer[i] += 1;
                }
                free.iter().for_each(|&i| actions[i] = Some(Action::Zero(per_layer[i])));
            }
            (pattern, Scope::Sensitivity) => {
                let chosen = self.allocate(model, layers, &free, scores, ctx, notes)?;
                for (&i, s) in free.iter().zip(chosen) {
                    actions[i] = match pattern {
                        Pattern::NOfM { n, m } => (s > 0.0).then_some(Action::NOfM(n, m)),
                        Pattern::Unstructured => Some(count(&layers[i], s)),
                    };
                }
            }
            (Pattern::NOfM { .. }, Scope::Global) => unreachable!("refused by check_params"),
        }
        Ok(actions)
    }

    /// Per-layer sparsities of the `free` layers from their measured (or saved) sensitivity.
    fn allocate(
        &self,
        model: &Model,
        layers: &[Layer],
        free: &[usize],
        scores: &[Vec<f32>],
        ctx: &PassContext<'_>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<f64>, PassError> {
        use crate::sensitivity::{self, Candidate, TableKey};
        let p = &self.params;
        let measure = ctx.require_measure("prune_magnitude with scope: sensitivity")?;
        let (grid, whole) = match p.pattern {
            Pattern::NOfM { n, m } => (vec![1.0 - n as f64 / m as f64], true),
            Pattern::Unstructured => (p.sensitivity_grid.clone(), false),
        };
        let method = format!("{} {}", if p.score == Score::Wanda { "wanda" } else { "magnitude" }, String::from(p.pattern));
        let key = TableKey::new(model, measure, p.sensitivity_samples, method, grid.clone());
        let samples = key.samples;
        let candidates: Vec<Candidate> =
            free.iter().map(|&i| Candidate { layer: layers[i].label.clone(), weights: layers[i].values.len() }).collect();
        let path = p.sensitivity_file.as_deref().map(|f| ctx.resolve(f));
        let compress = |k: usize, s: f64| -> Result<Model, String> {
            let i = free[k];
            let l = &layers[i];
            let action = match p.pattern {
                Pattern::NOfM { n, m } => Action::NOfM(n, m),
                Pattern::Unstructured => Action::share(l, s),
            };
            let mut candidate = model.clone();
            let name = candidate.graph.value(l.weight).name.clone();
            let mut patch = Patch::new("sensitivity probe");
            patch.replace_constant(l.weight, Tensor::from_f32(&name, &l.dims, &pruned(l, &scores[i], action)?), l.node);
            patch.check(&candidate.graph).map_err(|e| e.0)?;
            patch.apply(&mut candidate.graph);
            Ok(candidate)
        };
        let (table, reused) = sensitivity::load_or_measure(path.as_deref(), key, &candidates, measure, &compress, notes)?;
        let (chosen, predicted) = sensitivity::allocate(&table.curves, p.sparsity, whole)
            .map_err(|e| PassError::unsupported_model(format!("prune_magnitude: {e}")))?;
        let uniform = match p.pattern {
            Pattern::Unstructured => format!(
                ", {:.1} dB for every layer at {}",
                sensitivity::predicted_sqnr(&table.curves, &vec![p.sparsity; free.len()]),
                p.sparsity
            ),
            Pattern::NOfM { .. } => String::new(),
        };
        notes.push(format!(
            "sensitivity: {} layers x {} sparsities {} on {samples} calibration samples; on these samples the allocation predicts an output SQNR of {predicted:.1} dB{uniform} (the noise of single-layer measurements added; the gate judges the evaluation data)",
            free.len(),
            grid.len(),
            if reused { "reused from the saved table" } else { "measured" },
        ));
        if let Some(path) = &path {
            table.save(path, &chosen).map_err(PassError::new)?;
            notes.push(format!("sensitivity table written to {} (with .csv and .svg)", path.display()));
        }
        Ok(chosen)
    }
}

/// Wanda's `|w|·‖x_j‖`, `j` the input channel each weight reads (the group's offset added for
/// grouped convolutions).
fn wanda_scores(l: &Layer, norms: &[f32]) -> Result<Vec<f32>, String> {
    let dims: Vec<usize> = l.dims.iter().map(|&d| d as usize).collect();
    let stride = |axis: usize| dims[axis + 1..].iter().product::<usize>();
    let (in_stride, out_stride) = (stride(l.axes.input), stride(l.axes.output));
    let (in_len, out_len) = (dims[l.axes.input], dims[l.axes.output]);
    let per_group_out = out_len / l.group;
    let expected = if l.axes.input_per_group { in_len * l.group } else { in_len };
    if norms.len() != expected {
        return Err(format!("{} input channels measured, the weight reads {expected}", norms.len()));
    }
    Ok(l.values
        .iter()
        .enumerate()
        .map(|(e, w)| {
            let j = (e / in_stride) % in_len;
            let channel = if l.axes.input_per_group { ((e / out_stride) % out_len) / per_group_out * in_len + j } else { j };
            w.abs() * norms[channel]
        })
        .collect())
}

/// The layer's weights after `action`, ranking by `scores`.
fn pruned(l: &Layer, scores: &[f32], action: Action) -> Result<Vec<f32>, String> {
    let mut values = l.values.clone();
    match action {
        Action::Zero(k) => zero_smallest(&mut values, scores, k),
        Action::NOfM(n, m) => keep_n_of_m(&mut values, scores, &l.dims, l.axes.input, n, m)?,
    }
    Ok(values)
}

/// Zeroes the `k` elements of `values` whose `score` is smallest (ties by position).
fn zero_smallest(values: &mut [f32], scores: &[f32], k: usize) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    for &i in &order[..k.min(values.len())] {
        values[i] = 0.0;
    }
}

/// Keeps the `n` best-scored of every `m` consecutive elements along `axis`.
fn keep_n_of_m(values: &mut [f32], scores: &[f32], dims: &[i64], axis: usize, n: usize, m: usize) -> Result<(), String> {
    let len = dims[axis] as usize;
    if !len.is_multiple_of(m) {
        return Err(format!("its reduction axis has {len} elements, not a multiple of {m}"));
    }
    let stride: usize = dims[axis + 1..].iter().map(|&d| d as usize).product();
    for base in 0..values.len() {
        if !((base / stride) % len).is_multiple_of(m) {
            continue;
        }
        let mut group: Vec<usize> = (0..m).map(|j| base + j * stride).collect();
        // Lowest first (ties by position): the first m - n become 0.
        group.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        for &i in &group[..m - n] {
            values[i] = 0.0;
        }
    }
    Ok(())
}

fn zeros(values: &[f32]) -> usize {
    values.iter().filter(|v| **v == 0.0).count()
}

impl Pass for PruneMagnitude {
    fn run(&self, model: &mut Model, ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.check_params().map_err(PassError::unsupported_model)?;
        let mut report = PassReport::default();
        let mut layers = Vec::new();
        let g = &model.graph;
        for id in crate::driver::topo_order(g)? {
            if !self.selection.selects(g, id, WEIGHT_OP_TYPES) {
                continue;
            }
            match self.layer(g, id) {
                Ok(Some(l)) => layers.push(l),
                Ok(None) => {}
                Err(why) => report.decline(g.node_label(id), g.node(id).map(|n| n.op_type().to_string()).unwrap_or_default(), why),
            }
        }
        let scores = self.scores(model, &layers, ctx, &mut report.notes)?;
        let actions = self.plan(model, &layers, &scores, ctx, &mut report.notes)?;
        // Pruned values of every layer that changes (in layer order).
        let mut results: Vec<Option<Vec<f32>>> = Vec::with_capacity(layers.len());
        for ((l, score), action) in layers.iter().zip(&scores).zip(&actions) {
            let Some(action) = action else {
                results.push(None);
                continue;
            };
            match pruned(l, score, *action) {
                Ok(v) if v != l.values => results.push(Some(v)),
                Ok(_) => results.push(None),
                Err(why) => {
                    results.push(None);
                    let op = model.graph.node(l.node).map(|n| n.op_type().to_string()).unwrap_or_default();
                    report.decline(&l.label, op, why);
                }
            }
        }
        let mut refit_notes: Vec<Option<String>> = vec![None; layers.len()];
        if self.params.reconstruct {
            let measure = ctx.require_measure("prune_magnitude with reconstruct: true")?;
            let changed: Vec<usize> = (0..layers.len()).filter(|&i| results[i].is_some()).collect();
            let asked: Vec<crate::reconstruct::Pruned<'_>> = changed
                .iter()
                .map(|&i| crate::reconstruct::Pruned {
                    node: layers[i].node,
                    dims: &layers[i].dims,
                    original: &layers[i].values,
                    pruned: results[i].as_deref().expect("changed"),
                })
                .collect();
            let refits = crate::reconstruct::refit(model, &asked, measure, self.params.reconstruct_ridge, self.params.reconstruct_rows)?;
            drop(asked);
            for (&i, answer) in changed.iter().zip(refits) {
                match answer {
                    Ok(r) => {
                        refit_notes[i] = Some(format!(", refit output SNR {:.1} -> {:.1} dB", r.snr_before, r.snr_after));
                        results[i] = Some(r.values);
                    }
                    Err(why) => refit_notes[i] = Some(format!(", not refit: {why}")),
                }
            }
        }
        let g = &mut model.graph;
        let (mut total, mut nonzero_before, mut nonzero_after) = (0usize, 0usize, 0usize);
        for ((l, result), refit) in layers.iter().zip(results).zip(refit_notes) {
            total += l.values.len();
            let kept = l.values.len() - zeros(&l.values);
            nonzero_before += kept;
            let Some(values) = result else {
                nonzero_after += kept;
                continue;
            };
            nonzero_after += values.len() - zeros(&values);
            let name = g.value(l.weight).name.clone();
            let mut patch = Patch::new(format!(
                "{}: {} of {} weights zero ({:.1}%, was {:.1}%){}",
                l.label,
                zeros(&values),
                values.len(),
                100.0 * zeros(&values) as f64 / values.len() as f64,
                100.0 * zeros(&l.values) as f64 / l.values.len() as f64,
                refit.unwrap_or_default()
            ));
            patch.replace_constant(l.weight, Tensor::from_f32(&name, &l.dims, &values), l.node);
            crate::quant::apply_or_decline(g, &mut report, l.node, Ok(patch));
        }
        if total > 0 {
            report.notes.push(format!(
                "nonzero weights in the pruned layers: {nonzero_before} -> {nonzero_after} of {total} ({:.1}% sparse); zeros shrink the \
                 compressed file, not the dense compute: tract and onnxruntime's CPU kernels run as fast as before{}",
                100.0 * (total - nonzero_after) as f64 / total as f64,
                if matches!(self.params.pattern, Pattern::NOfM { .. }) {
                    " (N:M sparsity is accelerated by sparse tensor cores, e.g. TensorRT on NVIDIA Ampere and later)"
                } else {
                    ""
                }
            ));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_written_as_strings() {
        assert_eq!(Pattern::try_from("2:4".to_string()), Ok(Pattern::NOfM { n: 2, m: 4 }));
        assert_eq!(Pattern::try_from("unstructured".to_string()), Ok(Pattern::Unstructured));
        assert!(Pattern::try_from("4:2".to_string()).is_err() && Pattern::try_from("2-4".to_string()).is_err());
        assert_eq!(String::from(Pattern::NOfM { n: 1, m: 2 }), "1:2");
    }

    #[test]
    fn n_of_m_keeps_the_largest_of_each_group_along_the_axis() {
        // dims [2, 4]: groups of 4 along axis 1 (rows), and along axis 0 of a [4, 2] weight.
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
        let mut v = vec![1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.3];
        let sv = abs(&v);
        keep_n_of_m(&mut v, &sv, &[2, 4], 1, 2, 4).unwrap();
        assert_eq!(v, vec![0.0, -4.0, 3.0, 0.0, 0.5, 0.0, 0.0, 0.3]);
        let mut w = vec![1.0, 0.5, -4.0, 0.1, 3.0, -0.2, 2.0, 0.3];
        let sw = abs(&w);
        keep_n_of_m(&mut w, &sw, &[4, 2], 0, 2, 4).unwrap();
        assert_eq!(w, vec![0.0, 0.5, -4.0, 0.0, 3.0, 0.0, 0.0, 0.3]);
        assert!(keep_n_of_m(&mut w, &sw, &[4, 2], 1, 1, 4).is_err());
        let mut u = vec![3.0, -1.0, 2.0, 0.0];
        let su = abs(&u);
        zero_smallest(&mut u, &su, 2);
        assert_eq!(u, vec![3.0, 0.0, 2.0, 0.0]);
    }
}
