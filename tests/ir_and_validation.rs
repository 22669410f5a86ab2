//! IR invariants (stable ids across mutations) and validation that collects every problem.

use whittle_graph::builder::GraphBuilder;
use whittle_graph::{DataType, GraphIssue, Tensor};

#[test]
fn a_stale_node_id_never_names_a_new_node() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2]);
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.output(y);
    let mut model = b.finish();
    let g = &mut model.graph;
    let old = g.value(y).producer().unwrap();
    g.remove_node(old);
    // The freed petgraph slot is reused by the next node...
    let new = g.add_node(
        whittle_graph::onnx::NodeProto { op_type: Some("Sigmoid".into()), ..Default::default() },
        Vec::new(),
        vec![Some(x)],
        &["z"],
        Default::default(),
    );
    // ...but the old id does not resolve to it.
    assert!(g.node(old).is_none());
    assert_eq!(g.node(new).unwrap().op_type(), "Sigmoid");
    assert_ne!(old, new);
}

#[test]
fn validation_collects_every_problem() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2]);
    let i = b.constant("i", Tensor::from_i64("i", &[2], &[1, 2]));
    let bad_add = b.node("Add", &[x, i], &["sum"], vec![])[0];
    let w = b.constant("w", Tensor::from_f32("w", &[2], &[1.0, 2.0]));
    let bad_concat = b.node("Concat", &[bad_add, i, w], &["cat"], vec![whittle_graph::builder::attr_int("axis", 0)])[0];
    b.output(bad_concat);
    let mut model = b.finish();
    // A node reading a value whose producer was removed.
    let g = &mut model.graph;
    let doomed = g.value(bad_add).producer().unwrap();
    g.remove_node(doomed);
    let issues = whittle_graph::validate::validate(&model);
    assert!(
        issues.iter().any(|e| matches!(e, GraphIssue::Dangling { node, tensor, .. } if node == "cat" && tensor == "sum")),
        "{issues:?}"
    );
    assert!(
        issues.iter().any(|e| matches!(e, GraphIssue::BadNode { node, message, .. } if node == "cat" && message.contains("i64"))),
        "{issues:?}"
    );
    assert!(issues.len() >= 2);
}

#[test]
fn validation_reports_dtype_mismatch_on_known_ops() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2]);
    let i = b.constant("i", Tensor::from_i64("i", &[2], &[1, 2]));
    let y = b.node("Add", &[x, i], &["y"], vec![])[0];
    b.output(y);
    let issues = whittle_graph::validate::validate(&b.finish());
    assert_eq!(issues.len(), 1, "{issues:?}");
    let msg = issues[0].to_string();
    assert!(msg.contains("'y'") && msg.contains("(Add)") && msg.contains("f32") && msg.contains("i64"), "{msg}");
}

#[test]
fn shared_models_are_valid() {
    let Some(models) = whittle_tests::shared_models() else { return };
    for path in models {
        let model = whittle_graph::load_model(&path).unwrap();
        assert!(whittle_graph::validate::validate(&model).is_empty(), "{}", path.display());
    }
}

/// A name defined twice is reported with both definers, not "one value"/"another".
#[test]
fn duplicate_names_name_both_definers() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2]);
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.output(y);
    let mut model = b.finish();
    model.graph.value_mut(y).name = "x".into();
    let issues = whittle_graph::validate::validate(&model);
    let text = issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n");
    assert!(text.contains("a graph input") && text.contains("node 'y' (Relu)"), "{text}");
}
