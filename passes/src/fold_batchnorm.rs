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

use whittle_graph::{Model, NodeId};

use crate::affine::{check_foldable, fold_affine, output_channels};
use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};
use crate::rewrite::{bypass, single_reader};

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

/// The per-channel scale and shift of a BN node, or why it cannot be folded.
fn bn_affine(model: &Model, bn: NodeId) -> Result<(NodeId, Vec<f64>, Vec<f64>), String> {
    let g = &model.graph;
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
    Ok((layer, scale, shift))
}

impl Pass for FoldBatchnorm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let order = model.graph.topo_order().map_err(|_| PassError("the graph has a cycle".into()))?;
        for bn in order {
            if !model.graph.node(bn).is_some_and(|n| n.is("BatchNormalization")) {
                continue;
            }
            let label = model.graph.node_label(bn);
            match bn_affine(model, bn) {
                Ok((layer, scale, shift)) => {
                    let g = &mut model.graph;
                    let layer_out = g.node(layer).and_then(|n| n.output(0)).expect("layer has an output");
                    fold_affine(g, layer, &scale, &shift).map_err(PassError)?;
                    if bypass(g, bn, 0, layer_out) {
                        report.applied += 1;
                    } else {
                        return Err(PassError(format!("{label}: folded the weights but could not remove the BatchNormalization")));
                    }
                }
                Err(why) => report.decline(label, "BatchNormalization", why),
            }
        }
        Ok(report)
    }
}
