//! Small matching helpers shared by passes (the rewrites themselves are
//! [`whittle_graph::patch::Patch`]es applied by [`crate::driver`]).

use whittle_graph::builder::{attr_int, attr_ints};
use whittle_graph::edit::OpSpec;
use whittle_graph::{Graph, Node, NodeId, ValueId};

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

/// A Conv like `conv` (its pads, strides, dilations, auto_pad) but of another `group` and
/// `kernel` shape, named `name`, writing `output`: a depthwise step beside or instead of it.
pub fn conv_like(conv: &Node, name: &str, output: &str, group: usize, kernel: &[i64]) -> OpSpec {
    let mut spec = OpSpec::new("Conv", &[], output).named(name);
    spec.attributes = conv
        .attributes
        .iter()
        .filter(|a| !matches!(a.name(), "group" | "kernel_shape"))
        .map(|a| a.proto.clone())
        .chain([attr_int("group", group as i64), attr_ints("kernel_shape", kernel)])
        .collect();
    spec
}
