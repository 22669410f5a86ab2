//! The one constant evaluator (`whittle_graph::eval`) against tract: every op case is folded by
//! `constant_folding` and run by tract from the unfolded model; both must give the same tensor:
//! same element type, same shape, same values (integers compared exactly, not through f32).

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::onnx::AttributeProto;
use whittle_graph::{DataType, Tensor};
use whittle_runner::verify::load_model;

struct Case {
    op: &'static str,
    inputs: Vec<Tensor>,
    attrs: Vec<AttributeProto>,
}

fn f(dims: &[i64], v: &[f32]) -> Tensor {
    Tensor::from_f32("", dims, v)
}

fn i(dims: &[i64], v: &[i64]) -> Tensor {
    Tensor::from_i64("", dims, v)
}

fn i32s(dims: &[i64], v: &[i32]) -> Tensor {
    Tensor::from_i32("", dims, v)
}

fn b(dims: &[i64], v: &[u8]) -> Tensor {
    Tensor::from_raw("", DataType::Bool, dims, v.to_vec())
}

/// tract's name of one of our element types.
fn tract_dtype(dt: DataType) -> &'static str {
    match dt {
        DataType::Float => "F32",
        DataType::Int64 => "I64",
        DataType::Int32 => "I32",
        DataType::Bool => "Bool",
        other => panic!("no case produces {other}"),
    }
}

/// Integer overflow: the evaluator wraps in the element type. tract built with overflow checks
/// (the test profile) panics on these, so they are judged by onnxruntime instead.
fn overflow_cases() -> Vec<Case> {
    vec![
        Case { op: "Add", inputs: vec![i32s(&[2], &[i32::MAX, 5]), i32s(&[2], &[1, -7])], attrs: vec![] },
        Case { op: "Mul", inputs: vec![i(&[2], &[i64::MAX, 3]), i(&[2], &[2, -4])], attrs: vec![] },
        Case { op: "Neg", inputs: vec![i32s(&[2], &[i32::MIN, 4])], attrs: vec![] },
        Case { op: "Sub", inputs: vec![i(&[1], &[i64::MIN]), i(&[1], &[1])], attrs: vec![] },
    ]
}

/// The model computing one case from constants, and the tensor constant folding makes of it.
fn fold(case: &Case, label: &str) -> (whittle_graph::Model, Tensor) {
    let mut b = GraphBuilder::new(13);
    let ins: Vec<_> = case.inputs.iter().enumerate().map(|(j, t)| b.constant(&format!("c{j}"), t.clone())).collect();
    let y = b.node(case.op, &ins, &["y"], case.attrs.clone())[0];
    // Declare the output with the element type the op gives (onnxruntime checks it).
    let mut probe = b.finish();
    whittle_graph::shape::infer::infer_shapes(&mut probe, &Default::default()).unwrap();
    let dtype = probe.graph.value(y).dtype.unwrap_or_else(|| panic!("{label}: no inferred type"));
    let mut b = GraphBuilder::new(13);
    let ins: Vec<_> = case.inputs.iter().enumerate().map(|(j, t)| b.constant(&format!("c{j}"), t.clone())).collect();
    let y = b.node(case.op, &ins, &["y"], case.attrs.clone())[0];
    b.graph_mut().value_mut(y).dtype = Some(dtype);
    b.output(y);
    let model = b.finish();
    let mut folded = model.clone();
    let record = whittle_tests::run_pass(&mut folded, "constant_folding", &[]);
    assert_eq!(record.applied, 1, "{label}: {record:?}");
    let g = &folded.graph;
    let out = g.constant(g.outputs().next().unwrap()).unwrap_or_else(|| panic!("{label}: output not folded")).clone();
    (model, out)
}

fn cases() -> Vec<Case> {
    let m = f(&[2, 3], &[1.0, -2.0, 3.5, 0.25, 5.0, -6.0]);
    let seq = i(&[6], &[0, 1, 2, 3, 4, 5]);
    vec![
        Case { op: "Add", inputs: vec![m.clone(), f(&[3], &[1.0, 2.0, 3.0])], attrs: vec![] },
        Case { op: "Mul", inputs: vec![m.clone(), f(&[2, 1], &[-1.0, 0.5])], attrs: vec![] },
        Case { op: "Div", inputs: vec![i(&[3], &[7, -7, 9]), i(&[3], &[2, 2, -4])], attrs: vec![] },
        Case { op: "Sub", inputs: vec![i(&[2], &[5, 1]), i(&[], &[3])], attrs: vec![] },
        Case { op: "Sqrt", inputs: vec![f(&[3], &[4.0, 2.0, 0.5])], attrs: vec![] },
        Case { op: "Reciprocal", inputs: vec![f(&[2], &[4.0, -0.5])], attrs: vec![] },
        Case { op: "Cast", inputs: vec![f(&[3], &[1.7, -1.7, 2.0])], attrs: vec![attr_int("to", 7)] },
        Case { op: "Shape", inputs: vec![m.clone()], attrs: vec![] },
        Case { op: "Shape", inputs: vec![m.clone()], attrs: vec![attr_int("start", -1)] },
        Case { op: "Gather", inputs: vec![m.clone(), i(&[2], &[-1, 0])], attrs: vec![attr_int("axis", 1)] },
        Case { op: "Gather", inputs: vec![seq.clone(), i(&[], &[4])], attrs: vec![attr_int("axis", 0)] },
        Case { op: "Unsqueeze", inputs: vec![seq.clone(), i(&[2], &[0, -1])], attrs: vec![] },
        Case { op: "Squeeze", inputs: vec![f(&[1, 3, 1], &[1.0, 2.0, 3.0]), i(&[1], &[2])], attrs: vec![] },
        Case { op: "Concat", inputs: vec![seq.clone(), i(&[2], &[7, 8])], attrs: vec![attr_int("axis", 0)] },
        Case { op: "Reshape", inputs: vec![seq.clone(), i(&[2], &[3, -1])], attrs: vec![] },
        Case { op: "Reshape", inputs: vec![m.clone(), i(&[2], &[0, -1])], attrs: vec![] },
        Case { op: "Slice", inputs: vec![seq.clone(), i(&[1], &[-1]), i(&[1], &[-10]), i(&[1], &[0]), i(&[1], &[-2])], attrs: vec![] },
        Case { op: "Slice", inputs: vec![m.clone(), i(&[2], &[0, 1]), i(&[2], &[1, 100]), i(&[2], &[0, 1])], attrs: vec![] },
        Case { op: "Transpose", inputs: vec![m.clone()], attrs: vec![attr_ints("perm", &[1, 0])] },
        Case { op: "Expand", inputs: vec![f(&[3, 1], &[1.0, 2.0, 3.0]), i(&[2], &[3, 2])], attrs: vec![] },
        Case { op: "Range", inputs: vec![i(&[], &[2]), i(&[], &[11]), i(&[], &[3])], attrs: vec![] },
        Case { op: "Equal", inputs: vec![seq.clone(), i(&[], &[3])], attrs: vec![] },
        Case {
            op: "Where",
            inputs: vec![Tensor::from_raw("", DataType::Bool, &[3], vec![1, 0, 1]), i(&[3], &[1, 2, 3]), i(&[], &[-1])],
            attrs: vec![],
        },
        Case { op: "Max", inputs: vec![f(&[2], &[1.0, 5.0]), f(&[2], &[3.0, 2.0]), f(&[1], &[2.5])], attrs: vec![] },
        Case { op: "Mod", inputs: vec![i(&[4], &[-7, 7, -7, 8]), i(&[4], &[3, -3, -3, 4])], attrs: vec![] },
        Case { op: "Mod", inputs: vec![i(&[4], &[-7, 7, -7, 8]), i(&[4], &[3, -3, -3, 4])], attrs: vec![attr_int("fmod", 1)] },
        Case { op: "Mod", inputs: vec![f(&[3], &[-7.5, 7.5, 3.0]), f(&[3], &[2.0, -2.0, 1.5])], attrs: vec![attr_int("fmod", 1)] },
        Case { op: "LessOrEqual", inputs: vec![seq.clone(), i(&[], &[3])], attrs: vec![] },
        Case { op: "GreaterOrEqual", inputs: vec![f(&[3], &[1.0, 2.0, 3.0]), f(&[], &[2.0])], attrs: vec![] },
        Case { op: "Xor", inputs: vec![b(&[4], &[1, 0, 1, 0]), b(&[4], &[1, 1, 0, 0])], attrs: vec![] },
        Case { op: "Not", inputs: vec![b(&[2], &[1, 0])], attrs: vec![] },
        Case { op: "Cast", inputs: vec![i(&[3], &[1, 70000, -3])], attrs: vec![attr_int("to", 6)] },
        Case { op: "Cast", inputs: vec![i(&[3], &[2, 0, -3])], attrs: vec![attr_int("to", 9)] },
        Case { op: "Cast", inputs: vec![f(&[3], &[2.9, -2.9, 0.0])], attrs: vec![attr_int("to", 6)] },
        Case { op: "Add", inputs: vec![i32s(&[2], &[7, 5]), i32s(&[2], &[1, -7])], attrs: vec![] },
        Case { op: "Round", inputs: vec![f(&[4], &[0.5, 1.5, -2.5, 2.4])], attrs: vec![] },
        Case { op: "Slice", inputs: vec![seq.clone(), i(&[1], &[9]), i(&[1], &[2]), i(&[1], &[0]), i(&[1], &[-2])], attrs: vec![] },
        Case { op: "Slice", inputs: vec![m.clone(), i(&[1], &[5]), i(&[1], &[-5]), i(&[1], &[1]), i(&[1], &[-2])], attrs: vec![] },
        Case { op: "Range", inputs: vec![i(&[], &[10]), i(&[], &[1]), i(&[], &[-4])], attrs: vec![] },
        Case { op: "Shape", inputs: vec![m.clone()], attrs: vec![attr_int("start", 1), attr_int("end", -5)] },
        Case { op: "Flatten", inputs: vec![f(&[1, 2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])], attrs: vec![attr_int("axis", 2)] },
    ]
}

#[test]
fn native_folding_agrees_with_tract() {
    for (k, case) in cases().into_iter().enumerate() {
        let label = format!("case {k} ({})", case.op);
        let (model, out) = fold(&case, &label);

        let runnable = load_model(&whittle_graph::encode_for_runtime(&model), &[]).unwrap_or_else(|e| panic!("{label}: tract: {e}"));
        let theirs = runnable.run_typed(&[]).unwrap_or_else(|e| panic!("{label}: tract: {e}"));
        let theirs = &theirs[0];
        // tract computes shape arithmetic on int64 as TDim (its symbolic int64).
        let their_dtype = format!("{:?}", theirs.datum_type()).replace("TDim", "I64");
        assert_eq!(their_dtype, tract_dtype(out.dtype()), "{label}: element type");
        let dims: Vec<usize> = out.dims().iter().map(|&d| d as usize).collect();
        assert_eq!(theirs.shape(), dims.as_slice(), "{label}: shape");
        if out.dtype() == DataType::Float {
            let theirs: Vec<f32> = theirs.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            assert_eq!(theirs, out.to_f32().unwrap(), "{label}: values");
        } else {
            let theirs = theirs.cast_to::<i64>().unwrap();
            let theirs: Vec<i64> = theirs.to_plain_array_view::<i64>().unwrap().iter().copied().collect();
            assert_eq!(theirs, out.to_i64().unwrap(), "{label}: values");
        }
    }
}

#[test]
fn integer_overflow_wraps_like_onnxruntime() {
    let Some(python) = whittle_tests::peer_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (k, case) in overflow_cases().into_iter().enumerate() {
        let label = format!("overflow case {k} ({})", case.op);
        let (model, out) = fold(&case, &label);
        let path = dir.path().join(format!("case{k}.onnx"));
        whittle_graph::save_model(&model, &path, &Default::default()).unwrap();
        let script = "import sys, onnxruntime as ort\n\
                      s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n\
                      y = s.run(None, {})[0]\n\
                      print(y.dtype, ' '.join(str(int(v)) for v in y.ravel()))";
        let o = std::process::Command::new(&python).args(["-c", script]).arg(&path).output().unwrap();
        assert!(o.status.success(), "{label}: {}", String::from_utf8_lossy(&o.stderr));
        let numpy_name = match out.dtype() {
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            other => panic!("{label}: no overflow case gives {other}"),
        };
        let ours = format!("{numpy_name} {}", out.to_i64().unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "));
        let theirs = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(ours, theirs, "{label}");
    }
}

/// A negative-step Slice starting before its axis: onnxruntime returns one element, tract and
/// numpy none. The evaluator must not pick one: the fold is declined with the reason.
#[test]
fn a_slice_runtimes_disagree_on_is_not_folded() {
    let mut b = GraphBuilder::new(13);
    let ins: Vec<_> = [i(&[6], &[0, 1, 2, 3, 4, 5]), i(&[1], &[-10]), i(&[1], &[-20]), i(&[1], &[0]), i(&[1], &[-1])]
        .into_iter()
        .enumerate()
        .map(|(j, t)| b.constant(&format!("c{j}"), t))
        .collect();
    let y = b.node("Slice", &ins, &["y"], vec![])[0];
    b.graph_mut().value_mut(y).dtype = Some(DataType::Int64);
    b.output(y);
    let mut m = b.finish();
    let record = whittle_tests::run_pass(&mut m, "constant_folding", &[]);
    assert_eq!(record.applied, 0);
    assert!(record.declined.iter().any(|d| d.reason.contains("runtimes disagree")), "{:?}", record.declined);
    let out = m.graph.outputs().next().unwrap();
    assert!(m.graph.value(out).shape.as_ref().is_some_and(|s| s.concrete().is_none()), "its length is left unknown");
}
