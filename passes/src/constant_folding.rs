//! `constant_folding`: replaces operations whose inputs are all known by the constants they compute.
//!
//! An operation is folded when every input it reads is a constant (or, for `Shape`/`Size`, when its
//! input's shape is fully known from the pipeline's input shapes), it has no subgraph, and
//! evaluating it succeeds with the one evaluator ([`whittle_graph::eval`]); an op it does not
//! compute is declined with the reason.
//! Constants nobody reads any more are removed. `Constant` nodes are turned into initializers
//! (`lift_constant_nodes`), as onnx-simplifier does. **Exact**: the evaluator computes what the
//! operator defines.
//!
//! Size cap: a fold whose result is larger than the constants it reads by more than
//! `max_growth_bytes` is declined (Expand/Tile of constants would inflate the file). A
//! `ConstantOfShape` of a constant shape becomes a constant kept in its compact node form, so
//! it never grows the file (old converters write large weights that way).
//!
//! Shapes: folding `Shape` bakes the current input shapes into the model. When that happens the
//! graph inputs' declared shapes are pinned to those concrete shapes, so the exported model says
//! what it accepts (reported as a note).

use serde::{Deserialize, Serialize};
use whittle_graph::patch::remove_node_and_orphans;
use whittle_graph::{ConstOrigin, Model, NodeId, OrderKey, Tensor, ValueDef, ValueId};

use crate::driver::topo_order;
use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use whittle_graph::eval::{EvalError, eval_node, shape_or_size};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Largest growth in bytes a single fold may cause.
    pub max_growth_bytes: u64,
    /// Fold `Shape`/`Size` of values whose shape is known (pins the input shapes).
    pub fold_shapes: bool,
    /// Turn `Constant` nodes into initializers.
    pub lift_constant_nodes: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params { max_growth_bytes: 1024, fold_shapes: true, lift_constant_nodes: true }
    }
}

pub struct ConstantFolding(Params);

impl PassDef for ConstantFolding {
    const NAME: &'static str = "constant_folding";
    const SUMMARY: &'static str = "Replace operations on known values by the constants they compute";
    const EXACT: bool = true;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("max_growth_bytes", "integer", "largest growth in bytes one fold may cause"),
        ("fold_shapes", "bool", "fold Shape/Size of values with known shapes (pins the model's input shapes)"),
        ("lift_constant_nodes", "bool", "turn Constant nodes into initializers"),
    ];
    fn new(params: Params) -> Self {
        ConstantFolding(params)
    }
}

/// What folding one node gives.
enum Outcome {
    Folded(Vec<Tensor>),
    Declined(String),
    NotCandidate,
}

impl ConstantFolding {
    fn try_fold(&self, model: &Model, id: NodeId) -> Outcome {
        let g = &model.graph;
        let Some(n) = g.node(id) else { return Outcome::NotCandidate };
        if n.attributes.iter().any(|a| !a.subgraphs.is_empty()) || !n.captures().is_empty() {
            return Outcome::NotCandidate;
        }
        let shape_op = n.domain().is_empty() && matches!(n.op_type(), "Shape" | "Size");
        if shape_op && self.0.fold_shapes {
            let Some(x) = n.input(0) else { return Outcome::NotCandidate };
            if g.constant(x).is_none() {
                return match g.value(x).shape.as_ref().and_then(|s| s.concrete()) {
                    Some(dims) => Outcome::Folded(vec![shape_or_size(n, &dims)]),
                    None => Outcome::NotCandidate,
                };
            }
        }
        let inputs: Vec<Option<&Tensor>> = n.inputs().iter().map(|v| v.and_then(|v| g.constant(v))).collect();
        if n.inputs().iter().zip(&inputs).any(|(v, t)| v.is_some() && t.is_none()) || n.inputs().iter().all(|v| v.is_none()) {
            return Outcome::NotCandidate;
        }
        let result = match eval_node(n, &inputs) {
            Ok(out) => Ok(out),
            Err(EvalError::Unsupported(why)) => Err(format!("the evaluator does not compute it ({why})")),
            Err(EvalError::Invalid(why)) => Err(format!("its inputs are invalid for the op: {why}")),
        };
        match result {
            Ok(out) => {
                // What the inputs take in the file (a compact ConstantOfShape: only its node).
                let in_bytes: u64 = n.inputs().iter().flatten().filter_map(|v| g.stored_bytes(*v)).sum();
                let out_bytes: u64 = out.iter().map(Tensor::byte_size).sum();
                if out_bytes > in_bytes + self.0.max_growth_bytes {
                    Outcome::Declined(format!("the result ({out_bytes} bytes) would grow the model by more than max_growth_bytes"))
                } else {
                    Outcome::Folded(out)
                }
            }
            Err(why) => Outcome::Declined(why),
        }
    }
}

impl Pass for ConstantFolding {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let mut folded_shapes = false;
        let order = topo_order(&model.graph)?;
        for id in order {
            let (label, op, is_shape) = match model.graph.node(id) {
                Some(n) => (model.graph.node_label(id), n.op_type().to_string(), matches!(n.op_type(), "Shape" | "Size")),
                None => continue,
            };
            // A ConstantOfShape of a known shape becomes a constant that the file still stores as
            // the one compact node: later folds can read it, and the model does not grow.
            if op == "ConstantOfShape" && model.graph.constant_of_shape_as_constant(id) {
                report.applied += 1;
                continue;
            }
            match self.try_fold(model, id) {
                Outcome::Folded(tensors) => {
                    folded_shapes |=
                        is_shape && model.graph.node(id).and_then(|n| n.input(0)).is_some_and(|x| model.graph.constant(x).is_none());
                    replace_with_constants(model, id, tensors);
                    report.applied += 1;
                }
                Outcome::Declined(why) => report.decline(label, op, why),
                Outcome::NotCandidate => {}
            }
        }
        if folded_shapes {
            pin_input_shapes(model, &mut report);
        }
        if self.0.lift_constant_nodes {
            report.applied += lift_constant_nodes(model, self.0.max_growth_bytes);
        }
        Ok(report)
    }
}

/// Replaces a node's outputs by constants (keeping their names) and removes the node.
fn replace_with_constants(model: &mut Model, id: NodeId, tensors: Vec<Tensor>) {
    let g = &mut model.graph;
    let Some(n) = g.node(id) else { return };
    let outputs: Vec<Option<ValueId>> = n.outputs().to_vec();
    for (out, tensor) in outputs.iter().zip(tensors) {
        let Some(out) = out else { continue };
        let name = g.value(*out).name.clone();
        let tmp = g.fresh_name(&format!("{name}__folded"));
        let c = g.add_constant(&tmp, tensor);
        g.replace_all_uses(*out, c);
        // Keep the original name for the constant (graph outputs already took it over).
        if g.value(c).name == tmp {
            let placeholder = g.fresh_name(&format!("{name}__unfolded"));
            g.rename_value(*out, &placeholder);
            g.rename_value(c, &name);
            let t = g.constant(c).expect("just added").renamed(&name);
            g.set_constant(c, t);
        }
    }
    remove_node_and_orphans(g, id);
}

/// Declares the graph inputs with the concrete shapes the folds assumed.
fn pin_input_shapes(model: &mut Model, report: &mut PassReport) {
    let g = &mut model.graph;
    let pins: Vec<(ValueId, whittle_graph::Shape, whittle_graph::DataType)> = g
        .runtime_inputs()
        .filter_map(|v| {
            let value = g.value(v);
            let shape = value.shape.clone().filter(|s| s.concrete().is_some())?;
            Some((v, shape, value.dtype.unwrap_or(whittle_graph::DataType::Float)))
        })
        .collect();
    for (v, shape, dtype) in pins {
        if g.set_input_shape(v, &shape, dtype) {
            report.notes.push(format!("input '{}' pinned to {shape}: Shape computations were folded for it", g.value(v).name));
        }
    }
}

/// A ConstantOfShape node takes about this many bytes in a file: lifting one whose data is
/// larger would grow the model.
const SPLAT_LIFT_BYTES: u64 = 32;

/// Turns `Constant` nodes into initializers (ConstantOfShape ones only when their data is no
/// larger than the node, sparse ones never: the cleanup never grows a model).
fn lift_constant_nodes(model: &mut Model, max_bytes: u64) -> usize {
    let g = &mut model.graph;
    let ids: Vec<ValueId> = g.value_ids().collect();
    let mut lifted = 0;
    for v in ids {
        let value = g.value(v);
        // Sparse constants (sparse_storage) stay sparse: lifting them would grow the file.
        let Some(c) = value.constant().filter(|c| !c.is_sparse()) else { continue };
        let ConstOrigin::Node { proto, inputs, .. } = &c.origin else { continue };
        let splat = proto.op_type.as_deref() != Some("Constant");
        if splat && c.tensor.byte_size() > SPLAT_LIFT_BYTES.min(max_bytes) {
            continue;
        }
        let deps = inputs.clone();
        let name = value.name.clone();
        let order = OrderKey { major: g.next_order_key(), minor: 0 };
        if let ValueDef::Constant(c) = &mut g.value_mut(v).def {
            c.origin = ConstOrigin::New(order);
            c.tensor = c.tensor.renamed(&name);
        }
        for d in deps {
            g.remove_value_if_unused(d);
        }
        lifted += 1;
    }
    lifted
}
