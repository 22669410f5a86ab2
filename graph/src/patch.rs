//! Rewrites as data: match on `&Graph`, describe the change as a [`Patch`], check it, then apply it.
//!
//! In the spirit of tract's `ModelPatch`: a pass never edits the graph while it is still deciding.
//! It builds a patch (new constants and ops, constants whose data it replaces, inputs and
//! attributes it sets on existing nodes, which uses of which value it redirects, which nodes it
//! removes), [`Patch::check`] finds every reason it cannot apply (a removed node, a shared weight,
//! a renamed model interface, a cycle), and only then [`Patch::apply`] changes the graph, without
//! any way to fail half-way. Applying also drops the values the removed nodes left unused.
//!
//! ```
//! use whittle_graph::builder::GraphBuilder;
//! use whittle_graph::patch::{Patch, Wire};
//! use whittle_graph::{DataType, edit::OpSpec};
//! let mut b = GraphBuilder::new(13);
//! let x = b.input("x", DataType::Float, &[1, 4]);
//! let y = b.node("Identity", &[x], &["y"], vec![])[0];
//! let z = b.node("Relu", &[y], &["z"], vec![])[0];
//! b.output(z);
//! let mut m = b.finish();
//! let g = &mut m.graph;
//! let id = g.value(y).producer().unwrap();
//! // Replace the Identity by a Neg reading the same input.
//! let mut p = Patch::new(format!("{}: Identity -> Neg", g.node_label(id)));
//! let neg = p.add_op(OpSpec::new("Neg", &[], "y_neg"), vec![Wire::Value(x)], g.node(id).unwrap().order);
//! p.redirect_all(y, Wire::output(neg, 0));
//! p.remove_node(id);
//! p.check(g).unwrap();
//! p.apply(g);
//! assert_eq!(g.node_count(), 2);
//! ```

use std::collections::{HashMap, HashSet, VecDeque};

use crate::edit::{OpSpec, Use};
use crate::ir::{Graph, NodeId, OrderKey, ValueId};
use crate::onnx::AttributeProto;
use crate::tensor::Tensor;

/// A value a patch reads or writes: one that exists, or one the patch creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// A value of the graph.
    Value(ValueId),
    /// The `n`-th constant added by this patch.
    Constant(usize),
    /// Output `slot` of the `n`-th op added by this patch.
    Output { op: usize, slot: usize },
}

impl Wire {
    pub fn output(op: usize, slot: usize) -> Wire {
        Wire::Output { op, slot }
    }
}

/// Why a patch cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

#[derive(Clone, Debug)]
struct NewOp {
    spec: OpSpec,
    inputs: Vec<Option<Wire>>,
    order: OrderKey,
}

#[derive(Clone, Debug)]
enum Readers {
    /// Every reader the value has when the patch is applied (the patch's own new ops excluded).
    All,
    Only(Vec<Use>),
}

#[derive(Clone, Debug)]
struct Redirect {
    old: ValueId,
    new: Wire,
    readers: Readers,
}

/// A rewrite described as data (see the module documentation).
#[derive(Clone, Debug)]
pub struct Patch {
    /// What the patch does, as the report shows it ("conv3: folded BatchNormalization bn3").
    pub description: String,
    constants: Vec<(String, Tensor)>,
    ops: Vec<NewOp>,
    /// (constant, new data, the one node allowed to read it).
    replaced: Vec<(ValueId, Tensor, NodeId)>,
    set_inputs: Vec<(NodeId, usize, Option<Wire>)>,
    set_attrs: Vec<(NodeId, AttributeProto)>,
    redirects: Vec<Redirect>,
    removed: Vec<NodeId>,
}

impl Patch {
    pub fn new(description: impl Into<String>) -> Patch {
        Patch {
            description: description.into(),
            constants: Vec::new(),
            ops: Vec::new(),
            replaced: Vec::new(),
            set_inputs: Vec::new(),
            set_attrs: Vec::new(),
            redirects: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// A new constant (exported as an initializer; its name is made unique).
    pub fn add_constant(&mut self, name: &str, tensor: Tensor) -> Wire {
        self.constants.push((name.to_string(), tensor));
        Wire::Constant(self.constants.len() - 1)
    }

    /// A new op; `spec.inputs` is ignored, `inputs` (existing or new values) is what it reads.
    /// Returns its index, for [`Wire::output`].
    pub fn add_op(&mut self, spec: OpSpec, inputs: Vec<Wire>, order: OrderKey) -> usize {
        self.add_op_optional(spec, inputs.into_iter().map(Some).collect(), order)
    }

    /// Like [`Patch::add_op`], with omitted optional inputs.
    pub fn add_op_optional(&mut self, spec: OpSpec, inputs: Vec<Option<Wire>>, order: OrderKey) -> usize {
        self.ops.push(NewOp { spec, inputs, order });
        self.ops.len() - 1
    }

    /// Replaces the data of an existing constant that only `owner` reads (a layer's weight).
    pub fn replace_constant(&mut self, value: ValueId, tensor: Tensor, owner: NodeId) {
        self.replaced.push((value, tensor, owner));
    }

    /// Points input `slot` of an existing node at `value` (or clears it).
    pub fn set_input(&mut self, node: NodeId, slot: usize, value: Option<Wire>) {
        self.set_inputs.push((node, slot, value));
    }

    /// Sets (or replaces) an attribute of an existing node.
    pub fn set_attr(&mut self, node: NodeId, attr: AttributeProto) {
        self.set_attrs.push((node, attr));
    }

    /// Every reader of `old` (as it is before the patch) reads `new` instead.
    pub fn redirect_all(&mut self, old: ValueId, new: Wire) {
        self.redirects.push(Redirect { old, new, readers: Readers::All });
    }

    /// Only these readers of `old` read `new` instead (insert on an edge).
    pub fn redirect(&mut self, old: ValueId, new: Wire, readers: Vec<Use>) {
        self.redirects.push(Redirect { old, new, readers: Readers::Only(readers) });
    }

    /// Removes an existing node (its outputs must not be read after the patch).
    pub fn remove_node(&mut self, node: NodeId) {
        self.removed.push(node);
    }

    /// Finds every reason the patch cannot be applied to `g`, without changing it.
    pub fn check(&self, g: &Graph) -> Result<(), PatchError> {
        let err = |m: String| Err(PatchError(m));
        let label = |n: NodeId| g.node_label(n);
        for n in self.removed.iter().chain(self.set_inputs.iter().map(|s| &s.0)).chain(self.set_attrs.iter().map(|s| &s.0)) {
            if g.node(*n).is_none() {
                return err("a node it changes was already removed".into());
            }
        }
        let wire_ok = |w: &Wire| match *w {
            Wire::Value(v) => g.is_alive(v),
            Wire::Constant(i) => i < self.constants.len(),
            Wire::Output { op, slot } => self.ops.get(op).is_some_and(|o| o.spec.outputs.get(slot).is_some_and(|s| !s.is_empty())),
        };
        for (i, op) in self.ops.iter().enumerate() {
            for w in op.inputs.iter().flatten() {
                if !wire_ok(w) || matches!(w, Wire::Output { op: j, .. } if *j >= i) {
                    return err(format!("new op {} reads a value that does not exist before it", op.spec.op_type));
                }
                if let Wire::Value(v) = w
                    && self.removed_defines(g, *v)
                {
                    return err(format!("new op {} reads the output of a node the patch removes", op.spec.op_type));
                }
            }
        }
        let removed: HashSet<NodeId> = self.removed.iter().copied().collect();
        for (v, t, owner) in &self.replaced {
            let value = g.value(*v);
            let Some(c) = g.constant(*v) else { return err(format!("'{}' is not a constant", value.name)) };
            if c.dtype() != t.dtype() {
                return err(format!("constant '{}' would change its element type from {} to {}", value.name, c.dtype(), t.dtype()));
            }
            if value.uses().iter().any(|(n, _)| n != owner && !removed.contains(n)) || g.is_graph_output(*v) || g.is_const_dependency(*v) {
                return err(format!("constant '{}' is shared with another node than {}", value.name, label(*owner)));
            }
        }
        for (_, _, w) in &self.set_inputs {
            if let Some(w) = w {
                if !wire_ok(w) {
                    return err("an input it sets does not exist".into());
                }
                if let Wire::Value(v) = w
                    && self.removed_defines(g, *v)
                {
                    return err("it points an input at the output of a node it removes".into());
                }
            }
        }
        for r in &self.redirects {
            if !g.is_alive(r.old) || !wire_ok(&r.new) {
                return err("a value it redirects does not exist".into());
            }
            if let Readers::Only(uses) = &r.readers {
                let current = g.uses_of(r.old);
                if let Some(stale) = uses.iter().find(|u| !current.contains(u)) {
                    return err(format!("it redirects a reader of '{}' that does not read it ({stale:?})", g.value(r.old).name));
                }
            }
            let moves_output = match &r.readers {
                Readers::All => g.is_graph_output(r.old),
                Readers::Only(uses) => uses.iter().any(|u| matches!(u, Use::GraphOutput(_))),
            };
            if moves_output && g.is_graph_input(r.old) {
                return err(
                    "its value is both a graph input and a graph output: moving the output would rename the model's interface".into()
                );
            }
            if let Wire::Value(new) = r.new
                && moves_output
                && (g.is_graph_input(new) || g.is_graph_output(new))
            {
                return err(
                    "its output is a graph output and its input is a graph input or output: removing it would rename the model's interface"
                        .into(),
                );
            }
            if let Wire::Value(new) = r.new
                && self.removed_defines(g, new)
            {
                return err("it redirects readers to the output of a node it removes".into());
            }
        }
        // After the patch nothing may read what the removed nodes defined.
        let redirected: HashSet<ValueId> = self.redirects.iter().filter(|r| matches!(r.readers, Readers::All)).map(|r| r.old).collect();
        for n in &self.removed {
            let node = g.node(*n).expect("checked above");
            for v in node.outputs().iter().flatten() {
                let readers = g.uses_of(*v);
                let still_read = readers.iter().any(|u| u.node().is_none_or(|r| !removed.contains(&r)));
                if still_read && !redirected.contains(v) && !self.redirected_only(*v, &readers, &removed) {
                    return err(format!("{} is removed but its output '{}' is still read", label(*n), g.value(*v).name));
                }
            }
        }
        self.check_acyclic(g)
    }

    /// Whether `v` is an output of a node this patch removes.
    fn removed_defines(&self, g: &Graph, v: ValueId) -> bool {
        g.value(v).producer().is_some_and(|p| self.removed.contains(&p))
    }

    /// Whether the `Only` redirects of `v` cover every reader not removed.
    fn redirected_only(&self, v: ValueId, readers: &[Use], removed: &HashSet<NodeId>) -> bool {
        let covered: HashSet<Use> = self
            .redirects
            .iter()
            .filter(|r| r.old == v)
            .filter_map(|r| match &r.readers {
                Readers::Only(u) => Some(u.iter().copied()),
                Readers::All => None,
            })
            .flatten()
            .collect();
        readers.iter().all(|u| covered.contains(u) || u.node().is_some_and(|n| removed.contains(&n)))
    }

    /// The existing values a wire is computed from (through the patch's new ops).
    fn sources(&self, w: Wire, out: &mut HashSet<ValueId>) {
        match w {
            Wire::Value(v) => {
                out.insert(v);
            }
            Wire::Constant(_) => {}
            Wire::Output { op, .. } => {
                for i in self.ops[op].inputs.iter().flatten() {
                    self.sources(*i, out);
                }
            }
        }
    }

    /// A redirect or a set input makes a node read a wire; that must not close a loop. Cheap when
    /// the wire is computed from the redirected value itself, the inputs of its producer, or
    /// constants (the bypass, insert-on-edge and replace-a-node cases); otherwise the readers'
    /// descendants are searched, through the graph and every new dependency of the patch at once
    /// (two edges can close a loop that neither closes alone).
    fn check_acyclic(&self, g: &Graph) -> Result<(), PatchError> {
        let mut edges: Vec<(Vec<NodeId>, Wire, Option<ValueId>)> = Vec::new();
        for r in &self.redirects {
            let readers: Vec<NodeId> = match &r.readers {
                Readers::All => g.uses_of(r.old).iter().filter_map(|u| u.node()).collect(),
                Readers::Only(u) => u.iter().filter_map(|u| u.node()).collect(),
            };
            edges.push((readers, r.new, Some(r.old)));
        }
        for (n, _, w) in &self.set_inputs {
            if let Some(w) = w {
                edges.push((vec![*n], *w, None));
            }
        }
        // For each edge, the producers of what it makes its readers read, beyond the safe ones.
        let mut risky: Vec<(Vec<NodeId>, Vec<NodeId>)> = Vec::new();
        for (readers, wire, old) in edges {
            let mut sources = HashSet::new();
            self.sources(wire, &mut sources);
            let mut safe: HashSet<ValueId> = HashSet::new();
            if let Some(old) = old {
                safe.insert(old);
                if let Some(p) = g.value(old).producer().and_then(|p| g.node(p)) {
                    safe.extend(p.inputs().iter().flatten());
                }
            }
            let producers: Vec<NodeId> = sources.iter().filter(|v| !safe.contains(v)).filter_map(|v| g.value(*v).producer()).collect();
            if !producers.is_empty() {
                risky.push((readers, producers));
            }
        }
        if risky.is_empty() {
            return Ok(());
        }
        // New dependencies: each risky producer now feeds the edge's readers.
        let mut extra: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for (readers, producers) in &risky {
            for p in producers {
                extra.entry(*p).or_default().extend(readers.iter().copied());
            }
        }
        for (readers, producers) in &risky {
            if let Some(r) = reaches(g, readers, producers, &extra) {
                return Err(PatchError(format!("it would make a cycle through {}", g.node_label(r))));
            }
        }
        Ok(())
    }

    /// Applies a checked patch ([`Patch::check`] must have passed on this graph). Returns the new
    /// ops' ids.
    pub fn apply(self, g: &mut Graph) -> Vec<NodeId> {
        // Readers as they are before the patch adds anything.
        let redirects: Vec<(ValueId, Wire, Vec<Use>)> = self
            .redirects
            .iter()
            .map(|r| {
                let uses = match &r.readers {
                    Readers::All => g.uses_of(r.old),
                    Readers::Only(u) => u.clone(),
                };
                (r.old, r.new, uses)
            })
            .collect();
        let constants: Vec<ValueId> = self.constants.into_iter().map(|(name, t)| g.add_constant(&name, t)).collect();
        for (v, t, _) in self.replaced {
            let t = t.renamed(&g.value(v).name);
            g.set_constant(v, t);
        }
        let mut op_ids: Vec<NodeId> = Vec::with_capacity(self.ops.len());
        let resolve = |w: Wire, ops: &[NodeId], g: &Graph| -> ValueId {
            match w {
                Wire::Value(v) => v,
                Wire::Constant(i) => constants[i],
                Wire::Output { op, slot } => g.node(ops[op]).and_then(|n| n.output(slot)).expect("checked: the op has this output"),
            }
        };
        for op in self.ops {
            let inputs = op.inputs.iter().map(|w| w.map(|w| resolve(w, &op_ids, g))).collect();
            let id = g.add_op(OpSpec { inputs, ..op.spec }, op.order);
            op_ids.push(id);
        }
        for (n, attr) in self.set_attrs {
            if let Some(node) = g.node_mut(n) {
                node.set_attr(attr);
            }
        }
        // Values the patch disconnects go once nothing reads them (a replaced weight, say).
        let mut displaced: Vec<ValueId> = Vec::new();
        for (n, slot, w) in self.set_inputs {
            let v = w.map(|w| resolve(w, &op_ids, g));
            displaced.extend(g.node(n).and_then(|node| node.input(slot)));
            g.set_input(n, slot, v);
        }
        for (old, new, uses) in redirects {
            let new = resolve(new, &op_ids, g);
            g.redirect_uses(old, new, &uses);
            displaced.push(old);
        }
        for n in self.removed {
            remove_node_and_orphans(g, n);
        }
        for v in displaced {
            g.remove_value_if_unused(v);
        }
        op_ids
    }
}

/// Removes a node and then the values it read that nobody reads any more (constants, and the
/// shapes of ConstantOfShape constants).
pub fn remove_node_and_orphans(g: &mut Graph, n: NodeId) {
    let Some(node) = g.node(n) else { return };
    let inputs: Vec<ValueId> = node.inputs().iter().flatten().chain(node.captures()).copied().collect();
    g.remove_node(n);
    for v in inputs {
        g.remove_value_if_unused(v);
    }
}

/// The first node of `targets` reachable (forwards) from `from` through the graph's edges and
/// `extra` ones, if any.
fn reaches(g: &Graph, from: &[NodeId], targets: &[NodeId], extra: &HashMap<NodeId, Vec<NodeId>>) -> Option<NodeId> {
    let targets: HashSet<NodeId> = targets.iter().copied().collect();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut queue: VecDeque<NodeId> = from.iter().copied().collect();
    while let Some(n) = queue.pop_front() {
        if targets.contains(&n) {
            return Some(n);
        }
        if !seen.insert(n) {
            continue;
        }
        queue.extend(g.successors(n));
        queue.extend(extra.get(&n).into_iter().flatten().copied());
    }
    None
}
