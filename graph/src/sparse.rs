//! ONNX sparse tensors (`SparseTensorProto`): the coordinate (COO) form whittle writes, and the
//! dense form runtimes are given.
//!
//! whittle stores a sparse weight as a `Constant` node with a `sparse_value` attribute (opset 11
//! and later): its output is an ordinary dense tensor, so every operator takes it and
//! `onnx.checker`'s full check passes. A graph-level `sparse_initializer` would be typed
//! `sparse_tensor(float)`, which Conv, Gemm and MatMul do not accept (the full check fails with
//! "W typestr: T, has unsupported type: sparse_tensor(float)"); such initializers in a user's
//! file are kept verbatim and densified for runtimes.
//!
//! The canonical form: `values` holds the nonzero elements in row-major order (raw data, named
//! like the tensor) and `indices` their linear positions as a 1-D int64 tensor. The ONNX standard
//! also allows `[NNZ, rank]` coordinates, and [`densify`] reads both. Every element whose bytes
//! are not all zero is a nonzero, so `-0.0` is kept: converting to sparse and back gives the same
//! bytes.
//!
//! Indices are int64 (the standard allows no other type), so a float32 tensor takes
//! `12 × nonzeros` bytes sparse against `4 × elements` dense: sparse storage is smaller only above
//! 2/3 sparsity. [`sparse_is_smaller`] says when.
//!
//! tract reads neither form, so [`densify_graph`] turns both into ordinary tensors in the bytes a
//! runtime is given ([`crate::encode_for_runtime`]).

use crate::dtype::DataType;
use crate::error::TensorError;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::{AttributeProto, GraphProto, SparseTensorProto, TensorProto};
use crate::tensor::Tensor;

/// The `Constant` attribute holding a sparse tensor.
pub const SPARSE_ATTRIBUTE: &str = "sparse_value";

/// Bytes per index in the file (int64).
const INDEX_BYTES: u64 = 8;

/// Bytes per element of a fixed-width dtype whose elements are whole bytes (not strings or the
/// packed 2- and 4-bit types, which [`to_sparse`] does not handle).
fn element_bytes(dtype: DataType) -> Option<usize> {
    dtype.bit_width().filter(|b| b % 8 == 0).map(|b| b as usize / 8)
}

/// How many elements of `t` are nonzero (any byte set, so `-0.0` counts), or `None` for a dtype
/// [`to_sparse`] does not handle.
pub fn nonzero_elements(t: &Tensor) -> Option<u64> {
    let width = element_bytes(t.dtype())?;
    let raw = t.raw_bytes().ok()?;
    Some(raw.chunks_exact(width).filter(|e| e.iter().any(|b| *b != 0)).count() as u64)
}

/// The bytes of `t`'s data stored sparse (values and int64 indices), or `None` if it cannot be.
pub fn sparse_data_bytes(t: &Tensor) -> Option<u64> {
    let width = element_bytes(t.dtype())? as u64;
    Some(nonzero_elements(t)? * (width + INDEX_BYTES))
}

/// Whether storing `t` sparse takes fewer bytes than storing it dense.
pub fn sparse_is_smaller(t: &Tensor) -> bool {
    sparse_data_bytes(t).is_some_and(|sparse| sparse < t.byte_size())
}

/// `t` in whittle's canonical COO form (see the module header).
pub fn to_sparse(t: &Tensor) -> Result<SparseTensorProto, TensorError> {
    let unsupported = TensorError::Unsupported { dtype: t.dtype(), what: "sparse storage" };
    let width = element_bytes(t.dtype()).ok_or(unsupported)?;
    let raw = t.raw_bytes()?;
    let mut values: Vec<u8> = Vec::new();
    let mut indices: Vec<u8> = Vec::new();
    for (i, e) in raw.chunks_exact(width).enumerate() {
        if e.iter().any(|b| *b != 0) {
            values.extend_from_slice(e);
            indices.extend_from_slice(&(i as i64).to_le_bytes());
        }
    }
    let nnz = (values.len() / width) as i64;
    Ok(SparseTensorProto {
        values: Some(Tensor::from_raw(t.name(), t.dtype(), &[nnz], values).proto().clone()),
        indices: Some(Tensor::from_raw("", DataType::Int64, &[nnz], indices).proto().clone()),
        dims: t.dims().to_vec(),
    })
}

/// The dense tensor a sparse one stands for. Reads linear (`[NNZ]`) and coordinate
/// (`[NNZ, rank]`) indices; fails on indices out of range or a malformed tensor.
pub fn densify(s: &SparseTensorProto) -> Result<Tensor, String> {
    let values = Tensor::from_proto(s.values.clone().ok_or("a sparse tensor without values")?).map_err(|e| e.to_string())?;
    let indices = Tensor::from_proto(s.indices.clone().ok_or("a sparse tensor without indices")?).map_err(|e| e.to_string())?;
    let name = values.name().to_string();
    let width = element_bytes(values.dtype()).ok_or_else(|| format!("sparse {} tensors are not handled", values.dtype().short_name()))?;
    let numel = crate::tensor::element_count(&s.dims).map_err(|e| e.to_string())? as usize;
    let nnz = values.numel() as usize;
    let index = indices.to_i64().map_err(|e| e.to_string())?;
    let linear: Vec<i64> = match indices.dims() {
        [n] if *n as usize == nnz => index,
        [n, rank] if *n as usize == nnz && *rank as usize == s.dims.len() => index
            .chunks_exact(s.dims.len().max(1))
            .map(|c| c.iter().zip(&s.dims).try_fold(0i64, |acc, (i, d)| (0..*d).contains(i).then(|| acc * d + i)).unwrap_or(-1))
            .collect(),
        other => {
            return Err(format!("sparse tensor '{name}': indices of shape {other:?} for {nnz} values of a rank-{} tensor", s.dims.len()));
        }
    };
    let raw = values.raw_bytes().map_err(|e| e.to_string())?;
    let mut dense = vec![0u8; numel * width];
    for (k, i) in linear.iter().enumerate() {
        let i = usize::try_from(*i).ok().filter(|i| *i < numel).ok_or_else(|| format!("sparse tensor '{name}': index {i} out of range"))?;
        dense[i * width..(i + 1) * width].copy_from_slice(&raw[k * width..(k + 1) * width]);
    }
    Ok(Tensor::from_raw(&name, values.dtype(), &s.dims, dense))
}

/// Whether `s` is exactly what [`to_sparse`] writes for the tensor it stands for (so reading it as
/// a dense constant and writing it back gives the same message).
pub fn is_canonical(s: &SparseTensorProto) -> Option<Tensor> {
    let dense = densify(s).ok()?;
    (to_sparse(&dense).ok()? == *s).then_some(dense)
}

/// Makes every sparse tensor of `g` and of its subgraphs dense: sparse initializers move to the
/// ordinary initializers and `Constant` nodes' `sparse_value` becomes `value`. One that cannot be
/// read is left as it is (the runtime then reports it).
pub fn densify_graph(g: &mut GraphProto) {
    let sparse = std::mem::take(&mut g.sparse_initializer);
    for s in sparse {
        match densify(&s) {
            Ok(t) => g.initializer.push(TensorProto::clone(t.proto())),
            Err(_) => g.sparse_initializer.push(s),
        }
    }
    for node in &mut g.node {
        let is_constant = node.op_type.as_deref() == Some("Constant") && node.domain.as_deref().unwrap_or("").is_empty();
        for attr in &mut node.attribute {
            if is_constant
                && attr.name.as_deref() == Some(SPARSE_ATTRIBUTE)
                && let Some(t) = attr.sparse_tensor.as_ref().and_then(|s| densify(s).ok())
            {
                *attr = AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(AttributeType::Tensor as i32),
                    t: Some(TensorProto::clone(t.proto())),
                    ..Default::default()
                };
            }
            attr.g.iter_mut().chain(attr.graphs.iter_mut()).for_each(densify_graph);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_round_trip_keeps_every_byte() {
        let t = Tensor::from_f32("w", &[2, 3], &[0.0, 1.5, 0.0, -0.0, 0.0, -2.0]);
        let s = to_sparse(&t).unwrap();
        // -0.0 has its sign bit set: it is stored, so the bytes come back exactly.
        assert_eq!(Tensor::from_proto(s.indices.clone().unwrap()).unwrap().to_i64().unwrap(), vec![1, 3, 5]);
        assert_eq!(densify(&s).unwrap(), t);
        assert_eq!(is_canonical(&s), Some(t.clone()));
        assert_eq!(sparse_data_bytes(&t), Some(3 * 12));
        assert!(!sparse_is_smaller(&t), "36 bytes sparse against 24 dense");
        let mostly_zero = Tensor::from_f32("z", &[16], &[0.0; 16]);
        assert!(sparse_is_smaller(&mostly_zero));
    }

    #[test]
    fn coordinate_indices_are_read_and_bad_ones_refused() {
        let values = Tensor::from_f32("w", &[2], &[7.0, 8.0]).proto().clone();
        let coords = Tensor::from_i64("", &[2, 2], &[0, 1, 1, 2]).proto().clone();
        let s = SparseTensorProto { values: Some(values.clone()), indices: Some(coords), dims: vec![2, 3] };
        assert_eq!(densify(&s).unwrap().to_f32().unwrap(), vec![0.0, 7.0, 0.0, 0.0, 0.0, 8.0]);
        assert!(is_canonical(&s).is_none(), "coordinates are not the form whittle writes");
        let out_of_range = SparseTensorProto { indices: Some(Tensor::from_i64("", &[2], &[1, 6]).proto().clone()), ..s.clone() };
        assert!(densify(&out_of_range).unwrap_err().contains("index 6 out of range"));
        let bad_coord = SparseTensorProto { indices: Some(Tensor::from_i64("", &[2, 2], &[0, 3, 1, 0]).proto().clone()), ..s };
        assert!(densify(&bad_coord).is_err());
    }
}
