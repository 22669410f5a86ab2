//! `fold_batchnorm`: folds an inference BatchNormalization into the Conv, ConvTranspose or Gemm
//! that feeds it.
//!
//! `BN(x) = γ·(x − μ)/√(σ² + ε) + β` is, per channel, `x·s + t` with `s = γ/√(σ² + ε)` and
//! `t = β − μ·s`, which the layer absorbs into its weights and bias (see [`crate::affine`]).
//! Computed in f64, stored in f32: **exact** up to float rounding.
//!
//! Guards (each declines with its reason): the layer's output must feed only this BN; the BN's
//! scale, bias, mean and variance must be constants (not graph inputs); the layer's weight and bias
//! must not be shared with other nodes; training mode (`training_mode=1`, or used running-stat
//! outputs) and non-spatial BN (`spatial=0`, opset < 9) are left alone.

use whittle_graph::patch::Patch;
use whittle_graph::{Graph, NodeId};

use crate::affine::{check_foldable, fold_into_layer, output_channels};
use crate::driver::{Match, rewrite_nodes};
use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};
use crate::rewrite::single_reader;

pub struct FoldBatchnorm;

impl PassDef for FoldBatchnorm {
    const NAME: &'static str = "fold_batchnorm";
    const SUMMARY: &'static str = "Fold inference BatchNormalization into the Conv/ConvTranspose/Gemm before it";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        FoldBatchnorm
    }
}

/// The patch folding a BN node into its layer, or why it cannot be folded.
fn fold_bn(g: &Graph, bn: NodeId) -> Result<Patch, String> {
    let n = g.node(bn).ok_or("removed")?;
    if n.attr_int("training_mode").unwrap_or(0) != 0 {
        return Err("training_mode=1".into());
    }
    if n.attr_int("spatial").unwrap_or(1) == 0 {
        return Err("spatial=0 (per-activation statistics)".into());
    }
    if n.outputs().iter().skip(1).flatten().any(|v| !g.value(*v).uses().is_empty() || g.is_graph_output(*v)) {
        return Err("its running-statistics outputs are used (training graph)".into());
    }
    let x = n.input(0).ok_or("no input")?;
    let layer = g.value(x).producer().ok_or("its input is not produced by a layer")?;
    if single_reader(g, x).is_none() {
        return Err("the layer's output is also read elsewhere".into());
    }
    check_foldable(g, layer)?;
    let param = |i: usize, what: &str| -> Result<Vec<f64>, String> {
        let v = n.input(i).ok_or(format!("no {what} input"))?;
        let t = g.constant(v).ok_or(format!("its {what} is not a constant (a graph input?)"))?;
        Ok(t.to_f32().map_err(|e| e.to_string())?.into_iter().map(f64::from).collect())
    };
    let (gamma, beta, mean, var) = (param(1, "scale")?, param(2, "bias")?, param(3, "mean")?, param(4, "variance")?);
    let eps = n.attr_float("epsilon").unwrap_or(1e-5) as f64;
    let c = output_channels(g, layer)?;
    if [&gamma, &beta, &mean, &var].iter().any(|p| p.len() != c) {
        return Err(format!("its parameters do not have {c} values, one per channel of the layer"));
    }
    let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f64> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    fold_into_layer(g, bn, x, &scale, &shift)
}

impl Pass for FoldBatchnorm {
    fn run(&self, model: &mut whittle_graph::Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        rewrite_nodes(&mut model.graph, &mut report, |g, id| match g.node(id) {
            Some(n) if n.is("BatchNormalization") => match fold_bn(g, id) {
                Ok(patch) => Match::Rewrite(patch),
                Err(why) => Match::Decline(why),
            },
            _ => Match::Skip,
        })?;
        Ok(report)
    }
}
