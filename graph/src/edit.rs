//! Graph surgery that passes share, written once: moving some readers of a value to another
//! (inserting a node on an edge), adding an operation by op type, attributes and inputs, adding a
//! graph output (a tap), and declaring an input's shape.
//!
//! Everything here keeps the IR's invariants (uses and edges in sync, names unique); nothing here
//! checks whether a rewrite is *correct*: that is the job of [`crate::patch`], which every pass
//! uses to describe a rewrite before it is applied.

use crate::builder::value_info;
use crate::dtype::DataType;
use crate::ir::{Attribute, CAPTURE_SLOT, Graph, NodeId, OrderKey, ValueId};
use crate::onnx::{AttributeProto, NodeProto, type_proto};
use crate::shape::Shape;

/// One reader of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Use {
    /// Input `slot` of a node.
    Input { node: NodeId, slot: usize },
    /// A read from inside a node's subgraph (an outer-scope capture).
    Capture { node: NodeId },
    /// The graph output at this position.
    GraphOutput(usize),
}

impl Use {
    /// The node that reads, unless this is a graph output.
    pub fn node(self) -> Option<NodeId> {
        match self {
            Use::Input { node, .. } | Use::Capture { node } => Some(node),
            Use::GraphOutput(_) => None,
        }
    }
}

/// An operation to add, described by op type, attributes and inputs (see [`Graph::add_op`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpec {
    pub op_type: String,
    /// "" for the default ONNX domain.
    pub domain: String,
    /// The node name wanted; made unique when taken. Empty: named after the first output.
    pub name: String,
    pub attributes: Vec<AttributeProto>,
    pub inputs: Vec<Option<ValueId>>,
    /// Names wanted for the outputs (made unique); "" is an omitted optional output.
    pub outputs: Vec<String>,
}

impl OpSpec {
    /// An op of the default domain with one output named `output`, the node named the same.
    pub fn new(op_type: &str, inputs: &[ValueId], output: &str) -> OpSpec {
        OpSpec {
            op_type: op_type.to_string(),
            domain: String::new(),
            name: output.to_string(),
            attributes: Vec::new(),
            inputs: inputs.iter().map(|v| Some(*v)).collect(),
            outputs: vec![output.to_string()],
        }
    }

    pub fn attr(mut self, attr: AttributeProto) -> OpSpec {
        self.attributes.push(attr);
        self
    }

    pub fn named(mut self, name: &str) -> OpSpec {
        self.name = name.to_string();
        self
    }
}

impl Graph {
    /// Every reader of a value: node inputs, subgraph captures and graph outputs, in a stable order.
    pub fn uses_of(&self, v: ValueId) -> Vec<Use> {
        let mut uses: Vec<Use> = self
            .value(v)
            .uses()
            .iter()
            .map(|&(node, slot)| if slot == CAPTURE_SLOT { Use::Capture { node } } else { Use::Input { node, slot } })
            .collect();
        uses.extend(self.outputs.iter().enumerate().filter(|(_, (o, _))| *o == v).map(|(i, _)| Use::GraphOutput(i)));
        uses.sort();
        uses.dedup();
        uses
    }

    /// Makes the listed readers of `old` read `new` instead; other readers keep reading `old`.
    /// This is insert-on-edge: after adding `q = QuantizeLinear(x)`, redirecting only the uses of
    /// `x` that existed before keeps `q` itself reading `x` (redirecting *all* uses would rewire
    /// `q` onto its own output, a cycle). Uses that do not read `old` are ignored. A graph output
    /// keeps its name: `new` takes over the name of `old` when the output moves to it and `new`
    /// is not itself part of the interface.
    pub fn redirect_uses(&mut self, old: ValueId, new: ValueId, uses: &[Use]) {
        if old == new {
            return;
        }
        let mut moved_output = false;
        for u in uses {
            match *u {
                Use::Input { node, slot } => {
                    if self.node(node).and_then(|n| n.inputs().get(slot).copied().flatten()) == Some(old) {
                        self.set_input(node, slot, Some(new));
                    }
                }
                Use::Capture { node } => {
                    if self.node(node).is_some_and(|n| n.captures().contains(&old)) {
                        self.unlink(old, node, CAPTURE_SLOT);
                        if let Some(n) = self.node_mut(node) {
                            for c in n.captures.iter_mut().filter(|c| **c == old) {
                                *c = new;
                            }
                        }
                        self.link(new, node, CAPTURE_SLOT);
                    }
                }
                Use::GraphOutput(i) => {
                    if let Some((v, _)) = self.outputs.get_mut(i).filter(|(v, _)| *v == old) {
                        *v = new;
                        moved_output = true;
                    }
                }
            }
        }
        // Keep the graph's interface: the output name users see does not change.
        if moved_output
            && !self.is_graph_output(old)
            && !self.is_graph_input(old)
            && !self.is_graph_input(new)
            && self.outputs.iter().filter(|(v, _)| *v == new).count() == 1
        {
            let old_name = self.value(old).name.clone();
            let tmp = self.fresh_name(&format!("{old_name}__replaced"));
            self.rename_value(old, &tmp);
            self.rename_value(new, &old_name);
        }
    }

    /// A node name not used by any node of this graph, derived from `base`.
    pub fn fresh_node_name(&self, base: &str) -> String {
        if !base.is_empty() && !self.node_names.contains_key(base) {
            return base.to_string();
        }
        (1..).map(|i| format!("{base}_{i}")).find(|n| !self.node_names.contains_key(n)).unwrap_or_default()
    }

    /// Adds an operation. Its node name and output names are made unique (`conv3_dw`, then
    /// `conv3_dw_1`...); it is exported at `order` (use [`Graph::order_after`] to place it next to
    /// the node it replaces). Output types are left to shape inference.
    pub fn add_op(&mut self, spec: OpSpec, order: OrderKey) -> NodeId {
        let base = if spec.name.is_empty() { spec.outputs.first().cloned().unwrap_or_else(|| spec.op_type.clone()) } else { spec.name };
        let residual = NodeProto {
            name: Some(self.fresh_node_name(&base)),
            op_type: Some(spec.op_type),
            domain: (!spec.domain.is_empty()).then_some(spec.domain),
            ..Default::default()
        };
        let attributes = spec.attributes.into_iter().map(|proto| Attribute { proto, subgraphs: Vec::new(), in_g: false }).collect();
        let outputs: Vec<&str> = spec.outputs.iter().map(String::as_str).collect();
        self.add_node(residual, attributes, spec.inputs, &outputs, order)
    }

    /// Declares `v` a graph output (e.g. a tap on an intermediate value for calibration), typed
    /// from what is known of it. Returns `false` when it already is one or its element type is
    /// unknown (ONNX outputs are typed; run shape inference first).
    pub fn add_output(&mut self, v: ValueId) -> bool {
        if self.is_graph_output(v) {
            return false;
        }
        let value = self.value(v);
        let Some(dtype) = value.dtype else { return false };
        let info = value_info(&value.name, dtype, value.shape.as_ref());
        self.outputs.push((v, info));
        true
    }

    /// Declares the shape of graph input `v` (its element type kept, or `dtype` when it has none),
    /// and records it on the value. Returns whether the declaration changed.
    pub fn set_input_shape(&mut self, v: ValueId, shape: &Shape, dtype: DataType) -> bool {
        let Some(pos) = self.inputs.iter().position(|(i, _)| *i == v) else { return false };
        let name = self.value(v).name.clone();
        let info = &mut self.inputs[pos].1;
        let changed = match info.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            Some(type_proto::Value::TensorType(t)) => {
                let before = t.shape.as_ref().map(Shape::from_proto);
                t.shape = Some(shape.to_proto());
                before.as_ref() != Some(shape)
            }
            _ => {
                let fresh = value_info(&name, dtype, Some(shape));
                info.r#type = fresh.r#type;
                true
            }
        };
        self.value_mut(v).shape = Some(shape.clone());
        changed
    }
}
