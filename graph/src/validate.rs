//! IR validation: collects every problem instead of stopping at the first.
//!
//! Checks (recursively into subgraphs): every node input and graph output is defined; value names
//! are unique; the graph is acyclic; the graph has outputs; element types agree on the operands of
//! ops that require one type (element-wise arithmetic, Concat, Conv, Gemm, MatMul, ...). The pass
//! manager runs it after every step, so each issue names the node (name and op type) or tensor.

use std::collections::HashMap;

use crate::dtype::DataType;
use crate::error::GraphIssue;
use crate::ir::{Graph, ValueDef, ValueId};
use crate::model::Model;

/// Validates a model's main graph and its subgraphs. An empty list means valid.
pub fn validate(model: &Model) -> Vec<GraphIssue> {
    let mut issues = Vec::new();
    validate_graph(&model.graph, true, &mut issues);
    issues
}

/// Validates one graph (`main`: the top-level graph, which must have outputs).
pub fn validate_graph(g: &Graph, main: bool, issues: &mut Vec<GraphIssue>) {
    let mut seen: HashMap<&str, ValueId> = HashMap::new();
    for v in g.value_ids() {
        let value = g.value(v);
        if value.name.is_empty() {
            continue;
        }
        if let Some(_first) = seen.insert(value.name.as_str(), v) {
            issues.push(GraphIssue::DuplicateName { name: value.name.clone(), first: "one value".into(), second: "another".into() });
        }
    }
    let order = match g.topo_order() {
        Ok(order) => order,
        Err(cycle) => {
            issues.push(GraphIssue::Cycle(cycle.iter().map(|n| g.node_label(*n)).collect()));
            g.node_ids()
        }
    };
    for id in order {
        let Some(node) = g.node(id) else { continue };
        for v in node.inputs().iter().flatten().chain(node.captures()) {
            if !is_defined(g, *v) {
                issues.push(GraphIssue::Dangling {
                    node: g.node_label(id),
                    op_type: node.op_type().to_string(),
                    tensor: g.value(*v).name.clone(),
                });
            }
        }
        if let Some(message) = dtype_mismatch(g, id) {
            issues.push(GraphIssue::BadNode { node: g.node_label(id), op_type: node.op_type().to_string(), message });
        }
        for attr in &node.attributes {
            for sub in &attr.subgraphs {
                validate_graph(sub, false, issues);
            }
        }
    }
    if main && g.outputs().next().is_none() {
        issues.push(GraphIssue::Other("the graph has no outputs".into()));
    }
    for out in g.outputs() {
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
