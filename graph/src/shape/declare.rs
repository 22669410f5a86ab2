//! Declared shapes that agree with what the graph computes.
//!
//! A file declares the shapes of its outputs (and, in `value_info`, of intermediate values).
//! After a pass changes shapes (input shapes pinned by constant folding, channels pruned) those
//! declarations can contradict what inference now derives from the declared inputs, and
//! `onnx.checker` with `full_check` refuses the model ("Inferred shape and existing shape
//! differ"). [`reconcile_declared_shapes`] infers shapes from the model's declared inputs alone
//! and updates each contradicted output declaration to the inferred one (symbolic names kept
//! where inference knows nothing better), and drops contradicted `value_info` entries, which are optional hints.

use crate::model::Model;
use crate::onnx::type_proto;
use crate::shape::infer::{InferOptions, infer_shapes};
use crate::shape::{Dim, Shape};

/// Whether a declared shape contradicts an inferred one: ranks differ, a declared dimension is
/// negative, or both know a dimension and disagree.
fn contradicts(declared: &Shape, inferred: &Shape) -> bool {
    declared.rank() != inferred.rank()
        || declared.0.iter().zip(&inferred.0).any(|(d, i)| match (d, i) {
            (Dim::Known(a), _) if *a < 0 => true,
            (Dim::Known(a), Dim::Known(b)) => a != b,
            _ => false,
        })
}

/// The declaration to write: inferred dimensions where known, the declared symbol otherwise.
fn merged(declared: &Shape, inferred: &Shape) -> Shape {
    if declared.rank() != inferred.rank() {
        return inferred.clone();
    }
    Shape(
        declared
            .0
            .iter()
            .zip(&inferred.0)
            .map(|(d, i)| match (d, i) {
                (_, Dim::Known(v)) => Dim::Known(*v),
                (Dim::Sym(s), _) => Dim::Sym(s.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

/// Makes the declared output shapes and `value_info` of the main graph agree with inference
/// from the declared inputs; returns what changed, one line each. Leaves the model alone when
/// inference fails.
pub fn reconcile_declared_shapes(model: &mut Model) -> Vec<String> {
    let mut probe = model.clone();
    // A declared -1 is how some exporters write "dynamic": infer with it unknown.
    let inputs: Vec<_> = probe.graph.runtime_inputs().collect();
    for v in inputs {
        if let Some(s) = probe.graph.value(v).shape.clone() {
            let s = Shape(s.0.into_iter().map(|d| if d.known().is_some_and(|k| k < 0) { Dim::Unknown } else { d }).collect());
            probe.graph.value_mut(v).shape = Some(s);
        }
    }
    if let Err(e) = infer_shapes(&mut probe, &InferOptions::default()) {
        return vec![format!("declared output shapes were not checked: inference from the declared inputs failed ({e})")];
    }
    let mut changes = Vec::new();
    let g = &mut model.graph;
    for (v, info) in g.outputs.iter_mut() {
        let Some(inferred) = probe.graph.value(*v).shape.clone() else { continue };
        let Some(type_proto::Value::TensorType(t)) = info.r#type.as_mut().and_then(|t| t.value.as_mut()) else { continue };
        let Some(declared) = t.shape.as_ref().map(Shape::from_proto) else { continue };
        if contradicts(&declared, &inferred) {
            let new = merged(&declared, &inferred);
            changes.push(format!(
                "output '{}' declared {declared}, now {new} (as inferred from the declared inputs)",
                info.name.as_deref().unwrap_or("")
            ));
            t.shape = Some(new.to_proto());
        }
    }
    let before = g.value_info.len();
    g.value_info.retain(|(v, info)| {
        let Some(v) = v else { return true };
        let declared = crate::shape::tensor_type_parts(info.r#type.as_ref()).1;
        match (declared, probe.graph.value(*v).shape.as_ref()) {
            (Some(d), Some(i)) => !contradicts(&d, i),
            _ => true,
        }
    });
    let dropped = before - g.value_info.len();
    if dropped > 0 {
        changes.push(format!("{dropped} value_info entries contradicted inference and were dropped"));
    }
    changes
}
