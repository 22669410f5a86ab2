//! Tensor shapes with static or symbolic dimensions, and shape/dtype inference ([`infer`]).

pub mod declare;
pub mod infer;

use std::fmt;

use crate::onnx::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::{TensorShapeProto, TypeProto, type_proto};

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    /// A named symbolic dimension (`batch`, `p2o.DynamicDimension.0`).
    Sym(String),
    /// Unknown and unnamed.
    Unknown,
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape of known rank.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn from_dims(dims: &[i64]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// All dimensions as numbers, if every one is known.
    pub fn concrete(&self) -> Option<Vec<i64>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// Element count, if every dimension is known (saturating on overflow).
    pub fn numel(&self) -> Option<u64> {
        self.concrete().map(|d| d.iter().fold(1u64, |acc, &x| acc.saturating_mul(x.max(0) as u64)))
    }

    pub fn from_proto(p: &TensorShapeProto) -> Shape {
        Shape(
            p.dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) => Dim::Known(*v),
                    Some(dimension::Value::DimParam(s)) if !s.is_empty() => Dim::Sym(s.clone()),
                    _ => Dim::Unknown,
                })
                .collect(),
        )
    }

    pub fn to_proto(&self) -> TensorShapeProto {
        TensorShapeProto {
            dim: self
                .0
                .iter()
                .map(|d| Dimension {
                    value: match d {
                        Dim::Known(v) => Some(dimension::Value::DimValue(*v)),
                        Dim::Sym(s) => Some(dimension::Value::DimParam(s.clone())),
                        Dim::Unknown => None,
                    },
                    denotation: None,
                })
                .collect(),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Element type code and shape of a tensor type (`None` parts when absent or not a tensor).
pub fn tensor_type_parts(ty: Option<&TypeProto>) -> (Option<i32>, Option<Shape>) {
    match ty.and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => (t.elem_type, t.shape.as_ref().map(Shape::from_proto)),
        Some(type_proto::Value::SparseTensorType(t)) => (t.elem_type, t.shape.as_ref().map(Shape::from_proto)),
        _ => (None, None),
    }
}
