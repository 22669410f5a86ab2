//! A small builder for models made in code: test fixtures and examples.
//!
//! ```
//! use whittle_graph::builder::{GraphBuilder, attr_ints};
//! use whittle_graph::{DataType, Tensor};
//! let mut b = GraphBuilder::new(13);
//! let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
//! let w = b.constant("w", Tensor::from_f32("w", &[4, 3, 3, 3], &[0.1; 108]));
//! let y = b.node("Conv", &[x, w], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
//! b.output(y);
//! let model = b.finish();
//! assert_eq!(model.graph.node_count(), 1);
//! ```

use crate::dtype::DataType;
use crate::ir::{Attribute, Graph, NodeId, OrderKey, ValueDef, ValueId};
use crate::model::Model;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::{AttributeProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto, type_proto};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Builds a model node by node. Nodes are named after their first output.
pub struct GraphBuilder {
    graph: Graph,
    opset: i64,
    order: u64,
}

impl GraphBuilder {
    /// A new model importing the default ONNX domain at `opset`.
    pub fn new(opset: i64) -> GraphBuilder {
        GraphBuilder { graph: Graph::new("main"), opset, order: 0 }
    }

    /// A graph input of a fixed shape.
    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[i64]) -> ValueId {
        self.input_shape(name, dtype, Shape::from_dims(dims))
    }

    /// A graph input with any shape (symbolic dimensions allowed).
    pub fn input_shape(&mut self, name: &str, dtype: DataType, shape: Shape) -> ValueId {
        let id = self.graph.push_value(name, ValueDef::Input);
        let info = value_info(name, dtype, Some(&shape));
        let v = self.graph.value_mut(id);
        v.dtype = Some(dtype);
        v.shape = Some(shape);
        self.graph.inputs.push((id, info));
        id
    }

    /// An initializer.
    pub fn constant(&mut self, name: &str, tensor: Tensor) -> ValueId {
        self.graph.add_constant(name, tensor)
    }

    /// An operation of the default domain; returns its outputs.
    pub fn node(&mut self, op_type: &str, inputs: &[ValueId], outputs: &[&str], attributes: Vec<AttributeProto>) -> Vec<ValueId> {
        let id = self.node_id(op_type, &inputs.iter().map(|v| Some(*v)).collect::<Vec<_>>(), outputs, attributes);
        self.graph.node(id).expect("just added").outputs().iter().flatten().copied().collect()
    }

    /// Like [`GraphBuilder::node`], with optional inputs, returning the node.
    pub fn node_id(&mut self, op_type: &str, inputs: &[Option<ValueId>], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeId {
        self.order += 1;
        let residual = NodeProto {
            name: Some(outputs.first().map(|s| s.to_string()).unwrap_or_else(|| format!("{op_type}_{}", self.order))),
            op_type: Some(op_type.to_string()),
            ..Default::default()
        };
        let attributes = attributes.into_iter().map(|proto| Attribute { proto, subgraphs: Vec::new(), in_g: false }).collect();
        self.graph.add_node(residual, attributes, inputs.to_vec(), outputs, OrderKey { major: self.order, minor: 0 })
    }

    /// Declares a graph output (typed from what is known of the value, f32 otherwise).
    pub fn output(&mut self, v: ValueId) {
        let value = self.graph.value_mut(v);
        // Outputs are typed in ONNX; an output of unknown type is declared (and taken as) f32.
        let dtype = *value.dtype.get_or_insert(DataType::Float);
        let info = value_info(&value.name, dtype, value.shape.as_ref());
        self.graph.outputs.push((v, info));
    }

    pub fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    pub fn finish(mut self) -> Model {
        self.graph.next_order = self.graph.next_order.max(self.order + 1);
        let meta = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            producer_name: Some("whittle-builder".into()),
            ..Default::default()
        };
        Model { meta, graph: self.graph }
    }
}

/// A `ValueInfoProto` for a tensor of this type and shape.
pub fn value_info(name: &str, dtype: DataType, shape: Option<&Shape>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.to_onnx()),
                shape: shape.map(Shape::to_proto),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.to_string()), r#type: Some(ty as i32), ..Default::default() }
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { f: Some(v), ..attr(name, AttributeType::Float) }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { floats: v.to_vec(), ..attr(name, AttributeType::Floats) }
}

pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { s: Some(v.as_bytes().to_vec().into()), ..attr(name, AttributeType::String) }
}

pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { t: Some(t), ..attr(name, AttributeType::Tensor) }
}
