//! Channel dependency groups: which weights and tensors must shrink together when channels are
//! removed (the idea of Torch-Pruning's DepGraph, over ONNX ops).
//!
//! A **slot** is one axis of one tensor (`conv1_out`, axis 1). Starting from every layer's output
//! channels, the analysis follows the channel through the graph with one rule per op kind (the
//! table in `whittle_graph::channels`), in both directions, and records
//!
//! - **links** between slot indices: the same index (element-wise ops, Relu, BatchNormalization,
//!   pooling, Transpose to its new axis), an offset (Concat and Split along the axis), a block of
//!   indices (Flatten/Reshape merging the channel with the axes after it: channel `c` of
//!   `[N, C, H, W]` is features `c·H·W .. (c+1)·H·W` of the Gemm input), whole groups (a grouped or
//!   depthwise Conv ties the input channels of group `j` to its output channels);
//! - **effects**: what removing an index does to an op: a layer's weight (and bias) loses an
//!   output row or an input column, a per-channel constant (BatchNormalization's parameters, the
//!   constant operand of an Add or Mul) loses an entry, a grouped Conv loses a group, a Reshape's
//!   target or a Split's sizes shrink.
//!
//! Indices joined by links form one **channel**: removing it removes every index in it, from
//! every slot. The slots reachable from each other form a **group**; its channels are the ones a
//! layer produces. A group is **declined** when any of its slots reaches an op the rules cannot
//! follow exactly (a Shape, a Gather, a channel shuffle, a normalization over the channels, a
//! weight shared with another layer...), with the reason; a channel is **fixed** when it reaches a
//! graph input or output (the model's interface does not change). Nothing is guessed: an op
//! without a rule blocks its group.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use whittle_graph::channels::{ChannelFlow, WeightAxes, channel_flow};
use whittle_graph::ir::CAPTURE_SLOT;
use whittle_graph::{Graph, NodeId, ValueDef, ValueId};

use crate::rewrite::is_exclusive_constant;

/// One axis of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub value: ValueId,
    pub axis: usize,
    pub size: usize,
}

/// What removing indices of a slot does to an op.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effect {
    /// The slot is the layer's output channels: `weight` loses rows along `axis`, the bias (and
    /// its axis) entries.
    Produces { node: NodeId, weight: ValueId, axis: usize, bias: Option<(ValueId, usize)> },
    /// The slot is read by a layer: `weight` loses entries along its input axis `axis`.
    Consumes { node: NodeId, weight: ValueId, axis: usize },
    /// A constant of the op with one entry per index along `axis`.
    Param { node: NodeId, value: ValueId, axis: usize },
    /// A grouped Conv's input: whole groups of `per_group` channels go; `group` becomes the count
    /// left.
    Groups { node: NodeId, per_group: usize },
    /// A Reshape whose target shape (the constant `shape`) holds this slot's size at `position`.
    ReshapeTarget { node: NodeId, shape: ValueId, position: usize },
    /// A Split along the slot's axis: the sizes of its outputs are rewritten.
    SplitSizes { node: NodeId },
    /// A Slice along the slot's axis (its input): the start and end on that axis are rewritten to
    /// the kept indices before and inside the range.
    SliceBounds { node: NodeId, axis: usize },
}

impl Effect {
    pub fn node(&self) -> NodeId {
        match self {
            Effect::Produces { node, .. }
            | Effect::Consumes { node, .. }
            | Effect::Param { node, .. }
            | Effect::Groups { node, .. }
            | Effect::ReshapeTarget { node, .. }
            | Effect::SplitSizes { node }
            | Effect::SliceBounds { node, .. } => *node,
        }
    }
}

/// A set of slots that shrink together.
#[derive(Clone, Debug)]
pub struct Group {
    /// Slot indices into [`Analysis::slots`], in discovery order (the producing layer's first).
    pub slots: Vec<usize>,
    /// What removing channels does, attached to the slot whose indices it follows.
    pub effects: Vec<(usize, Effect)>,
    /// The channels layers produce: each a list of (slot, index) removed together, in the order of
    /// the first producing slot's indices.
    pub channels: Vec<Vec<(usize, usize)>>,
    /// Per channel: it reaches a graph input or output and must stay.
    pub fixed: Vec<bool>,
    /// Why the group cannot be pruned ("Shape@3 (Shape): it computes a shape"); empty: it can.
    pub declined: Vec<String>,
    /// Interface values the group reaches ("graph output 'y'").
    pub interface: Vec<String>,
}

impl Group {
    /// Channels that may be removed.
    pub fn removable(&self) -> usize {
        if self.declined.is_empty() { self.fixed.iter().filter(|f| !**f).count() } else { 0 }
    }
}

/// Every group of a graph.
pub struct Analysis {
    pub slots: Vec<Slot>,
    pub groups: Vec<Group>,
}

/// How indices of one slot map to another's.
#[derive(Clone, Copy, Debug)]
enum Map {
    /// Index `i` is index `i`.
    Same,
    /// Index `i` is index `i + offset` (in range).
    Offset(i64),
    /// Index `i` is the block `i·m .. (i+1)·m`.
    Expand(usize),
    /// Index `j` is index `j / m` (the inverse of `Expand`).
    Contract(usize),
    /// Index `i` is in group `i / from`; the other side's group is `to` indices wide.
    Groups { from: usize, to: usize },
}

impl Map {
    fn pairs(self, from: usize, to: usize) -> Result<Vec<(usize, usize)>, String> {
        let pairs: Vec<(usize, usize)> = match self {
            Map::Same if from == to => (0..from).map(|i| (i, i)).collect(),
            Map::Same => return Err(format!("sizes {from} and {to} differ")),
            Map::Offset(o) => (0..from).filter_map(|i| usize::try_from(i as i64 + o).ok().filter(|j| *j < to).map(|j| (i, j))).collect(),
            Map::Expand(m) if from * m == to => (0..to).map(|j| (j / m, j)).collect(),
            Map::Contract(m) if to * m == from => (0..from).map(|j| (j, j / m)).collect(),
            Map::Groups { from: f, to: t } if f > 0 && t > 0 && from / f == to / t && from.is_multiple_of(f) && to.is_multiple_of(t) => {
                (0..from).flat_map(|i| (0..t).map(move |k| (i, (i / f) * t + k))).collect()
            }
            _ => return Err(format!("sizes {from} and {to} do not match the op's layout")),
        };
        Ok(pairs)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Port {
    In(usize),
    Out(usize),
}

struct Builder<'g> {
    g: &'g Graph,
    opset: i64,
    slots: Vec<Slot>,
    by_key: HashMap<(ValueId, usize), usize>,
    offsets: Vec<usize>,
    parent: Vec<usize>,
    slot_parent: Vec<usize>,
    effects: Vec<(usize, Effect)>,
    /// Each effect once, whichever slot of the op it was reached from (the op's slots hold the
    /// same indices).
    effect_set: HashSet<Effect>,
    blocks: Vec<(usize, String)>,
    interface: Vec<(usize, String)>,
    visited: HashSet<(NodeId, Port, usize)>,
    queue: Vec<usize>,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// The concrete dims of a value.
fn dims(g: &Graph, v: ValueId) -> Option<Vec<i64>> {
    g.value(v).shape.as_ref()?.concrete()
}

fn axis_of(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|a| *a < rank)
}

/// One sliced axis of a Slice: `start..end` (normalized, clamped to the axis) by `step`, and the
/// position of the axis in the op's `axes` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceAxis {
    pub axis: usize,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub position: usize,
}

/// The sliced axes of a Slice node with constant bounds (inputs from opset 10, attributes before).
pub fn slice_bounds(g: &Graph, node: NodeId, opset: i64) -> Result<Vec<SliceAxis>, String> {
    let n = g.node(node).ok_or("gone")?;
    let x = n.input(0).ok_or("no input")?;
    let d = dims(g, x).ok_or("unknown shapes")?;
    let constant = |k: usize| -> Result<Option<Vec<i64>>, String> {
        match n.input(k) {
            None => Ok(None),
            Some(v) => {
                g.constant(v).and_then(|t| t.to_i64().ok()).map(Some).ok_or_else(|| "its bounds are computed at run time".to_string())
            }
        }
    };
    let (starts, ends, axes, steps) = if opset >= 10 {
        (constant(1)?.ok_or("no starts")?, constant(2)?.ok_or("no ends")?, constant(3)?, constant(4)?)
    } else {
        let attr = |name: &str| n.attr_ints(name).map(|v| v.to_vec());
        (attr("starts").ok_or("no starts")?, attr("ends").ok_or("no ends")?, attr("axes"), None)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.as_ref().is_some_and(|s| s.len() != axes.len()) {
        return Err("its bounds and axes differ in length".into());
    }
    if steps.as_ref().is_some_and(|s| s.contains(&0)) {
        return Err("a step of 0".into());
    }
    axes.iter()
        .enumerate()
        .map(|(i, &a)| {
            let axis = axis_of(a, d.len()).ok_or("bad axis")?;
            let size = d[axis];
            let clamp = |v: i64| if v < 0 { (v + size).max(0) } else { v.min(size) };
            let step = steps.as_ref().map_or(1, |s| s[i]);
            Ok(SliceAxis { axis, start: clamp(starts[i]), end: clamp(ends[i]), step, position: i })
        })
        .collect()
}

/// The constant integers of a node's input, if it is a constant.
fn const_ints(g: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    g.constant(v?)?.to_i64().ok()
}

impl<'g> Builder<'g> {
    fn slot(&mut self, v: ValueId, axis: usize) -> Result<usize, String> {
        if let Some(&s) = self.by_key.get(&(v, axis)) {
            return Ok(s);
        }
        let d = dims(self.g, v).ok_or_else(|| format!("the shape of '{}' is not known", self.g.value(v).name))?;
        let size = d.get(axis).copied().filter(|s| *s > 0).ok_or_else(|| format!("'{}' has no axis {axis}", self.g.value(v).name))?;
        let id = self.slots.len();
        let base = self.parent.len();
        self.slots.push(Slot { value: v, axis, size: size as usize });
        self.offsets.push(base);
        self.parent.extend(base..base + size as usize);
        self.slot_parent.push(id);
        self.by_key.insert((v, axis), id);
        self.queue.push(id);
        Ok(id)
    }

    fn block(&mut self, at: usize, node: NodeId, why: impl std::fmt::Display) {
        let n = self.g.node(node).map(|n| n.op_type().to_string()).unwrap_or_default();
        self.blocks.push((at, format!("{} ({n}): {why}", self.g.node_label(node))));
    }

    fn effect(&mut self, at: usize, e: Effect) {
        if self.effect_set.insert(e.clone()) {
            self.effects.push((at, e));
        }
    }

    /// Links slot `from` to `(v, axis)` through `map`; a constant `v` (read only by `node`) is a
    /// parameter of `node` instead.
    fn link(&mut self, from: usize, node: NodeId, v: ValueId, axis: usize, map: Map) {
        if self.g.constant(v).is_some() {
            let size = dims(self.g, v).and_then(|d| d.get(axis).copied());
            if !matches!(map, Map::Same) || size != Some(self.slots[from].size as i64) {
                return self.block(from, node, format!("its constant '{}' would need more than slicing", self.g.value(v).name));
            }
            if !is_exclusive_constant(self.g, v, node) {
                return self.block(from, node, format!("its constant '{}' is read by other nodes too", self.g.value(v).name));
            }
            return self.effect(from, Effect::Param { node, value: v, axis });
        }
        let to = match self.slot(v, axis) {
            Ok(s) => s,
            Err(why) => return self.block(from, node, why),
        };
        match map.pairs(self.slots[from].size, self.slots[to].size) {
            Ok(pairs) => {
                let (fo, to_o) = (self.offsets[from], self.offsets[to]);
                for (i, j) in pairs {
                    union(&mut self.parent, fo + i, to_o + j);
                }
                union(&mut self.slot_parent, from, to);
            }
            Err(why) => self.block(from, node, why),
        }
    }

    /// An exclusive constant input of `node` (a weight only it reads), or why not.
    fn weight(&self, node: NodeId, slot: usize) -> Result<Option<ValueId>, String> {
        let Some(v) = self.g.node(node).and_then(|n| n.input(slot)) else { return Ok(None) };
        if self.g.constant(v).is_none() {
            return Err(format!("its input {slot} is not a constant"));
        }
        if !is_exclusive_constant(self.g, v, node) {
            return Err(format!("its constant '{}' is read by other nodes too", self.g.value(v).name));
        }
        Ok(Some(v))
    }

    fn expand(&mut self, s: usize) {
        let Slot { value: v, axis, .. } = self.slots[s].clone();
        let g = self.g;
        let name = &g.value(v).name;
        if g.is_graph_input(v) {
            self.interface.push((s, format!("graph input '{name}'")));
        }
        if g.is_graph_output(v) {
            self.interface.push((s, format!("graph output '{name}'")));
        }
        match &g.value(v).def {
            ValueDef::Op { node, slot } => self.follow(*node, Port::Out(*slot), axis, s),
            ValueDef::Input => {}
            _ => self.blocks.push((s, format!("'{name}' is not computed by an op of this graph"))),
        }
        for &(n, k) in g.value(v).uses() {
            if k == CAPTURE_SLOT {
                self.block(s, n, format!("'{name}' is read by a subgraph"));
            } else {
                self.follow(n, Port::In(k), axis, s);
            }
        }
    }

    fn follow(&mut self, node: NodeId, port: Port, axis: usize, s: usize) {
        if !self.visited.insert((node, port, axis)) {
            return;
        }
        let g = self.g;
        let Some(n) = g.node(node) else { return };
        let flow = channel_flow(n);
        let data_port = matches!(port, Port::In(0) | Port::Out(_));
        let result = match flow {
            ChannelFlow::Layer => self.layer(node, port, axis, s),
            ChannelFlow::Broadcast => self.broadcast(node, port, axis, s),
            // PRelu's slope broadcasts like an operand.
            ChannelFlow::KeepWithParams(_) if n.op_type() == "PRelu" => self.broadcast(node, port, axis, s),
            ChannelFlow::Concat => self.concat(node, port, axis, s),
            ChannelFlow::Split if data_port => self.split(node, port, axis, s),
            ChannelFlow::Slice if data_port => self.slice(node, port, axis, s),
            ChannelFlow::Reshape if data_port => self.reshape(node, port, axis, s),
            ChannelFlow::Keep
            | ChannelFlow::KeepWithParams(_)
            | ChannelFlow::Window
            | ChannelFlow::Transpose
            | ChannelFlow::Reduce
            | ChannelFlow::Normalize
                if data_port =>
            {
                self.unary(node, flow, port, axis, s)
            }
            ChannelFlow::Blocked(why) => Err(why.to_string()),
            _ => Err(format!(
                "the channels reach its input {} (not its data)",
                match port {
                    Port::In(k) | Port::Out(k) => k,
                }
            )),
        };
        if let Err(why) = result {
            self.block(s, node, why);
        }
    }

    fn input(&self, node: NodeId, k: usize) -> Option<ValueId> {
        self.g.node(node).and_then(|n| n.input(k))
    }

    fn output(&self, node: NodeId, k: usize) -> Option<ValueId> {
        self.g.node(node).and_then(|n| n.output(k))
    }

    /// Conv, ConvTranspose, Gemm and MatMul.
    fn layer(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let op = n.op_type().to_string();
        let y = self.output(node, 0).ok_or("no output")?;
        match op.as_str() {
            "Conv" | "ConvTranspose" => {
                let w = self.weight(node, 1)?.ok_or("no weight")?;
                let bias = self.weight(node, 2)?;
                let wd = g.constant(w).ok_or("no weight")?.dims().to_vec();
                let axes = WeightAxes::of(&op, false, wd.len()).ok_or("a weight of unexpected rank")?;
                let group = n.attr_int("group").unwrap_or(1).max(1) as usize;
                if axis != 1 {
                    return Err(format!("the channels reach its axis {axis} (only channels are followed through a convolution)"));
                }
                let x = self.input(node, 0).ok_or("no input")?;
                let (c_in, c_out) = (
                    axes.input_channels(&wd, group as i64).ok_or("bad weight")? as usize,
                    axes.output_channels(&wd, group as i64).ok_or("bad weight")? as usize,
                );
                if group > 1 && op == "ConvTranspose" {
                    return Err("a grouped ConvTranspose (not followed yet)".into());
                }
                let (in_per, out_per) = (c_in / group, c_out / group);
                match port {
                    Port::In(0) if group == 1 => self.effect(s, Effect::Consumes { node, weight: w, axis: axes.input }),
                    Port::In(0) => {
                        self.effect(s, Effect::Groups { node, per_group: in_per });
                        self.link(s, node, y, 1, Map::Groups { from: in_per, to: out_per });
                    }
                    Port::Out(0) => {
                        self.effect(s, Effect::Produces { node, weight: w, axis: axes.output, bias: bias.map(|b| (b, 0)) });
                        if group > 1 {
                            self.link(s, node, x, 1, Map::Groups { from: out_per, to: in_per });
                        }
                    }
                    _ => return Err("the channels reach a non-data port".into()),
                }
                Ok(())
            }
            "Gemm" => {
                let w = self.weight(node, 1)?.ok_or("no weight")?;
                let bias = self.weight(node, 2)?;
                let (ta, tb) = (n.attr_int("transA").unwrap_or(0) != 0, n.attr_int("transB").unwrap_or(0) != 0);
                let a = self.input(node, 0).ok_or("no input")?;
                let (k_axis, m_axis) = if ta { (0, 1) } else { (1, 0) };
                match port {
                    Port::In(0) if axis == k_axis => self.effect(s, Effect::Consumes { node, weight: w, axis: if tb { 1 } else { 0 } }),
                    Port::In(0) => self.link(s, node, y, 0, Map::Same),
                    Port::Out(0) if axis == 1 => {
                        let n_out = self.slots[s].size as i64;
                        let bias = match bias.and_then(|b| g.constant(b).map(|t| (b, t.dims().to_vec()))) {
                            Some((b, d)) if d == [n_out] => Some((b, 0)),
                            Some((b, d)) if d.len() == 2 && d[1] == n_out && n_out > 1 => Some((b, 1)),
                            _ => None,
                        };
                        self.effect(s, Effect::Produces { node, weight: w, axis: if tb { 0 } else { 1 }, bias });
                    }
                    Port::Out(0) => self.link(s, node, a, m_axis, Map::Same),
                    _ => return Err("the channels reach a non-data port".into()),
                }
                Ok(())
            }
            "MatMul" => self.matmul(node, port, axis, s),
            _ => Err("a quantized layer (prune before quantizing)".into()),
        }
    }

    fn matmul(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let (a, b, y) =
            (self.input(node, 0).ok_or("no input")?, self.input(node, 1).ok_or("no input")?, self.output(node, 0).ok_or("no output")?);
        let rank = |v| dims(g, v).map(|d| d.len()).ok_or("unknown shapes");
        let (ra, rb, ry) = (rank(a)?, rank(b)?, rank(y)?);
        if g.constant(a).is_some() {
            return Err("its first operand is a constant".into());
        }
        if g.constant(b).is_some() {
            let w = self.weight(node, 1)?.ok_or("no weight")?;
            if rb != 2 || ra < 2 {
                return Err("a weight of rank other than 2".into());
            }
            match port {
                Port::In(0) if axis == ra - 1 => self.effect(s, Effect::Consumes { node, weight: w, axis: 0 }),
                Port::In(0) => self.link(s, node, y, axis, Map::Same),
                Port::Out(0) if axis == ry - 1 => self.effect(s, Effect::Produces { node, weight: w, axis: 1, bias: None }),
                Port::Out(0) => self.link(s, node, a, axis, Map::Same),
                _ => return Err("the channels reach a non-data port".into()),
            }
            return Ok(());
        }
        // Two activations (attention): the reduction axes of both operands shrink together.
        if ra != rb || ra < 2 {
            return Err("operands of different ranks".into());
        }
        let r = ra;
        let (da, db) = (dims(g, a).ok_or("unknown shapes")?, dims(g, b).ok_or("unknown shapes")?);
        match (port, axis) {
            (Port::In(0), x) if x == r - 1 => self.link(s, node, b, r - 2, Map::Same),
            (Port::In(1), x) if x == r - 2 => self.link(s, node, a, r - 1, Map::Same),
            (Port::In(0), x) if x == r - 2 => self.link(s, node, y, r - 2, Map::Same),
            (Port::In(1), x) if x == r - 1 => self.link(s, node, y, r - 1, Map::Same),
            (Port::Out(0), x) if x == r - 1 => self.link(s, node, b, r - 1, Map::Same),
            (Port::Out(0), x) if x == r - 2 => self.link(s, node, a, r - 2, Map::Same),
            (_, x) => {
                // A batch axis: every operand not broadcast along it.
                self.link(s, node, y, x, Map::Same);
                for (v, d) in [(a, &da), (b, &db)] {
                    if d[x] as usize == self.slots[s].size {
                        self.link(s, node, v, x, Map::Same);
                    }
                }
            }
        }
        Ok(())
    }

    /// Element-wise ops with broadcasting: every operand not broadcast along the axis follows it;
    /// constant operands are parameters.
    fn broadcast(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let y = n.output(0).ok_or("no output")?;
        let ry = dims(g, y).ok_or("unknown shapes")?.len();
        let out_axis = match port {
            Port::Out(0) => axis,
            Port::In(k) => {
                let rk = dims(g, n.input(k).ok_or("no input")?).ok_or("unknown shapes")?.len();
                axis + (ry - rk)
            }
            Port::Out(_) => return Err("a second output".into()),
        };
        let size = self.slots[s].size as i64;
        self.link(s, node, y, out_axis, Map::Same);
        let inputs: Vec<ValueId> = n.inputs().iter().flatten().copied().collect();
        for v in inputs {
            let d = dims(g, v).ok_or("unknown shapes")?;
            let Some(a) = (out_axis + d.len()).checked_sub(ry) else { continue };
            if d[a] == 1 && size != 1 {
                continue;
            }
            if d[a] != size {
                return Err(format!("operand '{}' has {} entries along the axis, not {size}", g.value(v).name, d[a]));
            }
            if g.constant(v).is_some() {
                if !is_exclusive_constant(g, v, node) {
                    return Err(format!("its constant '{}' is read by other nodes too", g.value(v).name));
                }
                self.effect(s, Effect::Param { node, value: v, axis: a });
            } else {
                self.link(s, node, v, a, Map::Same);
            }
        }
        Ok(())
    }

    /// One data input to one output: unary ops, per-channel normalizations, pooling, Transpose,
    /// reductions and normalizations over other axes.
    fn unary(&mut self, node: NodeId, flow: ChannelFlow, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let (x, y) = (n.input(0).ok_or("no input")?, n.output(0).ok_or("no output")?);
        let (dx, dy) = (dims(g, x).ok_or("unknown shapes")?, dims(g, y).ok_or("unknown shapes")?);
        if n.outputs().iter().skip(1).flatten().any(|o| !g.value(*o).uses().is_empty() || g.is_graph_output(*o)) {
            return Err("a second output is read".into());
        }
        // (input axis, output axis) of the slot.
        let (ax, ay) = match flow {
            ChannelFlow::Transpose => {
                let perm: Vec<usize> = match n.attr_ints("perm") {
                    Some(p) => p.iter().map(|&a| a as usize).collect(),
                    None => (0..dx.len()).rev().collect(),
                };
                match port {
                    Port::In(_) => (axis, perm.iter().position(|&p| p == axis).ok_or("bad perm")?),
                    Port::Out(_) => (*perm.get(axis).ok_or("bad perm")?, axis),
                }
            }
            ChannelFlow::Reduce => {
                let axes: Vec<i64> = match n.attr_ints("axes") {
                    Some(a) => a.to_vec(),
                    None if n.input(1).is_some() => const_ints(g, n.input(1)).ok_or("its axes are computed at run time")?,
                    None => Vec::new(),
                };
                let mut reduced: BTreeSet<usize> = axes.iter().filter_map(|&a| axis_of(a, dx.len())).collect();
                if axes.is_empty() && n.attr_int("noop_with_empty_axes").unwrap_or(0) == 0 {
                    reduced = (0..dx.len()).collect();
                }
                let keep = n.attr_int("keepdims").unwrap_or(1) != 0;
                let kept: Vec<usize> = (0..dx.len()).filter(|a| !reduced.contains(a)).collect();
                match port {
                    Port::In(_) if reduced.contains(&axis) => return Err("it reduces over the channels".into()),
                    Port::In(_) => (axis, if keep { axis } else { kept.iter().position(|&a| a == axis).ok_or("bad axes")? }),
                    Port::Out(_) => (if keep { axis } else { *kept.get(axis).ok_or("bad axes")? }, axis),
                }
            }
            _ => (axis, axis),
        };
        match flow {
            ChannelFlow::Normalize => {
                let rank = dx.len();
                let default = if n.op_type() == "LayerNormalization" || self.opset >= 13 { -1 } else { 1 };
                let a = axis_of(n.attr_int("axis").unwrap_or(default), rank).ok_or("bad axis")?;
                let over_trailing = n.op_type() == "LayerNormalization" || self.opset < 13;
                if ax == a || (over_trailing && ax > a) {
                    return Err("it normalizes over the channels".into());
                }
            }
            ChannelFlow::Window => {
                let pooling = !matches!(n.op_type(), "Resize" | "Upsample" | "Pad");
                if (pooling && ax > 1) || dx.get(ax) != dy.get(ay) {
                    return Err("it changes the axis (pooling, resizing or padding it)".into());
                }
                if n.op_type() == "Pad" {
                    let pads = n
                        .attr_ints("pads")
                        .map(|p| p.to_vec())
                        .or_else(|| const_ints(g, n.input(1)))
                        .ok_or("its pads are computed at run time")?;
                    if n.input(3).is_some() || pads.get(ax) != Some(&0) || pads.get(ax + dx.len()) != Some(&0) {
                        return Err("it pads the channels".into());
                    }
                }
                if matches!(n.op_type(), "Resize") && n.input(3).is_some() {
                    return Err("a Resize with target sizes (they would need rewriting)".into());
                }
            }
            ChannelFlow::KeepWithParams(params) if ax == 1 => {
                for &k in params {
                    let Some(p) = n.input(k) else { continue };
                    if g.constant(p).is_none() || !is_exclusive_constant(g, p, node) {
                        return Err(format!("its parameter '{}' is not a constant only it reads", g.value(p).name));
                    }
                    self.effect(s, Effect::Param { node, value: p, axis: 0 });
                }
            }
            ChannelFlow::KeepWithParams(_) if n.op_type() == "InstanceNormalization" && ax > 1 => {
                return Err("it normalizes over this axis".into());
            }
            _ => {}
        }
        match port {
            Port::In(_) => self.link(s, node, y, ay, Map::Same),
            Port::Out(_) => self.link(s, node, x, ax, Map::Same),
        }
        Ok(())
    }

    fn concat(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let y = n.output(0).ok_or("no output")?;
        let rank = dims(g, y).ok_or("unknown shapes")?.len();
        let cat = axis_of(n.attr_int("axis").unwrap_or(0), rank).ok_or("bad axis")?;
        let inputs: Vec<ValueId> = n.inputs().iter().flatten().copied().collect();
        if axis != cat {
            self.link(s, node, y, axis, Map::Same);
            for v in inputs {
                if g.constant(v).is_some() {
                    if !is_exclusive_constant(g, v, node) {
                        return Err(format!("its constant '{}' is read by other nodes too", g.value(v).name));
                    }
                    self.effect(s, Effect::Param { node, value: v, axis });
                } else {
                    self.link(s, node, v, axis, Map::Same);
                }
            }
            return Ok(());
        }
        let mut offset = 0i64;
        for (k, v) in inputs.iter().enumerate() {
            let d = dims(g, *v).ok_or("unknown shapes")?;
            if g.constant(*v).is_some() {
                return Err("a constant is concatenated along the channels".into());
            }
            match port {
                Port::In(j) if j == k => self.link(s, node, y, axis, Map::Offset(offset)),
                Port::Out(_) => self.link(s, node, *v, axis, Map::Offset(-offset)),
                _ => {}
            }
            offset += d[cat];
        }
        Ok(())
    }

    fn split(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let x = n.input(0).ok_or("no input")?;
        let rank = dims(g, x).ok_or("unknown shapes")?.len();
        let at = axis_of(n.attr_int("axis").unwrap_or(0), rank).ok_or("bad axis")?;
        let outputs: Vec<ValueId> = n.outputs().iter().flatten().copied().collect();
        if axis != at {
            for v in outputs {
                self.link(s, node, v, axis, Map::Same);
            }
            return self.split_input_ok(node);
        }
        self.split_input_ok(node)?;
        let mut offset = 0i64;
        for (k, v) in outputs.iter().enumerate() {
            let d = dims(g, *v).ok_or("unknown shapes")?;
            match port {
                Port::In(_) => self.link(s, node, *v, axis, Map::Offset(-offset)),
                Port::Out(j) if j == k => self.link(s, node, x, axis, Map::Offset(offset)),
                _ => {}
            }
            offset += d[at];
        }
        let xs = self.slot(x, axis)?;
        self.effect(xs, Effect::SplitSizes { node });
        Ok(())
    }

    /// Slice: along a sliced axis with constant bounds and step 1, input index `start + j` is
    /// output index `j`; other axes pass through.
    fn slice(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let (x, y) = (n.input(0).ok_or("no input")?, n.output(0).ok_or("no output")?);
        let bounds = slice_bounds(g, node, self.opset)?;
        let Some(b) = bounds.iter().find(|b| b.axis == axis) else {
            let other = match port {
                Port::In(_) => y,
                Port::Out(_) => x,
            };
            self.link(s, node, other, axis, Map::Same);
            return Ok(());
        };
        if b.step != 1 {
            return Err(format!("it slices the channels with step {}", b.step));
        }
        for k in 1..=2 {
            if let Some(v) = n.input(k).filter(|_| self.opset >= 10)
                && !is_exclusive_constant(g, v, node)
            {
                return Err("its bounds are not constants only it reads".into());
            }
        }
        match port {
            Port::In(_) => self.link(s, node, y, axis, Map::Offset(-b.start)),
            Port::Out(_) => self.link(s, node, x, axis, Map::Offset(b.start)),
        }
        let xs = self.slot(x, axis)?;
        self.effect(xs, Effect::SliceBounds { node, axis });
        Ok(())
    }

    fn split_input_ok(&self, node: NodeId) -> Result<(), String> {
        match self.input(node, 1) {
            Some(v) if !is_exclusive_constant(self.g, v, node) => Err("its split sizes are not a constant only it reads".into()),
            _ => Ok(()),
        }
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze, followed by the dims on both sides.
    fn reshape(&mut self, node: NodeId, port: Port, axis: usize, s: usize) -> Result<(), String> {
        let g = self.g;
        let n = g.node(node).ok_or("gone")?;
        let (x, y) = (n.input(0).ok_or("no input")?, n.output(0).ok_or("no output")?);
        let (dx, dy) = (dims(g, x).ok_or("unknown shapes")?, dims(g, y).ok_or("unknown shapes")?);
        let (from, to, to_value) = match port {
            Port::In(_) => (&dx, &dy, y),
            Port::Out(_) => (&dy, &dx, x),
        };
        let (to_axis, map) = follow_reshape(from, axis, to).ok_or("it splits the channel axis or merges it with the axes before it")?;
        let (in_axis, out_axis) = match port {
            Port::In(_) => (axis, to_axis),
            Port::Out(_) => (to_axis, axis),
        };
        if n.op_type() == "Reshape" {
            let shape = n.input(1).ok_or("no target shape")?;
            let target = const_ints(g, Some(shape)).ok_or("its target shape is computed at run time")?;
            match target.get(out_axis) {
                Some(&v) if v > 0 => {
                    if !is_exclusive_constant(g, shape, node) {
                        return Err("its target shape is read by other nodes too".into());
                    }
                    let ys = self.slot(y, out_axis)?;
                    self.effect(ys, Effect::ReshapeTarget { node, shape, position: out_axis });
                }
                Some(0) if in_axis != out_axis || !matches!(map, Map::Same) => return Err("a 0 (copy) in its target shape moves".into()),
                _ => {}
            }
        }
        self.link(s, node, to_value, to_axis, map);
        Ok(())
    }
}

/// Where axis `axis` of `from` dims goes in `to` dims (the same elements reshaped), and how its
/// indices map: kept, expanded into a block (merged with the axes after it) or contracted (the
/// inverse). `None` when the axis is split or merged with the axes before it.
fn follow_reshape(from: &[i64], axis: usize, to: &[i64]) -> Option<(usize, Map)> {
    let prefix: i64 = from[..axis].iter().product();
    let size = from[axis];
    let mut acc = 1i64;
    for (b, &d) in to.iter().enumerate() {
        if acc == prefix && d != 1 {
            let after = |dims: &[i64], start: usize, m: i64| {
                let mut p = 1i64;
                for &e in &dims[start..] {
                    if p == m {
                        break;
                    }
                    p *= e;
                }
                p == m
            };
            return if d == size {
                Some((b, Map::Same))
            } else if d > size && d % size == 0 && after(from, axis + 1, d / size) {
                Some((b, Map::Expand((d / size) as usize)))
            } else if size > d && size % d == 0 && after(to, b + 1, size / d) {
                Some((b, Map::Contract((size / d) as usize)))
            } else {
                None
            };
        }
        acc *= d;
        if acc > prefix {
            return None;
        }
    }
    None
}

/// The groups of `g` (shapes inferred; `opset`: the default domain's).
pub fn analyze(g: &Graph, opset: i64) -> Result<Analysis, String> {
    let mut b = Builder {
        g,
        opset,
        slots: Vec::new(),
        by_key: HashMap::new(),
        offsets: Vec::new(),
        parent: Vec::new(),
        slot_parent: Vec::new(),
        effects: Vec::new(),
        effect_set: HashSet::new(),
        blocks: Vec::new(),
        interface: Vec::new(),
        visited: HashSet::new(),
        queue: Vec::new(),
    };
    let order = g.topo_order().map_err(|_| "the graph has a cycle".to_string())?;
    for id in order {
        let Some(n) = g.node(id) else { continue };
        if channel_flow(n) != ChannelFlow::Layer || n.input(1).is_none_or(|w| g.constant(w).is_none()) {
            continue;
        }
        let Some(y) = n.output(0) else { continue };
        let Some(rank) = dims(g, y).map(|d| d.len()) else { continue };
        let axis = if n.op_type() == "MatMul" { rank - 1 } else { 1 };
        if rank < 2 || b.by_key.contains_key(&(y, axis)) {
            continue;
        }
        if b.slot(y, axis).is_err() {
            continue;
        }
        while let Some(s) = b.queue.pop() {
            b.expand(s);
        }
    }
    Ok(b.finish())
}

impl Builder<'_> {
    fn finish(mut self) -> Analysis {
        let n = self.slots.len();
        let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
        for s in 0..n {
            let root = find(&mut self.slot_parent, s);
            members.entry(root).or_default().push(s);
        }
        let mut roots: Vec<usize> = members.keys().copied().collect();
        roots.sort();
        let mut groups = Vec::new();
        for root in roots {
            let slots = members[&root].clone();
            let in_group: HashSet<usize> = slots.iter().copied().collect();
            let effects: Vec<(usize, Effect)> = self.effects.iter().filter(|(s, _)| in_group.contains(s)).cloned().collect();
            let producers: Vec<usize> = effects.iter().filter(|(_, e)| matches!(e, Effect::Produces { .. })).map(|(s, _)| *s).collect();
            if producers.is_empty() {
                continue;
            }
            // Classes of indices, keyed by root, in the order of the first producing slot.
            let mut classes: Vec<Vec<(usize, usize)>> = Vec::new();
            let mut class_of: HashMap<usize, usize> = HashMap::new();
            let mut producing: Vec<bool> = Vec::new();
            let ordered: Vec<usize> = producers.iter().copied().chain(slots.iter().copied()).collect();
            let mut seen = HashSet::new();
            for s in ordered {
                if !seen.insert(s) {
                    continue;
                }
                for i in 0..self.slots[s].size {
                    let r = find(&mut self.parent, self.offsets[s] + i);
                    let c = *class_of.entry(r).or_insert_with(|| {
                        classes.push(Vec::new());
                        producing.push(false);
                        classes.len() - 1
                    });
                    classes[c].push((s, i));
                    if producers.contains(&s) {
                        producing[c] = true;
                    }
                }
            }
            let fixed_slots: HashSet<usize> = self.interface.iter().filter(|(s, _)| in_group.contains(s)).map(|(s, _)| *s).collect();
            let channels: Vec<Vec<(usize, usize)>> = classes.into_iter().zip(&producing).filter(|(_, p)| **p).map(|(c, _)| c).collect();
            let fixed = channels.iter().map(|c| c.iter().any(|(s, _)| fixed_slots.contains(s))).collect();
            let mut declined: Vec<String> = self.blocks.iter().filter(|(s, _)| in_group.contains(s)).map(|(_, w)| w.clone()).collect();
            declined.dedup();
            let mut interface: Vec<String> = self.interface.iter().filter(|(s, _)| in_group.contains(s)).map(|(_, w)| w.clone()).collect();
            interface.dedup();
            groups.push(Group { slots, effects, channels, fixed, declined, interface });
        }
        Analysis { slots: self.slots, groups }
    }
}

impl Analysis {
    /// How many of the groups `indices` run through each kind of block, as `kind count` pairs
    /// joined by commas (empty when none): `residual` (an Add or Sub of two tensors of the group),
    /// `concat/split/slice` (along the channels), `depthwise/grouped` (a grouped Conv),
    /// `squeeze-excitation` (a Mul of a `[N, C, 1, 1]` tensor of the group by a full-size one),
    /// `flatten into dense` (a Reshape or Flatten feeding a Gemm or MatMul). A group can count
    /// under several kinds.
    pub fn block_summary(&self, g: &Graph, indices: &[usize]) -> String {
        // Values computed from the graph's inputs (not a bias reshaped from a constant).
        let mut data: HashSet<ValueId> = g.runtime_inputs().collect();
        for n in g.topo_order().unwrap_or_default() {
            let Some(node) = g.node(n) else { continue };
            if node.inputs().iter().flatten().any(|i| data.contains(i)) {
                data.extend(node.outputs().iter().flatten().copied());
            }
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for &i in indices {
            for kind in self.block_kinds(g, i, &data) {
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }

    /// The kinds of block group `index` runs through ([`Analysis::block_summary`]); `data`: the
    /// values computed from the graph's inputs.
    fn block_kinds(&self, g: &Graph, index: usize, data: &HashSet<ValueId>) -> BTreeSet<&'static str> {
        let group = &self.groups[index];
        let values: HashSet<ValueId> = group.slots.iter().map(|&s| self.slots[s].value).collect();
        let spatial_ones =
            |v: ValueId| g.value(v).shape.as_ref().is_some_and(|s| s.rank() > 2 && s.0[2..].iter().all(|d| d.known() == Some(1)));
        let mut kinds = BTreeSet::new();
        for &v in &values {
            let Some(node) = g.value(v).producer().and_then(|n| g.node(n)) else { continue };
            let inputs: Vec<ValueId> = node.inputs().iter().flatten().copied().filter(|i| values.contains(i) && data.contains(i)).collect();
            match node.op_type() {
                "Add" | "Sub" | "Sum" if inputs.len() >= 2 => {
                    kinds.insert("residual");
                }
                "Concat" | "Split" | "Slice" => {
                    kinds.insert("concat/split/slice");
                }
                "Mul" if inputs.len() == 2 && spatial_ones(inputs[0]) != spatial_ones(inputs[1]) => {
                    kinds.insert("squeeze-excitation");
                }
                "Reshape" | "Flatten"
                    if g.value(v).uses().iter().any(|(u, _)| g.node(*u).is_some_and(|n| matches!(n.op_type(), "Gemm" | "MatMul"))) =>
                {
                    kinds.insert("flatten into dense");
                }
                _ => {}
            }
        }
        if group.effects.iter().any(|(_, e)| matches!(e, Effect::Groups { .. })) {
            kinds.insert("depthwise/grouped");
        }
        kinds
    }

    /// The readable form of one group (what `whittle groups` prints).
    pub fn describe(&self, g: &Graph, index: usize) -> String {
        let group = &self.groups[index];
        let mut s = String::new();
        let status = if !group.declined.is_empty() {
            format!("declined: {}", group.declined.join("; "))
        } else if group.removable() == 0 {
            format!("fixed: reaches {}", group.interface.join(", "))
        } else {
            format!("{} removable", group.removable())
        };
        let _ = writeln!(s, "group {index}: {} channels, {status}", group.channels.len());
        let label = |n: NodeId| format!("{} ({})", g.node_label(n), g.node(n).map(|n| n.op_type()).unwrap_or(""));
        let name = |v: ValueId| g.value(v).name.clone();
        let mut lines: Vec<String> = group
            .effects
            .iter()
            .map(|(_, e)| match e {
                Effect::Produces { node, weight, axis, bias } => format!(
                    "  produced by {}: {} axis {axis}{}",
                    label(*node),
                    name(*weight),
                    bias.map(|(b, a)| format!(", {} axis {a}", name(b))).unwrap_or_default()
                ),
                Effect::Consumes { node, weight, axis } => format!("  consumed by {}: {} axis {axis}", label(*node), name(*weight)),
                Effect::Param { node, value, axis } => format!("  parameter of {}: {} axis {axis}", label(*node), name(*value)),
                Effect::Groups { node, per_group } => {
                    format!("  groups of {}: {per_group} input channel{} per group", label(*node), if *per_group == 1 { "" } else { "s" })
                }
                Effect::ReshapeTarget { node, position, .. } => format!("  target shape of {}: entry {position}", label(*node)),
                Effect::SplitSizes { node } => format!("  split sizes of {}", label(*node)),
                Effect::SliceBounds { node, .. } => format!("  slice bounds of {}", label(*node)),
            })
            .collect();
        lines.sort();
        lines.dedup();
        for l in lines {
            let _ = writeln!(s, "{l}");
        }
        let tensors: Vec<String> = group
            .slots
            .iter()
            .map(|&i| {
                let slot = &self.slots[i];
                format!("{}[{}]={}", name(slot.value), slot.axis, slot.size)
            })
            .collect();
        let _ = writeln!(s, "  tensors: {}", tensors.join(", "));
        s
    }

    /// Every group, described.
    pub fn describe_all(&self, g: &Graph) -> String {
        (0..self.groups.len()).map(|i| self.describe(g, i)).collect::<Vec<_>>().join("\n")
    }
}
