//! Bias correction (Nagel et al. 2019, "Data-Free Quantization", empirical variant): rounding a
//! layer's weights `W` to `W̃ = W + ε` shifts its expected output by `ε · E[x]`; subtracting that
//! from the bias removes the shift. `E[x]` per input channel comes from the calibration stream.
//!
//! For a Conv with weight `[O, C/g, k...]` and `g` groups, output channel `o` in group
//! `o / (O/g)` reads input channels `(o / (O/g))·(C/g) + c`; the correction is
//! `Δ_o = Σ_{c,k} ε[o, c, k] · E[x_c]` (borders, where padding reads zeros, are ignored), and the
//! new bias is `b_o - Δ_o` (a bias is added when the layer has none). Lossy by design: it changes
//! the float layer so that its *quantized* version is unbiased.

use whittle_graph::patch::Patch;
use whittle_graph::{Graph, NodeId, Tensor};

use crate::quant::params::quantize_weights;

/// Corrects the bias of Conv `node` for the rounding of its weight (per channel along `axis`)
/// given the per-channel means of its input. Returns the largest |Δ| relative to the largest
/// |bias|.
pub fn correct_conv_bias(g: &mut Graph, node: NodeId, axis: Option<usize>, input_means: &[f64]) -> Result<f64, String> {
    let n = g.node(node).ok_or("no such node")?;
    if !n.is("Conv") {
        return Err("bias correction covers Conv".into());
    }
    let w = n.input(1).and_then(|w| g.constant(w)).ok_or("no constant weight")?;
    let dims = w.dims().to_vec();
    let data = w.to_f32().map_err(|e| e.to_string())?;
    let (o, cg) = (dims[0] as usize, dims[1] as usize);
    let inner: usize = dims[2..].iter().product::<i64>().max(1) as usize;
    let groups = n.attr_int("group").unwrap_or(1).max(1) as usize;
    if input_means.len() != cg * groups || o % groups != 0 {
        return Err(format!("input means for {} channels, the layer reads {}", input_means.len(), cg * groups));
    }
    let (q, scales) = quantize_weights(&data, &dims, axis);
    let per_group = o / groups;
    let mut delta = vec![0f64; o];
    for (oc, d) in delta.iter_mut().enumerate() {
        let s = scales[if axis.is_some() { oc } else { 0 }] as f64;
        let base = (oc / per_group) * cg;
        for c in 0..cg {
            let mean = input_means[base + c];
            for k in 0..inner {
                let i = (oc * cg + c) * inner + k;
                *d += (q[i] as f64 * s - data[i] as f64) * mean;
            }
        }
    }
    let old: Vec<f32> = match n.input(2).and_then(|b| g.constant(b)) {
        Some(b) => b.to_f32().map_err(|e| e.to_string())?,
        None => vec![0.0; o],
    };
    if old.len() != o {
        return Err("its bias does not have one value per output channel".into());
    }
    let new: Vec<f32> = old.iter().zip(&delta).map(|(b, d)| (*b as f64 - d) as f32).collect();
    let scale = old.iter().fold(0f32, |m, b| m.max(b.abs())).max(1e-12) as f64;
    let worst = delta.iter().fold(0f64, |m, d| m.max(d.abs())) / scale;
    let mut p = Patch::new(format!("{}: bias corrected", g.node_label(node)));
    match n.input(2) {
        Some(b) if crate::rewrite::is_exclusive_constant(g, b, node) => {
            let name = g.value(b).name.clone();
            p.replace_constant(b, Tensor::from_f32(&name, &[o as i64], &new), node);
        }
        Some(_) => return Err("its bias is shared with another node".into()),
        None => {
            let name = format!("{}_bias", g.value(n.output(0).ok_or("no output")?).name);
            let c = p.add_constant(&name, Tensor::from_f32(&name, &[o as i64], &new));
            p.set_input(node, 2, Some(c));
        }
    }
    p.check(g).map_err(|e| e.0)?;
    p.apply(g);
    Ok(worst)
}
