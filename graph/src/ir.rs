//! The graph IR: operations on a petgraph `StableGraph`, values (the tensors flowing between them)
//! in an arena, constants as first-class values.
//!
//! Design rules:
//! - No petgraph index leaks out. [`NodeId`] pairs the slot with a serial number that is never
//!   reused, so an id kept across a mutation can never silently name a different node: a stale id
//!   is rejected by [`Graph::node`] (it returns `None`).
//! - A value is defined exactly once: by a graph input, an operation output, a constant (whatever
//!   the file used: initializer, `Constant` node or `ConstantOfShape` of a constant shape), a
//!   sparse initializer, or (in subgraphs) a capture of an outer-scope value.
//! - Whatever the IR does not interpret is kept verbatim ("residual" protos), so an untouched model
//!   exports back unchanged. Node and initializer order is kept as an [`OrderKey`]; export emits a
//!   topological order that follows the keys, which reproduces the file's order exactly when the
//!   graph was not changed.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;

use crate::dtype::DataType;
use crate::onnx::{AttributeProto, GraphProto, NodeProto, ValueInfoProto};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// A node (operation) of a [`Graph`]. Stable across mutations of other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    serial: u32,
    slot: u32,
}

/// A value (tensor) of a [`Graph`]. Values are never reused, so an id is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Position of a node (or Constant node, or initializer) in the file. Nodes a pass adds take the
/// key of the node they replace with a larger `minor`, so they are emitted next to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKey {
    pub major: u64,
    pub minor: u32,
}

/// An attribute of a node. `proto` keeps every field but the subgraphs, which are imported into
/// the IR (`subgraphs`: one for `GRAPH`, all of them for `GRAPHS`).
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub proto: AttributeProto,
    pub subgraphs: Vec<Graph>,
    /// Whether the first subgraph was stored in the single-graph field `g` (else all are `graphs`).
    pub in_g: bool,
}

impl Attribute {
    pub fn name(&self) -> &str {
        self.proto.name.as_deref().unwrap_or("")
    }
}

/// An operation. Inputs may be absent (an empty name in ONNX: an omitted optional input).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    serial: u32,
    /// Everything but inputs, outputs and attributes: name, op type, domain, overload, doc string,
    /// metadata, device configurations; presence of each field is kept.
    pub residual: NodeProto,
    pub attributes: Vec<Attribute>,
    pub(crate) inputs: Vec<Option<ValueId>>,
    pub(crate) outputs: Vec<Option<ValueId>>,
    /// Outer-scope values read by this node's subgraphs.
    pub(crate) captures: Vec<ValueId>,
    pub order: OrderKey,
}

impl Node {
    pub fn name(&self) -> &str {
        self.residual.name.as_deref().unwrap_or("")
    }
    pub fn op_type(&self) -> &str {
        self.residual.op_type.as_deref().unwrap_or("")
    }
    /// The operator domain, with "" and "ai.onnx" both meaning the default domain.
    pub fn domain(&self) -> &str {
        match self.residual.domain.as_deref() {
            None | Some("ai.onnx") => "",
            Some(d) => d,
        }
    }
    /// True for an operator of the default ONNX domain with this op type.
    pub fn is(&self, op_type: &str) -> bool {
        self.domain().is_empty() && self.op_type() == op_type
    }
    pub fn inputs(&self) -> &[Option<ValueId>] {
        &self.inputs
    }
    /// Input `i` when present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
    pub fn outputs(&self) -> &[Option<ValueId>] {
        &self.outputs
    }
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }
    pub fn captures(&self) -> &[ValueId] {
        &self.captures
    }
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name() == name)
    }
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.proto.i)
    }
    pub fn attr_float(&self, name: &str) -> Option<f32> {
        self.attr(name).and_then(|a| a.proto.f)
    }
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.proto.ints.as_slice())
    }
    pub fn attr_floats(&self, name: &str) -> Option<&[f32]> {
        self.attr(name).map(|a| a.proto.floats.as_slice())
    }
    pub fn attr_string(&self, name: &str) -> Option<String> {
        self.attr(name).and_then(|a| a.proto.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn attr_tensor(&self, name: &str) -> Option<&crate::onnx::TensorProto> {
        self.attr(name).and_then(|a| a.proto.t.as_ref())
    }
    /// Sets (or replaces) an attribute, keeping the position of an existing one.
    pub fn set_attr(&mut self, attr: AttributeProto) {
        let attr = Attribute { proto: attr, subgraphs: Vec::new(), in_g: false };
        match self.attributes.iter_mut().find(|a| a.name() == attr.name()) {
            Some(slot) => *slot = attr,
            None => self.attributes.push(attr),
        }
    }
    pub fn remove_attr(&mut self, name: &str) {
        self.attributes.retain(|a| a.name() != name);
    }
}

/// How a constant was written in the file, so that export can write it back the same way.
// `Constant` (which holds this) is already boxed inside `ValueDef`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ConstOrigin {
    /// `graph.initializer`, at this position.
    Initializer(OrderKey),
    /// A `Constant` or `ConstantOfShape` node. `proto` is the original node; for `Constant` its
    /// `value` tensor is stripped (the IR tensor is the one copy of the data) and put back on
    /// export. `inputs` are the values the node reads (the shape of a `ConstantOfShape`).
    Node { proto: NodeProto, inputs: Vec<ValueId>, order: OrderKey, modified: bool },
    /// Made by a pass: exported as an initializer after those of the file.
    New(OrderKey),
}

/// A constant value: its tensor and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub tensor: Tensor,
    pub origin: ConstOrigin,
}

impl Constant {
    /// Whether the file stores it sparse: a `Constant` node with a `sparse_value` attribute.
    pub fn is_sparse(&self) -> bool {
        matches!(&self.origin, ConstOrigin::Node { proto, .. }
            if proto.op_type.as_deref() == Some("Constant")
                && proto.attribute.len() == 1
                && proto.attribute[0].name.as_deref() == Some(crate::sparse::SPARSE_ATTRIBUTE))
    }
}

/// What defines a value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input (not an initializer).
    Input,
    /// Output `slot` of an operation.
    Op {
        node: NodeId,
        slot: usize,
    },
    Constant(Box<Constant>),
    /// A sparse initializer (kept verbatim in the graph's residual proto).
    Sparse,
    /// A value of an enclosing graph, read by this subgraph.
    Outer,
    /// Nothing defines it (left behind by a removed node; validation reports it if still used).
    Undefined,
}

/// A tensor flowing in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub dtype: Option<DataType>,
    /// `None` when even the rank is unknown.
    pub shape: Option<Shape>,
    pub def: ValueDef,
    /// Readers as (node, input slot); a node's subgraph captures appear with slot `usize::MAX`.
    pub(crate) uses: Vec<(NodeId, usize)>,
    pub(crate) alive: bool,
}

impl Value {
    pub fn uses(&self) -> &[(NodeId, usize)] {
        &self.uses
    }
    pub fn constant(&self) -> Option<&Constant> {
        match &self.def {
            ValueDef::Constant(c) => Some(c),
            _ => None,
        }
    }
    pub fn producer(&self) -> Option<NodeId> {
        match self.def {
            ValueDef::Op { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// Slot used in [`Value::uses`] for a read through a subgraph capture.
pub const CAPTURE_SLOT: usize = usize::MAX;

/// A computation graph (the main graph or a subgraph).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableGraph<Node, ValueId>,
    values: Vec<Value>,
    by_name: HashMap<String, ValueId>,
    /// Graph inputs with their declarations as written (type, doc string, metadata).
    pub(crate) inputs: Vec<(ValueId, ValueInfoProto)>,
    pub(crate) outputs: Vec<(ValueId, ValueInfoProto)>,
    /// `value_info` entries; `None` for entries naming a tensor the graph does not have.
    pub(crate) value_info: Vec<(Option<ValueId>, ValueInfoProto)>,
    /// Name, doc string, metadata, quantization annotations and sparse initializers, verbatim.
    pub residual: GraphProto,
    /// How many live nodes carry each name (for [`Graph::fresh_node_name`]).
    pub(crate) node_names: HashMap<String, u32>,
    next_serial: u32,
    pub(crate) next_order: u64,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph { residual: GraphProto { name: Some(name.to_string()), ..Default::default() }, ..Default::default() }
    }

    pub fn name(&self) -> &str {
        self.residual.name.as_deref().unwrap_or("")
    }

    // ----- values -----

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    /// Whether the value still exists (not dropped by [`Graph::remove_value_if_unused`]).
    pub fn is_alive(&self, id: ValueId) -> bool {
        self.values.get(id.index()).is_some_and(|v| v.alive)
    }

    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    /// All live values, in creation order.
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.values.iter().enumerate().filter(|(_, v)| v.alive).map(|(i, _)| ValueId(i as u32))
    }

    /// The constant tensor of a value, unless it is also a graph input (an overridable default).
    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        if self.is_graph_input(id) {
            return None;
        }
        self.value(id).constant().map(|c| &c.tensor)
    }

    pub fn is_graph_input(&self, id: ValueId) -> bool {
        self.inputs.iter().any(|(v, _)| *v == id)
    }

    pub fn is_graph_output(&self, id: ValueId) -> bool {
        self.outputs.iter().any(|(v, _)| *v == id)
    }

    pub fn inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.inputs.iter().map(|(v, _)| *v)
    }

    /// Graph inputs that are not initializers: what a caller must feed.
    pub fn runtime_inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.inputs().filter(|v| self.value(*v).constant().is_none())
    }

    pub fn outputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.outputs.iter().map(|(v, _)| *v)
    }

    /// Creates a value. The name must be unused (see [`Graph::fresh_name`]).
    pub(crate) fn push_value(&mut self, name: &str, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        let (dtype, shape) = match &def {
            ValueDef::Constant(c) => (Some(c.tensor.dtype()), Some(Shape::from_dims(c.tensor.dims()))),
            _ => (None, None),
        };
        self.values.push(Value { name: name.to_string(), dtype, shape, def, uses: Vec::new(), alive: true });
        if !name.is_empty() {
            self.by_name.entry(name.to_string()).or_insert(id);
        }
        id
    }

    /// A name not used by any value of this graph, derived from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.by_name.contains_key(base) && !base.is_empty() {
            return base.to_string();
        }
        (1..).map(|i| format!("{base}_{i}")).find(|n| !self.by_name.contains_key(n)).unwrap_or_default()
    }

    /// Adds a constant made by a pass (exported as an initializer). The name is made unique.
    pub fn add_constant(&mut self, name: &str, tensor: Tensor) -> ValueId {
        let name = self.fresh_name(name);
        let order = OrderKey { major: self.bump_order(), minor: 0 };
        let tensor = tensor.renamed(&name);
        self.push_value(&name, ValueDef::Constant(Box::new(Constant { tensor, origin: ConstOrigin::New(order) })))
    }

    /// Bytes a constant takes in the file: its data, or for a `ConstantOfShape` kept in that
    /// compact form, just the node (changing its data would store it all). `None` for a value
    /// that is not a constant.
    pub fn stored_bytes(&self, id: ValueId) -> Option<u64> {
        let c = self.value(id).constant()?;
        Some(match &c.origin {
            ConstOrigin::Node { proto, .. } if proto.op_type.as_deref() == Some("ConstantOfShape") => {
                prost::Message::encoded_len(proto) as u64
            }
            _ => c.tensor.byte_size(),
        })
    }

    /// Whether a constant is a `ConstantOfShape` kept in that compact form.
    pub fn is_compact_constant(&self, id: ValueId) -> bool {
        matches!(self.value(id).constant().map(|c| &c.origin), Some(ConstOrigin::Node { proto, .. }) if proto.op_type.as_deref() == Some("ConstantOfShape"))
    }

    /// Replaces the tensor of a constant, keeping how it is stored (a `ConstantOfShape` becomes a
    /// `Constant` node, since its data is no longer one repeated value).
    pub fn set_constant(&mut self, id: ValueId, tensor: Tensor) {
        let v = &mut self.values[id.index()];
        if let ValueDef::Constant(c) = &mut v.def {
            c.tensor = tensor;
            if let ConstOrigin::Node { modified, .. } = &mut c.origin {
                *modified = true;
            }
            v.dtype = Some(c.tensor.dtype());
            v.shape = Some(Shape::from_dims(c.tensor.dims()));
        }
    }

    /// Stores a constant in sparse form from now on: a `Constant` node with a `sparse_value`
    /// attribute (see [`crate::sparse`]; the data is unchanged). Placed just before its first
    /// reader. Declines graph inputs' defaults and tensors the sparse form cannot hold (strings,
    /// packed sub-byte types): returns whether the constant is now stored sparse.
    pub fn store_sparse(&mut self, id: ValueId) -> bool {
        if self.is_graph_input(id) {
            return false;
        }
        let Some(c) = self.value(id).constant() else { return false };
        if c.is_sparse() {
            return true;
        }
        if crate::sparse::sparse_data_bytes(&c.tensor).is_none() {
            return false;
        }
        let readers = self.value(id).uses().iter().filter_map(|(n, _)| self.node(*n)).map(|n| n.order);
        let order = readers.min().unwrap_or(OrderKey { major: 0, minor: 0 });
        // A ConstantOfShape reads its shape: that value may now be unused.
        let (read, name) = match &c.origin {
            ConstOrigin::Node { inputs, proto, .. } => (inputs.clone(), proto.name.clone()),
            _ => (Vec::new(), None),
        };
        let proto = NodeProto {
            name,
            op_type: Some("Constant".into()),
            attribute: vec![crate::onnx::AttributeProto {
                name: Some(crate::sparse::SPARSE_ATTRIBUTE.into()),
                r#type: Some(crate::onnx::attribute_proto::AttributeType::SparseTensor as i32),
                ..Default::default()
            }],
            ..Default::default()
        };
        if let ValueDef::Constant(c) = &mut self.values[id.index()].def {
            c.tensor = c.tensor.inlined();
            c.origin = ConstOrigin::Node { proto, inputs: Vec::new(), order, modified: false };
        }
        for v in read {
            self.remove_value_if_unused(v);
        }
        true
    }

    /// Replaces how a constant's data is stored (inline or external) without changing the data or
    /// its origin. Constants whose data the file does not store (`ConstantOfShape`) are left alone;
    /// returns whether the tensor was replaced.
    pub fn restore_constant_storage(&mut self, id: ValueId, tensor: Tensor) -> bool {
        if let ValueDef::Constant(c) = &mut self.values[id.index()].def {
            let stored = match &c.origin {
                ConstOrigin::Node { proto, .. } => {
                    proto.op_type.as_deref() == Some("Constant") && proto.attribute.first().and_then(|a| a.name.as_deref()) == Some("value")
                }
                _ => true,
            };
            if stored {
                c.tensor = tensor;
            }
            return stored;
        }
        false
    }

    /// Renames a value (keeps the name index consistent). Fails if the name is taken.
    pub fn rename_value(&mut self, id: ValueId, name: &str) -> bool {
        if self.by_name.get(name).is_some_and(|other| *other != id) {
            return false;
        }
        let old = std::mem::replace(&mut self.values[id.index()].name, name.to_string());
        if self.by_name.get(&old) == Some(&id) {
            self.by_name.remove(&old);
        }
        self.by_name.insert(name.to_string(), id);
        true
    }

    /// Drops the name and doc string of every node, `Constant` nodes included (both are optional
    /// in ONNX and change nothing a model computes). Returns how many nodes had a name.
    pub fn strip_node_names(&mut self) -> usize {
        let mut named = 0;
        let indices: Vec<_> = self.g.node_indices().collect();
        for i in indices {
            let residual = &mut self.g[i].residual;
            named += usize::from(residual.name.take().is_some_and(|n| !n.is_empty()));
            residual.doc_string = None;
        }
        for v in self.values.iter_mut().filter(|v| v.alive) {
            if let ValueDef::Constant(c) = &mut v.def
                && let ConstOrigin::Node { proto, .. } = &mut c.origin
            {
                named += usize::from(proto.name.take().is_some_and(|n| !n.is_empty()));
                proto.doc_string = None;
            }
        }
        self.node_names.clear();
        named
    }

    /// A fresh order key major number, after every key in use (for constants and nodes a pass adds
    /// that have no natural position).
    pub fn next_order_key(&mut self) -> u64 {
        self.bump_order()
    }

    pub(crate) fn bump_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    // ----- nodes -----

    fn idx(id: NodeId) -> NodeIndex<u32> {
        NodeIndex::new(id.slot as usize)
    }

    /// The node, or `None` if it was removed (also when its slot now holds another node).
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(Self::idx(id)).filter(|n| n.serial == id.serial)
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.g.node_weight_mut(Self::idx(id)).filter(|n| n.serial == id.serial)
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// All nodes in an unspecified order; use [`Graph::topo_order`] for a deterministic one.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().map(|i| NodeId { serial: self.g[i].serial, slot: i.index() as u32 }).collect()
    }

    /// Adds an operation reading `inputs` and defining new values named `outputs`
    /// (names are made unique; an empty name is an omitted optional output).
    pub fn add_node(
        &mut self,
        residual: NodeProto,
        attributes: Vec<Attribute>,
        inputs: Vec<Option<ValueId>>,
        outputs: &[&str],
        order: OrderKey,
    ) -> NodeId {
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(name) = residual.name.as_deref().filter(|n| !n.is_empty()) {
            *self.node_names.entry(name.to_string()).or_insert(0) += 1;
        }
        let node = Node { serial, residual, attributes, inputs: Vec::new(), outputs: Vec::new(), captures: Vec::new(), order };
        let idx = self.g.add_node(node);
        let id = NodeId { serial, slot: idx.index() as u32 };
        let outs = outputs
            .iter()
            .enumerate()
            .map(|(slot, name)| {
                (!name.is_empty()).then(|| {
                    let name = self.fresh_name(name);
                    self.push_value(&name, ValueDef::Op { node: id, slot })
                })
            })
            .collect();
        self.g[idx].outputs = outs;
        for (slot, v) in inputs.into_iter().enumerate() {
            self.g[idx].inputs.push(None);
            self.set_input(id, slot, v);
        }
        id
    }

    /// A fresh order key placed right after `after` (for nodes replacing or following it).
    pub fn order_after(&self, after: OrderKey) -> OrderKey {
        // One past the largest minor in use with this major, so each key is distinct.
        let max_minor = self.g.node_weights().filter(|n| n.order.major == after.major).map(|n| n.order.minor).max().unwrap_or(0);
        OrderKey { major: after.major, minor: max_minor.max(after.minor) + 1 }
    }

    /// Points input `slot` of `node` at `value` (or clears it), keeping uses and edges in sync.
    pub fn set_input(&mut self, node: NodeId, slot: usize, value: Option<ValueId>) {
        let idx = Self::idx(node);
        let old = self.g[idx].inputs.get(slot).copied().flatten();
        if let Some(old) = old {
            self.unlink(old, node, slot);
        }
        while self.g[idx].inputs.len() <= slot {
            self.g[idx].inputs.push(None);
        }
        self.g[idx].inputs[slot] = value;
        if let Some(v) = value {
            self.link(v, node, slot);
        }
    }

    /// Appends an input to `node`.
    pub fn push_input(&mut self, node: NodeId, value: Option<ValueId>) {
        let slot = self.g[Self::idx(node)].inputs.len();
        self.set_input(node, slot, value);
    }

    /// Drops trailing inputs from `len` on.
    pub fn truncate_inputs(&mut self, node: NodeId, len: usize) {
        let n = self.g[Self::idx(node)].inputs.len();
        for slot in (len..n).rev() {
            self.set_input(node, slot, None);
        }
        self.g[Self::idx(node)].inputs.truncate(len);
    }

    pub(crate) fn add_capture(&mut self, node: NodeId, value: ValueId) {
        self.g[Self::idx(node)].captures.push(value);
        self.link(value, node, CAPTURE_SLOT);
    }

    pub(crate) fn link(&mut self, value: ValueId, node: NodeId, slot: usize) {
        self.values[value.index()].uses.push((node, slot));
        if let ValueDef::Op { node: producer, .. } = self.values[value.index()].def {
            self.g.add_edge(Self::idx(producer), Self::idx(node), value);
        }
    }

    pub(crate) fn unlink(&mut self, value: ValueId, node: NodeId, slot: usize) {
        let uses = &mut self.values[value.index()].uses;
        if let Some(pos) = uses.iter().position(|u| *u == (node, slot)) {
            uses.swap_remove(pos);
        }
        if let ValueDef::Op { node: producer, .. } = self.values[value.index()].def {
            let edge = self.g.edges_connecting(Self::idx(producer), Self::idx(node)).find(|e| *e.weight() == value).map(|e| e.id());
            if let Some(e) = edge {
                self.g.remove_edge(e);
            }
        }
    }

    /// Makes every reader of `old` (node inputs, subgraph captures, graph outputs) read `new`.
    /// A graph output keeps its name: `new` takes over the name of `old` when `old` was one.
    /// To move only some readers (inserting a node on an edge), see [`Graph::redirect_uses`].
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        let uses = self.uses_of(old);
        self.redirect_uses(old, new, &uses);
    }

    /// Removes a node. Its inputs lose a reader; its outputs become [`ValueDef::Undefined`] and are
    /// dropped if nothing reads them.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.node(id)?;
        let n_inputs = self.g[Self::idx(id)].inputs.len();
        for slot in 0..n_inputs {
            self.set_input(id, slot, None);
        }
        let node = self.remove_node_raw(id)?;
        for v in node.outputs.iter().flatten() {
            self.values[v.index()].def = ValueDef::Undefined;
            self.remove_value_if_unused(*v);
        }
        Some(node)
    }

    /// Takes a node out of the petgraph (its input links must already be cleared).
    pub(crate) fn remove_node_raw(&mut self, id: NodeId) -> Option<Node> {
        self.node(id)?;
        let captures = std::mem::take(&mut self.g[Self::idx(id)].captures);
        for c in captures {
            self.unlink(c, id, CAPTURE_SLOT);
        }
        let node = self.g.remove_node(Self::idx(id))?;
        if let Some(count) = node.residual.name.as_deref().and_then(|n| self.node_names.get_mut(n)) {
            *count -= 1;
            if *count == 0 {
                let name = node.name().to_string();
                self.node_names.remove(&name);
            }
        }
        Some(node)
    }

    /// Drops a value nobody reads and that is not a graph input or output. Returns whether it went.
    pub fn remove_value_if_unused(&mut self, id: ValueId) -> bool {
        let v = &self.values[id.index()];
        if !v.alive || !v.uses.is_empty() || self.is_graph_output(id) || self.is_graph_input(id) || self.is_const_dependency(id) {
            return false;
        }
        if let ValueDef::Op { node, .. } = v.def
            && self.node(node).is_some()
        {
            return false;
        }
        let inputs = match &v.def {
            ValueDef::Constant(c) => match &c.origin {
                ConstOrigin::Node { inputs, .. } => inputs.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let name = v.name.clone();
        self.values[id.index()].alive = false;
        self.values[id.index()].def = ValueDef::Undefined;
        if self.by_name.get(&name) == Some(&id) {
            self.by_name.remove(&name);
        }
        self.value_info.retain(|(v, _)| *v != Some(id));
        // A ConstantOfShape's shape may go with it (kept while another constant still reads it).
        for input in inputs {
            self.remove_value_if_unused(input);
        }
        true
    }

    /// Whether a constant value is read as the input of another constant's node (the shape of a
    /// `ConstantOfShape`).
    pub fn is_const_dependency(&self, id: ValueId) -> bool {
        self.values.iter().any(|v| {
            v.alive
                && matches!(&v.def, ValueDef::Constant(c) if matches!(&c.origin, ConstOrigin::Node { inputs, .. } if inputs.contains(&id)))
        })
    }

    /// Nodes that read any output of `id`.
    pub fn successors(&self, id: NodeId) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.g.neighbors_directed(Self::idx(id), Direction::Outgoing).map(|i| self.id_of(i)).collect();
        out.sort();
        out.dedup();
        out
    }

    fn id_of(&self, idx: NodeIndex<u32>) -> NodeId {
        NodeId { serial: self.g[idx].serial, slot: idx.index() as u32 }
    }

    /// Nodes in a deterministic topological order: among the nodes ready at each step, the one with
    /// the smallest (order key, name) goes first. `Err` carries the nodes on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Vec<NodeId>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut indegree: HashMap<NodeIndex<u32>, usize> = HashMap::new();
        for i in self.g.node_indices() {
            indegree.insert(i, self.g.edges_directed(i, Direction::Incoming).count());
        }
        let key = |i: NodeIndex<u32>| (self.g[i].order, self.g[i].name().to_string(), self.g[i].serial);
        let mut ready: BinaryHeap<Reverse<(OrderKey, String, u32, u32)>> = BinaryHeap::new();
        let push = |ready: &mut BinaryHeap<_>, i: NodeIndex<u32>| {
            let (o, n, s) = key(i);
            ready.push(Reverse((o, n, s, i.index() as u32)));
        };
        for (&i, &d) in &indegree {
            if d == 0 {
                push(&mut ready, i);
            }
        }
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse((_, _, _, slot))) = ready.pop() {
            let i = NodeIndex::new(slot as usize);
            order.push(self.id_of(i));
            for e in self.g.edges_directed(i, Direction::Outgoing) {
                let d = indegree.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    push(&mut ready, e.target());
                }
            }
        }
        if order.len() == self.g.node_count() {
            return Ok(order);
        }
        Err(self.find_cycle())
    }

    /// One cycle of the graph (empty when there is none), as nodes in edge order.
    pub fn find_cycle(&self) -> Vec<NodeId> {
        for scc in petgraph::algo::tarjan_scc(&self.g) {
            let self_loop = scc.len() == 1 && self.g.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut ids: Vec<NodeId> = scc.into_iter().map(|i| self.id_of(i)).collect();
                ids.sort_by_key(|id| self.g[Self::idx(*id)].order);
                return ids;
            }
        }
        Vec::new()
    }

    /// A display label for a node: its name, or `<op_type #n>` for unnamed nodes.
    pub fn node_label(&self, id: NodeId) -> String {
        match self.node(id) {
            Some(n) if !n.name().is_empty() => n.name().to_string(),
            Some(n) => format!("<{} at {}>", n.op_type(), n.order.major),
            None => "<removed node>".to_string(),
        }
    }

    pub(crate) fn values_raw(&self) -> &[Value] {
        &self.values
    }

    /// Graph input declarations as written in the file.
    pub fn input_infos(&self) -> &[(ValueId, ValueInfoProto)] {
        &self.inputs
    }

    pub fn output_infos(&self) -> &[(ValueId, ValueInfoProto)] {
        &self.outputs
    }

    pub fn input_infos_mut(&mut self) -> &mut Vec<(ValueId, ValueInfoProto)> {
        &mut self.inputs
    }

    pub fn output_infos_mut(&mut self) -> &mut Vec<(ValueId, ValueInfoProto)> {
        &mut self.outputs
    }

    pub fn value_infos(&self) -> &[(Option<ValueId>, ValueInfoProto)] {
        &self.value_info
    }

    pub fn value_infos_mut(&mut self) -> &mut Vec<(Option<ValueId>, ValueInfoProto)> {
        &mut self.value_info
    }
}
