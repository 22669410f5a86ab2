//! Folding a per-output-channel affine map `y = x·s + t` into the layer that produces `x`
//! (Conv, ConvTranspose, Gemm): the shared core of `fold_batchnorm` and `fold_channelwise`. It
//! builds a [`Patch`]; nothing changes until the driver applies it.
//!
//! For output channel `c`: `W'[c] = W[c]·s[c]` and `b'[c] = b[c]·s[c] + t[c]` (`b = 0` when the
//! layer has no bias). Exact up to float rounding. Weight layouts:
//! the weight element of output channel `c` is found through the one channel-layout table
//! ([`whittle_graph::channels::WeightAxes`]: Conv rows, grouped ConvTranspose columns per group,
//! Gemm columns or rows with `transB`, MatMul columns). For Gemm `Y = α·A·B + β·C` the new bias is
//! `C' = s·β·C + t` with `β' = 1`. A MatMul has no bias: it absorbs scales only.

use whittle_graph::builder::attr_float;
use whittle_graph::channels::WeightAxes;
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Graph, NodeId, Tensor};

use crate::rewrite::is_exclusive_constant;

/// The largest compact (ConstantOfShape) weight a fold may write out as data.
const MAX_MATERIALIZED_BYTES: u64 = 1024;

/// The values of a constant operand that applies one value per channel along `axis` of a
/// rank-`rank` value with `channels` channels: its dims right-aligned with the value's, every
/// other dim 1 (one value in all counts too, repeated). `channels` values, as f64.
pub fn per_channel_constant(t: &Tensor, rank: usize, axis: usize, channels: usize) -> Result<Vec<f64>, String> {
    let dims = t.dims();
    if dims.len() > rank {
        return Err(format!("the constant has rank {} above its operand's rank {rank}", dims.len()));
    }
    let pos = (axis + dims.len()).checked_sub(rank);
    if !dims.iter().enumerate().all(|(i, &d)| d == 1 || (Some(i) == pos && d as usize == channels)) {
        return Err(format!(
            "the constant of shape {dims:?} does not broadcast along the channel axis only (axis {axis}, {channels} channels)"
        ));
    }
    let values = t.to_f32().map_err(|e| format!("the constant cannot be read as f32: {e}"))?;
    match values.len() {
        1 => Ok(vec![values[0] as f64; channels]),
        n if n == channels => Ok(values.iter().map(|&v| v as f64).collect()),
        n => Err(format!("{n} values for {channels} channels")),
    }
}

/// The layers that absorb a per-output-channel affine map (a weight and a bias).
const AFFINE_LAYERS: &[&str] = &["Conv", "ConvTranspose", "Gemm"];
/// The layers whose constant weight (input 1) absorbs per-channel scales: a MatMul too.
const SCALABLE_LAYERS: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

fn is_one_of(n: &whittle_graph::Node, ops: &[&str]) -> bool {
    n.domain().is_empty() && ops.contains(&n.op_type())
}

/// The weight layout of a Conv/ConvTranspose/Gemm/MatMul (from [`whittle_graph::channels`]), its
/// dims and group.
fn layout(g: &Graph, layer: NodeId) -> Result<(WeightAxes, Vec<i64>, i64), String> {
    let n = g.node(layer).ok_or("removed")?;
    if !is_one_of(n, SCALABLE_LAYERS) {
        return Err(format!("{} is not a Conv, ConvTranspose, Gemm or MatMul", n.op_type()));
    }
    let w = n.input(1).and_then(|w| g.constant(w)).ok_or("its weight is not a constant")?;
    let dims = w.dims().to_vec();
    let axes = WeightAxes::of_node(n, dims.len()).ok_or_else(|| format!("its weight has rank {}", dims.len()))?;
    Ok((axes, dims, n.attr_int("group").unwrap_or(1).max(1)))
}

/// Number of output channels of a Conv/ConvTranspose/Gemm/MatMul, from its weight.
pub fn output_channels(g: &Graph, layer: NodeId) -> Result<usize, String> {
    let (axes, dims, group) = layout(g, layer)?;
    axes.output_channels(&dims, group).and_then(|c| usize::try_from(c).ok()).ok_or_else(|| "the weight has no output-channel axis".into())
}

/// Checks that `layer` can absorb an affine map; `Err` says why not.
pub fn check_foldable(g: &Graph, layer: NodeId) -> Result<(), String> {
    check_layer(g, layer, AFFINE_LAYERS)
}

/// Checks that the weight of `layer` can absorb per-channel scales; `Err` says why not.
pub fn check_scalable(g: &Graph, layer: NodeId) -> Result<(), String> {
    check_layer(g, layer, SCALABLE_LAYERS)
}

fn check_layer(g: &Graph, layer: NodeId, ops: &[&str]) -> Result<(), String> {
    let n = g.node(layer).ok_or("removed")?;
    if !is_one_of(n, ops) {
        let (last, rest) = ops.split_last().expect("a list of ops");
        return Err(format!("it is fed by {}, not by a {} or {last}", n.op_type(), rest.join(", ")));
    }
    let w = n.input(1).ok_or("the layer has no weight")?;
    let Some(wt) = g.constant(w) else { return Err("the layer's weight is not a constant (a graph input?)".into()) };
    if wt.dtype() != DataType::Float {
        return Err(format!("the layer's weight is {}, only f32 is folded", wt.dtype()));
    }
    if !is_exclusive_constant(g, w, layer) {
        return Err("the layer's weight is shared with another node".into());
    }
    // Folding rewrites the weight; one stored compactly as ConstantOfShape would be written out
    // whole, and the cleanup never grows a model.
    if g.is_compact_constant(w) && wt.byte_size() > MAX_MATERIALIZED_BYTES {
        return Err(format!("the layer's weight is a compact ConstantOfShape; folding would store its {} bytes", wt.byte_size()));
    }
    if let Some(b) = n.input(2) {
        let Some(bt) = g.constant(b) else { return Err("the layer's bias is not a constant".into()) };
        if bt.dtype() != DataType::Float {
            return Err("the layer's bias is not f32".into());
        }
        if !is_exclusive_constant(g, b, layer) {
            return Err("the layer's bias is shared with another node".into());
        }
        if n.is("Gemm") {
            let c = output_channels(g, layer)?;
            let ok = bt.numel() == 1 || bt.dims().iter().rev().skip(1).all(|&d| d == 1) && bt.dims().last() == Some(&(c as i64));
            if !ok {
                return Err(format!("the Gemm bias C has shape {:?}, not one value per output column", bt.dims()));
            }
        }
    }
    if n.is("Gemm") && n.attr_int("transA").is_none() && n.input(0).is_none() {
        return Err("the Gemm has no input A".into());
    }
    Ok(())
}

/// Adds to `patch` what applying `y = x·scale + shift` per output channel to `layer` takes: the new
/// weight and bias (replacing the old ones, or a new bias), and `beta = 1` for a Gemm.
pub fn fold_affine(g: &Graph, layer: NodeId, scale: &[f64], shift: &[f64], patch: &mut Patch) -> Result<(), String> {
    check_foldable(g, layer)?;
    let (axes, dims, group) = layout(g, layer)?;
    let channels = output_channels(g, layer)?;
    if scale.len() != channels || shift.len() != channels {
        return Err(format!("{} per-channel values for {channels} output channels", scale.len()));
    }
    let n = g.node(layer).ok_or("removed")?;
    let is_gemm = n.is("Gemm");
    let beta = n.attr_float("beta").unwrap_or(1.0) as f64;
    let (w_id, b_id) = (n.input(1).ok_or("no weight")?, n.input(2));
    let wt = g.constant(w_id).ok_or("its weight is not a constant")?;
    let mut w = wt.to_f32().map_err(|e| e.to_string())?;
    for (v, c) in w.iter_mut().zip(axes.output_channel_of_elements(&dims, group)) {
        *v = (*v as f64 * scale[c]) as f32;
    }
    let bias_old: Vec<f64> = match b_id.and_then(|b| g.constant(b)) {
        Some(bt) => {
            let b = bt.to_f32().map_err(|e| e.to_string())?;
            if b.len() == 1 { vec![b[0] as f64; channels] } else { b.iter().map(|&x| x as f64).collect() }
        }
        None => vec![0.0; channels],
    };
    let bias_scale = if is_gemm { beta } else { 1.0 };
    let bias: Vec<f32> = (0..channels).map(|c| (bias_old[c] * bias_scale * scale[c] + shift[c]) as f32).collect();
    patch.replace_constant(w_id, Tensor::from_f32(wt.name(), &dims, &w), layer);
    let bias = Tensor::from_f32("", &[channels as i64], &bias);
    match b_id {
        Some(b) => patch.replace_constant(b, bias, layer),
        // A pure scaling of a layer without bias needs none.
        None if shift.iter().all(|&t| t == 0.0) => {}
        None => {
            let name = format!("{}_bias", g.value(w_id).name);
            let b = patch.add_constant(&name, bias);
            patch.set_input(layer, 2, Some(b));
        }
    }
    if is_gemm && beta != 1.0 {
        patch.set_attr(layer, attr_float("beta", 1.0));
    }
    Ok(())
}

/// Adds to `patch` multiplying the weight of `layer` by `scale[i]` along input channel `i` (what
/// dividing the layer's input channel `i` by `scale[i]` takes to keep its output): cross-layer
/// equalization and smoothing of activation outliers. The bias is unchanged.
pub fn scale_input_channels(g: &Graph, layer: NodeId, scale: &[f64], patch: &mut Patch) -> Result<(), String> {
    scale_weight(g, layer, scale, false, patch)
}

/// Adds to `patch` multiplying output channel `i` of `layer` by `scale[i]`: its weight and, for
/// a layer with a bias, the bias. A MatMul (no bias) included.
pub fn scale_output_channels(g: &Graph, layer: NodeId, scale: &[f64], patch: &mut Patch) -> Result<(), String> {
    if g.node(layer).is_some_and(|n| n.is("MatMul")) {
        scale_weight(g, layer, scale, true, patch)
    } else {
        fold_affine(g, layer, scale, &vec![0.0; scale.len()], patch)
    }
}

/// The weight of `layer` times `scale` along its output (`output`) or input channels.
fn scale_weight(g: &Graph, layer: NodeId, scale: &[f64], output: bool, patch: &mut Patch) -> Result<(), String> {
    check_scalable(g, layer)?;
    let (axes, dims, group) = layout(g, layer)?;
    let n = g.node(layer).ok_or("removed")?;
    let w_id = n.input(1).ok_or("no weight")?;
    let wt = g.constant(w_id).ok_or("its weight is not a constant")?;
    let (channels, of) = if output {
        (axes.output_channels(&dims, group), axes.output_channel_of_elements(&dims, group))
    } else {
        (axes.input_channels(&dims, group), axes.input_channel_of_elements(&dims, group))
    };
    let channels = channels.unwrap_or(0) as usize;
    if scale.len() != channels {
        let side = if output { "output" } else { "input" };
        return Err(format!("{} per-channel values for {channels} {side} channels", scale.len()));
    }
    let mut w = wt.to_f32().map_err(|e| e.to_string())?;
    for (v, c) in w.iter_mut().zip(of) {
        *v = (*v as f64 * scale[c]) as f32;
    }
    patch.replace_constant(w_id, Tensor::from_f32(wt.name(), &dims, &w), layer);
    Ok(())
}

/// The largest |weight| of each output channel (`output: true`) or input channel of `layer`.
pub fn channel_ranges(g: &Graph, layer: NodeId, output: bool) -> Result<Vec<f64>, String> {
    let (axes, dims, group) = layout(g, layer)?;
    let n = g.node(layer).ok_or("removed")?;
    let w = n.input(1).and_then(|w| g.constant(w)).ok_or("its weight is not a constant")?.to_f32().map_err(|e| e.to_string())?;
    let (channels, of) = if output {
        (axes.output_channels(&dims, group), axes.output_channel_of_elements(&dims, group))
    } else {
        (axes.input_channels(&dims, group), axes.input_channel_of_elements(&dims, group))
    };
    let mut ranges = vec![0.0f64; channels.unwrap_or(0) as usize];
    for (v, c) in w.iter().zip(of) {
        ranges[c] = ranges[c].max(v.abs() as f64);
    }
    Ok(ranges)
}

/// The patch folding a per-channel affine map applied by node `node` (output 0) into the layer
/// producing `layer_out`: the layer absorbs it, the node is bypassed and removed.
pub fn fold_into_layer(g: &Graph, node: NodeId, layer_out: whittle_graph::ValueId, scale: &[f64], shift: &[f64]) -> Result<Patch, String> {
    let layer = g.value(layer_out).producer().ok_or("its input is not produced by a layer")?;
    let out = g.node(node).and_then(|n| n.output(0)).ok_or("no output")?;
    let mut patch = Patch::new(format!("{}: folded into {}", g.node_label(node), g.node_label(layer)));
    fold_affine(g, layer, scale, shift, &mut patch)?;
    patch.redirect_all(out, Wire::Value(layer_out));
    patch.remove_node(node);
    Ok(patch)
}
