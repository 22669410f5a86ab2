//! `remove_noops`: removes operations that return their input unchanged.
//!
//! - `Identity`;
//! - `Dropout` in inference (no `training_mode` input, or a constant false one), when its mask
//!   output is unused: inference Dropout is the identity;
//! - `Reshape` whose output shape equals its input shape (both fully known);
//! - `Cast` to the element type the input already has;
//! - `Transpose` whose permutation is the identity.
//!
//! Readers of the output read the input instead. **Exact** (bit-identical outputs). A no-op whose
//! output is a graph output fed directly by a graph input is declined: removing it would rename the
//! model's interface.

use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{Graph, Model, NodeId};

use crate::driver::{Match, rewrite_nodes};
use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};

pub struct RemoveNoops;

impl PassDef for RemoveNoops {
    const NAME: &'static str = "remove_noops";
    const SUMMARY: &'static str = "Remove Identity, inference Dropout and no-op Reshape/Cast/Transpose";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        RemoveNoops
    }
}

/// Whether a candidate returns input 0 unchanged.
enum Noop {
    Yes,
    /// It computes something: not a no-op, nothing to report.
    No,
    /// It may be a no-op, but that cannot be shown (reported with the reason).
    Unproven(String),
}

/// Whether node `id` is a no-op (see the module doc).
fn is_noop(g: &Graph, id: NodeId) -> Noop {
    let Some(n) = g.node(id) else { return Noop::No };
    let (Some(input), Some(out)) = (n.input(0), n.output(0)) else { return Noop::Unproven("it has no input or no output".into()) };
    let (iv, ov) = (g.value(input), g.value(out));
    match n.op_type() {
        "Identity" => Noop::Yes,
        "Dropout" => {
            if n.output(1).is_some_and(|m| !g.value(m).uses().is_empty() || g.is_graph_output(m)) {
                return Noop::Unproven("its mask output is used".into());
            }
            match n.input(2) {
                None => Noop::Yes,
                Some(t) => match g.constant(t).and_then(|t| t.to_i64().ok()) {
                    Some(v) if v.iter().all(|&b| b == 0) => Noop::Yes,
                    _ => Noop::Unproven("training_mode is not a constant false".into()),
                },
            }
        }
        "Reshape" => match (&iv.shape, &ov.shape) {
            (Some(a), Some(b)) if a.concrete().is_some() && a == b => Noop::Yes,
            // Shapes that are not both known are common (dynamic batch): not reported.
            _ => Noop::No,
        },
        "Cast" => match (iv.dtype, n.attr_int("to")) {
            (Some(dt), Some(to)) if dt.to_onnx() as i64 == to => Noop::Yes,
            (None, _) => Noop::Unproven("the input's element type is unknown".into()),
            _ => Noop::No,
        },
        "Transpose" => {
            let identity = match (n.attr_ints("perm"), iv.shape.as_ref()) {
                (Some(p), _) => p.iter().enumerate().all(|(i, &d)| d == i as i64),
                // Without perm the axes are reversed: a no-op only up to rank 1.
                (None, Some(s)) => s.rank() <= 1,
                (None, None) => false,
            };
            if identity { Noop::Yes } else { Noop::No }
        }
        _ => Noop::No,
    }
}

/// The patch bypassing and removing a no-op.
fn bypass_patch(g: &Graph, id: NodeId) -> Option<Patch> {
    let n = g.node(id)?;
    let (input, out) = (n.input(0)?, n.output(0)?);
    let mut p = Patch::new(format!("{}: removed {}", g.node_label(id), n.op_type()));
    p.redirect_all(out, Wire::Value(input));
    p.remove_node(id);
    Some(p)
}

impl Pass for RemoveNoops {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        rewrite_nodes(&mut model.graph, &mut report, |g, id| {
            let candidate = g
                .node(id)
                .is_some_and(|n| n.domain().is_empty() && matches!(n.op_type(), "Identity" | "Dropout" | "Reshape" | "Cast" | "Transpose"));
            if !candidate {
                return Match::Skip;
            }
            match is_noop(g, id) {
                Noop::Yes => bypass_patch(g, id).map_or(Match::Skip, Match::Rewrite),
                Noop::No => Match::Skip,
                Noop::Unproven(why) => Match::Decline(why),
            }
        })?;
        Ok(report)
    }
}
