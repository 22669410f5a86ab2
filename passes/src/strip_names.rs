//! `strip_names`: gives every internal value a short name (`0`, `1`, ... `z`, `10`, ... in base
//! 36) and drops the names and doc strings of the nodes, like `strip` on a binary.
//!
//! Names are metadata: a value's name only ties its writer to its readers, and node names are
//! optional in ONNX. On a quantized model they are a large share of the file: every
//! Quantize/DequantizeLinear pair repeats the tensor's name in about a dozen places (on the
//! PP-OCR classifier the names are 44 kB of a 203 kB INT8 file). **Exact**: nothing a model
//! computes depends on a name.
//!
//! What keeps its name: the graph's inputs and outputs (the model's interface), values read by a
//! subgraph (the subgraph refers to them by name) and any name a subgraph uses (so no inner name
//! is shadowed). Subgraphs are left as they are. Short names are handed out in the graph's value
//! order, skipping kept names, so a second run changes nothing. Debugging names are lost: run it
//! last, on the model you ship.

use std::collections::HashSet;

use whittle_graph::ir::CAPTURE_SLOT;
use whittle_graph::{Graph, Model, ValueId};

use crate::pass::{NoParams, Pass, PassContext, PassDef, PassError, PassReport};

pub struct StripNames;

impl PassDef for StripNames {
    const NAME: &'static str = "strip_names";
    const SUMMARY: &'static str = "Give internal values short names and drop node names and doc strings (run last)";
    const EXACT: bool = true;
    type Params = NoParams;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[];
    fn new(_: NoParams) -> Self {
        StripNames
    }
}

/// `k` in base 36 with digits `0-9a-z`.
fn short_name(mut k: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[k % 36]);
        k /= 36;
        if k == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Every value name used in the subgraphs of `g`'s nodes, at any depth.
fn subgraph_names(g: &Graph, names: &mut HashSet<String>) {
    for id in g.node_ids() {
        let Some(node) = g.node(id) else { continue };
        for sub in node.attributes.iter().flat_map(|a| &a.subgraphs) {
            names.extend(sub.value_ids().map(|v| sub.value(v).name.clone()));
            subgraph_names(sub, names);
        }
    }
}

/// Names that must stay: the interface, values subgraphs capture, names used inside subgraphs.
fn kept_names(g: &Graph) -> HashSet<String> {
    let mut kept: HashSet<String> = g.inputs().chain(g.outputs()).map(|v| g.value(v).name.clone()).collect();
    kept.extend(
        g.value_ids().filter(|v| g.value(*v).uses().iter().any(|(_, slot)| *slot == CAPTURE_SLOT)).map(|v| g.value(v).name.clone()),
    );
    subgraph_names(g, &mut kept);
    kept
}

impl Pass for StripNames {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let g = &mut model.graph;
        let kept = kept_names(g);
        let renamable: Vec<ValueId> = g.value_ids().filter(|v| !g.value(*v).name.is_empty() && !kept.contains(&g.value(*v).name)).collect();
        let mut counter = 0;
        let mut targets = Vec::with_capacity(renamable.len());
        for _ in &renamable {
            let name = loop {
                let candidate = short_name(counter);
                counter += 1;
                if !kept.contains(&candidate) {
                    break candidate;
                }
            };
            targets.push(name);
        }
        let moved: Vec<(ValueId, String)> = renamable.into_iter().zip(targets).filter(|(v, name)| g.value(*v).name != *name).collect();
        let name_bytes_before: usize = moved.iter().map(|(v, _)| g.value(*v).name.len()).sum();
        // Through names no model can hold, so a target never collides with a value not yet moved.
        for (i, (v, _)) in moved.iter().enumerate() {
            if !g.rename_value(*v, &format!("\u{1}{i}")) {
                return Err(PassError::new(format!("strip_names: could not free the name of `{}`", g.value(*v).name)));
            }
        }
        for (v, name) in &moved {
            if !g.rename_value(*v, name) {
                return Err(PassError::new(format!("strip_names: the short name `{name}` is taken")));
            }
        }
        let nodes = g.strip_node_names();
        let mut report = PassReport::default();
        if !moved.is_empty() {
            let saved = name_bytes_before - moved.iter().map(|(_, n)| n.len()).sum::<usize>();
            report.record(format!("{} values renamed ({saved} bytes of names, once each)", moved.len()));
        }
        if nodes > 0 {
            report.record(format!("{nodes} node names dropped"));
        }
        if !kept.is_empty() {
            report.notes.push(format!("{} names kept (graph inputs and outputs, values subgraphs read)", kept.len()));
        }
        Ok(report)
    }
}
