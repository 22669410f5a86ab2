//! `sparse_storage` and the IR's sparse tensors: pruned weights stored sparse (Constant
//! `sparse_value`) where that is smaller, the file read back to the same constants and bytes, tract
//! given the dense form with the same outputs, sparse tensors in a form whittle does not write
//! (a graph sparse initializer, coordinate indices) kept verbatim and still run, and models older
//! than IR 6 or opset 11 left dense.

use prost::Message;
use whittle_graph::onnx::SparseTensorProto;
use whittle_graph::text::{TensorDigest, TextOptions, model_text};
use whittle_graph::{Model, Tensor, encode_for_runtime, encode_model};
use whittle_passes::pass::PassDef;
use whittle_passes::prune_magnitude::{self, PruneMagnitude};
use whittle_passes::sparse_storage::{self, SparseStorage};
use whittle_passes::{Pass, PassContext};

use whittle_tests::fixtures;
use whittle_tests::numeric::{assert_same_outputs, vgg_stack};

const INPUT: (&str, &[i64]) = ("x", &[1, 8, 8, 8]);

/// Three 3×3 convolutions (8 -> 16 -> 16 -> 8); each weight pruned to `sparsity`.
fn pruned(sparsity: f64) -> Model {
    let mut m = vgg_stack(&[8, 16, 16, 8], 8, false, None);
    let params = prune_magnitude::Params { sparsity, min_size: 0, ..Default::default() };
    PruneMagnitude::new(params).run(&mut m, &PassContext::default()).unwrap();
    m
}

fn store(m: &mut Model) -> whittle_passes::PassReport {
    SparseStorage::new(sparse_storage::Params { min_size: 0 }).run(m, &PassContext::default()).unwrap()
}

fn decode(bytes: &[u8]) -> Model {
    whittle_graph::decode_model(bytes::Bytes::copy_from_slice(bytes), std::path::Path::new("test.onnx"), None).unwrap()
}

fn sparse_count(m: &Model) -> usize {
    let g = &m.graph;
    g.value_ids().filter(|v| g.value(*v).constant().is_some_and(|c| c.is_sparse())).count()
}

#[test]
fn pruned_weights_are_stored_sparse_and_read_back_the_same() {
    let dense = pruned(0.9);
    let mut sparse = dense.clone();
    let report = store(&mut sparse);
    assert_eq!(report.applied, 3, "{report:?}");
    assert!(report.changes[0].contains("90.0% sparse"), "{:?}", report.changes);
    assert!(report.notes[0].contains("runs no faster"), "{:?}", report.notes);
    // 90% zeros: 12 bytes for each of the 10% kept against 4 for every weight.
    let bytes = encode_model(&sparse);
    let proto = whittle_graph::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let sparse_values = |g: &whittle_graph::onnx::GraphProto| {
        g.node.iter().filter(|n| n.op_type.as_deref() == Some("Constant") && n.attribute[0].sparse_tensor.is_some()).count()
    };
    assert_eq!(sparse_values(graph), 3);
    let weights: u64 = [8 * 16, 16 * 16, 16 * 8].iter().map(|c| c * 9 * 4).sum();
    let saved = encode_model(&dense).len() as i64 - bytes.len() as i64;
    assert!(saved as f64 > 0.6 * weights as f64, "saved {saved} of {weights} weight bytes");
    // Tract is given the dense form: no sparse initializer left, the same outputs exactly.
    let runtime = whittle_graph::onnx::ModelProto::decode(encode_for_runtime(&sparse).as_slice()).unwrap();
    assert_eq!(sparse_values(runtime.graph.as_ref().unwrap()), 0);
    assert_same_outputs(&dense, &sparse, INPUT, 0.0);
    // Read back: the same constants, stored sparse, the same text and the same bytes again.
    let back = decode(&bytes);
    assert_eq!(sparse_count(&back), 3);
    let text = |m: &Model| model_text(m, &TextOptions { tensors: TensorDigest::Hash, ..Default::default() });
    assert_eq!(text(&back), text(&sparse));
    assert!(text(&back).contains(": sparse f32[16,8,3,3] = "), "{}", text(&back));
    assert_eq!(encode_model(&back), bytes);
    assert_same_outputs(&dense, &back, INPUT, 0.0);
    // A second run changes nothing; the cleanup that lifts Constant nodes leaves sparse ones.
    let mut again = back.clone();
    assert_eq!(store(&mut again).applied, 0);
    assert_eq!(encode_model(&again), bytes);
    whittle_tests::run_pass(&mut again, "constant_folding", &[("x".to_string(), INPUT.1.to_vec())]);
    assert_eq!(sparse_count(&again), 3);
}

#[test]
fn below_two_thirds_sparsity_weights_stay_dense() {
    let mut m = pruned(0.5);
    let before = encode_model(&m);
    let report = store(&mut m);
    assert_eq!(report.applied, 0, "{report:?}");
    assert!(report.notes[0].starts_with("3 constants with zeros kept dense") && report.notes[0].contains("2/3"), "{:?}", report.notes);
    assert_eq!(encode_model(&m), before);
    // Too small for min_size: not even counted.
    let mut m = pruned(0.9);
    let report = SparseStorage::new(sparse_storage::Params { min_size: 2000 }).run(&mut m, &PassContext::default()).unwrap();
    assert_eq!((report.applied, report.notes.len()), (1, 1), "only the 16 -> 16 conv has 2000 weights or more: {report:?}");
}

#[test]
fn models_before_ir_6_or_opset_11_stay_dense() {
    let mut m = pruned(0.9);
    m.meta.ir_version = Some(5);
    let report = store(&mut m);
    assert_eq!((report.applied, sparse_count(&m)), (0, 0));
    assert!(report.notes[0].contains("IR version 5, opset 13) predates"), "{:?}", report.notes);
    let mut m = pruned(0.9);
    m.set_opset("", 10);
    assert_eq!(store(&mut m).applied, 0);
}

/// y = x * s for s[2, 3] = [[0, 2, 0], [0, 0, -3]] given by `[NNZ, rank]` coordinates (valid ONNX,
/// not the form whittle writes), as a graph sparse initializer or as a Constant's sparse_value.
fn coordinate_sparse_model(as_constant: bool) -> Vec<u8> {
    let s = SparseTensorProto {
        values: Some(fixtures::f32_tensor("s", &[2], &[2.0, -3.0])),
        indices: Some(Tensor::from_i64("", &[2, 2], &[0, 1, 1, 2]).proto().clone()),
        dims: vec![2, 3],
    };
    let mut graph = whittle_graph::onnx::GraphProto {
        name: Some("g".into()),
        node: vec![fixtures::node("Mul", "mul", &["x", "s"], &["y"])],
        input: vec![fixtures::f32_info("x", &[2, 3])],
        output: vec![fixtures::f32_info("y", &[2, 3])],
        ..Default::default()
    };
    if as_constant {
        let mut c = fixtures::node("Constant", "c", &[], &["s"]);
        c.attribute.push(whittle_graph::onnx::AttributeProto {
            name: Some("sparse_value".into()),
            r#type: Some(whittle_graph::onnx::attribute_proto::AttributeType::SparseTensor as i32),
            sparse_tensor: Some(s),
            ..Default::default()
        });
        graph.node.insert(0, c);
    } else {
        graph.sparse_initializer.push(s);
    }
    fixtures::model(graph).encode_to_vec()
}

#[test]
fn sparse_tensors_in_another_form_are_kept_verbatim_and_run_densified() {
    for as_constant in [false, true] {
        let bytes = coordinate_sparse_model(as_constant);
        let m = decode(&bytes);
        assert_eq!(sparse_count(&m), 0, "kept as the file has it");
        let decoded = |b: &[u8]| whittle_graph::onnx::ModelProto::decode(b).unwrap();
        assert_eq!(decoded(&encode_model(&m)), decoded(&bytes));
        let shapes = vec![("x".to_string(), vec![2usize, 3])];
        let runnable = whittle_runner::verify::load_model(&encode_for_runtime(&m), &shapes).unwrap();
        let x = whittle_runner::data::Tensor::from_shape(&[1, 2, 3], &[1.0f32, 1.0, 1.0, 1.0, 1.0, 5.0]).unwrap();
        let data = whittle_runner::data::InputSet::new("test", vec![("x".to_string(), x)], None).unwrap();
        let y = whittle_runner::verify::run_all(&runnable, &data).unwrap();
        assert_eq!(y[0][0].iter().copied().collect::<Vec<f32>>(), vec![0.0, 2.0, 0.0, 0.0, 0.0, -15.0], "constant: {as_constant}");
    }
}
