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

use whittle_graph::{Graph, Model, NodeId};

use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};
use crate::rewrite::{bypass, replace_blocker};

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

/// Why a node is not a no-op (`Err`), or `Ok` when it returns input 0 unchanged.
fn is_noop(g: &Graph, id: NodeId) -> Result<(), String> {
    let n = g.node(id).ok_or("removed")?;
    let input = n.input(0).ok_or("no input")?;
    let out = n.output(0).ok_or("no output")?;
    let (iv, ov) = (g.value(input), g.value(out));
    let same_shape = || match (&iv.shape, &ov.shape) {
        (Some(a), Some(b)) if a.concrete().is_some() && a == b => Ok(()),
        _ => Err("input and output shapes are not both known and equal".to_string()),
    };
    match n.op_type() {
        "Identity" => Ok(()),
        "Dropout" => {
            if n.output(1).is_some_and(|m| !g.value(m).uses().is_empty() || g.is_graph_output(m)) {
                return Err("its mask output is used".into());
            }
            match n.input(2) {
                None => Ok(()),
                Some(t) => match g.constant(t).and_then(|t| t.to_i64().ok()) {
                    Some(v) if v.iter().all(|&b| b == 0) => Ok(()),
                    _ => Err("training_mode is not a constant false".into()),
                },
            }
        }
        "Reshape" => same_shape(),
        "Cast" => match (iv.dtype, n.attr_int("to")) {
            (Some(dt), Some(to)) if dt.to_onnx() as i64 == to => Ok(()),
            (None, _) => Err("the input's element type is unknown".into()),
            _ => Err("it changes the element type".into()),
        },
        "Transpose" => {
            let perm = n.attr_ints("perm").map(|p| p.to_vec());
            let identity = match (perm, iv.shape.as_ref()) {
                (Some(p), _) => p.iter().enumerate().all(|(i, &d)| d == i as i64),
                // Without perm the axes are reversed: a no-op only up to rank 1.
                (None, Some(s)) => s.rank() <= 1,
                (None, None) => false,
            };
            if identity { Ok(()) } else { Err("its permutation moves axes".into()) }
        }
        _ => Err("not a candidate".into()),
    }
}

impl Pass for RemoveNoops {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        let candidates: Vec<NodeId> = g
            .topo_order()
            .map_err(|_| PassError("the graph has a cycle".into()))?
            .into_iter()
            .filter(|id| {
                g.node(*id).is_some_and(|n| {
                    n.domain().is_empty() && matches!(n.op_type(), "Identity" | "Dropout" | "Reshape" | "Cast" | "Transpose")
                })
            })
            .collect();
        for id in candidates {
            let (label, op) = (g.node_label(id), g.node(id).map(|n| n.op_type().to_string()).unwrap_or_default());
            match is_noop(g, id) {
                Ok(()) => {
                    let n = g.node(id).expect("candidate");
                    let (input, out) = (n.input(0).expect("checked"), n.output(0).expect("checked"));
                    if let Some(why) = replace_blocker(g, out, input) {
                        report.decline(label, op, why);
                    } else if bypass(g, id, 0, input) {
                        report.applied += 1;
                    }
                }
                Err(why) if op == "Identity" || op == "Dropout" || why.contains("unknown") => report.decline(label, op, why),
                Err(_) => {}
            }
        }
        Ok(report)
    }
}
