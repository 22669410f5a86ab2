//! Folding a per-output-channel affine map `y = x·s + t` into the layer that produces `x`
//! (Conv, ConvTranspose, Gemm): the shared core of `fold_batchnorm` and `fold_channelwise`.
//!
//! For output channel `c`: `W'[c] = W[c]·s[c]` and `b'[c] = b[c]·s[c] + t[c]` (`b = 0` when the
//! layer has no bias). Exact up to float rounding. Weight layouts:
//! - Conv `W[C_out, C_in/g, k...]`: channel `c` is row `c`;
//! - ConvTranspose `W[C_in, C_out/g, k...]`: row `i` of group `gi = i / (C_in/g)`, column `j`
//!   feeds channel `gi·(C_out/g) + j`;
//! - Gemm `Y = α·A·B + β·C`: channel `n` is column `n` of `B` (row `n` with `transB`); the new bias
//!   is `C' = s·β·C + t` with `β' = 1`.

use whittle_graph::builder::attr_float;
use whittle_graph::{DataType, Graph, NodeId, Tensor};

use crate::rewrite::is_exclusive_constant;

/// Number of output channels of a Conv/ConvTranspose/Gemm, from its weight.
pub fn output_channels(g: &Graph, layer: NodeId) -> Result<usize, String> {
    let n = g.node(layer).ok_or("removed")?;
    let w = n.input(1).and_then(|w| g.constant(w)).ok_or("its weight is not a constant")?;
    let dims = w.dims();
    let group = n.attr_int("group").unwrap_or(1).max(1) as usize;
    Ok(match n.op_type() {
        "Conv" => *dims.first().ok_or("weight has rank 0")? as usize,
        "ConvTranspose" => *dims.get(1).ok_or("weight has rank < 2")? as usize * group,
        "Gemm" => {
            let trans_b = n.attr_int("transB").unwrap_or(0) != 0;
            *dims.get(if trans_b { 0 } else { 1 }).ok_or("B has rank < 2")? as usize
        }
        op => return Err(format!("{op} is not a Conv, ConvTranspose or Gemm")),
    })
}

/// Checks that `layer` can absorb an affine map; `Err` says why not.
pub fn check_foldable(g: &Graph, layer: NodeId) -> Result<(), String> {
    let n = g.node(layer).ok_or("removed")?;
    if !n.domain().is_empty() || !matches!(n.op_type(), "Conv" | "ConvTranspose" | "Gemm") {
        return Err(format!("it is fed by {}, not by a Conv, ConvTranspose or Gemm", n.op_type()));
    }
    let w = n.input(1).ok_or("the layer has no weight")?;
    let Some(wt) = g.constant(w) else { return Err("the layer's weight is not a constant (a graph input?)".into()) };
    if wt.dtype() != DataType::Float {
        return Err(format!("the layer's weight is {}, only f32 is folded", wt.dtype()));
    }
    if !is_exclusive_constant(g, w, layer) {
        return Err("the layer's weight is shared with another node".into());
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

/// Applies `y = x·scale + shift` per output channel to `layer` (call [`check_foldable`] first).
pub fn fold_affine(g: &mut Graph, layer: NodeId, scale: &[f64], shift: &[f64]) -> Result<(), String> {
    check_foldable(g, layer)?;
    let channels = output_channels(g, layer)?;
    if scale.len() != channels || shift.len() != channels {
        return Err(format!("{} per-channel values for {channels} output channels", scale.len()));
    }
    let n = g.node(layer).expect("checked");
    let op = n.op_type().to_string();
    let group = n.attr_int("group").unwrap_or(1).max(1) as usize;
    let trans_b = n.attr_int("transB").unwrap_or(0) != 0;
    let beta = n.attr_float("beta").unwrap_or(1.0) as f64;
    let (w_id, b_id) = (n.input(1).expect("checked"), n.input(2));
    let wt = g.constant(w_id).expect("checked").clone();
    let dims = wt.dims().to_vec();
    let mut w = wt.to_f32().map_err(|e| e.to_string())?;
    let d0 = dims[0] as usize;
    let inner: usize = dims[1..].iter().map(|&d| d as usize).product();
    let channel_of = |flat: usize| -> usize {
        match op.as_str() {
            "Conv" => flat / inner.max(1),
            "ConvTranspose" => {
                let per_group_out = dims[1] as usize;
                let k: usize = dims[2..].iter().map(|&d| d as usize).product();
                let (i, j) = (flat / inner.max(1), (flat % inner.max(1)) / k.max(1));
                (i / (d0 / group).max(1)) * per_group_out + j
            }
            _ if trans_b => flat / inner.max(1),
            _ => flat % inner.max(1),
        }
    };
    for (i, v) in w.iter_mut().enumerate() {
        *v = (*v as f64 * scale[channel_of(i)]) as f32;
    }
    let bias_old: Vec<f64> = match b_id.and_then(|b| g.constant(b)) {
        Some(bt) => {
            let b = bt.to_f32().map_err(|e| e.to_string())?;
            if b.len() == 1 { vec![b[0] as f64; channels] } else { b.iter().map(|&x| x as f64).collect() }
        }
        None => vec![0.0; channels],
    };
    let bias_scale = if op == "Gemm" { beta } else { 1.0 };
    let bias: Vec<f32> = (0..channels).map(|c| (bias_old[c] * bias_scale * scale[c] + shift[c]) as f32).collect();
    g.set_constant(w_id, Tensor::from_f32(wt.name(), &dims, &w));
    match b_id {
        Some(b) => {
            let name = g.value(b).name.clone();
            g.set_constant(b, Tensor::from_f32(&name, &[channels as i64], &bias));
        }
        None => {
            let base = format!("{}_bias", g.value(w_id).name);
            let b = g.add_constant(&base, Tensor::from_f32(&base, &[channels as i64], &bias));
            g.set_input(layer, 2, Some(b));
        }
    }
    if op == "Gemm" && beta != 1.0 {
        g.node_mut(layer).expect("checked").set_attr(attr_float("beta", 1.0));
    }
    Ok(())
}
