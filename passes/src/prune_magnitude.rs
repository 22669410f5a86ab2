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
//! - `scope: global`: one threshold over the pooled `|w|` of every layer without an override,
//!   `round(s·N)` elements of the pool zeroed (layers of small weights lose more).
//! - `pattern: "N:M"` (e.g. `"2:4"`): along the reduction axis of each weight (Conv: input
//!   channels at each output channel and kernel position; Gemm/MatMul: K), every group of `M`
//!   consecutive elements keeps its `N` largest `|w|`: the layout sparse tensor cores accelerate.
//!   A layer whose reduction axis is not a multiple of `M` is declined.
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

/// Where the unstructured threshold is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    PerLayer,
    Global,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Share of each layer's (or, global, of all layers') weights set to zero, in [0, 1).
    pub sparsity: f64,
    pub scope: Scope,
    pub pattern: Pattern,
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
        ("scope", "per_layer|global", "one threshold per layer, or one over all layers' weights"),
        ("pattern", "unstructured|N:M", "anywhere, or N kept of every M along the reduction axis (\"2:4\")"),
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
    weight: ValueId,
    dims: Vec<i64>,
    values: Vec<f32>,
    /// Weight axis summed over by the layer (N:M groups run along it).
    reduction_axis: usize,
    /// This layer's own sparsity (an override), else the pass's.
    sparsity: Option<f64>,
}

impl PruneMagnitude {
    fn check_params(&self) -> Result<(), String> {
        self.selection.check()?;
        let bad = |s: f64| !(0.0..1.0).contains(&s);
        if bad(self.params.sparsity) {
            return Err(format!("prune_magnitude: sparsity {} is out of range [0, 1)", self.params.sparsity));
        }
        if let Some((p, s)) = self.params.overrides.iter().find(|(_, s)| bad(**s)) {
            return Err(format!("prune_magnitude: override `{p}`: sparsity {s} is out of range [0, 1)"));
        }
        for p in self.params.overrides.keys() {
            glob::Pattern::new(p).map_err(|e| format!("prune_magnitude: bad override pattern `{p}`: {e}"))?;
        }
        if matches!(self.params.pattern, Pattern::NOfM { .. }) && (!self.params.overrides.is_empty() || self.params.scope == Scope::Global)
        {
            return Err("prune_magnitude: an N:M pattern fixes the sparsity (1 - N/M): overrides and scope: global do not apply".into());
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
        Ok(Some(Layer { node: id, weight, dims, values, reduction_axis: axes.input, sparsity: self.override_for(n.name()) }))
    }
}

/// Zeroes the `k` elements of `values` whose `score` is smallest (ties by position).
fn zero_smallest(values: &mut [f32], k: usize) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
    for &i in &order[..k.min(values.len())] {
        values[i] = 0.0;
    }
}

/// Keeps the `n` largest `|w|` of every `m` consecutive elements along `axis`.
fn keep_n_of_m(values: &mut [f32], dims: &[i64], axis: usize, n: usize, m: usize) -> Result<(), String> {
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
        // Smallest first (ties by position): the first m - n become 0.
        group.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
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
    fn run(&self, model: &mut Model, _ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
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
        let before: Vec<Vec<f32>> = layers.iter().map(|l| l.values.clone()).collect();
        let mut declined = vec![None; layers.len()];
        match self.params.pattern {
            Pattern::NOfM { n, m } => {
                for (l, why) in layers.iter_mut().zip(&mut declined) {
                    if let Err(e) = keep_n_of_m(&mut l.values, &l.dims, l.reduction_axis, n, m) {
                        *why = Some(e);
                    }
                }
            }
            Pattern::Unstructured => {
                let global = self.params.scope == Scope::Global;
                // Per layer (and overridden layers under a global scope): each its own count.
                for l in layers.iter_mut().filter(|l| !global || l.sparsity.is_some()) {
                    let s = l.sparsity.unwrap_or(self.params.sparsity);
                    let k = (s * l.values.len() as f64).round() as usize;
                    zero_smallest(&mut l.values, k);
                }
                if global {
                    // One pool: (|w|, layer, element) of every layer without an override.
                    let pooled: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].sparsity.is_none()).collect();
                    let mut pool: Vec<(f32, usize, usize)> =
                        pooled.iter().flat_map(|&i| layers[i].values.iter().enumerate().map(move |(e, v)| (v.abs(), i, e))).collect();
                    let k = (self.params.sparsity * pool.len() as f64).round() as usize;
                    pool.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                    for &(_, i, e) in &pool[..k] {
                        layers[i].values[e] = 0.0;
                    }
                }
            }
        }
        let g = &mut model.graph;
        let (mut total, mut nonzero_before, mut nonzero_after) = (0usize, 0usize, 0usize);
        for ((l, old), why) in layers.iter().zip(&before).zip(declined) {
            let label = g.node_label(l.node);
            if let Some(why) = why {
                report.decline(label, g.node(l.node).map(|n| n.op_type().to_string()).unwrap_or_default(), why);
                continue;
            }
            total += l.values.len();
            nonzero_before += old.len() - zeros(old);
            nonzero_after += l.values.len() - zeros(&l.values);
            if l.values == *old {
                continue;
            }
            let name = g.value(l.weight).name.clone();
            let mut patch = Patch::new(format!(
                "{label}: {} of {} weights zero ({:.1}%, was {:.1}%)",
                zeros(&l.values),
                l.values.len(),
                100.0 * zeros(&l.values) as f64 / l.values.len() as f64,
                100.0 * zeros(old) as f64 / old.len() as f64
            ));
            patch.replace_constant(l.weight, Tensor::from_f32(&name, &l.dims, &l.values), l.node);
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
        let mut v = vec![1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.3];
        keep_n_of_m(&mut v, &[2, 4], 1, 2, 4).unwrap();
        assert_eq!(v, vec![0.0, -4.0, 3.0, 0.0, 0.5, 0.0, 0.0, 0.3]);
        let mut w = vec![1.0, 0.5, -4.0, 0.1, 3.0, -0.2, 2.0, 0.3];
        keep_n_of_m(&mut w, &[4, 2], 0, 2, 4).unwrap();
        assert_eq!(w, vec![0.0, 0.5, -4.0, 0.0, 3.0, 0.0, 0.0, 0.3]);
        assert!(keep_n_of_m(&mut w, &[4, 2], 1, 1, 4).is_err());
        let mut u = vec![3.0, -1.0, 2.0, 0.0];
        zero_smallest(&mut u, 2);
        assert_eq!(u, vec![3.0, 0.0, 2.0, 0.0]);
    }
}
