//! `prune_channels`: structured channel pruning. Whole channels are removed from every weight and
//! tensor of their dependency group ([`crate::channel_groups`]), so the model really gets smaller
//! and faster on any runtime: a Conv loses filters, the layers reading it the matching input
//! channels, BatchNormalization and channel-wise constants their entries, a grouped Conv whole
//! groups, a Reshape or Split the matching sizes.
//!
//! - **Groups**: the analysis follows each layer's output channels through the graph (residual
//!   Add, squeeze-excitation Mul, Concat and Split offsets, Flatten/Reshape into a Gemm or MatMul,
//!   Transpose, depthwise and grouped convolutions) and declines, with the reason, every group it
//!   cannot follow exactly; channels that reach a graph input or output stay.
//! - **Importance** of a channel, over its group (Torch-Pruning's group importance): for every
//!   weight the channel touches (a layer's output row, a reading layer's input column), the norm
//!   of that slice (`importance: l1` or `l2`), divided by the mean over the weight's slices so
//!   layers of different scales count alike, averaged over the group's weights. `bn_scale`: the
//!   `|γ|` of the group's BatchNormalizations (network slimming; run before `fold_batchnorm`),
//!   else `l2`. Measured on the calibration data: `activation`, the channel's mean `|x|` where
//!   layers read it; `output_error`, for each layer reading it, the mean squared change of the
//!   layer's outputs when the channel alone is removed (exact on those samples,
//!   [`crate::reconstruct::input_channel_output_energy`]), summed over the layers reading the
//!   tensor, then normalized per tensor the same way.
//! - **How many**: `ratio` of each group's channels (`scope: per_group`), the least important
//!   `ratio` of all channels in one ranking (`scope: global`), or per-group ratios
//!   from measured sensitivity (`scope: sensitivity`, [`crate::sensitivity`]): each group pruned
//!   alone at every point of `sensitivity_grid`, the output SQNR measured on calibration
//!   samples, then the ratios removing `ratio` of all the groups' channels (`target: channels`)
//!   or of their layers' MACs (`target: macs`) with the least summed output noise. The count kept
//!   is rounded up to a multiple of `round_to` and never below `min_channels`; the least
//!   important go, but never the last channel of a tensor (a Concat input, say).
//! - **Reconstruction** (`reconstruct: true`): the layers reading pruned channels are refit,
//!   weights and bias, by least squares so that fed the pruned model's own inputs they give the
//!   original outputs ([`crate::reconstruct::refit_readers`]; He et al. 2017, ThiNet), in
//!   topological stages so each stage sees the earlier stages' refits. Kept only if the output
//!   SQNR on the calibration data does not drop.
//!
//! Removing channel `c` makes the model compute what it would if that channel's activations
//! were zero, exactly when the channel is zero before its readers (a filter of zeros, no bias,
//! through ops that keep zero: Relu, not a BatchNormalization with a shift, nor a Sigmoid): the
//! numeric test checks that. Otherwise **lossy**, judged by the gate.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use whittle_graph::builder::attr_int;
use whittle_graph::channels::{LAYER_OPS, WeightAxes};
use whittle_graph::patch::Patch;
use whittle_graph::{Model, NodeId, Tensor, ValueId};

use crate::channel_groups::{Analysis, Effect, Group, analyze};
use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::Selection;

/// How a channel's importance is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    L1,
    L2,
    /// `|γ|` of the group's BatchNormalizations.
    BnScale,
    /// Mean `|x|` of the channel on the tensors its readers see, over the calibration data.
    Activation,
    /// The mean squared change of each reading layer's outputs when the channel alone is
    /// removed, measured on the calibration data
    /// ([`crate::reconstruct::input_channel_output_energy`]).
    OutputError,
}

/// How the ratio is spread over the groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every group loses `ratio` of its channels.
    PerGroup,
    /// One ranking of all the prunable channels by their importance (normalized per weight, so
    /// groups of different scales compare): the least important `ratio` of them go, wherever
    /// they are (Torch-Pruning's global pruning).
    Global,
    /// Per-group ratios from each group's measured sensitivity, removing `ratio` of all the
    /// prunable channels (or MACs, `target: macs`) with the least predicted output noise.
    Sensitivity,
}

/// What `ratio` is a share of, with `scope: sensitivity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Channels,
    /// The multiply-accumulates of the layers producing and reading the groups' channels.
    Macs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Share of each group's channels removed, in [0, 1) (`scope: sensitivity`: of all of them).
    pub ratio: f64,
    pub scope: Scope,
    pub target: Target,
    /// Ratios each group is measured at (`scope: sensitivity`; the last bounds every group).
    pub sensitivity_grid: Vec<f64>,
    /// Calibration samples each sensitivity point is measured on (0: all).
    pub sensitivity_samples: usize,
    /// The sensitivity table is saved here (JSON, with a CSV and an SVG beside) and reused by a
    /// later run on the same model, data and settings: a sweep over `ratio` measures it once.
    pub sensitivity_file: Option<String>,
    pub importance: Importance,
    /// The count of channels each group keeps is rounded up to a multiple of this.
    pub round_to: usize,
    /// No group keeps fewer channels.
    pub min_channels: usize,
    /// Prune only groups produced by layers with these name patterns (empty: all).
    pub include: Vec<String>,
    /// Groups produced by a layer with one of these name patterns or op types stay whole.
    pub exclude: Vec<String>,
    /// Refit the layers reading pruned channels (weights and bias) by least squares on
    /// calibration inputs.
    pub reconstruct: bool,
    /// Ridge of the refit, relative to the mean input energy.
    pub reconstruct_ridge: f64,
    /// At most this many input rows (pixels, tokens) of each sample enter a layer's refit.
    pub reconstruct_rows: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ratio: 0.3,
            scope: Scope::PerGroup,
            target: Target::Channels,
            sensitivity_grid: vec![0.1, 0.25, 0.4, 0.55, 0.7],
            sensitivity_samples: 4,
            sensitivity_file: None,
            importance: Importance::L2,
            round_to: 1,
            min_channels: 1,
            include: Vec::new(),
            exclude: Vec::new(),
            reconstruct: false,
            reconstruct_ridge: 0.01,
            reconstruct_rows: 2048,
        }
    }
}

pub struct PruneChannels {
    params: Params,
    selection: Selection,
}

impl PassDef for PruneChannels {
    const NAME: &'static str = "prune_channels";
    const SUMMARY: &'static str =
        "Remove whole channels (filters) from every weight of their dependency group: residual, concat, depthwise, SE, flatten into Gemm";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("ratio", "float", "share of each group's channels removed (scope: sensitivity: of all of them, or of the MACs)"),
        (
            "scope",
            "per_group|global|sensitivity",
            "the same ratio in every group, one ranking of all channels by importance, or per-group ratios from measured sensitivity",
        ),
        ("target", "channels|macs", "what the ratio is a share of with scope: sensitivity"),
        ("sensitivity_grid", "list", "ratios each group is measured at (scope: sensitivity)"),
        ("sensitivity_samples", "int", "calibration samples per sensitivity point (0: all)"),
        ("sensitivity_file", "path", "JSON sensitivity table saved and reused (CSV, SVG beside): a sweep over ratio measures once"),
        (
            "importance",
            "l1|l2|bn_scale|activation|output_error",
            "norm of the channel's weights over its group, BatchNormalization |gamma|, mean |activation| or the readers' output error when it alone is removed (both on calibration data)",
        ),
        ("round_to", "int", "channels kept per group rounded up to a multiple of this"),
        ("min_channels", "int", "no group keeps fewer channels"),
        ("include", "list", "prune only groups produced by layers with these name patterns (empty: all)"),
        ("exclude", "list", "groups produced by layers with these name patterns or op types stay whole"),
        ("reconstruct", "bool", "refit the layers reading pruned channels (weights and bias) by least squares on calibration inputs"),
        ("reconstruct_ridge", "float", "ridge of the refit, relative to the mean input energy"),
        ("reconstruct_rows", "int", "input rows (pixels, tokens) per sample used by the refit"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: Vec::new(), include: params.include.clone(), exclude: params.exclude.clone() };
        PruneChannels { params, selection }
    }
}

/// The norm of each slice of `t` along `axis` (L1 or L2).
fn slice_norms(t: &Tensor, axis: usize, l1: bool) -> Option<Vec<f64>> {
    let values = t.to_f32().ok()?;
    let dims: Vec<usize> = t.dims().iter().map(|&d| d as usize).collect();
    let size = *dims.get(axis)?;
    let inner: usize = dims[axis + 1..].iter().product();
    let mut norms = vec![0f64; size];
    for (i, v) in values.iter().enumerate() {
        let c = (i / inner) % size;
        norms[c] += if l1 { v.abs() as f64 } else { (*v as f64).powi(2) };
    }
    if !l1 {
        norms.iter_mut().for_each(|n| *n = n.sqrt());
    }
    Some(norms)
}

/// Per-index importance of each weight-bearing effect of a group, normalized by its mean.
fn effect_scores(model: &Model, analysis: &Analysis, group: &Group, importance: Importance) -> Vec<(usize, Vec<f64>)> {
    let g = &model.graph;
    let norms = |v: ValueId, axis: usize, l1: bool| g.constant(v).and_then(|t| slice_norms(t, axis, l1));
    let mut out = Vec::new();
    let bn_scales: Vec<(usize, Vec<f64>)> = group
        .effects
        .iter()
        .filter_map(|(s, e)| match e {
            Effect::Param { node, value, .. }
                if g.node(*node).is_some_and(|n| n.is("BatchNormalization") && n.input(1) == Some(*value)) =>
            {
                Some((*s, g.constant(*value)?.to_f32().ok()?.iter().map(|v| v.abs() as f64).collect()))
            }
            _ => None,
        })
        .collect();
    if importance == Importance::BnScale && !bn_scales.is_empty() {
        out = bn_scales;
    } else {
        let l1 = importance == Importance::L1;
        for (s, e) in &group.effects {
            let scores = match e {
                Effect::Produces { weight, axis, .. } | Effect::Consumes { weight, axis, .. } => norms(*weight, *axis, l1),
                _ => None,
            };
            if let Some(v) = scores.filter(|v| v.len() == analysis.slots[*s].size) {
                out.push((*s, v));
            }
        }
    }
    normalized(out)
}

/// Each slot's scores divided by their mean, so tensors and layers of different scales count
/// alike.
fn normalized(mut scores: Vec<(usize, Vec<f64>)>) -> Vec<(usize, Vec<f64>)> {
    for (_, v) in &mut scores {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        if mean > 0.0 {
            v.iter_mut().for_each(|x| *x /= mean);
        }
    }
    scores
}

/// Importance of each channel of a group: the mean over the slots it touches of their
/// normalized scores (`scores`: per slot, one score per index).
fn channel_scores(group: &Group, scores: &[(usize, Vec<f64>)]) -> Vec<f64> {
    let mut by_slot: HashMap<usize, Vec<&Vec<f64>>> = HashMap::new();
    for (s, v) in scores {
        by_slot.entry(*s).or_default().push(v);
    }
    group
        .channels
        .iter()
        .map(|members| {
            let (mut sum, mut count) = (0f64, 0usize);
            for (s, i) in members {
                for v in by_slot.get(s).into_iter().flatten() {
                    sum += v[*i];
                    count += 1;
                }
            }
            if count == 0 { 0.0 } else { sum / count as f64 }
        })
        .collect()
}

impl PruneChannels {
    /// Whether every layer producing the group's channels is selected.
    fn selects(&self, model: &Model, group: &Group) -> bool {
        group
            .effects
            .iter()
            .filter(|(_, e)| matches!(e, Effect::Produces { .. }))
            .all(|(_, e)| self.selection.selects(&model.graph, e.node(), &LAYER_OPS))
    }

    /// The channels of `group` to remove at `ratio`, the least important (`scores`) first.
    fn choose(&self, analysis: &Analysis, group: &Group, scores: &[f64], ratio: f64) -> Vec<usize> {
        let n = group.channels.len();
        let p = &self.params;
        let removed = (ratio * n as f64).round() as usize;
        let round = p.round_to.max(1);
        let kept = (n - removed.min(n)).div_ceil(round) * round;
        let kept = kept.max(p.min_channels).min(n);
        let mut budget = n - kept;
        let mut order: Vec<usize> = (0..n).filter(|&c| !group.fixed[c]).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        // Indices left per slot: no tensor may lose its last one.
        let mut left: HashMap<usize, usize> = group.slots.iter().map(|&s| (s, analysis.slots[s].size)).collect();
        let mut chosen = Vec::new();
        for c in order {
            if budget == 0 {
                break;
            }
            let mut per_slot: HashMap<usize, usize> = HashMap::new();
            for (s, _) in &group.channels[c] {
                *per_slot.entry(*s).or_insert(0) += 1;
            }
            if per_slot.iter().any(|(s, k)| left[s] <= *k) {
                continue;
            }
            for (s, k) in per_slot {
                *left.get_mut(&s).expect("slot of the group") -= k;
            }
            chosen.push(c);
            budget -= 1;
        }
        chosen.sort();
        chosen
    }
}

impl PruneChannels {
    /// Each prunable group's channel importance, computed once (the sensitivity probes and the
    /// final choice share it). Data-driven kinds are measured for all groups in one stream; a
    /// group they cannot score (no reader with a weight) falls back to `l2`, and a note says how
    /// many did.
    fn scores(
        &self,
        model: &Model,
        analysis: &Analysis,
        prunable: &[usize],
        ctx: &PassContext,
        report: &mut PassReport,
    ) -> Result<Vec<Vec<f64>>, PassError> {
        let importance = self.params.importance;
        if prunable.is_empty() {
            return Ok(Vec::new());
        }
        let measured: HashMap<usize, Vec<f64>> = match importance {
            Importance::Activation => self.activation_scores(model, analysis, prunable, ctx)?,
            Importance::OutputError => self.output_error_scores(model, analysis, prunable, ctx)?,
            _ => HashMap::new(),
        };
        let mut fallback = 0;
        let scores = prunable
            .iter()
            .map(|&gi| {
                let group = &analysis.groups[gi];
                let effects = match importance {
                    Importance::Activation | Importance::OutputError => {
                        let found: Vec<(usize, Vec<f64>)> =
                            group.slots.iter().filter_map(|s| Some((*s, measured.get(s)?.clone()))).collect();
                        if found.is_empty() {
                            fallback += 1;
                            effect_scores(model, analysis, group, Importance::L2)
                        } else {
                            normalized(found)
                        }
                    }
                    _ => effect_scores(model, analysis, group, importance),
                };
                channel_scores(group, &effects)
            })
            .collect();
        if fallback > 0 {
            report.notes.push(format!(
                "{fallback} groups have no reader the {importance:?} importance can measure: scored by the L2 norm of their weights"
            ));
        }
        Ok(scores)
    }

    /// Per slot read by a layer of the prunable groups: the mean `|x|` of each index along the
    /// slot's axis, streamed over the calibration data.
    fn activation_scores(
        &self,
        model: &Model,
        analysis: &Analysis,
        prunable: &[usize],
        ctx: &PassContext,
    ) -> Result<HashMap<usize, Vec<f64>>, PassError> {
        let measure = ctx.require_measure("prune_channels with importance: activation")?;
        let g = &model.graph;
        let mut slots: Vec<usize> = prunable
            .iter()
            .flat_map(|&gi| analysis.groups[gi].effects.iter().filter(|(_, e)| matches!(e, Effect::Consumes { .. })).map(|(s, _)| *s))
            .collect();
        slots.sort();
        slots.dedup();
        let names: Vec<String> = slots.iter().map(|&s| g.value(analysis.slots[s].value).name.clone()).collect();
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); slots.len()];
        measure.log(&format!("prune_channels: streaming {} tensors for the channels' mean |activation|", slots.len()));
        measure
            .stream(model, &names, &mut |_, values| {
                for ((sum, x), &s) in sums.iter_mut().zip(values).zip(&slots) {
                    crate::linalg::accumulate_per_channel(sum, x, analysis.slots[s].axis, |v| v.abs() as f64)
                        .map_err(|e| crate::measure::MeasureError(format!("{}: {e}", g.value(analysis.slots[s].value).name)))?;
                }
                Ok(())
            })
            .map_err(|e| PassError::new(format!("prune_channels: {e}")))?;
        Ok(slots.into_iter().zip(sums).filter(|(s, v)| v.len() == analysis.slots[*s].size).collect())
    }

    /// Per slot read by a Conv, Gemm or MatMul of the prunable groups (its weight the layer's
    /// second input): the mean squared change of that layer's outputs when each index alone is
    /// zeroed, measured on the calibration data. A slot read by several layers sums them.
    fn output_error_scores(
        &self,
        model: &Model,
        analysis: &Analysis,
        prunable: &[usize],
        ctx: &PassContext,
    ) -> Result<HashMap<usize, Vec<f64>>, PassError> {
        let measure = ctx.require_measure("prune_channels with importance: output_error")?;
        let g = &model.graph;
        let mut readers: Vec<(usize, NodeId, Vec<i64>, Vec<f32>)> = Vec::new();
        let mut seen: HashSet<(usize, NodeId)> = HashSet::new();
        for &gi in prunable {
            for (s, e) in &analysis.groups[gi].effects {
                let Effect::Consumes { node, weight, .. } = e else { continue };
                let Some(n) = g.node(*node) else { continue };
                if !matches!(n.op_type(), "Conv" | "Gemm" | "MatMul") || n.input(1) != Some(*weight) || !seen.insert((*s, *node)) {
                    continue;
                }
                let Some(t) = g.constant(*weight) else { continue };
                let Ok(values) = t.to_f32() else { continue };
                readers.push((*s, *node, t.dims().to_vec(), values));
            }
        }
        let layers: Vec<(NodeId, &[i64], &[f32])> = readers.iter().map(|(_, n, d, v)| (*n, d.as_slice(), v.as_slice())).collect();
        let energies = crate::reconstruct::input_channel_output_energy(model, &layers, measure, self.params.reconstruct_rows)?;
        let mut out: HashMap<usize, Vec<f64>> = HashMap::new();
        for ((s, ..), energy) in readers.iter().zip(energies) {
            let Ok(energy) = energy else { continue };
            if energy.len() != analysis.slots[*s].size {
                continue;
            }
            let sum = out.entry(*s).or_insert_with(|| vec![0.0; energy.len()]);
            sum.iter_mut().zip(&energy).for_each(|(a, b)| *a += b);
        }
        Ok(out)
    }
}

impl PruneChannels {
    /// Least-squares refits of the layers reading pruned channels, in topological stages, each on
    /// the inputs the pruned model with the earlier stages' refits computes
    /// ([`crate::reconstruct::refit_readers`]; ThiNet's layer-by-layer order). Kept only if the
    /// output SQNR on the calibration data is at least that without refits.
    fn reconstructed(
        &self,
        model: &Model,
        analysis: &Analysis,
        pruned: &[(usize, Vec<usize>)],
        ctx: &PassContext,
        report: &mut PassReport,
    ) -> Result<Replaced, PassError> {
        let measure = ctx.require_measure("prune_channels with reconstruct: true")?;
        let g = &model.graph;
        let removed = removed_indices(analysis, pruned);
        struct Reader {
            node: NodeId,
            weight: ValueId,
            bias: Option<ValueId>,
            dims: Vec<i64>,
            original: Vec<f32>,
            kept: Vec<usize>,
            bias_values: Option<Vec<f32>>,
        }
        let mut readers: Vec<Reader> = Vec::new();
        for (gi, _) in pruned {
            for (s, e) in &analysis.groups[*gi].effects {
                let Effect::Consumes { node, weight, .. } = e else { continue };
                let Some(n) = g.node(*node) else { continue };
                let t = g.constant(*weight).ok_or_else(|| PassError::new("a reader's weight is not a constant"))?;
                let (dims, original) = (t.dims().to_vec(), t.to_f32().map_err(|e| PassError::new(e.to_string()))?);
                let gone = &removed[s];
                let kept: Vec<usize> = (0..analysis.slots[*s].size).filter(|i| !gone.contains(i)).collect();
                let group = n.attr_int("group").unwrap_or(1);
                let outputs = WeightAxes::of_node(n, dims.len()).and_then(|a| a.output_channels(&dims, group)).unwrap_or(-1);
                // A bias of one entry per output, where the layer has one (MatMul has none).
                let bias = n.input(2).filter(|b| g.constant(*b).is_some_and(|t| t.dims() == [outputs]) && n.op_type() != "MatMul");
                let bias_values = bias.and_then(|b| g.constant(b)?.to_f32().ok());
                readers.push(Reader { node: *node, weight: *weight, bias, dims, original, kept, bias_values });
            }
        }
        let asked: Vec<crate::reconstruct::Reader<'_>> = readers
            .iter()
            .map(|r| crate::reconstruct::Reader {
                node: r.node,
                dims: &r.dims,
                original: &r.original,
                kept: &r.kept,
                bias: r.bias_values.as_deref(),
            })
            .collect();
        let candidate = |replaced: &Replaced| -> Result<Model, PassError> {
            let mut m = model.clone();
            let patch = removal_patch(model, analysis, pruned, replaced.clone()).map_err(PassError::new)?;
            patch.check(&m.graph).map_err(|e| PassError::new(format!("prune_channels: {}", e.0)))?;
            patch.apply(&mut m.graph);
            Ok(m)
        };
        let mut replaced = Replaced::new();
        let stages = stages(g, &asked.iter().map(|r| r.node).collect::<Vec<_>>())?;
        for (k, stage) in stages.iter().enumerate() {
            measure.log(&format!("reconstruction: stage {} of {} ({} layers)", k + 1, stages.len(), stage.len()));
            let against = candidate(&replaced)?;
            let stage_readers: Vec<crate::reconstruct::Reader<'_>> = stage.iter().map(|&i| asked[i]).collect();
            let answers = crate::reconstruct::refit_readers(
                model,
                &against,
                &stage_readers,
                measure,
                self.params.reconstruct_ridge,
                self.params.reconstruct_rows,
            )?;
            for (&i, answer) in stage.iter().zip(answers) {
                let r = &readers[i];
                let label = g.node_label(r.node);
                match answer {
                    Ok(fit) => {
                        report.notes.push(format!("{label}: refit, output SNR {:.1} -> {:.1} dB", fit.snr_before, fit.snr_after));
                        let name = g.value(r.weight).name.clone();
                        replaced.insert(r.weight, (Tensor::from_f32(&name, &r.dims, &fit.values), r.node));
                        if let (Some(b), Some(values)) = (r.bias, fit.bias) {
                            let name = g.value(b).name.clone();
                            replaced.insert(b, (Tensor::from_f32(&name, &[values.len() as i64], &values), r.node));
                        }
                    }
                    Err(why) => report.notes.push(format!("{label}: not refit: {why}")),
                }
            }
        }
        let sqnr = |m: &Model| measure.fidelity(m).map(|f| f.min_sqnr_db).map_err(|e| PassError::new(format!("prune_channels: {e}")));
        let (plain, refit) = (sqnr(&candidate(&Replaced::new())?)?, sqnr(&candidate(&replaced)?)?);
        let keep = refit >= plain;
        report.notes.push(format!(
            "reconstruction in {} stages: output SQNR on the calibration data {plain:.1} dB without the refits, {refit:.1} dB with them; {}",
            stages.len(),
            if keep { "kept" } else { "not kept" }
        ));
        Ok(if keep { replaced } else { Replaced::new() })
    }
}

/// Per-group ratios for `scope: global`: all the removable channels of the `prunable` groups
/// ranked by `scores` (least important first); the first `ratio` of them go, and each group's
/// ratio is its share of those.
fn global_ratios(analysis: &Analysis, prunable: &[usize], scores: &[Vec<f64>], ratio: f64) -> Vec<f64> {
    let mut pool: Vec<(f64, usize, usize)> = Vec::new();
    for (i, (&gi, s)) in prunable.iter().zip(scores).enumerate() {
        let group = &analysis.groups[gi];
        pool.extend((0..group.channels.len()).filter(|&c| !group.fixed[c]).map(|c| (s[c], i, c)));
    }
    pool.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let take = (ratio * pool.len() as f64).round() as usize;
    let mut removed = vec![0usize; prunable.len()];
    for &(_, i, _) in &pool[..take.min(pool.len())] {
        removed[i] += 1;
    }
    prunable.iter().zip(removed).map(|(&gi, r)| r as f64 / analysis.groups[gi].channels.len().max(1) as f64).collect()
}

/// The readers (by position in `readers`) in stages: in topological order, a stage closes when
/// the next reader depends on one of its layers (it must see that layer's refit first).
fn stages(g: &whittle_graph::Graph, readers: &[NodeId]) -> Result<Vec<Vec<usize>>, PassError> {
    let order = crate::driver::topo_order(g)?;
    let position: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut sorted: Vec<usize> = (0..readers.len()).collect();
    sorted.sort_by_key(|&i| position.get(&readers[i]).copied().unwrap_or(usize::MAX));
    let descendants = |n: NodeId| -> HashSet<NodeId> {
        let mut seen = HashSet::new();
        let mut stack = vec![n];
        while let Some(x) = stack.pop() {
            for s in g.successors(x) {
                if seen.insert(s) {
                    stack.push(s);
                }
            }
        }
        seen
    };
    let mut stages: Vec<Vec<usize>> = Vec::new();
    let mut reach: HashSet<NodeId> = HashSet::new();
    for i in sorted {
        if stages.is_empty() || reach.contains(&readers[i]) {
            stages.push(Vec::new());
            reach.clear();
        }
        reach.extend(descendants(readers[i]));
        stages.last_mut().expect("a stage").push(i);
    }
    Ok(stages)
}

impl PruneChannels {
    /// Per-group ratios from measured sensitivity ([`crate::sensitivity`]): each group pruned
    /// alone at every grid point, the output SQNR measured on calibration samples, then the
    /// ratios that remove `ratio` of all the groups' channels (or MACs) with the least summed
    /// output noise.
    fn allocate(
        &self,
        model: &Model,
        analysis: &Analysis,
        prunable: &[usize],
        scores: &[Vec<f64>],
        ctx: &PassContext,
        report: &mut PassReport,
    ) -> Result<Vec<f64>, PassError> {
        use crate::sensitivity::{Candidate, TableKey, allocate, load_or_measure};
        let p = &self.params;
        let measure = ctx.require_measure("prune_channels with scope: sensitivity")?;
        let g = &model.graph;
        let stats = whittle_graph::stats::model_stats(model);
        let macs: HashMap<String, u64> = stats.layers.iter().map(|l| (l.node.clone(), l.macs.unwrap_or(0))).collect();
        let candidates: Vec<Candidate> = prunable
            .iter()
            .map(|&gi| {
                let group = &analysis.groups[gi];
                let weights = match p.target {
                    Target::Channels => group.removable(),
                    Target::Macs => {
                        let layers: HashSet<NodeId> = group
                            .effects
                            .iter()
                            .filter(|(_, e)| matches!(e, Effect::Produces { .. } | Effect::Consumes { .. } | Effect::Groups { .. }))
                            .map(|(_, e)| e.node())
                            .collect();
                        layers.iter().map(|n| macs.get(&g.node_label(*n)).copied().unwrap_or(0) as usize).sum::<usize>().max(1)
                    }
                };
                Candidate { layer: format!("{} ({} channels)", producer_label(model, group).0, group.channels.len()), weights }
            })
            .collect();
        let compress = |i: usize, ratio: f64| -> Result<Model, String> {
            let gi = prunable[i];
            let chosen = self.choose(analysis, &analysis.groups[gi], &scores[i], ratio);
            let mut m = model.clone();
            let patch = removal_patch(model, analysis, &[(gi, chosen)], Replaced::new())?;
            patch.check(&m.graph).map_err(|e| e.0)?;
            patch.apply(&mut m.graph);
            Ok(m)
        };
        let method = format!(
            "prune_channels importance {}{} round_to {} min_channels {}",
            serde_json::to_string(&p.importance).unwrap_or_default().trim_matches('"'),
            // The rows the measured output error is streamed on choose the channels too.
            if p.importance == Importance::OutputError { format!(" rows {}", p.reconstruct_rows) } else { String::new() },
            p.round_to,
            p.min_channels
        );
        let key = TableKey::new(model, measure, p.sensitivity_samples, method, p.sensitivity_grid.clone());
        let samples = key.samples;
        let path = p.sensitivity_file.as_deref().map(|f| ctx.resolve(f));
        let (table, reused) = load_or_measure(path.as_deref(), key, &candidates, measure, &compress, &mut report.notes)?;
        let curves = &table.curves;
        let (ratios, predicted) =
            allocate(curves, p.ratio, false).map_err(|e| PassError::unsupported_model(format!("prune_channels: {e}")))?;
        let spread: Vec<String> = curves.iter().zip(&ratios).map(|(c, r)| format!("{} {:.0}%", c.layer, 100.0 * r)).collect();
        report.notes.push(format!(
            "sensitivity: {} groups x {} ratios {} on {samples} calibration samples; ratios for {:.0}% of the {}: {} (predicted SQNR {predicted:.1} dB)",
            curves.len(),
            p.sensitivity_grid.len(),
            if reused { "reused from the saved table" } else { "measured" },
            100.0 * p.ratio,
            match p.target {
                Target::Channels => "channels",
                Target::Macs => "MACs of their layers",
            },
            spread.join(", ")
        ));
        if let Some(path) = &path {
            table.save(path, &ratios).map_err(PassError::new)?;
            report.notes.push(format!("sensitivity table written to {} (with .csv and .svg)", path.display()));
        }
        Ok(ratios)
    }
}

/// The kept indices of every slot of the pruned groups.
type Kept = HashMap<usize, Vec<i64>>;

/// One patch removing the chosen channels: every constant sliced once along each pruned axis,
/// group counts, Reshape targets and Split sizes rewritten.
/// The removed indices of every slot of the pruned groups.
fn removed_indices(analysis: &Analysis, pruned: &[(usize, Vec<usize>)]) -> HashMap<usize, HashSet<usize>> {
    let mut removed: HashMap<usize, HashSet<usize>> = HashMap::new();
    for (gi, chosen) in pruned {
        let group = &analysis.groups[*gi];
        for &s in &group.slots {
            removed.entry(s).or_default();
        }
        for &c in chosen {
            for (s, i) in &group.channels[c] {
                removed.entry(*s).or_default().insert(*i);
            }
        }
    }
    removed
}

/// Constants replaced before slicing (refit weights and biases), with the node that reads them.
type Replaced = BTreeMap<ValueId, (Tensor, NodeId)>;

fn removal_patch(model: &Model, analysis: &Analysis, pruned: &[(usize, Vec<usize>)], refit: Replaced) -> Result<Patch, String> {
    let g = &model.graph;
    let kept: Kept = removed_indices(analysis, pruned)
        .into_iter()
        .map(|(s, gone)| (s, (0..analysis.slots[s].size).filter(|i| !gone.contains(i)).map(|i| i as i64).collect()))
        .collect();
    let mut tensors = refit;
    let slice = |tensors: &mut BTreeMap<ValueId, (Tensor, NodeId)>, v: ValueId, axis: usize, owner: NodeId, indices: &[i64]| {
        let current = match tensors.remove(&v) {
            Some((t, _)) => t,
            None => g.constant(v).ok_or_else(|| format!("'{}' is not a constant", g.value(v).name))?.clone(),
        };
        let t = current.select(axis as i64, indices).map_err(|e| format!("'{}': {e}", g.value(v).name))?;
        tensors.insert(v, (t, owner));
        Ok::<(), String>(())
    };
    let mut patch = Patch::new("prune channels");
    let mut splits: Vec<NodeId> = Vec::new();
    let mut slices: Vec<(NodeId, usize)> = Vec::new();
    for (gi, _) in pruned {
        for (s, e) in &analysis.groups[*gi].effects {
            let k = &kept[s];
            match e {
                Effect::Produces { node, weight, axis, bias } => {
                    slice(&mut tensors, *weight, *axis, *node, k)?;
                    if let Some((b, a)) = bias {
                        slice(&mut tensors, *b, *a, *node, k)?;
                    }
                }
                Effect::Consumes { node, weight, axis } => slice(&mut tensors, *weight, *axis, *node, k)?,
                Effect::Param { node, value, axis } => slice(&mut tensors, *value, *axis, *node, k)?,
                Effect::Groups { node, per_group } => patch.set_attr(*node, attr_int("group", (k.len() / per_group) as i64)),
                Effect::ReshapeTarget { node, shape, position } => {
                    let mut target = g.constant(*shape).and_then(|t| t.to_i64().ok()).ok_or("a Reshape target that is not constant")?;
                    target[*position] = k.len() as i64;
                    let name = g.value(*shape).name.clone();
                    tensors.insert(*shape, (Tensor::from_i64(&name, &[target.len() as i64], &target), *node));
                }
                Effect::SplitSizes { node } => splits.push(*node),
                Effect::SliceBounds { node, .. } => slices.push((*node, *s)),
            }
        }
    }
    splits.sort();
    splits.dedup();
    for node in splits {
        let n = g.node(node).ok_or("gone")?;
        let x = n.input(0).ok_or("a Split without input")?;
        let rank = g.value(x).shape.as_ref().map(|s| s.rank()).ok_or("unknown shapes")?;
        let axis = n.attr_int("axis").unwrap_or(0);
        let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
        let sizes: Vec<i64> = n
            .outputs()
            .iter()
            .flatten()
            .map(|o| {
                let slot = analysis.slots.iter().position(|s| s.value == *o && s.axis == axis);
                match slot.and_then(|s| kept.get(&s)) {
                    Some(k) => Ok(k.len() as i64),
                    None => g.value(*o).shape.as_ref().and_then(|s| s.0.get(axis)?.known()).ok_or("unknown split size"),
                }
            })
            .collect::<Result<_, _>>()?;
        match n.input(1) {
            Some(v) => {
                let name = g.value(v).name.clone();
                tensors.insert(v, (Tensor::from_i64(&name, &[sizes.len() as i64], &sizes), node));
            }
            None if model.opset("").unwrap_or(1) >= 13 => {
                let w = patch.add_constant(&format!("{}_split", n.name()), Tensor::from_i64("split", &[sizes.len() as i64], &sizes));
                patch.set_input(node, 1, Some(w));
            }
            None => patch.set_attr(node, whittle_graph::builder::attr_ints("split", &sizes)),
        }
    }
    // A Slice along a pruned axis: its start and end count the kept indices before and inside
    // the range.
    let opset = model.opset("").unwrap_or(1);
    let mut attr_bounds: BTreeMap<NodeId, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for (node, s) in slices {
        let axis = analysis.slots[s].axis;
        let b = crate::channel_groups::slice_bounds(g, node, opset)?.into_iter().find(|b| b.axis == axis).ok_or("a Slice lost its axis")?;
        let k = &kept[&s];
        let start = k.iter().filter(|&&i| i < b.start).count() as i64;
        let end = start + k.iter().filter(|&&i| i >= b.start && i < b.end).count() as i64;
        let n = g.node(node).ok_or("gone")?;
        if opset >= 10 {
            for (input, value) in [(1, start), (2, end)] {
                let v = n.input(input).ok_or("a Slice without bounds")?;
                let t = tensors.get(&v).map(|(t, _)| t).or_else(|| g.constant(v)).ok_or("bounds that are not constant")?;
                let mut values = t.to_i64().map_err(|e| e.to_string())?;
                values[b.position] = value;
                let (name, dims) = (g.value(v).name.clone(), t.dims().to_vec());
                let t = if t.dtype() == whittle_graph::DataType::Int32 {
                    Tensor::from_i32(&name, &dims, &values.iter().map(|&x| x as i32).collect::<Vec<_>>())
                } else {
                    Tensor::from_i64(&name, &dims, &values)
                };
                tensors.insert(v, (t, node));
            }
        } else {
            // Attributes (opset < 10): every pruned axis of the node edits the same lists.
            let bounds = attr_bounds.entry(node).or_insert_with(|| {
                let get = |a: &str| n.attr_ints(a).map(|v| v.to_vec()).unwrap_or_default();
                (get("starts"), get("ends"))
            });
            if b.position >= bounds.0.len() || b.position >= bounds.1.len() {
                return Err("a Slice without bounds".into());
            }
            (bounds.0[b.position], bounds.1[b.position]) = (start, end);
        }
    }
    for (node, (starts, ends)) in attr_bounds {
        patch.set_attr(node, whittle_graph::builder::attr_ints("starts", &starts));
        patch.set_attr(node, whittle_graph::builder::attr_ints("ends", &ends));
    }
    for (v, (t, owner)) in tensors {
        patch.replace_constant(v, t, owner);
    }
    Ok(patch)
}

/// The name of the first layer producing a group's channels, and its op.
fn producer_label(model: &Model, group: &Group) -> (String, String) {
    let g = &model.graph;
    group
        .effects
        .iter()
        .find(|(_, e)| matches!(e, Effect::Produces { .. }))
        .and_then(|(_, e)| g.node(e.node()).map(|n| (g.node_label(e.node()), n.op_type().to_string())))
        .unwrap_or_default()
}

impl Pass for PruneChannels {
    fn run(&self, model: &mut Model, ctx: &PassContext) -> Result<PassReport, PassError> {
        let p = &self.params;
        if !(0.0..1.0).contains(&p.ratio) {
            return Err(PassError::unsupported_model(format!("prune_channels: ratio {} is not in [0, 1)", p.ratio)));
        }
        self.selection.check().map_err(|e| PassError::unsupported_model(format!("prune_channels: {e}")))?;
        let analysis = analyze(&model.graph, model.opset("").unwrap_or(1)).map_err(PassError::new)?;
        let mut report = PassReport::default();
        let mut prunable: Vec<usize> = Vec::new();
        let mut fixed = 0;
        for (gi, group) in analysis.groups.iter().enumerate() {
            let (label, op) = producer_label(model, group);
            if !group.declined.is_empty() {
                report.decline(label, op, format!("{} channels kept: {}", group.channels.len(), group.declined.join("; ")));
                continue;
            }
            if group.removable() == 0 {
                fixed += 1;
                continue;
            }
            if self.selects(model, group) {
                prunable.push(gi);
            }
        }
        let scores = self.scores(model, &analysis, &prunable, ctx, &mut report)?;
        let ratios = match p.scope {
            Scope::Sensitivity if !prunable.is_empty() => self.allocate(model, &analysis, &prunable, &scores, ctx, &mut report)?,
            Scope::Global => global_ratios(&analysis, &prunable, &scores, p.ratio),
            _ => vec![p.ratio; prunable.len()],
        };
        let mut pruned: Vec<(usize, Vec<usize>)> = Vec::new();
        for ((&gi, &ratio), scores) in prunable.iter().zip(&ratios).zip(&scores) {
            let chosen = self.choose(&analysis, &analysis.groups[gi], scores, ratio);
            if !chosen.is_empty() {
                pruned.push((gi, chosen));
            }
        }
        if fixed > 0 {
            report.notes.push(format!("{fixed} groups reach the model's inputs or outputs and keep their channels"));
        }
        if pruned.is_empty() {
            return Ok(report);
        }
        let refit = if p.reconstruct { self.reconstructed(model, &analysis, &pruned, ctx, &mut report)? } else { Replaced::new() };
        let patch = removal_patch(model, &analysis, &pruned, refit).map_err(PassError::new)?;
        patch.check(&model.graph).map_err(|e| PassError::new(format!("prune_channels: {}", e.0)))?;
        for (gi, chosen) in &pruned {
            let group = &analysis.groups[*gi];
            let (label, _) = producer_label(model, group);
            let layers = group.effects.iter().filter(|(_, e)| matches!(e, Effect::Produces { .. } | Effect::Consumes { .. })).count();
            report.record(format!(
                "{label}: {} -> {} channels ({} weights sliced)",
                group.channels.len(),
                group.channels.len() - chosen.len(),
                layers
            ));
        }
        let indices: Vec<usize> = pruned.iter().map(|(gi, _)| *gi).collect();
        let kinds = analysis.block_summary(&model.graph, &indices);
        report.notes.push(format!(
            "{} groups pruned{}",
            pruned.len(),
            if kinds.is_empty() { String::new() } else { format!(", through: {kinds}") }
        ));
        patch.apply(&mut model.graph);
        Ok(report)
    }
}
