//! Lossless round trip: import → export gives back the original message field by field, on the
//! shared models and on hand-made models that use every part of the format.

use bytes::Bytes;
use prost::Message;
use whittle_graph::onnx::attribute_proto::AttributeType;
use whittle_graph::onnx::*;
use whittle_graph::{DataPlacement, SaveOptions};
use whittle_tests::fixtures::{f32_info, f32_tensor, model, node};
use whittle_tests::shared_models;

fn roundtrip(original: &ModelProto) -> ModelProto {
    let bytes = Bytes::from(original.encode_to_vec());
    let model = whittle_graph::decode_model(bytes, std::path::Path::new("mem.onnx"), None).expect("import");
    assert!(whittle_graph::validate::validate(&model).is_empty());
    let exported = whittle_graph::model_to_proto(&model);
    let reencoded = ModelProto::decode(Bytes::from(whittle_graph::encode_model(&model))).unwrap();
    assert!(reencoded == exported, "streamed encoding decodes to the same message");
    exported
}

#[test]
fn shared_models_roundtrip_field_by_field() {
    let Some(models) = shared_models() else { return };
    for path in models {
        let original = ModelProto::decode(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
        let model = whittle_graph::load_model(&path).unwrap();
        assert!(whittle_graph::model_to_proto(&model) == original, "{}: exported proto differs", path.display());
        let decoded = ModelProto::decode(Bytes::from(whittle_graph::encode_model(&model))).unwrap();
        assert!(decoded == original, "{}: encoded bytes decode differently", path.display());
    }
}

#[test]
fn embedded_model_roundtrips() {
    let path = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let original = ModelProto::decode(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
    assert!(roundtrip(&original) == original);
}

fn meta(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) }
}

/// A model touching every message and field of the format.
fn kitchen_sink() -> ModelProto {
    let mut then_branch = GraphProto {
        name: Some("then".into()),
        // Reads `w` and `x` from the enclosing graph.
        node: vec![node("Add", "then_add", &["x", "w"], &["t_out"])],
        output: vec![f32_info("t_out", &[4])],
        ..Default::default()
    };
    then_branch.metadata_props.push(meta("branch", "then"));
    let else_branch = GraphProto {
        name: Some("else".into()),
        node: vec![NodeProto {
            op_type: Some("Constant".into()),
            output: vec!["e_out".into()],
            attribute: vec![AttributeProto {
                name: Some("value_floats".into()),
                r#type: Some(AttributeType::Floats as i32),
                floats: vec![1.0, 2.0, 3.0, 4.0],
                ..Default::default()
            }],
            ..Default::default()
        }],
        output: vec![f32_info("e_out", &[4])],
        ..Default::default()
    };
    let mut if_node = node("If", "branch", &["cond"], &["y"]);
    if_node.attribute = vec![
        AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(then_branch),
            ..Default::default()
        },
        AttributeProto {
            name: Some("else_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(else_branch),
            doc_string: Some("attribute doc".into()),
            ..Default::default()
        },
    ];
    if_node.metadata_props.push(meta("node", "meta"));
    if_node.doc_string = Some("node doc".into());
    if_node.device_configurations.push(NodeDeviceConfigurationProto {
        configuration_id: Some("cfg".into()),
        sharding_spec: vec![ShardingSpecProto {
            tensor_name: Some("y".into()),
            device: vec![0, 1],
            index_to_device_group_map: vec![IntIntListEntryProto { key: Some(0), value: vec![0, 1] }],
            sharded_dim: vec![ShardedDimProto {
                axis: Some(0),
                simple_sharding: vec![SimpleShardedDimProto { num_shards: Some(2), dim: Some(simple_sharded_dim_proto::Dim::DimValue(4)) }],
            }],
        }],
        pipeline_stage: Some(1),
    });
    let mut w = f32_tensor("w", &[4], &[0.5, -0.0, f32::MIN_POSITIVE, 1e30]);
    w.metadata_props.push(meta("tensor", "meta"));
    w.doc_string = Some("weights".into());
    let typed =
        TensorProto { name: Some("typed".into()), dims: vec![3], data_type: Some(7), int64_data: vec![1, -2, 3], ..Default::default() };
    let sparse = SparseTensorProto {
        values: Some(f32_tensor("sp", &[2], &[1.0, 2.0])),
        indices: Some(TensorProto {
            name: Some("sp_idx".into()),
            dims: vec![2],
            data_type: Some(7),
            int64_data: vec![0, 3],
            ..Default::default()
        }),
        dims: vec![4],
    };
    let mut x_info = f32_info("x", &[4]);
    x_info.metadata_props.push(meta("input", "meta"));
    x_info.doc_string = Some("the input".into());
    let seq_info = ValueInfoProto {
        name: Some("seq_info".into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::SequenceType(Box::new(type_proto::Sequence {
                elem_type: Some(Box::new(TypeProto {
                    value: Some(type_proto::Value::MapType(Box::new(type_proto::Map {
                        key_type: Some(7),
                        value_type: Some(Box::new(TypeProto {
                            value: Some(type_proto::Value::OptionalType(Box::new(type_proto::Optional { elem_type: None }))),
                            denotation: Some("opt".into()),
                        })),
                    }))),
                    denotation: None,
                })),
            }))),
            denotation: None,
        }),
        ..Default::default()
    };
    let graph = GraphProto {
        name: Some("main".into()),
        doc_string: Some("graph doc".into()),
        node: vec![if_node, node("Mul", "scale", &["y", "sp"], &["z"]), node("Cast", "cast", &["typed"], &["typed_f"])],
        initializer: vec![w, typed],
        sparse_initializer: vec![sparse],
        input: vec![x_info, ValueInfoProto { name: Some("cond".into()), ..Default::default() }],
        output: vec![f32_info("z", &[4]), f32_info("typed_f", &[3])],
        value_info: vec![f32_info("y", &[4]), seq_info],
        quantization_annotation: vec![TensorAnnotation {
            tensor_name: Some("y".into()),
            quant_parameter_tensor_names: vec![meta("SCALE_TENSOR", "s")],
        }],
        metadata_props: vec![meta("graph", "meta")],
    };
    let mut m = model(graph);
    m.producer_version = Some("1.0".into());
    m.domain = Some("ai.whittle.test".into());
    m.model_version = Some(0);
    m.doc_string = Some("model doc".into());
    m.metadata_props = vec![meta("b", "2"), meta("a", "1")];
    m.opset_import.push(OperatorSetIdProto { domain: Some("custom".into()), version: Some(1) });
    m.functions.push(FunctionProto {
        name: Some("MyFn".into()),
        domain: Some("custom".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        attribute: vec!["alpha".into()],
        node: vec![node("Relu", "", &["a"], &["b"])],
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        metadata_props: vec![meta("fn", "meta")],
        overload: Some("v2".into()),
        ..Default::default()
    });
    m.training_info.push(TrainingInfoProto {
        initialization: Some(GraphProto { name: Some("init".into()), ..Default::default() }),
        algorithm: None,
        initialization_binding: vec![meta("w", "w_init")],
        update_binding: vec![],
    });
    m.configuration.push(DeviceConfigurationProto {
        name: Some("cfg".into()),
        num_devices: Some(2),
        device: vec!["cpu:0".into(), "cpu:1".into()],
    });
    m
}

#[test]
fn every_field_survives_the_round_trip() {
    let original = kitchen_sink();
    let exported = roundtrip(&original);
    assert!(exported == original, "exported:\n{exported:#?}\n\noriginal:\n{original:#?}");
}

#[test]
fn subgraph_captures_are_reads_of_the_outer_graph() {
    let bytes = Bytes::from(kitchen_sink().encode_to_vec());
    let model = whittle_graph::decode_model(bytes, std::path::Path::new("mem.onnx"), None).unwrap();
    let g = &model.graph;
    let w = g.value_by_name("w").unwrap();
    let x = g.value_by_name("x").unwrap();
    let if_node = g.value(g.value_by_name("y").unwrap()).producer().unwrap();
    let mut captures = g.node(if_node).unwrap().captures().to_vec();
    captures.sort();
    assert_eq!(captures, {
        let mut v = vec![w, x];
        v.sort();
        v
    });
    assert!(g.constant(w).is_some(), "initializers are constants");
    let sub = &g.node(if_node).unwrap().attributes[0].subgraphs[0];
    assert_eq!(sub.name(), "then");
}

#[test]
fn a_model_too_big_for_protobuf_is_written_with_external_data() {
    // The switch happens at 2 GiB; the limit is lowered so the test stays small.
    let path = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let model = whittle_graph::load_model(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.onnx");
    whittle_graph::save_model(&model, &out, &SaveOptions { placement: DataPlacement::Keep, inline_limit: 100_000 }).unwrap();
    let data = dir.path().join("big.onnx.data");
    assert!(data.is_file(), "data file written when over the limit");
    assert!(std::fs::metadata(&out).unwrap().len() < 100_000);
    let back = whittle_graph::load_model(&out).unwrap();
    let original = whittle_graph::load_model(&path).unwrap();
    for v in original.graph.value_ids() {
        let Some(t) = original.graph.constant(v) else { continue };
        let name = &original.graph.value(v).name;
        let t2 = back.graph.constant(back.graph.value_by_name(name).unwrap()).unwrap();
        assert_eq!(t.raw_bytes().unwrap(), t2.raw_bytes().unwrap(), "tensor {name} survives external data");
    }
    // A model under the limit stays in one file.
    let small = dir.path().join("small.onnx");
    whittle_graph::save_model(&model, &small, &SaveOptions::default()).unwrap();
    assert!(!dir.path().join("small.onnx.data").exists());

    // Asked for inline, a model over the limit is refused with that reason, nothing written.
    let inline = dir.path().join("inline.onnx");
    let err = whittle_graph::save_model(&model, &inline, &SaveOptions { placement: DataPlacement::Inline, inline_limit: 100_000 })
        .unwrap_err()
        .to_string();
    assert!(err.contains("every tensor inline") && err.contains("--external-data"), "{err}");
    assert!(!inline.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary file left");
}

#[test]
fn exporting_external_data_shares_the_mapped_weights_instead_of_copying_them() {
    // Re-saving a model whose weights are external streams them from the mapped file: the
    // tensors to write hold the very bytes of the source mapping (no copy of the weights in
    // memory; peak memory stays about the size of the file, not twice it).
    let path = whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let model = whittle_graph::load_model(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let external = dir.path().join("ext.onnx");
    whittle_graph::save_model(
        &model,
        &external,
        &SaveOptions { placement: DataPlacement::External { threshold: 1024 }, ..Default::default() },
    )
    .unwrap();
    let loaded = whittle_graph::load_model(&external).unwrap();
    let g = &loaded.graph;
    let mut shared = 0;
    for v in g.value_ids() {
        let Some(t) = g.constant(v).filter(|t| t.is_external()) else { continue };
        let moved = t.externalized("other.onnx.data", 0).unwrap();
        assert_eq!(moved.raw_bytes().unwrap().as_ptr(), t.raw_bytes().unwrap().as_ptr(), "{} copied", g.value(v).name);
        shared += 1;
    }
    assert!(shared > 10, "{shared} external tensors");
    let again = dir.path().join("again.onnx");
    whittle_graph::save_model(&loaded, &again, &SaveOptions::default()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("again.onnx.data")).unwrap(), std::fs::read(dir.path().join("ext.onnx.data")).unwrap());
}

#[test]
fn constant_forms_are_first_class_constants() {
    // Constant node (value_ints), ConstantOfShape of a constant shape, and an initializer.
    let shape = NodeProto {
        op_type: Some("Constant".into()),
        name: Some("shape".into()),
        output: vec!["shape".into()],
        attribute: vec![AttributeProto {
            name: Some("value_ints".into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: vec![2, 3],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut fill = node("ConstantOfShape", "fill", &["shape"], &["ones"]);
    let mut one = f32_tensor("", &[1], &[1.0]);
    one.name = None;
    fill.attribute.push(AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(one),
        ..Default::default()
    });
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![shape, fill, node("Add", "add", &["x", "ones"], &["y"])],
        input: vec![f32_info("x", &[2, 3])],
        output: vec![f32_info("y", &[2, 3])],
        ..Default::default()
    };
    let original = model(graph);
    let m = whittle_graph::decode_model(Bytes::from(original.encode_to_vec()), std::path::Path::new("mem.onnx"), None).unwrap();
    let g = &m.graph;
    assert_eq!(g.node_count(), 1, "only Add is an operation");
    let ones = g.constant(g.value_by_name("ones").unwrap()).expect("ConstantOfShape output is a constant");
    assert_eq!(ones.dims(), &[2, 3]);
    assert_eq!(ones.to_f32().unwrap(), vec![1.0; 6]);
    let shape = g.constant(g.value_by_name("shape").unwrap()).expect("Constant node output is a constant");
    assert_eq!(shape.to_i64().unwrap(), vec![2, 3]);
    assert!(whittle_graph::model_to_proto(&m) == original, "and they export back as written");
}
