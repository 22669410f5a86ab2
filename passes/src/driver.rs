//! The one driver that applies rewrites: match on `&Graph`, get a [`Patch`] or a reason, check
//! the patch, apply it, record what changed.
//!
//! A pass writes only its rule (`Fn(&Graph, NodeId) -> Match`); the driver owns the topological
//! sweep, the cycle error, declines (the rule's own reasons and the patch check's), and the record
//! of what was applied ("bn3: folded into conv3"). Because a patch is checked before it touches
//! the graph, a rewrite is either applied whole or not at all.

use whittle_graph::patch::Patch;
use whittle_graph::{Graph, NodeId};

use crate::pass::{PassError, PassReport};

/// What a rule says about one node.
pub enum Match {
    /// Not a candidate: nothing to report.
    Skip,
    /// A candidate the rule cannot rewrite, with the reason (reported).
    Decline(String),
    /// The rewrite, as a patch.
    Rewrite(Patch),
}

/// The nodes in topological order, or the pass error naming a cycle.
pub fn topo_order(g: &Graph) -> Result<Vec<NodeId>, PassError> {
    g.topo_order().map_err(|cycle| {
        let names: Vec<String> = cycle.iter().map(|n| g.node_label(*n)).collect();
        PassError::new(format!("the graph has a cycle through {}", names.join(" -> ")))
    })
}

/// Visits every node once in topological order (taken before the first rewrite, so nodes a patch
/// adds are not visited; nodes a patch removes are skipped) and applies what `rule` returns.
pub fn rewrite_nodes(g: &mut Graph, report: &mut PassReport, mut rule: impl FnMut(&Graph, NodeId) -> Match) -> Result<(), PassError> {
    for id in topo_order(g)? {
        let Some(node) = g.node(id) else { continue };
        let (label, op) = (g.node_label(id), node.op_type().to_string());
        match rule(g, id) {
            Match::Skip => {}
            Match::Decline(why) => report.decline(label, op, why),
            Match::Rewrite(patch) => match patch.check(g) {
                Ok(()) => {
                    report.record(patch.description.clone());
                    patch.apply(g);
                }
                Err(e) => report.decline(label, op, e.0),
            },
        }
    }
    Ok(())
}
