//! Small matching helpers shared by passes (the rewrites themselves are
//! [`whittle_graph::patch::Patch`]es applied by [`crate::driver`]).

use whittle_graph::{Graph, NodeId, ValueId};

/// Whether a constant may be changed in place for `reader`: nothing else reads it (a weight shared
/// with another node must not change under that node) and it is not a graph input.
pub fn is_exclusive_constant(g: &Graph, v: ValueId, reader: NodeId) -> bool {
    g.constant(v).is_some() && g.value(v).uses().iter().all(|(n, _)| *n == reader) && !g.is_const_dependency(v)
}

/// The single reader of a value, if exactly one node reads it once and it is not a graph output.
pub fn single_reader(g: &Graph, v: ValueId) -> Option<(NodeId, usize)> {
    match g.value(v).uses() {
        [only] if !g.is_graph_output(v) && only.1 != usize::MAX => Some(*only),
        _ => None,
    }
}
