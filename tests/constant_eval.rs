//! The built-in constant evaluator against tract: every op case is folded by `constant_folding`
//! and run by tract from the unfolded model; both must give the same tensor.

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::onnx::AttributeProto;
use whittle_graph::{DataType, Tensor};
use whittle_passes::{PassContext, lookup};
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
    ]
}

#[test]
fn native_folding_agrees_with_tract() {
    for (k, case) in cases().into_iter().enumerate() {
        let mut b = GraphBuilder::new(13);
        let ins: Vec<_> = case.inputs.iter().enumerate().map(|(j, t)| b.constant(&format!("c{j}"), t.clone())).collect();
        let y = b.node(case.op, &ins, &["y"], case.attrs.clone())[0];
        b.output(y);
        let model = b.finish();
        let label = format!("case {k} ({})", case.op);

        let mut folded = model.clone();
        let report = lookup("constant_folding").unwrap().build_default().run(&mut folded, &PassContext::default()).unwrap();
        assert_eq!(report.applied, 1, "{label}: {report:?}");
        let g = &folded.graph;
        let out = g.constant(g.outputs().next().unwrap()).unwrap_or_else(|| panic!("{label}: output not folded"));
        let ours = out.to_f32().unwrap();

        let runnable = load_model(&whittle_graph::encode_for_runtime(&model), &[]).unwrap_or_else(|e| panic!("{label}: tract: {e}"));
        let theirs = runnable.run(&[]).unwrap_or_else(|e| panic!("{label}: tract: {e}"));
        let theirs = &theirs[0];
        let dims: Vec<usize> = out.dims().iter().map(|&d| d as usize).collect();
        assert_eq!(theirs.shape(), dims.as_slice(), "{label}: shape");
        assert_eq!(theirs.iter().copied().collect::<Vec<f32>>(), ours, "{label}: values");
    }
}
