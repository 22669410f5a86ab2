//! Masked least-squares reconstruction: after a layer's weights were pruned, refit the weights it
//! kept so that its outputs on calibration inputs come as close as they can to the original's
//! (the OBS / SparseGPT idea, Frantar & Alistarh 2023, here with the mask fixed and each layer
//! fitted independently on the original model's inputs).
//!
//! For an output row `o` with original weights `w₀` over the row's inputs `x` (a Conv's input
//! patch of its group, a Gemm/MatMul input feature vector) and kept positions `S`, the refit is
//!
//! `w_S = argmin Σ_x (x_Sᵀ w_S − xᵀ w₀)² = (G_SS + λI)⁻¹ (G w₀)_S`,  with `G = Σ x xᵀ`,
//!
//! so the one statistic needed is the Gram matrix `G` of the layer's inputs (per group), streamed
//! from the calibration data: nothing is stored per sample. A Conv's patches come from a tap
//! added beside it: a Conv of group `C_in` with one-hot weights `[C_in·k, 1, kh, kw]` and the
//! layer's own pads, strides and dilations, so the runtime does the unfolding. At most
//! `max_rows` rows (pixels) of each sample are used, evenly spaced; a layer with fewer than
//! [`MIN_ROWS_PER_INPUT`] rows per unknown in all is not refit (it would fit the samples). The output error energy
//! `(w₀ − w)ᵀ G (w₀ − w)` before and after the refit is reported as an SNR; a refit that does not
//! lower it is not applied. Lossy (the pruned model is), judged by the gate.

use nalgebra::DMatrix;
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Model, NodeId, Tensor};

use crate::linalg::{channel_rows, feature_rows, snr_db};
use crate::measure::{Measure, MeasureError};
use crate::pass::PassError;

/// A layer is refit only from at least this many input rows per unknown of a row.
pub const MIN_ROWS_PER_INPUT: usize = 4;

/// A pruned layer to refit: its node, weight dims, original and pruned values.
pub struct Pruned<'a> {
    pub node: NodeId,
    pub dims: &'a [i64],
    pub original: &'a [f32],
    pub pruned: &'a [f32],
}

/// A refit layer: its new weights and its output SNR (signal over error energy) before and
/// after, dB.
pub struct Refit {
    pub values: Vec<f32>,
    pub snr_before: f64,
    pub snr_after: f64,
}

/// How a layer's weight elements map to rows of inputs.
#[derive(Clone, Debug)]
enum Layout {
    /// Conv `[C_out, C_in/g, k...]`: row `o` is contiguous, `C_in/g·k` inputs of group
    /// `o / (C_out/g)`; the tap yields the `C_in·k` unfolded channels.
    Conv { c_out: usize, width: usize, groups: usize },
    /// Gemm/MatMul weight `[K, N]` (`trans`: `[N, K]`): `N` rows of `K` inputs; `trans_a`: the
    /// input is `[K, M]`.
    Dense { k: usize, n: usize, trans_b: bool, trans_a: bool },
}

impl Layout {
    fn groups(&self) -> usize {
        match self {
            Layout::Conv { groups, .. } => *groups,
            Layout::Dense { .. } => 1,
        }
    }
    fn width(&self) -> usize {
        match self {
            Layout::Conv { width, .. } => *width,
            Layout::Dense { k, .. } => *k,
        }
    }
    fn rows(&self) -> usize {
        match self {
            Layout::Conv { c_out, .. } => *c_out,
            Layout::Dense { n, .. } => *n,
        }
    }
    /// Group of output row `o`.
    fn group_of(&self, o: usize) -> usize {
        match self {
            Layout::Conv { c_out, groups, .. } => o / (c_out / groups),
            Layout::Dense { .. } => 0,
        }
    }
    /// Weight element index of input `t` of output row `o`.
    fn element(&self, o: usize, t: usize) -> usize {
        match self {
            Layout::Conv { width, .. } => o * width + t,
            Layout::Dense { k, n, trans_b, .. } => {
                if *trans_b {
                    o * k + t
                } else {
                    t * n + o
                }
            }
        }
    }
}

fn layout_of(model: &Model, p: &Pruned<'_>) -> Result<Layout, String> {
    let n = model.graph.node(p.node).ok_or("removed")?;
    let d: Vec<usize> = p.dims.iter().map(|&d| d as usize).collect();
    match n.op_type() {
        "Conv" if d.len() >= 3 => {
            let groups = n.attr_int("group").unwrap_or(1).max(1) as usize;
            Ok(Layout::Conv { c_out: d[0], width: d[1..].iter().product(), groups })
        }
        "Gemm" if d.len() == 2 => {
            let trans_b = n.attr_int("transB").unwrap_or(0) != 0;
            let (k, nn) = if trans_b { (d[1], d[0]) } else { (d[0], d[1]) };
            Ok(Layout::Dense { k, n: nn, trans_b, trans_a: n.attr_int("transA").unwrap_or(0) != 0 })
        }
        "MatMul" if d.len() == 2 => Ok(Layout::Dense { k: d[0], n: d[1], trans_b: false, trans_a: false }),
        op => Err(format!("reconstruction handles Conv, Gemm and 2-D MatMul weights, not {op} {:?}", p.dims)),
    }
}

/// Refits every layer of `layers` (module documentation). One answer per layer: the refit, or
/// why it was not made.
pub fn refit(
    model: &Model,
    layers: &[Pruned<'_>],
    measure: &dyn Measure,
    ridge: f64,
    max_rows: usize,
) -> Result<Vec<Result<Refit, String>>, PassError> {
    let layouts: Vec<Result<Layout, String>> = layers.iter().map(|p| layout_of(model, p)).collect();
    // The tapped model: a one-hot unfolding Conv beside each Conv layer.
    let mut tapped = model.clone();
    let mut patch = Patch::new("reconstruction taps");
    let g = &model.graph;
    let mut taps = Vec::new();
    for (p, layout) in layers.iter().zip(&layouts) {
        let n = g.node(p.node).expect("planned");
        match layout {
            Ok(Layout::Conv { .. }) => {
                let input = n.input(0).expect("a Conv has an input");
                let c_in = p.dims[1] as usize * n.attr_int("group").unwrap_or(1).max(1) as usize;
                let kernel: Vec<i64> = p.dims[2..].to_vec();
                let k: usize = kernel.iter().map(|&d| d as usize).product();
                let mut onehot = vec![0f32; c_in * k * k];
                for c in 0..c_in {
                    for q in 0..k {
                        onehot[(c * k + q) * k + q] = 1.0;
                    }
                }
                let dims = [vec![(c_in * k) as i64, 1], kernel.clone()].concat();
                let w = patch.add_constant(&format!("reconstruct_tap_w{}", taps.len()), Tensor::from_f32("", &dims, &onehot));
                let name = g.fresh_name(&format!("{}_reconstruct_tap", g.node_label(p.node)));
                let spec = crate::rewrite::conv_like(n, &name, &name, c_in, &kernel);
                taps.push(Some(patch.add_op(spec, vec![Wire::Value(input), w], n.order)));
            }
            _ => taps.push(None),
        }
    }
    patch.check(&tapped.graph).map_err(|e| PassError::new(format!("reconstruction taps: {e}")))?;
    let added = patch.apply(&mut tapped.graph);
    // The value streamed per layer: its tap's output (Conv) or its data input (Gemm, MatMul).
    let mut names = Vec::new();
    for ((p, layout), tap) in layers.iter().zip(&layouts).zip(&taps) {
        if layout.is_err() {
            continue;
        }
        let name = match tap {
            Some(i) => {
                let out = tapped.graph.node(added[*i]).and_then(|n| n.output(0)).expect("a Conv has an output");
                tapped.graph.value_mut(out).dtype = Some(DataType::Float);
                tapped.graph.value(out).name.clone()
            }
            None => g.value(g.node(p.node).and_then(|n| n.input(0)).expect("a data input")).name.clone(),
        };
        names.push(name);
    }
    let active: Vec<usize> = (0..layers.len()).filter(|&i| layouts[i].is_ok()).collect();
    let mut rows_seen = vec![0usize; active.len()];
    let mut grams: Vec<Vec<DMatrix<f64>>> = active
        .iter()
        .map(|&i| {
            let l = layouts[i].as_ref().expect("active");
            vec![DMatrix::zeros(l.width(), l.width()); l.groups()]
        })
        .collect();
    if !active.is_empty() {
        measure.log(&format!("reconstruction: streaming the inputs of {} layers", active.len()));
        measure
            .stream(&tapped, &names, &mut |_, values| {
                use rayon::prelude::*;
                grams.par_iter_mut().zip(rows_seen.par_iter_mut()).zip(active.par_iter()).zip(values.par_iter()).try_for_each(
                    |(((gram, seen), &i), x)| {
                        let layout = layouts[i].as_ref().expect("active");
                        let positions = |rows: usize| rows.div_ceil(max_rows.max(1));
                        let rows = match layout {
                            Layout::Conv { .. } => {
                                let pixels: usize = x.shape().iter().skip(2).product::<usize>() * x.shape()[0];
                                channel_rows(x, false, positions(pixels))?
                            }
                            Layout::Dense { trans_a, k, .. } => {
                                let count = x.len() / k.max(&1);
                                feature_rows(x, *trans_a, positions(count))?
                            }
                        };
                        let width = layout.width();
                        if rows.ncols() != width * layout.groups() {
                            return Err(MeasureError(format!(
                                "{} input columns, the weight reads {}",
                                rows.ncols(),
                                width * layout.groups()
                            )));
                        }
                        *seen += rows.nrows();
                        for (gi, gm) in gram.iter_mut().enumerate() {
                            let block = rows.columns(gi * width, width);
                            gm.gemm_tr(1.0, &block, &block, 1.0);
                        }
                        Ok(())
                    },
                )
            })
            .map_err(|e| PassError::new(format!("reconstruction: {e}")))?;
    }
    let mut grams = grams.into_iter().zip(rows_seen);
    Ok(layouts
        .iter()
        .zip(layers)
        .map(|(layout, p)| {
            let layout = layout.as_ref().map_err(Clone::clone)?;
            let (gram, rows) = grams.next().expect("one Gram per active layer");
            // Fewer rows than a few per unknown fit the calibration samples, not the layer.
            if rows < MIN_ROWS_PER_INPUT * layout.width() {
                return Err(format!(
                    "{rows} calibration input rows for {} inputs per output (at least {MIN_ROWS_PER_INPUT} per input are needed; give more calibration samples)",
                    layout.width()
                ));
            }
            solve(layout, p, &gram, ridge)
        })
        .collect())
}

/// The row-by-row solve (module documentation).
fn solve(layout: &Layout, p: &Pruned<'_>, grams: &[DMatrix<f64>], ridge: f64) -> Result<Refit, String> {
    let width = layout.width();
    let mut values = p.pruned.to_vec();
    let (mut signal, mut before, mut after) = (0.0, 0.0, 0.0);
    for o in 0..layout.rows() {
        let g = &grams[layout.group_of(o)];
        let w0 = nalgebra::DVector::from_iterator(width, (0..width).map(|t| p.original[layout.element(o, t)] as f64));
        let wp = nalgebra::DVector::from_iterator(width, (0..width).map(|t| p.pruned[layout.element(o, t)] as f64));
        let energy = |e: &nalgebra::DVector<f64>| (g * e).dot(e);
        signal += energy(&w0);
        let err = energy(&(&w0 - &wp));
        before += err;
        let kept: Vec<usize> = (0..width).filter(|&t| wp[t] != 0.0).collect();
        if kept.is_empty() {
            after += err;
            continue;
        }
        let gw0 = g * &w0;
        let mut a = DMatrix::from_fn(kept.len(), kept.len(), |r, c| g[(kept[r], kept[c])]);
        let lambda = ridge * a.trace() / kept.len() as f64;
        for r in 0..kept.len() {
            a[(r, r)] += lambda.max(1e-12);
        }
        let rhs = nalgebra::DVector::from_iterator(kept.len(), kept.iter().map(|&t| gw0[t]));
        let Some(chol) = a.cholesky() else {
            after += err;
            continue;
        };
        let fit = chol.solve(&rhs);
        let mut w = nalgebra::DVector::zeros(width);
        for (r, &t) in kept.iter().enumerate() {
            w[t] = fit[r];
        }
        let refit_err = energy(&(&w0 - &w));
        if refit_err < err {
            after += refit_err;
            for (r, &t) in kept.iter().enumerate() {
                values[layout.element(o, t)] = fit[r] as f32;
            }
        } else {
            after += err;
        }
    }
    if signal <= 0.0 {
        return Err("its inputs carry no signal on the calibration data".into());
    }
    Ok(Refit { values, snr_before: snr_db(signal, before), snr_after: snr_db(signal, after) })
}
