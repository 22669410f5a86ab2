//! Hand-made ONNX protos, including broken ones, for import and CLI tests.

use prost::Message;
use whittle_graph::onnx::tensor_proto::DataLocation;
use whittle_graph::onnx::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, tensor_shape_proto, type_proto,
};

pub fn f32_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        producer_name: Some("whittle-tests".into()),
        graph: Some(graph),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        data_type: Some(7),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..f32_tensor(name, dims, &[])
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

/// x -> Relu -> y: the smallest valid model.
pub fn relu_model() -> ModelProto {
    model(GraphProto {
        name: Some("g".into()),
        node: vec![node("Relu", "relu", &["x"], &["y"])],
        input: vec![f32_info("x", &[1, 4])],
        output: vec![f32_info("y", &[1, 4])],
        ..Default::default()
    })
}

/// Two nodes reading each other's output.
pub fn cyclic_model() -> ModelProto {
    model(GraphProto {
        name: Some("g".into()),
        node: vec![node("Add", "a", &["x", "d"], &["c"]), node("Relu", "b", &["c"], &["d"])],
        input: vec![f32_info("x", &[1])],
        output: vec![f32_info("d", &[1])],
        ..Default::default()
    })
}

/// A node reading a tensor nobody produces.
pub fn dangling_model() -> ModelProto {
    model(GraphProto {
        name: Some("g".into()),
        node: vec![node("Add", "adder", &["x", "ghost"], &["y"])],
        input: vec![f32_info("x", &[1])],
        output: vec![f32_info("y", &[1])],
        ..Default::default()
    })
}

/// An initializer whose dims overflow any element count.
pub fn overflow_model() -> ModelProto {
    let mut m = relu_model();
    let g = m.graph.as_mut().expect("graph");
    g.initializer.push(TensorProto { name: Some("huge".into()), dims: vec![1 << 40, 1 << 40], data_type: Some(1), ..Default::default() });
    m
}

/// An initializer with a data type code no IR version defines.
pub fn unknown_dtype_model() -> ModelProto {
    let mut m = relu_model();
    m.graph.as_mut().expect("graph").initializer.push(TensorProto {
        name: Some("strange".into()),
        dims: vec![1],
        data_type: Some(99),
        raw_data: Some(vec![0u8; 4].into()),
        ..Default::default()
    });
    m
}

/// An initializer stored in an external file that does not exist.
pub fn missing_external_model() -> ModelProto {
    external_model("weights_missing.bin")
}

/// `relu_model` with a 4-float initializer `w` stored in the external file `location`.
pub fn external_model(location: &str) -> ModelProto {
    let mut m = relu_model();
    let entry = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
    m.graph.as_mut().expect("graph").initializer.push(TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![entry("location", location), entry("offset", "0"), entry("length", "16")],
        ..Default::default()
    });
    m
}

/// A valid protobuf message that is not a model: a TensorProto holding only dims, whose fields
/// happen to be wire-compatible with ModelProto (field 1 is a varint in both), so it decodes, but
/// as a "model" without a graph.
pub fn not_a_model_bytes() -> Vec<u8> {
    TensorProto { dims: vec![2, 3], ..Default::default() }.encode_to_vec()
}
