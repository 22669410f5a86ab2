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

/// A refit layer: its new weights (and bias, for [`refit_readers`] with a bias) and its output
/// SNR (signal over error energy) before and after, dB.
pub struct Refit {
    pub values: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub snr_before: f64,
    pub snr_after: f64,
}

/// How a layer's weight elements map to rows of inputs.
#[derive(Clone, Debug)]
enum Layout {
    /// Conv `[C_out, C_in/g, k...]`: row `o` is contiguous, `C_in/g·k` inputs of group
    /// `o / (C_out/g)`; the tap yields the `C_in·k` unfolded channels.
    Conv { c_out: usize, width: usize, groups: usize, kernel: usize },
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
    /// Columns of one input channel in a row: a Conv's kernel positions, one feature otherwise.
    fn per_channel(&self) -> usize {
        match self {
            Layout::Conv { kernel, .. } => *kernel,
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

fn layout_of(model: &Model, node: NodeId, dims: &[i64]) -> Result<Layout, String> {
    let n = model.graph.node(node).ok_or("removed")?;
    let d: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    match n.op_type() {
        "Conv" if d.len() >= 3 => {
            let groups = n.attr_int("group").unwrap_or(1).max(1) as usize;
            Ok(Layout::Conv { c_out: d[0], width: d[1..].iter().product(), groups, kernel: d[2..].iter().product() })
        }
        "Gemm" if d.len() == 2 => {
            let trans_b = n.attr_int("transB").unwrap_or(0) != 0;
            let (k, nn) = if trans_b { (d[1], d[0]) } else { (d[0], d[1]) };
            Ok(Layout::Dense { k, n: nn, trans_b, trans_a: n.attr_int("transA").unwrap_or(0) != 0 })
        }
        "MatMul" if d.len() == 2 => Ok(Layout::Dense { k: d[0], n: d[1], trans_b: false, trans_a: false }),
        op => Err(format!("reconstruction handles Conv, Gemm and 2-D MatMul weights, not {op} {dims:?}")),
    }
}

/// Adds beside `conv` a Conv of group `c_in` with one-hot weights `[c_in·k, 1, kernel]` and the
/// layer's pads, strides and dilations, reading `input`: its `c_in·k` output channels (channel
/// major) are every input patch the layer's kernel sees, so the runtime does the unfolding.
/// Returns the op's index in `patch`.
fn unfolding_tap(patch: &mut Patch, conv: &whittle_graph::Node, input: Wire, c_in: usize, kernel: &[i64], name: &str) -> usize {
    let k: usize = kernel.iter().map(|&d| d as usize).product();
    let mut onehot = vec![0f32; c_in * k * k];
    for c in 0..c_in {
        for q in 0..k {
            onehot[(c * k + q) * k + q] = 1.0;
        }
    }
    let dims = [vec![(c_in * k) as i64, 1], kernel.to_vec()].concat();
    let w = patch.add_constant(&format!("{name}_w"), Tensor::from_f32("", &dims, &onehot));
    let spec = crate::rewrite::conv_like(conv, name, name, c_in, kernel);
    patch.add_op(spec, vec![input, w], conv.order)
}

/// Adds one sample's input rows of a layer to its accumulator.
type RowSink<A> = dyn Fn(&Layout, &mut A, &DMatrix<f64>) -> Result<(), MeasureError> + Sync;
/// A layer's layout, accumulator and rows seen, or why it has no layout.
type Streamed<A> = Result<(Layout, A, usize), String>;

/// Streams the input rows of every layer of `layers` (node and weight dims) with a known
/// layout: a Conv's unfolded patches (through an [`unfolding_tap`] beside it), a Gemm's or
/// MatMul's feature vectors, at most `max_rows` rows of each sample, evenly spaced. Each sample's
/// rows go to `add(layout, accumulator, rows)` with the layer's accumulator (`init(layout)`;
/// layers run in parallel). Returns per layer its accumulator and the rows seen, or why it has
/// no layout.
fn stream_input_rows<A: Send>(
    model: &Model,
    layers: &[(NodeId, &[i64])],
    measure: &dyn Measure,
    max_rows: usize,
    init: &dyn Fn(&Layout) -> A,
    add: &RowSink<A>,
) -> Result<Vec<Streamed<A>>, PassError> {
    let layouts: Vec<Result<Layout, String>> = layers.iter().map(|&(node, dims)| layout_of(model, node, dims)).collect();
    // The tapped model: a one-hot unfolding Conv beside each Conv layer.
    let mut tapped = model.clone();
    let mut patch = Patch::new("reconstruction taps");
    let g = &model.graph;
    let mut taps = Vec::new();
    for (&(node, dims), layout) in layers.iter().zip(&layouts) {
        let n = g.node(node).expect("planned");
        match layout {
            Ok(Layout::Conv { .. }) => {
                let input = n.input(0).expect("a Conv has an input");
                let c_in = dims[1] as usize * n.attr_int("group").unwrap_or(1).max(1) as usize;
                let name = g.fresh_name(&format!("{}_reconstruct_tap", g.node_label(node)));
                taps.push(Some(unfolding_tap(&mut patch, n, Wire::Value(input), c_in, &dims[2..], &name)));
            }
            _ => taps.push(None),
        }
    }
    patch.check(&tapped.graph).map_err(|e| PassError::new(format!("reconstruction taps: {e}")))?;
    let added = patch.apply(&mut tapped.graph);
    // The value streamed per layer: its tap's output (Conv) or its data input (Gemm, MatMul).
    let mut names = Vec::new();
    for ((&(node, _), layout), tap) in layers.iter().zip(&layouts).zip(&taps) {
        if layout.is_err() {
            continue;
        }
        let name = match tap {
            Some(i) => {
                let out = tapped.graph.node(added[*i]).and_then(|n| n.output(0)).expect("a Conv has an output");
                tapped.graph.value_mut(out).dtype = Some(DataType::Float);
                tapped.graph.value(out).name.clone()
            }
            None => g.value(g.node(node).and_then(|n| n.input(0)).expect("a data input")).name.clone(),
        };
        names.push(name);
    }
    let active: Vec<usize> = (0..layers.len()).filter(|&i| layouts[i].is_ok()).collect();
    let mut rows_seen = vec![0usize; active.len()];
    let mut accs: Vec<A> = active.iter().map(|&i| init(layouts[i].as_ref().expect("active"))).collect();
    if !active.is_empty() {
        measure.log(&format!("reconstruction: streaming the inputs of {} layers", active.len()));
        measure
            .stream(&tapped, &names, &mut |_, values| {
                use rayon::prelude::*;
                accs.par_iter_mut().zip(rows_seen.par_iter_mut()).zip(active.par_iter()).zip(values.par_iter()).try_for_each(
                    |(((acc, seen), &i), x)| {
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
                        if rows.ncols() != layout.width() * layout.groups() {
                            return Err(MeasureError(format!(
                                "{} input columns, the weight reads {}",
                                rows.ncols(),
                                layout.width() * layout.groups()
                            )));
                        }
                        *seen += rows.nrows();
                        add(layout, acc, &rows)
                    },
                )
            })
            .map_err(|e| PassError::new(format!("reconstruction: {e}")))?;
    }
    let mut streamed = accs.into_iter().zip(rows_seen);
    Ok(layouts
        .into_iter()
        .map(|layout| {
            let layout = layout?;
            let (acc, rows) = streamed.next().expect("one accumulator per active layer");
            Ok((layout, acc, rows))
        })
        .collect())
}

/// Adds the Gram matrix of each block of `width` consecutive columns of `rows` to its matrix in
/// `grams` (block `b`: columns `b·width ..`).
fn add_block_grams(grams: &mut [DMatrix<f64>], rows: &DMatrix<f64>, width: usize) {
    for (b, gm) in grams.iter_mut().enumerate() {
        let block = rows.columns(b * width, width);
        gm.gemm_tr(1.0, &block, &block, 1.0);
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
    let nodes: Vec<(NodeId, &[i64])> = layers.iter().map(|p| (p.node, p.dims)).collect();
    // One Gram per group of the layer's inputs.
    let init = |l: &Layout| vec![DMatrix::<f64>::zeros(l.width(), l.width()); l.groups()];
    let add = |l: &Layout, grams: &mut Vec<DMatrix<f64>>, rows: &DMatrix<f64>| {
        add_block_grams(grams, rows, l.width());
        Ok(())
    };
    let streamed = stream_input_rows(model, &nodes, measure, max_rows, &init, &add)?;
    Ok(streamed
        .into_iter()
        .zip(layers)
        .map(|(answer, p)| {
            let (layout, gram, rows) = answer?;
            // Fewer rows than a few per unknown fit the calibration samples, not the layer.
            if rows < MIN_ROWS_PER_INPUT * layout.width() {
                return Err(format!(
                    "{rows} calibration input rows for {} inputs per output (at least {MIN_ROWS_PER_INPUT} per input are needed; give more calibration samples)",
                    layout.width()
                ));
            }
            solve(&layout, p, &gram, ridge)
        })
        .collect())
}

/// For every layer of `layers` (node, weight dims and values): per input channel (a Conv's input
/// channel, a Gemm's or MatMul's input feature), the mean squared change of the layer's outputs
/// when that input alone is zeroed, per input row: `Σ_o w_{o,c}ᵀ G_c w_{o,c} / rows`, where
/// `w_{o,c}` is output `o`'s kernel over channel `c` and `G_c` the Gram matrix of channel `c`'s
/// input patches (the layer's own pads, strides and dilations), streamed from the calibration
/// data. Exact on those samples (up to the `max_rows` subsampling), not a norm of the weights.
pub fn input_channel_output_energy(
    model: &Model,
    layers: &[(NodeId, &[i64], &[f32])],
    measure: &dyn Measure,
    max_rows: usize,
) -> Result<Vec<Result<Vec<f64>, String>>, PassError> {
    let nodes: Vec<(NodeId, &[i64])> = layers.iter().map(|&(n, d, _)| (n, d)).collect();
    // One k×k Gram per input channel, k its columns in a row (kernel positions, or one feature).
    let init = |l: &Layout| vec![DMatrix::<f64>::zeros(l.per_channel(), l.per_channel()); l.width() * l.groups() / l.per_channel()];
    let add = |l: &Layout, grams: &mut Vec<DMatrix<f64>>, rows: &DMatrix<f64>| {
        add_block_grams(grams, rows, l.per_channel());
        Ok(())
    };
    let streamed = stream_input_rows(model, &nodes, measure, max_rows, &init, &add)?;
    Ok(streamed
        .into_iter()
        .zip(layers)
        .map(|(answer, &(_, _, weights))| {
            let (layout, grams, rows) = answer?;
            if rows == 0 {
                return Err("no input rows were measured".to_string());
            }
            let k = layout.per_channel();
            let per_group = grams.len() / layout.groups().max(1);
            let mut energy = vec![0f64; grams.len()];
            let mut w = vec![0f64; k];
            for o in 0..layout.rows() {
                let first = layout.group_of(o) * per_group;
                for local in 0..per_group {
                    // wᵀ G w over the channel's k kernel positions, without allocating per pair.
                    w.iter_mut().enumerate().for_each(|(q, v)| *v = weights[layout.element(o, local * k + q)] as f64);
                    let g = &grams[first + local];
                    energy[first + local] += (0..k).map(|q| w[q] * (0..k).map(|r| g[(q, r)] * w[r]).sum::<f64>()).sum::<f64>();
                }
            }
            Ok(energy.into_iter().map(|e| e / rows as f64).collect())
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
    Ok(Refit { values, bias: None, snr_before: snr_db(signal, before), snr_after: snr_db(signal, after) })
}

/// A layer whose input channels were pruned, to refit on the pruned model's inputs.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    /// The layer (the same id in the original and the candidate model).
    pub node: NodeId,
    /// The original weight's dims and values.
    pub dims: &'a [i64],
    pub original: &'a [f32],
    /// Input channels (Conv) or features (Gemm, MatMul) kept, in original indices.
    pub kept: &'a [usize],
    /// The original bias, to be refit with the weights (`None`: no bias is fitted).
    pub bias: Option<&'a [f32]>,
}

/// `model` with a copy of `candidate`'s operations beside its own, reading the same graph inputs
/// (values renamed `twin/...`): one run computes both, so statistics pairing the two models'
/// values come sample by sample. Returns the twin and, for every value of `candidate`, its value
/// in the twin.
pub fn twin(
    model: &Model,
    candidate: &Model,
) -> Result<(Model, std::collections::HashMap<whittle_graph::ValueId, whittle_graph::ValueId>), String> {
    use std::collections::HashMap;
    use whittle_graph::edit::OpSpec;
    let (g, c) = (&model.graph, &candidate.graph);
    let mut twin = model.clone();
    let mut patch = Patch::new("twin");
    let mut wires: HashMap<whittle_graph::ValueId, Wire> = HashMap::new();
    let mut added: Vec<(whittle_graph::ValueId, usize, usize)> = Vec::new();
    let order = c.topo_order().map_err(|_| "the candidate has a cycle".to_string())?;
    for (k, id) in order.iter().enumerate() {
        let n = c.node(*id).ok_or("gone")?;
        if n.attributes.iter().any(|a| !a.subgraphs.is_empty()) || !n.captures().is_empty() {
            return Err(format!("{} has a subgraph", c.node_label(*id)));
        }
        let mut inputs = Vec::new();
        for v in n.inputs() {
            let Some(v) = *v else {
                inputs.push(None);
                continue;
            };
            let wire = match wires.get(&v) {
                Some(w) => *w,
                None if c.constant(v).is_some() => {
                    let w = patch.add_constant(&format!("twin/{}", c.value(v).name), c.constant(v).expect("constant").clone());
                    wires.insert(v, w);
                    w
                }
                None => {
                    let name = &c.value(v).name;
                    Wire::Value(
                        g.value_by_name(name)
                            .filter(|o| g.is_graph_input(*o))
                            .ok_or_else(|| format!("'{name}' is not a graph input of both"))?,
                    )
                }
            };
            inputs.push(Some(wire));
        }
        let outputs: Vec<String> = n.outputs().iter().map(|o| o.map(|o| format!("twin/{}", c.value(o).name)).unwrap_or_default()).collect();
        let spec = OpSpec {
            op_type: n.op_type().to_string(),
            domain: n.domain().to_string(),
            name: format!("twin/{}", n.name()),
            attributes: n.attributes.iter().map(|a| a.proto.clone()).collect(),
            inputs: Vec::new(),
            outputs,
        };
        let op = patch.add_op_optional(spec, inputs, whittle_graph::OrderKey { major: u64::MAX / 2 + k as u64, minor: 0 });
        for (slot, o) in n.outputs().iter().enumerate() {
            if let Some(o) = o {
                wires.insert(*o, Wire::output(op, slot));
                added.push((*o, op, slot));
            }
        }
    }
    patch.check(&twin.graph).map_err(|e| format!("twin: {e}"))?;
    let ops = patch.apply(&mut twin.graph);
    let map = added.into_iter().filter_map(|(v, op, slot)| Some((v, twin.graph.node(ops[op])?.output(slot)?))).collect();
    let shapes: Vec<(String, Vec<i64>)> =
        g.runtime_inputs().filter_map(|v| Some((g.value(v).name.clone(), g.value(v).shape.as_ref()?.concrete()?))).collect();
    whittle_graph::shape::infer::infer_shapes(&mut twin, &whittle_graph::shape::infer::InferOptions { input_shapes: shapes })
        .map_err(|e| format!("twin: {e}"))?;
    Ok((twin, map))
}

/// Refits layers whose input channels were pruned so that, fed what the pruned `candidate`
/// computes, they give the original model's outputs (He et al. 2017; ThiNet): for an output row
/// with original weights `w₀` (bias included, against a constant 1), inputs `x` in the original
/// and `x'` (the kept columns) in the candidate,
///
/// `w = argmin Σ (x'ᵀ w − xᵀ w₀)² = (G' + λI)⁻¹ C w₀`,  `G' = Σ x' x'ᵀ`, `C = Σ x' xᵀ`,
///
/// streamed from one run of the [`twin`] model per sample. The error of the candidate's own
/// (unfitted) weights and of the refit are reported as output SNRs against the original layer's
/// output; a row keeps its weights where the refit does not lower the error. Returns, per
/// layer, the refit in the original weight's shape (removed inputs zero) or why it was not made.
pub fn refit_readers(
    model: &Model,
    candidate: &Model,
    readers: &[Reader<'_>],
    measure: &dyn Measure,
    ridge: f64,
    max_rows: usize,
) -> Result<Vec<Result<Refit, String>>, PassError> {
    let (mut tw, map) = twin(model, candidate).map_err(PassError::new)?;
    let g = &model.graph;
    let layouts: Vec<Result<Layout, String>> = readers
        .iter()
        .map(|r| match layout_of(model, r.node, r.dims)? {
            Layout::Conv { groups, .. } if groups > 1 => Err("a grouped convolution".to_string()),
            l => Ok(l),
        })
        .collect();
    // Per reader: the streamed value in the original and in the candidate copy.
    let mut patch = Patch::new("reconstruction taps");
    let mut taps: Vec<Option<(Wire, Wire)>> = Vec::new();
    for (r, layout) in readers.iter().zip(&layouts) {
        let n = g.node(r.node).expect("a reader");
        let input = n.input(0).expect("a data input");
        let cand_input = candidate.graph.node(r.node).and_then(|c| c.input(0)).and_then(|v| map.get(&v).copied());
        let Some(cand_input) = cand_input else {
            taps.push(None);
            continue;
        };
        match layout {
            Ok(Layout::Conv { .. }) => {
                let mut tap = |input: whittle_graph::ValueId, c_in: usize| {
                    let name = tw.graph.fresh_name(&format!("{}_reconstruct_tap", tw.graph.value(input).name));
                    Wire::output(unfolding_tap(&mut patch, n, Wire::Value(input), c_in, &r.dims[2..], &name), 0)
                };
                let (a, b) = (tap(input, r.dims[1] as usize), tap(cand_input, r.kept.len()));
                taps.push(Some((a, b)));
            }
            Ok(_) => taps.push(Some((Wire::Value(input), Wire::Value(cand_input)))),
            Err(_) => taps.push(None),
        }
    }
    patch.check(&tw.graph).map_err(|e| PassError::new(format!("reconstruction taps: {e}")))?;
    let ops = patch.apply(&mut tw.graph);
    let resolve = |w: Wire, tw: &Model| -> whittle_graph::ValueId {
        match w {
            Wire::Value(v) => v,
            Wire::Output { op, slot } => tw.graph.node(ops[op]).and_then(|n| n.output(slot)).expect("a tap"),
            Wire::Constant(_) => unreachable!("taps are values"),
        }
    };
    let mut names = Vec::new();
    let mut active = Vec::new();
    let mut tapped = Vec::new();
    for (i, t) in taps.iter().enumerate() {
        let Some((a, b)) = t else { continue };
        for w in [*a, *b] {
            let v = resolve(w, &tw);
            tw.graph.value_mut(v).dtype = Some(DataType::Float);
            names.push(tw.graph.value(v).name.clone());
            tapped.push(v);
        }
        active.push(i);
    }
    // Only what the taps need is run: the taps become the outputs, the rest is dead code.
    tw.graph.output_infos_mut().clear();
    for v in tapped {
        tw.graph.add_output(v);
    }
    crate::pass::Pass::run(&crate::dead_code::DeadCode, &mut tw, &crate::pass::PassContext::default())?;
    // Columns of the candidate's input in the original's (a Conv's unfolded taps: channel-major).
    let columns: Vec<Vec<usize>> = readers
        .iter()
        .zip(&layouts)
        .map(|(r, l)| match l {
            Ok(Layout::Conv { .. }) => {
                let k: usize = r.dims[2..].iter().product::<i64>() as usize;
                r.kept.iter().flat_map(|&c| (0..k).map(move |q| c * k + q)).collect()
            }
            _ => r.kept.to_vec(),
        })
        .collect();
    struct Sums {
        g_cand: DMatrix<f64>,
        cross: DMatrix<f64>,
        g_orig: DMatrix<f64>,
        rows: usize,
    }
    let ones = |i: usize| usize::from(readers[i].bias.is_some());
    let mut sums: Vec<Sums> = active
        .iter()
        .map(|&i| {
            let (w, wc) = (layouts[i].as_ref().expect("active").width() + ones(i), columns[i].len() + ones(i));
            Sums { g_cand: DMatrix::zeros(wc, wc), cross: DMatrix::zeros(wc, w), g_orig: DMatrix::zeros(w, w), rows: 0 }
        })
        .collect();
    if !active.is_empty() {
        measure.log(&format!("reconstruction: streaming the inputs of {} layers in the original and the pruned model", active.len()));
        measure
            .stream(&tw, &names, &mut |_, values| {
                use rayon::prelude::*;
                sums.par_iter_mut().zip(active.par_iter()).zip(values.par_chunks(2)).try_for_each(|((sum, &i), pair)| {
                    let layout = layouts[i].as_ref().expect("active");
                    let to_rows = |x: &ndarray::ArrayD<f32>| -> Result<DMatrix<f64>, MeasureError> {
                        let positions = |rows: usize| rows.div_ceil(max_rows.max(1));
                        let with_ones = readers[i].bias.is_some();
                        match layout {
                            Layout::Conv { .. } => {
                                let pixels: usize = x.shape().iter().skip(2).product::<usize>() * x.shape()[0];
                                channel_rows(x, with_ones, positions(pixels))
                            }
                            Layout::Dense { trans_a, k, .. } => {
                                let count = x.len() / k.max(&1);
                                let r = feature_rows(x, *trans_a, positions(count))?;
                                let n = r.ncols();
                                Ok(if with_ones { r.insert_column(n, 1.0) } else { r })
                            }
                        }
                    };
                    let (x, xc) = (to_rows(&pair[0])?, to_rows(&pair[1])?);
                    if x.nrows() != xc.nrows() || x.ncols() != sum.g_orig.ncols() || xc.ncols() != sum.g_cand.ncols() {
                        return Err(MeasureError(format!(
                            "the inputs of {} do not line up ({}x{} and {}x{})",
                            g.node_label(readers[i].node),
                            x.nrows(),
                            x.ncols(),
                            xc.nrows(),
                            xc.ncols()
                        )));
                    }
                    sum.rows += x.nrows();
                    sum.g_cand.gemm_tr(1.0, &xc, &xc, 1.0);
                    sum.cross.gemm_tr(1.0, &xc, &x, 1.0);
                    sum.g_orig.gemm_tr(1.0, &x, &x, 1.0);
                    Ok(())
                })
            })
            .map_err(|e| PassError::new(format!("reconstruction: {e}")))?;
    }
    let mut sums = active.iter().copied().zip(sums).collect::<std::collections::HashMap<usize, Sums>>();
    Ok((0..readers.len())
        .map(|i| {
            let layout = layouts[i].as_ref().map_err(Clone::clone)?;
            let sum = sums.remove(&i).ok_or("its input is not in the pruned model")?;
            let kept = columns[i].len() + ones(i);
            if sum.rows < MIN_ROWS_PER_INPUT * kept {
                return Err(format!(
                    "{} calibration input rows for {kept} inputs per output (at least {MIN_ROWS_PER_INPUT} per input are needed; give more calibration samples)",
                    sum.rows
                ));
            }
            Ok(solve_readers(layout, &readers[i], &columns[i], &sum.g_cand, &sum.cross, &sum.g_orig, ridge))
        })
        .collect())
}

/// The row-by-row solve of [`refit_readers`].
fn solve_readers(
    layout: &Layout,
    r: &Reader<'_>,
    columns: &[usize],
    gc: &DMatrix<f64>,
    cross: &DMatrix<f64>,
    go: &DMatrix<f64>,
    ridge: f64,
) -> Refit {
    let width = layout.width();
    let with_bias = r.bias.is_some();
    let (w_full, w_kept) = (width + usize::from(with_bias), columns.len() + usize::from(with_bias));
    let mut a = gc.clone();
    let lambda = (ridge * a.trace() / w_kept.max(1) as f64).max(1e-12);
    for d in 0..w_kept {
        a[(d, d)] += lambda;
    }
    let chol = a.cholesky();
    let mut values = vec![0f32; r.original.len()];
    let mut bias = r.bias.map(<[f32]>::to_vec);
    let (mut signal, mut before, mut after) = (0.0, 0.0, 0.0);
    for o in 0..layout.rows() {
        let w0 = nalgebra::DVector::from_iterator(
            w_full,
            (0..w_full).map(|t| if t < width { r.original[layout.element(o, t)] as f64 } else { r.bias.map_or(0.0, |b| b[o] as f64) }),
        );
        // The candidate's own weights: the original's at the kept columns.
        let wp = nalgebra::DVector::from_iterator(w_kept, (0..w_kept).map(|j| if j < columns.len() { w0[columns[j]] } else { w0[width] }));
        let cw0 = cross * &w0;
        let s = (go * &w0).dot(&w0);
        let err = |w: &nalgebra::DVector<f64>| ((gc * w).dot(w) - 2.0 * w.dot(&cw0) + s).max(0.0);
        signal += s;
        let e0 = err(&wp);
        before += e0;
        let fit = chol.as_ref().map(|c| c.solve(&cw0));
        let chosen = match fit {
            Some(f) if err(&f) < e0 => {
                after += err(&f);
                f
            }
            _ => {
                after += e0;
                wp
            }
        };
        for (j, &col) in columns.iter().enumerate() {
            values[layout.element(o, col)] = chosen[j] as f32;
        }
        if let Some(b) = bias.as_mut() {
            b[o] = chosen[columns.len()] as f32;
        }
    }
    Refit { values, bias, snr_before: snr_db(signal, before), snr_after: snr_db(signal, after) }
}
