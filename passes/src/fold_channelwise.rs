//! `fold_channelwise`: folds a channel-wise `Mul`, `Add`, `Sub` or `Div` by a constant into the
//! Conv, ConvTranspose or Gemm that feeds it.
//!
//! With `x` the layer's output and `c` a constant holding one value per output channel (or one
//! value in all), `x·c`, `x/c`, `x+c` and `x−c` are per-channel affine maps `x·s + t`
//! (`s = c, 1/c, 1, 1`; `t = 0, 0, c, −c`) that the layer absorbs (see [`crate::affine`]). This is
//! how a BatchNormalization written as Mul + Add (tract's canonical form, some exporters') folds.
//! **Exact** up to float rounding.
//!
//! Guards: the constant must broadcast along the channel axis only (shape `[C,1,1]`, `[1,C,1,1]`,
//! `[1]`...) so the output shape is unchanged; the layer's output must feed only this node; the
//! layer's weight and bias must not be shared; `c − x` and `c / x` are not affine in this sense
//! and are left alone.

use whittle_graph::{Graph, Model, NodeId, ValueId};

use crate::affine::{check_foldable, fold_into_layer, output_channels, per_channel_constant};
use crate::driver::{Match, rewrite_nodes};
use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};
use crate::rewrite::single_reader;

pub struct FoldChannelwise;

impl PassDef for FoldChannelwise {
    const NAME: &'static str = "fold_channelwise";
    const SUMMARY: &'static str = "Fold a channel-wise Mul/Add/Sub/Div by a constant into the Conv/ConvTranspose/Gemm before it";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        FoldChannelwise
    }
}

/// The layer's output and the per-channel scale and shift a node applies; `Ok(None)` when the
/// node is not a candidate at all, `Err` when it is one that cannot be folded.
type Fold = (ValueId, Vec<f64>, Vec<f64>);

fn match_node(g: &Graph, id: NodeId) -> Result<Option<Fold>, String> {
    let n = g.node(id).ok_or("removed")?;
    let op = n.op_type();
    if !n.domain().is_empty() || !matches!(op, "Mul" | "Add" | "Sub" | "Div") {
        return Ok(None);
    }
    let (Some(a), Some(b)) = (n.input(0), n.input(1)) else { return Ok(None) };
    let layer_of =
        |v: ValueId| g.value(v).producer().filter(|p| g.node(*p).is_some_and(|l| matches!(l.op_type(), "Conv" | "ConvTranspose" | "Gemm")));
    // The layer output must be the first operand for Sub and Div (c − x and c / x are not affine
    // per channel in the same way); Mul and Add commute.
    let (x, c) = match (layer_of(a), layer_of(b)) {
        (Some(_), _) if g.constant(b).is_some() => (a, b),
        (_, Some(_)) if g.constant(a).is_some() && matches!(op, "Mul" | "Add") => (b, a),
        _ => return Ok(None),
    };
    let layer = layer_of(x).expect("matched");
    if single_reader(g, x).is_none() {
        return Err("the layer's output is also read elsewhere".into());
    }
    check_foldable(g, layer)?;
    let channels = output_channels(g, layer)?;
    let layer_rank = g.value(x).shape.as_ref().map(|s| s.rank()).or_else(|| {
        let w = g.node(layer)?.input(1)?;
        Some(if g.node(layer)?.is("Gemm") { 2 } else { g.constant(w)?.dims().len() })
    });
    let rank = layer_rank.ok_or("the layer's output rank is unknown")?;
    let per_c = per_channel_constant(g.constant(c).expect("matched"), rank, 1, channels)?;
    let (scale, shift) = match op {
        "Mul" => (per_c, vec![0.0; channels]),
        "Div" => {
            if per_c.contains(&0.0) {
                return Err("division by a zero constant".into());
            }
            (per_c.iter().map(|v| 1.0 / v).collect(), vec![0.0; channels])
        }
        "Add" => (vec![1.0; channels], per_c),
        _ => (vec![1.0; channels], per_c.iter().map(|v| -v).collect()),
    };
    Ok(Some((x, scale, shift)))
}

impl Pass for FoldChannelwise {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        // Folding one node can make the next one foldable (conv → Mul → Add): the driver's
        // topological sweep sees them in that order.
        rewrite_nodes(&mut model.graph, &mut report, |g, id| match match_node(g, id) {
            Ok(None) => Match::Skip,
            Ok(Some((x, scale, shift))) => match fold_into_layer(g, id, x, &scale, &shift) {
                Ok(patch) => Match::Rewrite(patch),
                Err(why) => Match::Decline(why),
            },
            Err(why) => Match::Decline(why),
        })?;
        Ok(report)
    }
}
