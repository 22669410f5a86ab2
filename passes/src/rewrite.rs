//! Small rewrite helpers shared by passes (match first, then mutate with these).

use whittle_graph::{Graph, NodeId, ValueId};

/// Whether a constant may be changed in place for `reader`: nothing else reads it (a weight shared
/// with another node must not change under that node) and it is not a graph input.
pub fn is_exclusive_constant(g: &Graph, v: ValueId, reader: NodeId) -> bool {
    g.constant(v).is_some() && g.value(v).uses().iter().all(|(n, _)| *n == reader) && !g.is_const_dependency(v)
}

/// Why `old` cannot be replaced by `new` everywhere, if it cannot.
pub fn replace_blocker(g: &Graph, old: ValueId, new: ValueId) -> Option<&'static str> {
    if g.is_graph_output(old) && (g.is_graph_input(new) || g.is_graph_output(new)) {
        return Some(
            "its output is a graph output and its input is a graph input or output: removing it would rename the model's interface",
        );
    }
    None
}

/// Removes `node`, making the readers of its output `out_slot` read `replacement` instead.
/// Returns `false` (nothing changed) when [`replace_blocker`] objects.
pub fn bypass(g: &mut Graph, node: NodeId, out_slot: usize, replacement: ValueId) -> bool {
    let Some(out) = g.node(node).and_then(|n| n.output(out_slot)) else { return false };
    if replace_blocker(g, out, replacement).is_some() {
        return false;
    }
    g.replace_all_uses(out, replacement);
    let inputs: Vec<ValueId> = g.node(node).map(|n| n.inputs().iter().flatten().copied().collect()).unwrap_or_default();
    g.remove_node(node);
    for v in inputs {
        g.remove_value_if_unused(v);
    }
    true
}

/// The single reader of a value, if exactly one node reads it once and it is not a graph output.
pub fn single_reader(g: &Graph, v: ValueId) -> Option<(NodeId, usize)> {
    match g.value(v).uses() {
        [only] if !g.is_graph_output(v) && only.1 != usize::MAX => Some(*only),
        _ => None,
    }
}
