//! IR validation: collects every problem instead of stopping at the first.
//!
//! Checks (recursively into subgraphs): every node input and graph output is defined; value names
//! are unique; the graph is acyclic; the graph has outputs; element types agree on the operands of
//! ops that require one type (element-wise arithmetic, Concat, Conv, Gemm, MatMul, ...). The pass
//! manager runs it after every step, so each issue names the node (name and op type) or tensor:
//! first the structure ([`Checks::Structure`]), then, after shape inference has typed the values a
//! pass created, the element types ([`Checks::Types`]).

use std::collections::HashMap;

use crate::dtype::DataType;
use crate::error::GraphIssue;
use crate::ir::{Graph, ValueDef, ValueId};
use crate::model::Model;

/// Which checks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    /// Names, definitions, cycles and outputs: what holds whatever the types.
    Structure,
    /// Element types of operands that must agree (needs inferred dtypes on new values).
    Types,
    All,
}

/// Validates a model's main graph and its subgraphs (every check). An empty list means valid.
pub fn validate(model: &Model) -> Vec<GraphIssue> {
    validate_with(model, Checks::All)
}

/// Validates a model with the chosen checks.
pub fn validate_with(model: &Model, checks: Checks) -> Vec<GraphIssue> {
    let mut issues = Vec::new();
    validate_graph(&model.graph, true, checks, &mut issues);
    issues
}

/// What defines a value, for messages ("graph input", "node 'conv1' (Conv)", ...).
fn definer(g: &Graph, v: ValueId) -> String {
    match &g.value(v).def {
        ValueDef::Input => "a graph input".into(),
        ValueDef::Op { node, .. } => {
            let op = g.node(*node).map(|n| n.op_type().to_string()).unwrap_or_default();
            format!("node '{}' ({op})", g.node_label(*node))
        }
        ValueDef::Constant(c) => match &c.origin {
            crate::ir::ConstOrigin::Node { proto, .. } => {
                format!("{} node '{}'", proto.op_type.as_deref().unwrap_or(""), proto.name.as_deref().unwrap_or(""))
            }
            _ => "an initializer".into(),
        },
        ValueDef::Sparse => "a sparse initializer".into(),
        ValueDef::Outer => "an outer-scope value".into(),
        ValueDef::Undefined => "nothing".into(),
    }
}

/// Validates one graph (`main`: the top-level graph, which must have outputs).
pub fn validate_graph(g: &Graph, main: bool, checks: Checks, issues: &mut Vec<GraphIssue>) {
    let structure = checks != Checks::Types;
    let types = checks != Checks::Structure;
    let mut seen: HashMap<&str, ValueId> = HashMap::new();
    for v in g.value_ids().filter(|_| structure) {
        let value = g.value(v);
        if value.name.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(value.name.as_str(), v) {
            issues.push(GraphIssue::DuplicateName { name: value.name.clone(), first: definer(g, first), second: definer(g, v) });
        }
    }
    let order = match g.topo_order() {
        Ok(order) => order,
        Err(cycle) => {
            if structure {
                issues.push(GraphIssue::Cycle(cycle.iter().map(|n| g.node_label(*n)).collect()));
            }
            g.node_ids()
        }
    };
    for id in order {
        let Some(node) = g.node(id) else { continue };
        for v in node.inputs().iter().flatten().chain(node.captures()).filter(|_| structure) {
            if !is_defined(g, *v) {
                issues.push(GraphIssue::Dangling {
                    node: g.node_label(id),
                    op_type: node.op_type().to_string(),
                    tensor: g.value(*v).name.clone(),
                });
            }
        }
        if let Some(message) = dtype_mismatch(g, id).filter(|_| types) {
            issues.push(GraphIssue::BadNode { node: g.node_label(id), op_type: node.op_type().to_string(), message });
        }
        for attr in &node.attributes {
            for sub in &attr.subgraphs {
                validate_graph(sub, false, checks, issues);
            }
        }
    }
    if structure && main && g.outputs().next().is_none() {
        issues.push(GraphIssue::Other("the graph has no outputs".into()));
    }
    for out in g.outputs().filter(|_| structure) {
        if !is_defined(g, out) {
            issues.push(GraphIssue::MissingOutput(g.value(out).name.clone()));
        }
    }
}

fn is_defined(g: &Graph, v: ValueId) -> bool {
    if !g.is_alive(v) {
        return false;
    }
    match g.value(v).def {
        ValueDef::Undefined => false,
        ValueDef::Op { node, .. } => g.node(node).is_some(),
        _ => true,
    }
}

/// Inputs (by position) that must share one element type, for the ops that require it.
fn same_type_inputs(op: &str) -> Option<&'static [usize]> {
    Some(match op {
        "Add" | "Sub" | "Mul" | "Div" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "PRelu" | "MatMul" => &[0, 1],
        "Conv" | "ConvTranspose" | "Gemm" => &[0, 1, 2],
        "Where" => &[1, 2],
        "BatchNormalization" | "InstanceNormalization" | "LayerNormalization" => &[0, 1, 2],
        _ => return None,
    })
}

fn dtype_mismatch(g: &Graph, id: crate::ir::NodeId) -> Option<String> {
    let node = g.node(id)?;
    if !node.domain().is_empty() {
        return None;
    }
    let dtype = |v: ValueId| g.value(v).dtype;
    let positions: Vec<usize> = match node.op_type() {
        "Concat" | "Sum" | "Max" | "Min" | "Mean" => (0..node.inputs().len()).collect(),
        op => same_type_inputs(op)?.to_vec(),
    };
    let typed: Vec<(usize, DataType)> = positions.iter().filter_map(|&i| node.input(i).and_then(|v| dtype(v).map(|t| (i, t)))).collect();
    let (first_slot, first) = *typed.first()?;
    typed.iter().find(|(_, t)| *t != first).map(|(slot, t)| {
        let name = |i: usize| node.input(i).map(|v| g.value(v).name.clone()).unwrap_or_default();
        format!(
            "input {first_slot} '{}' is {first} but input {slot} '{}' is {t}; {} needs one element type",
            name(first_slot),
            name(*slot),
            node.op_type()
        )
    })
}
