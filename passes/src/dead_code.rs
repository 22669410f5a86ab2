//! `dead_code`: removes operations whose outputs nobody reads, and constants nobody reads.
//!
//! A node is dead when none of its outputs is a graph output or is read by a live node (or by a
//! subgraph capture). ONNX operators are side-effect free, so removing dead nodes never changes an
//! output. **Exact.** `value_info` entries of removed values go with them.

use whittle_graph::Model;
use whittle_graph::patch::remove_node_and_orphans;

use crate::driver::topo_order;

use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};

pub struct DeadCode;

impl PassDef for DeadCode {
    const NAME: &'static str = "dead_code";
    const SUMMARY: &'static str = "Remove operations and constants whose results nobody reads";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        DeadCode
    }
}

impl Pass for DeadCode {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let mut report = PassReport::default();
        // Reverse topological order: a node's readers are visited (and maybe removed) first.
        let mut order = topo_order(g)?;
        order.reverse();
        for id in order {
            let Some(n) = g.node(id) else { continue };
            let live = n.outputs().iter().flatten().any(|v| g.is_graph_output(*v) || !g.value(*v).uses().is_empty());
            if !live {
                remove_node_and_orphans(g, id);
                report.applied += 1;
            }
        }
        let unused: Vec<_> = g.value_ids().filter(|v| g.value(*v).constant().is_some()).collect();
        for v in unused {
            if g.remove_value_if_unused(v) {
                report.applied += 1;
            }
        }
        Ok(report)
    }
}
