//! `cross_layer_equalization`: rescales the channels between two consecutive convolutions so
//! that each channel's weight range is the same in both (Nagel et al. 2019, "Data-Free
//! Quantization", section 4.1). Per-tensor weight scales then fit every channel, and per-channel
//! ones lose less to the next layer's input ranges.
//!
//! For `y = conv2(f(conv1(x)))` with `f` positively homogeneous (`f(x/s) = f(x)/s` for `s > 0`:
//! Relu, LeakyRelu, PRelu, Identity, Clip with min 0 and no max, or no `f` at all), dividing
//! conv1's output channel `i` (its filter `W1[i]` and bias `b1[i]`) by `s_i` and multiplying
//! conv2's weights reading input channel `i` (`W2[:, i]`, per group for grouped and depthwise
//! convolutions) by `s_i` leaves `y` unchanged. With `r1_i = max|W1[i]|` and
//! `r2_i = max|W2[:, i]|`, `s_i = sqrt(r1_i / r2_i)` makes both ranges `sqrt(r1_i · r2_i)`.
//! Chains are swept until the scales settle (a layer is the second of one pair and the first of
//! the next). **Exact** up to float rounding.
//!
//! Declined, with the reason: an activation that is not positively homogeneous between the two
//! (HardSwish, Clip(0, 6), Sigmoid...: `f(x/s) ≠ f(x)/s`), an intermediate value read by another
//! node too, shared or non-constant weights.

use std::collections::{BTreeMap, BTreeSet};

use whittle_graph::patch::Patch;
use whittle_graph::{Graph, Model, NodeId};

use crate::affine::{channel_ranges, check_foldable, fold_affine, scale_input_channels};
use crate::driver::topo_order;
use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};
use crate::rewrite::single_reader;

pub struct CrossLayerEqualization;

impl PassDef for CrossLayerEqualization {
    const NAME: &'static str = "cross_layer_equalization";
    const SUMMARY: &'static str =
        "Equalize the channel ranges of consecutive convolutions through Relu-like activations (exact; helps per-tensor INT8)";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        CrossLayerEqualization
    }
}

/// Sweeps over the chain at most this many times.
const MAX_SWEEPS: usize = 20;
/// Scales within this factor of 1 count as settled.
const SETTLED: f64 = 1e-3;

/// Two convolutions with a positively homogeneous activation (or nothing) between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    first: NodeId,
    act: Option<NodeId>,
    second: NodeId,
}

/// Ops that are not positively homogeneous, named in the decline reason when they sit between two
/// convolutions.
const NOT_HOMOGENEOUS: &[&str] =
    &["HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Exp"];

fn is_conv(g: &Graph, id: NodeId) -> bool {
    g.node(id).is_some_and(|n| n.is("Conv"))
}

/// Whether `f(x/s) = f(x)/s` for every `s > 0`.
fn positively_homogeneous(g: &Graph, act: NodeId) -> bool {
    let Some(n) = g.node(act) else { return false };
    match n.op_type() {
        _ if !n.domain().is_empty() => false,
        "Relu" | "LeakyRelu" | "PRelu" | "Identity" => true,
        // Clip(x, 0) without a max is Relu.
        "Clip" => {
            let min = n.input(1).and_then(|v| g.constant(v)).and_then(|t| t.to_f32().ok());
            min.is_some_and(|m| m.len() == 1 && m[0] == 0.0) && n.input(2).is_none()
        }
        _ => false,
    }
}

/// The pair ending at `second`: `Ok(None)` when its input does not come from a convolution
/// (possibly through one activation), `Err` with the reason when it does but cannot be equalized.
fn match_pair(g: &Graph, second: NodeId) -> Result<Option<Pair>, String> {
    let n = g.node(second).ok_or("removed")?;
    if !n.is("Conv") {
        return Ok(None);
    }
    let Some(x) = n.input(0) else { return Ok(None) };
    let Some(p) = g.value(x).producer() else { return Ok(None) };
    let (first, act) = if is_conv(g, p) {
        (p, None)
    } else {
        let Some(pn) = g.node(p) else { return Ok(None) };
        let Some(before) = pn.input(0).and_then(|v| g.value(v).producer()).filter(|&q| is_conv(g, q)) else { return Ok(None) };
        if !positively_homogeneous(g, p) {
            if NOT_HOMOGENEOUS.contains(&pn.op_type()) {
                return Err(format!(
                    "{} between {} and it is not positively homogeneous (f(x/s) ≠ f(x)/s): rescaling channels through it would change the output",
                    pn.op_type(),
                    g.node_label(before)
                ));
            }
            return Ok(None);
        }
        (before, Some(p))
    };
    let first_out = g.node(first).and_then(|f| f.output(0)).ok_or("no output")?;
    let next = act.unwrap_or(second);
    if single_reader(g, first_out) != Some((next, 0)) {
        return Err(format!("the output of {} is also read elsewhere (or is a graph output)", g.node_label(first)));
    }
    if act.is_some() && single_reader(g, x) != Some((second, 0)) {
        return Err(format!("the output of {} is also read elsewhere (or is a graph output)", g.node_label(p)));
    }
    check_foldable(g, first).map_err(|e| format!("{}: {e}", g.node_label(first)))?;
    check_foldable(g, second)?;
    Ok(Some(Pair { first, act, second }))
}

/// The equalizing scales of a pair: `sqrt(r1 / r2)` per channel (1 where either range is 0).
fn scales(g: &Graph, pair: Pair) -> Result<Vec<f64>, String> {
    let (r1, r2) = (channel_ranges(g, pair.first, true)?, channel_ranges(g, pair.second, false)?);
    if r1.len() != r2.len() {
        return Err(format!("{} output channels feed {} input channels", r1.len(), r2.len()));
    }
    Ok(r1.iter().zip(&r2).map(|(&a, &b)| if a > 0.0 && b > 0.0 { (a / b).sqrt() } else { 1.0 }).collect())
}

/// Largest over smallest nonzero filter range of a layer's output channels.
fn spread(g: &Graph, layer: NodeId) -> f64 {
    let r = channel_ranges(g, layer, true).unwrap_or_default();
    let nonzero = r.iter().copied().filter(|&v| v > 0.0);
    let (lo, hi) = nonzero.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > 0.0 { hi / lo } else { 1.0 }
}

fn label(g: &Graph, pair: Pair) -> String {
    match pair.act {
        Some(a) => format!("{} -> {} -> {}", g.node_label(pair.first), g.node(a).map_or("", |n| n.op_type()), g.node_label(pair.second)),
        None => format!("{} -> {}", g.node_label(pair.first), g.node_label(pair.second)),
    }
}

impl Pass for CrossLayerEqualization {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        let mut pairs = Vec::new();
        for id in topo_order(g)? {
            match match_pair(g, id) {
                Ok(Some(pair)) => pairs.push(pair),
                Ok(None) => {}
                Err(why) => report.decline(g.node_label(id), "Conv", why),
            }
        }
        let before: BTreeMap<Pair, f64> = pairs.iter().map(|&p| (p, spread(g, p.first))).collect();
        let (mut sweeps, mut changed, mut failed) = (0, BTreeSet::new(), BTreeMap::new());
        while sweeps < MAX_SWEEPS {
            sweeps += 1;
            let mut unsettled = false;
            for &pair in &pairs {
                if failed.contains_key(&pair) {
                    continue;
                }
                let s = match scales(g, pair) {
                    Ok(s) => s,
                    Err(why) => {
                        failed.insert(pair, why);
                        continue;
                    }
                };
                // Scales this close to 1 are left alone, so that a second run changes nothing.
                if s.iter().all(|v| v.ln().abs() < SETTLED) {
                    continue;
                }
                let mut patch = Patch::new(label(g, pair));
                let inverse: Vec<f64> = s.iter().map(|v| 1.0 / v).collect();
                let built = fold_affine(g, pair.first, &inverse, &vec![0.0; s.len()], &mut patch)
                    .and_then(|()| scale_input_channels(g, pair.second, &s, &mut patch))
                    .and_then(|()| patch.check(g).map_err(|e| e.0));
                match built {
                    Ok(()) => {
                        patch.apply(g);
                        changed.insert(pair);
                        unsettled = true;
                    }
                    Err(why) => {
                        failed.insert(pair, why);
                    }
                }
            }
            if !unsettled {
                break;
            }
        }
        for (&pair, &was) in &before {
            if let Some(why) = failed.get(&pair) {
                report.decline(g.node_label(pair.second), "Conv", why.clone());
            } else if changed.contains(&pair) {
                report.record(format!(
                    "{}: channels equalized, filter range spread of {} {was:.1}x -> {:.1}x",
                    label(g, pair),
                    g.node_label(pair.first),
                    spread(g, pair.first)
                ));
            }
        }
        if !changed.is_empty() {
            report.notes.push(format!("{} pairs equalized in {sweeps} sweeps", changed.len()));
        }
        Ok(report)
    }
}
