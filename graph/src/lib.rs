//! whittle's graph IR: lossless ONNX import/export, shape inference, validation and the canonical
//! text form. This crate never runs a model and never parses YAML.

pub mod onnx {
    //! ONNX protobuf messages, generated at build time from `graph/proto/onnx.proto`.
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub mod atomic;
pub mod builder;
pub mod channels;
pub mod dtype;
pub mod edit;
pub mod error;
pub mod eval;
pub mod export;
pub mod extract;
pub mod import;
pub mod ir;
pub mod model;
pub mod patch;
pub mod shape;
pub mod sparse;
pub mod stats;
pub mod tensor;
pub mod text;
pub mod validate;

pub use dtype::DataType;
pub use error::{GraphIssue, ModelError, TensorError};
pub use export::{DataPlacement, SaveOptions, encode_for_runtime, encode_model, model_to_proto, save_model};
pub use import::{decode_model, import_model, load_model};
pub use ir::{Attribute, ConstOrigin, Constant, Graph, Node, NodeId, OrderKey, Value, ValueDef, ValueId};
pub use model::Model;
pub use shape::{Dim, Shape};
pub use tensor::Tensor;
