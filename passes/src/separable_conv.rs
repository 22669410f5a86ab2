//! `separable_conv`: rewrites a regular convolution as a depthwise convolution followed by a
//! pointwise (1×1) one, MobileNet-style, without training (Guo et al. 2018, "Network
//! Decoupling").
//!
//! For a Conv with group 1, weight `W[C_out, C_in, k...]` (any number of spatial axes, kernel area
//! `K`), each input channel's slice `W[:, i, :]` is a `C_out × K` matrix. Its SVD
//! `Σ_r σ_r u_r v_rᵀ`, truncated to rank `m`, gives `m` depthwise kernels `D[i·m + r] = √σ_r v_r`
//! and pointwise weights `P[o, i·m + r] = √σ_r u_r[o]`, so that
//! `W[o, i] ≈ Σ_{r<m} P[o, i·m + r] · D[i·m + r]`: a depthwise Conv (group `C_in`, `C_in·m`
//! outputs, the original strides, pads and dilations) then a 1×1 Conv (`C_in·m → C_out`) carrying
//! the bias. **Exact** at full rank `m = min(C_out, K)`; **lossy** below it, with relative weight
//! error `√(Σ_discarded σ² / Σ σ²)`, reported per layer.
//!
//! MACs per output pixel go from `C_out·C_in·K` to `C_in·m·(K + C_out)`: a ratio of
//! `m·(K + C_out) / (C_out·K)`, the same at every resolution. The rank `m` of each layer (one for
//! all its input channels: a depthwise Conv has as many outputs per group) follows one rule: the
//! share of weight energy kept (`energy`), a weight error bound (`max_error`), a MACs budget per
//! layer (`macs_ratio`: the largest rank within it), or a fixed rank. A layer is rewritten only
//! where its MACs ratio is at most `max_macs_ratio` (two kernels instead of one must pay off);
//! others are declined with their figures.
//!
//! Layout at rank `m > 1` (`layout`): `replicated` (default) writes the input's channels
//! concatenated `m` times, then a depthwise Conv with `group = C_in·m` = its outputs (channel
//! `r·C_in + i` is component `r` of input channel `i`), the form runtimes' depthwise kernels
//! accelerate; `multiplier` writes one Conv with `group = C_in` and `C_in·m` outputs, which
//! runtimes (tract included) run as a grouped convolution: 2.3x slower than the replicated form
//! on the VGG benchmark (README).
//!
//! With `latency_check: true` (needs the runner), each candidate layer and its rewrite are cut out
//! of the graph as models of their own and timed by [`Measure::latency`]; only rewrites whose
//! latency ratio's 95% interval lies below 1 are kept, the others declined with their figures.
//!
//! With `refit: true` (needs calibration data), the pointwise weights and bias are refitted by
//! ridge least squares so that the layer's *output*, not its weight, is matched: the depthwise
//! outputs `Z` and the original outputs `Y` of every rewritten layer are streamed through the
//! measurement interface into normal equations (`ZᵀZ`, `ZᵀY`: memory independent of the number
//! of samples) and `[P | b] = argmin ‖Y − [Z 1]·[P | b]ᵀ‖² + λ‖·‖²`. The report gives each layer's
//! output SNR on the calibration data before and after the refit.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use whittle_graph::builder::{attr_int, attr_ints};
use whittle_graph::edit::OpSpec;
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Graph, Model, NodeId, Tensor, ValueId};

use crate::linalg::{NormalEquations, channel_rows, snr_db, truncated_svd};
use crate::measure::{LatencyComparison, Measure};
use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::Selection;
pub use crate::rank::RankRule;
use crate::rank::{MAX_MACS_RATIO_PARAM, RANK_PARAM, cumulative_energy, weight_error};
use crate::rewrite::{conv_like, is_exclusive_constant};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub rank: RankRule,
    /// Rewrite a layer only where its MACs ratio (after / before) is at most this.
    pub max_macs_ratio: f64,
    /// Refit the pointwise weights on calibration data by least squares.
    pub refit: bool,
    /// Ridge of the refit, relative to the mean energy of the depthwise outputs.
    pub ridge: f64,
    /// Node name patterns to rewrite (`*`, `?`; empty: all).
    pub include: Vec<String>,
    /// Node name patterns kept as they are.
    pub exclude: Vec<String>,
    /// How the depthwise step is written when the rank is above 1.
    pub layout: Layout,
    /// Rewrite a layer only where the rewrite, timed alone with tract, is measured to be faster.
    pub latency_check: bool,
    /// Timed runs of each layer and its rewrite (with `latency_check`).
    pub latency_runs: usize,
}

/// The form of the depthwise step at rank `m > 1` (at rank 1 both are the same Conv).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The input's channels concatenated `m` times, then a depthwise Conv with `group` =
    /// `C_in·m` = its outputs: the form depthwise kernels (tract's among them) accelerate.
    Replicated,
    /// One Conv with `group = C_in` and `C_in·m` outputs (channel multiplier `m`): no copy, but
    /// runtimes run it as a grouped convolution.
    Multiplier,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rank: RankRule::Energy(0.95),
            max_macs_ratio: 0.8,
            refit: false,
            ridge: 1e-4,
            include: Vec::new(),
            exclude: Vec::new(),
            layout: Layout::Replicated,
            latency_check: false,
            latency_runs: 20,
        }
    }
}

pub struct SeparableConv {
    params: Params,
    selection: Selection,
}

impl PassDef for SeparableConv {
    const NAME: &'static str = "separable_conv";
    const SUMMARY: &'static str = "Rewrite regular convolutions as depthwise + pointwise pairs by per-channel SVD (exact at full rank)";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        RANK_PARAM,
        MAX_MACS_RATIO_PARAM,
        ("refit", "bool", "refit the pointwise weights and bias by least squares on calibration data"),
        ("ridge", "float", "ridge of the refit, relative to the mean depthwise output energy"),
        ("include", "list", "node name patterns to rewrite (empty: all)"),
        ("exclude", "list", "node name patterns kept as they are"),
        ("layout", "replicated|multiplier", "depthwise step at rank > 1: input channels repeated then group = outputs, or group = C_in"),
        ("latency_check", "bool", "rewrite only layers whose rewrite, timed alone with tract, is measured faster"),
        ("latency_runs", "int", "timed runs of each layer and its rewrite (latency_check)"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: vec!["Conv".into()], include: params.include.clone(), exclude: params.exclude.clone() };
        SeparableConv { params, selection }
    }
}

/// One convolution's factorization at its chosen rank.
struct Factored {
    conv: NodeId,
    input: ValueId,
    output: ValueId,
    bias: Option<ValueId>,
    c_in: usize,
    c_out: usize,
    kernel: Vec<i64>,
    rank: usize,
    full_rank: usize,
    /// `[C_in·m, 1, k...]`, row-major.
    depthwise: Vec<f32>,
    /// `C_out × C_in·m`.
    pointwise: DMatrix<f64>,
    bias_values: Vec<f64>,
    weight_error: f64,
    macs_ratio: f64,
    /// Output SNR on calibration data before and after the refit, dB.
    refit_snr: Option<(f64, f64)>,
    /// The rewrite timed alone against the layer (with `latency_check`).
    latency: Option<LatencyComparison>,
}

impl Factored {
    fn depthwise_dims(&self) -> Vec<i64> {
        [vec![(self.c_in * self.rank) as i64, 1], self.kernel.clone()].concat()
    }

    /// The depthwise Conv: the original's attributes but group and kernel shape.
    fn depthwise_spec(&self, g: &Graph, output: &str, group: usize) -> OpSpec {
        let n = g.node(self.conv).expect("planned on this graph");
        conv_like(n, &format!("{}_depthwise", g.node_label(self.conv)), output, group, &self.kernel)
    }
}

/// The depthwise and pointwise weights in the form a [`Layout`] writes them.
struct Emitted {
    /// Copies of the input concatenated along the channels before the depthwise Conv (1: none).
    copies: usize,
    group: usize,
    depthwise: Vec<f32>,
    /// `[C_out, C_in·m]`, row-major.
    pointwise: Vec<f32>,
}

impl Factored {
    /// The weights in `layout`'s channel order. Internally depthwise channel `j = i·m + r` is
    /// component `r` of input channel `i`; the replicated form reads input channel `q mod C_in`
    /// at channel `q = r·C_in + i`, so both weights are permuted to that order.
    fn emitted(&self, layout: Layout) -> Emitted {
        let (m, area, width) = (self.rank, self.depthwise.len() / (self.c_in * self.rank), self.c_in * self.rank);
        let replicated = layout == Layout::Replicated && m > 1;
        // Internal index of the emitted channel q.
        let source = |q: usize| if replicated { (q % self.c_in) * m + q / self.c_in } else { q };
        let depthwise = (0..width).flat_map(|q| self.depthwise[source(q) * area..][..area].iter().copied()).collect();
        let pointwise =
            (0..self.c_out).flat_map(|o| (0..width).map(move |q| (o, q))).map(|(o, q)| self.pointwise[(o, source(q))] as f32).collect();
        Emitted { copies: if replicated { m } else { 1 }, group: if replicated { width } else { self.c_in }, depthwise, pointwise }
    }
}

/// Relative MACs of the rewrite at rank `m`: `m·(K + C_out) / (C_out·K)`.
fn macs_ratio(m: usize, area: usize, c_out: usize) -> f64 {
    (m * (area + c_out)) as f64 / (c_out * area) as f64
}

impl SeparableConv {
    fn check_params(&self) -> Result<(), String> {
        self.selection.check()?;
        self.params.rank.check(Self::NAME)?;
        if self.params.ridge < 0.0 || !self.params.max_macs_ratio.is_finite() {
            return Err("separable_conv: ridge must be >= 0 and max_macs_ratio a number".into());
        }
        if self.params.latency_check && self.params.latency_runs < 2 {
            return Err(format!("separable_conv: latency_runs = {}, need at least 2", self.params.latency_runs));
        }
        Ok(())
    }

    /// The factorization of one Conv, or why it is not rewritten (`Ok(None)`: not a candidate).
    fn factor(&self, g: &Graph, id: NodeId) -> Result<Option<Factored>, String> {
        let n = g.node(id).ok_or("removed")?;
        let group = n.attr_int("group").unwrap_or(1);
        let (Some(input), Some(w), Some(output)) = (n.input(0), n.input(1), n.output(0)) else {
            return Err("missing input, weight or output".into());
        };
        let Some(wt) = g.constant(w) else { return Err("its weight is not a constant".into()) };
        let dims = wt.dims().to_vec();
        if dims.len() < 3 {
            return Err(format!("its weight has rank {}", dims.len()));
        }
        let (c_out, c_in_per_group, kernel) = (dims[0] as usize, dims[1] as usize, dims[2..].to_vec());
        let area = kernel.iter().product::<i64>() as usize;
        if area <= 1 || (group > 1 && c_in_per_group == 1) {
            return Ok(None); // pointwise or already depthwise
        }
        if group != 1 {
            return Err(format!("a grouped convolution (group {group})"));
        }
        if c_in_per_group <= 1 {
            return Ok(None); // one input channel: nothing to separate
        }
        if wt.dtype() != DataType::Float {
            return Err(format!("its weight is {}, only f32 is factored", wt.dtype()));
        }
        if !is_exclusive_constant(g, w, id) {
            return Err("its weight is shared with another node".into());
        }
        let bias = n.input(2);
        let bias_values: Vec<f64> = match bias {
            Some(b) => match g.constant(b) {
                Some(bt) if bt.dtype() == DataType::Float => bt.to_f32().map_err(|e| e.to_string())?.iter().map(|&v| v as f64).collect(),
                _ => return Err("its bias is not an f32 constant".into()),
            },
            None => vec![0.0; c_out],
        };
        let weights = wt.to_f32().map_err(|e| e.to_string())?;
        let c_in = c_in_per_group;
        let full_rank = c_out.min(area);
        // Per input channel: U·√σ (C_out × p) and √σ·Vᵀ (p × K), and the squared singular values.
        let mut factors = Vec::with_capacity(c_in);
        let mut energy_by_rank = vec![0.0f64; full_rank];
        for i in 0..c_in {
            let m = DMatrix::from_fn(c_out, area, |o, k| weights[(o * c_in + i) * area + k] as f64);
            let (u, sigma, vt) = truncated_svd(&m);
            for (r, s) in sigma.iter().enumerate() {
                energy_by_rank[r] += s * s;
            }
            factors.push((u, sigma, vt));
        }
        let energy = cumulative_energy(&energy_by_rank).ok_or("its weight is all zeros")?;
        let rank = self.params.rank.choose(&energy, |m| macs_ratio(m, area, c_out))?;
        let ratio = macs_ratio(rank, area, c_out);
        let weight_error = weight_error(&energy, rank);
        if ratio > self.params.max_macs_ratio {
            return Err(format!(
                "rank {rank} of {full_rank} (weight error {:.1}%) would cost {ratio:.2}x the MACs, above max_macs_ratio {}",
                100.0 * weight_error,
                self.params.max_macs_ratio
            ));
        }
        let mut depthwise = vec![0.0f32; c_in * rank * area];
        let mut pointwise = DMatrix::zeros(c_out, c_in * rank);
        for (i, (u, sigma, vt)) in factors.iter().enumerate() {
            for r in 0..rank {
                let root = sigma[r].sqrt();
                let j = i * rank + r;
                for k in 0..area {
                    depthwise[j * area + k] = (root * vt[(r, k)]) as f32;
                }
                for o in 0..c_out {
                    pointwise[(o, j)] = root * u[(o, r)];
                }
            }
        }
        Ok(Some(Factored {
            conv: id,
            input,
            output,
            bias,
            c_in,
            c_out,
            kernel,
            rank,
            full_rank,
            depthwise,
            pointwise,
            bias_values,
            weight_error,
            macs_ratio: ratio,
            refit_snr: None,
            latency: None,
        }))
    }

    /// Refits every layer's pointwise weights and bias on the calibration data (module docs).
    fn refit(&self, model: &Model, layers: &mut [Factored], measure: &dyn Measure) -> Result<(), PassError> {
        // A copy of the model with each layer's depthwise Conv beside it, reading the same input.
        let mut tapped = model.clone();
        let mut patch = Patch::new("separable_conv: depthwise taps for the refit");
        let g = &model.graph;
        for (k, f) in layers.iter().enumerate() {
            let order = g.node(f.conv).expect("planned").order;
            let w = patch.add_constant(&format!("separable_tap_w{k}"), Tensor::from_f32("", &f.depthwise_dims(), &f.depthwise));
            let tap = g.fresh_name(&format!("{}_separable_tap", g.value(f.output).name));
            patch.add_op(f.depthwise_spec(g, &tap, f.c_in), vec![Wire::Value(f.input), w], order);
        }
        patch.check(&tapped.graph).map_err(|e| PassError::new(format!("separable_conv refit: {e}")))?;
        let added = patch.apply(&mut tapped.graph);
        // Per layer: its depthwise tap, then its original output.
        let mut names = Vec::new();
        for (id, f) in added.iter().zip(layers.iter()) {
            let tap = tapped.graph.node(*id).and_then(|n| n.output(0)).expect("a Conv has an output");
            // A float Conv of a float input (the measurement declares it an output, which needs a type).
            tapped.graph.value_mut(tap).dtype = Some(DataType::Float);
            names.push(tapped.graph.value(tap).name.clone());
            names.push(g.value(f.output).name.clone());
        }
        let mut sums: Vec<NormalEquations> = layers.iter().map(|f| NormalEquations::new(f.c_in * f.rank + 1, f.c_out)).collect();
        measure.log(&format!("separable_conv: streaming {} layers for the least-squares refit", layers.len()));
        measure
            .stream(&tapped, &names, &mut |_, values| {
                use rayon::prelude::*;
                sums.par_iter_mut().enumerate().try_for_each(|(k, s)| {
                    let (z, y) = (&values[2 * k], &values[2 * k + 1]);
                    let (zr, yr) = (channel_rows(z, true, 1)?, channel_rows(y, false, 1)?);
                    if zr.nrows() != yr.nrows() {
                        return Err(crate::measure::MeasureError(format!("layer {k}: depthwise and original outputs differ in size")));
                    }
                    s.add(&zr, &yr);
                    Ok(())
                })
            })
            .map_err(|e| PassError::new(format!("separable_conv refit: {e}")))?;
        for (f, s) in layers.iter_mut().zip(&sums) {
            let factored = stacked(&f.pointwise, &f.bias_values);
            let before = s.residual(&factored);
            let Ok(fit) = s.solve(self.params.ridge) else { continue };
            let after = s.residual(&fit);
            f.refit_snr = Some((snr_db(s.target_energy, before), snr_db(s.target_energy, after)));
            if after < before {
                let width = f.c_in * f.rank;
                f.pointwise = fit.rows(0, width).transpose();
                f.bias_values = fit.row(width).iter().copied().collect();
            }
        }
        Ok(())
    }

    /// The layer and its rewrite, each cut out of the graph as a model of its own, timed by `measure`.
    fn time_alone(&self, model: &Model, f: &Factored, measure: &dyn Measure) -> Result<LatencyComparison, String> {
        let layer = whittle_graph::extract::single_node_model(model, f.conv)?;
        let mut rewritten = layer.clone();
        let conv = *rewritten.graph.node_ids().first().ok_or("the cut-out layer has no node")?;
        let alone = self.factor(&rewritten.graph, conv)?.ok_or("not a candidate alone")?;
        let patch = self.rewrite(&rewritten.graph, &alone);
        patch.check(&rewritten.graph).map_err(|e| e.0)?;
        patch.apply(&mut rewritten.graph);
        measure.latency(&layer, &rewritten, self.params.latency_runs).map_err(|e| e.0)
    }

    /// The patch replacing the Conv by its depthwise and pointwise pair.
    fn rewrite(&self, g: &Graph, f: &Factored) -> Patch {
        let order = g.node(f.conv).expect("planned").order;
        let label = g.node_label(f.conv);
        let mut change = format!(
            "{label}: depthwise {}x{} rank {} of {} + pointwise, weight error {:.1}%, MACs {:.2}x",
            f.c_in,
            f.kernel.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("x"),
            f.rank,
            f.full_rank,
            100.0 * f.weight_error,
            f.macs_ratio
        );
        if let Some(before) = whittle_graph::stats::node_macs(g, f.conv) {
            change.push_str(&format!(" ({before} -> {})", (before as f64 * f.macs_ratio).round() as u64));
        }
        if let Some((before, after)) = f.refit_snr {
            change.push_str(&format!(", refit output SNR {before:.1} -> {after:.1} dB"));
        }
        if let Some(timed) = &f.latency {
            change.push_str(&format!(", {timed}"));
        }
        let mut p = Patch::new(change);
        let out_name = &g.value(f.output).name;
        let e = f.emitted(self.params.layout);
        let dw_w = p.add_constant(&format!("{out_name}_dw_w"), Tensor::from_f32("", &f.depthwise_dims(), &e.depthwise));
        // The input as it is now: an earlier rewrite may have replaced the value feeding this Conv.
        let mut input = Wire::Value(g.node(f.conv).and_then(|n| n.input(0)).unwrap_or(f.input));
        if e.copies > 1 {
            let spec = OpSpec::new("Concat", &[], &format!("{out_name}_copies")).named(&format!("{label}_copies"));
            input = Wire::output(p.add_op(spec.attr(attr_int("axis", 1)), vec![input; e.copies], order), 0);
        }
        let dw = p.add_op(f.depthwise_spec(g, &format!("{out_name}_dw"), e.group), vec![input, dw_w], order);
        let width = f.c_in * f.rank;
        let pw_dims: Vec<i64> = [vec![f.c_out as i64, width as i64], vec![1; f.kernel.len()]].concat();
        let pw_w = p.add_constant(&format!("{out_name}_pw_w"), Tensor::from_f32("", &pw_dims, &e.pointwise));
        let bias = match (f.bias, f.refit_snr.is_some()) {
            (Some(b), false) => Some(Wire::Value(b)),
            (None, false) => None,
            (_, true) => {
                let values: Vec<f32> = f.bias_values.iter().map(|&v| v as f32).collect();
                Some(p.add_constant(&format!("{out_name}_pw_b"), Tensor::from_f32("", &[f.c_out as i64], &values)))
            }
        };
        let mut inputs = vec![Wire::output(dw, 0), pw_w];
        inputs.extend(bias);
        let pw_spec = OpSpec::new("Conv", &[], &format!("{out_name}_pw")).named(&format!("{label}_pointwise"));
        let pw = p.add_op(pw_spec.attr(attr_ints("kernel_shape", &vec![1; f.kernel.len()])), inputs, g.order_after(order));
        p.redirect_all(f.output, Wire::output(pw, 0));
        p.remove_node(f.conv);
        p
    }
}

/// `[Pᵀ; bᵀ]`: the pointwise weights and bias as the refit's unknowns ((C_in·m + 1) × C_out).
fn stacked(pointwise: &DMatrix<f64>, bias: &[f64]) -> DMatrix<f64> {
    let width = pointwise.ncols();
    DMatrix::from_fn(width + 1, pointwise.nrows(), |j, o| if j < width { pointwise[(o, j)] } else { bias[o] })
}

impl Pass for SeparableConv {
    fn run(&self, model: &mut Model, ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.check_params().map_err(PassError::unsupported_model)?;
        let measure = if self.params.refit { Some(ctx.require_measure(Self::NAME)?) } else { None };
        let mut report = PassReport::default();
        let mut layers = Vec::new();
        {
            let g = &model.graph;
            for id in crate::driver::topo_order(g)? {
                if !self.selection.selects(g, id, &["Conv"]) {
                    continue;
                }
                match self.factor(g, id) {
                    Ok(Some(f)) => layers.push(f),
                    Ok(None) => {}
                    Err(why) => report.decline(g.node_label(id), "Conv", why),
                }
            }
        }
        if layers.is_empty() {
            return Ok(report);
        }
        if self.params.latency_check {
            let measure = ctx.require_measure(Self::NAME).map_err(|_| {
                PassError::unsupported_model("separable_conv: latency_check times layers with the runner's tract; run it in a pipeline with a `calibration:` section")
            })?;
            let mut kept = Vec::with_capacity(layers.len());
            for mut f in layers {
                match self.time_alone(model, &f, measure) {
                    Ok(t) if t.faster() => {
                        f.latency = Some(t);
                        kept.push(f);
                    }
                    Ok(t) => report.decline(model.graph.node_label(f.conv), "Conv", format!("not measured faster in tract: {t}")),
                    Err(why) => report.decline(model.graph.node_label(f.conv), "Conv", format!("could not be timed: {why}")),
                }
            }
            layers = kept;
        }
        // Refitted after the timing (which does not depend on the weights): only what is kept.
        if let Some(measure) = measure
            && !layers.is_empty()
        {
            self.refit(model, &mut layers, measure)?;
        }
        let g = &mut model.graph;
        for f in &layers {
            let patch = self.rewrite(g, f);
            match patch.check(g) {
                Ok(()) => {
                    report.record(patch.description.clone());
                    patch.apply(g);
                }
                Err(e) => report.decline(g.node_label(f.conv), "Conv", e.0),
            }
        }
        let worst = layers.iter().map(|f| f.weight_error).fold(0.0, f64::max);
        report.notes.push(format!(
            "{} convolutions rewritten as depthwise + pointwise; largest relative weight error {:.1}%",
            report.applied,
            100.0 * worst
        ));
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_of_the_pair() {
        // m·(K + C_out) / (C_out·K): rank 1 of a 3x3 kernel with 64 outputs.
        assert!((macs_ratio(1, 9, 64) - 73.0 / 576.0).abs() < 1e-12);
        assert!((macs_ratio(2, 9, 16) - 50.0 / 144.0).abs() < 1e-12);
    }
}
