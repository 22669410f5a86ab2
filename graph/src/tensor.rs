//! Constant tensors: weights, biases, shapes and every other value known before the model runs.
//!
//! A [`Tensor`] wraps the `TensorProto` it came from behind an `Arc`, so cloning a tensor never
//! copies its data, and a model decoded from a `Bytes` buffer keeps pointing into that buffer
//! (`raw_data` is a slice of the file). Tensors stored in external data files carry the loaded bytes
//! beside the untouched proto. Typed views (`to_f32`, `to_i64`) decode on demand.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::dtype::DataType;
use crate::error::TensorError;
use crate::onnx::TensorProto;
use crate::onnx::tensor_proto::DataLocation;

/// An immutable constant tensor sharing its data with the model it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    proto: Arc<TensorProto>,
    dtype: DataType,
    /// Data read from an external file, when the proto stores its data outside the model.
    external: Option<Bytes>,
}

impl Tensor {
    /// Checks a tensor proto (known dtype, element count that fits, data of the right length) and
    /// wraps it. External data must be attached with [`Tensor::with_external_data`].
    pub fn from_proto(proto: TensorProto) -> Result<Tensor, TensorError> {
        let code = proto.data_type.unwrap_or(0);
        let dtype = DataType::from_onnx(code).ok_or(TensorError::UnknownDtype(code))?;
        let numel = element_count(&proto.dims)?;
        let tensor = Tensor { proto: Arc::new(proto), dtype, external: None };
        if !tensor.is_external() {
            tensor.check_length(numel)?;
        }
        Ok(tensor)
    }

    /// Attaches the bytes read from this tensor's external data file.
    pub fn with_external_data(mut self, data: Bytes) -> Result<Tensor, TensorError> {
        self.external = Some(data);
        let numel = element_count(&self.proto.dims)?;
        self.check_length(numel)?;
        Ok(self)
    }

    fn check_length(&self, numel: u64) -> Result<(), TensorError> {
        let p = &*self.proto;
        let (found, unit) = if let Some(raw) = self.raw_bytes_stored() {
            match self.dtype.storage_bytes(numel) {
                Some(expected) if raw.len() as u64 != expected => (raw.len() as u64, expected),
                _ => return Ok(()),
            }
        } else {
            let typed = typed_len(p, self.dtype);
            let expected = match self.dtype {
                DataType::Complex64 | DataType::Complex128 => numel * 2,
                DataType::Uint4 | DataType::Int4 | DataType::Float4E2M1 => numel.div_ceil(2),
                DataType::Uint2 | DataType::Int2 => numel.div_ceil(4),
                _ => numel,
            };
            // An empty typed field with no raw data is how exporters write zero-element tensors;
            // anything else must match the element count.
            if typed == expected || (typed == 0 && numel == 0) {
                return Ok(());
            }
            (typed, expected)
        };
        Err(TensorError::DataLength { found, expected: unit })
    }

    /// A new float tensor holding `data` (row-major) as little-endian `raw_data`.
    pub fn from_f32(name: &str, dims: &[i64], data: &[f32]) -> Tensor {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(name, DataType::Float, dims, raw)
    }

    /// A new int64 tensor holding `data` as little-endian `raw_data`.
    pub fn from_i64(name: &str, dims: &[i64], data: &[i64]) -> Tensor {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(name, DataType::Int64, dims, raw)
    }

    /// A new int32 tensor (e.g. a quantized bias).
    pub fn from_i32(name: &str, dims: &[i64], data: &[i32]) -> Tensor {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(name, DataType::Int32, dims, raw)
    }

    /// A new int8 tensor (e.g. a quantized weight or a zero point).
    pub fn from_i8(name: &str, dims: &[i64], data: &[i8]) -> Tensor {
        Tensor::from_raw(name, DataType::Int8, dims, data.iter().map(|&v| v as u8).collect())
    }

    /// A new uint8 tensor (e.g. an activation zero point).
    pub fn from_u8(name: &str, dims: &[i64], data: &[u8]) -> Tensor {
        Tensor::from_raw(name, DataType::Uint8, dims, data.to_vec())
    }

    /// The sub-tensor keeping, along `axis`, the slices at `indices` in that order (repeats allowed;
    /// negative indices count from the end), like `numpy.take(t, indices, axis)`. Works on the
    /// stored bytes, so every fixed-width element type keeps its exact bits; sub-byte and string
    /// tensors are refused. Pruning a filter is `select(0, kept)`; its input channels `select(1, ..)`.
    pub fn select(&self, axis: i64, indices: &[i64]) -> Result<Tensor, TensorError> {
        let dims = self.dims().to_vec();
        let rank = dims.len() as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&ax) {
            return Err(TensorError::Axis { axis, dims });
        }
        let ax = ax as usize;
        let width = match self.dtype.bit_width() {
            Some(bits) if bits % 8 == 0 && self.dtype != DataType::String => (bits / 8) as usize,
            _ => return Err(TensorError::Unsupported { dtype: self.dtype, what: "select" }),
        };
        let size = dims[ax];
        let picked: Vec<usize> = indices
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + size } else { i };
                if (0..size).contains(&j) { Ok(j as usize) } else { Err(TensorError::Index { index: i, axis: ax, size }) }
            })
            .collect::<Result<_, _>>()?;
        let raw = self.raw_bytes()?;
        let outer: usize = dims[..ax].iter().map(|&d| d as usize).product();
        let inner: usize = dims[ax + 1..].iter().map(|&d| d as usize).product::<usize>() * width;
        let expected = outer * size as usize * inner;
        if raw.len() != expected {
            return Err(TensorError::DataLength { found: raw.len() as u64, expected: expected as u64 });
        }
        let mut out = Vec::with_capacity(outer * picked.len() * inner);
        for o in 0..outer {
            let base = o * size as usize * inner;
            for &j in &picked {
                out.extend_from_slice(&raw[base + j * inner..base + (j + 1) * inner]);
            }
        }
        let mut new_dims = dims;
        new_dims[ax] = picked.len() as i64;
        Ok(Tensor::from_raw(self.name(), self.dtype, &new_dims, out))
    }

    /// A new tensor from little-endian bytes laid out as ONNX `raw_data`.
    pub fn from_raw(name: &str, dtype: DataType, dims: &[i64], raw: Vec<u8>) -> Tensor {
        let proto = TensorProto {
            dims: dims.to_vec(),
            data_type: Some(dtype.to_onnx()),
            name: (!name.is_empty()).then(|| name.to_string()),
            raw_data: Some(Bytes::from(raw)),
            ..Default::default()
        };
        Tensor { proto: Arc::new(proto), dtype, external: None }
    }

    /// This tensor with its data inline in `raw_data` (shared, not copied, when it was external).
    pub fn inlined(&self) -> Tensor {
        let Some(data) = self.external.clone().filter(|_| self.is_external()) else { return self.clone() };
        let mut proto = (*self.proto).clone();
        proto.raw_data = Some(data);
        proto.external_data.clear();
        proto.data_location = None;
        Tensor { proto: Arc::new(proto), dtype: self.dtype, external: None }
    }

    /// This tensor stored at `offset` of the external file `location` (its bytes stay attached:
    /// shared with this tensor's, never copied, when they are stored as raw bytes, e.g. in a
    /// memory-mapped file).
    pub fn externalized(&self, location: &str, offset: u64) -> Result<Tensor, TensorError> {
        let raw = match self.raw_bytes_stored() {
            Some(stored) => stored.clone(),
            None => Bytes::from(self.raw_bytes()?.into_owned()),
        };
        let entry = |k: &str, v: String| crate::onnx::StringStringEntryProto { key: Some(k.into()), value: Some(v) };
        let p = &*self.proto;
        let proto = TensorProto {
            dims: p.dims.clone(),
            data_type: p.data_type,
            segment: p.segment,
            name: p.name.clone(),
            doc_string: p.doc_string.clone(),
            metadata_props: p.metadata_props.clone(),
            external_data: vec![
                entry("location", location.to_string()),
                entry("offset", offset.to_string()),
                entry("length", raw.len().to_string()),
            ],
            data_location: Some(DataLocation::External as i32),
            ..Default::default()
        };
        Ok(Tensor { proto: Arc::new(proto), dtype: self.dtype, external: Some(raw) })
    }

    pub fn proto(&self) -> &TensorProto {
        &self.proto
    }

    /// The proto with its name replaced (data shared, not copied).
    pub fn renamed(&self, name: &str) -> Tensor {
        if self.proto.name.as_deref() == Some(name) {
            return self.clone();
        }
        let mut proto = (*self.proto).clone();
        proto.name = Some(name.to_string());
        Tensor { proto: Arc::new(proto), dtype: self.dtype, external: self.external.clone() }
    }

    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    pub fn dims(&self) -> &[i64] {
        &self.proto.dims
    }

    pub fn name(&self) -> &str {
        self.proto.name.as_deref().unwrap_or("")
    }

    /// Number of elements (checked not to overflow when the tensor was built).
    pub fn numel(&self) -> u64 {
        self.proto.dims.iter().map(|&d| d as u64).product()
    }

    /// Bytes the data takes when stored densely (strings: the sum of their lengths).
    pub fn byte_size(&self) -> u64 {
        match self.dtype.storage_bytes(self.numel()) {
            Some(n) => n,
            None => self.proto.string_data.iter().map(|s| s.len() as u64).sum(),
        }
    }

    /// Elements whose stored bytes are not all zero (+0.0 and 0 count as zero; -0.0 does not).
    /// Element types narrower than a byte, strings and data not loaded count every element.
    pub fn nonzero_count(&self) -> u64 {
        let n = self.numel();
        let Some(bytes) = self.dtype.storage_bytes(n) else { return n };
        if n == 0 || bytes % n != 0 {
            return n;
        }
        match self.raw_bytes() {
            Ok(raw) => raw.chunks_exact((bytes / n) as usize).filter(|e| e.iter().any(|b| *b != 0)).count() as u64,
            Err(_) => n,
        }
    }

    pub fn is_external(&self) -> bool {
        self.proto.data_location == Some(DataLocation::External as i32)
    }

    /// The external-data entries (`location`, `offset`, `length`, `checksum`) of the proto.
    pub fn external_entry(&self, key: &str) -> Option<&str> {
        self.proto.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.as_deref())
    }

    /// The stored little-endian bytes, when the data is in `raw_data` or an external file.
    fn raw_bytes_stored(&self) -> Option<&Bytes> {
        if self.is_external() { self.external.as_ref() } else { self.proto.raw_data.as_ref() }
    }

    /// The data as little-endian `raw_data` bytes, whatever field stores it (not for strings).
    pub fn raw_bytes(&self) -> Result<Cow<'_, [u8]>, TensorError> {
        if let Some(raw) = self.raw_bytes_stored() {
            return Ok(Cow::Borrowed(raw));
        }
        if self.is_external() {
            return Err(TensorError::ExternalNotLoaded);
        }
        let p = &*self.proto;
        use DataType::*;
        let bytes: Vec<u8> = match self.dtype {
            Float | Complex64 => p.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Double | Complex128 => p.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Int64 => p.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Uint64 | Uint32 => {
                let w = if self.dtype == Uint32 { 4 } else { 8 };
                p.uint64_data.iter().flat_map(|v| v.to_le_bytes()[..w].to_vec()).collect()
            }
            Int32 => p.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Int16 | Uint16 | Float16 | Bfloat16 => p.int32_data.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
            Int8 | Uint8 | Bool | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2 | Float8E5M2FNUZ | Float8E8M0 | Uint4 | Int4 | Float4E2M1
            | Uint2 | Int2 => p.int32_data.iter().map(|v| *v as u8).collect(),
            String => return Err(TensorError::Unsupported { dtype: self.dtype, what: "raw bytes" }),
        };
        Ok(Cow::Owned(bytes))
    }

    /// The elements converted to f32 (floats of every width, integers and bool).
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorError> {
        let raw = self.raw_bytes()?;
        use DataType::*;
        Ok(match self.dtype {
            Float => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Double => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32).collect(),
            Float16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Bfloat16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => self.to_i64()?.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// The elements converted to i64 (integer types and bool; floats are truncated).
    pub fn to_i64(&self) -> Result<Vec<i64>, TensorError> {
        let raw = self.raw_bytes()?;
        use DataType::*;
        Ok(match self.dtype {
            Int64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            Uint64 => raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect(),
            Int32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Uint32 => raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Int16 => raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            Uint16 => raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            Int8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            Uint8 | Bool => raw.iter().map(|&b| b as i64).collect(),
            Float | Double | Float16 | Bfloat16 => self.to_f32()?.into_iter().map(|v| v as i64).collect(),
            other => return Err(TensorError::Unsupported { dtype: other, what: "integer view" }),
        })
    }

    /// A short, stable digest of dtype, dims and data: what the text form prints for big tensors.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.dtype.to_onnx().to_le_bytes());
        for d in self.dims() {
            h.update(d.to_le_bytes());
        }
        match self.raw_bytes() {
            Ok(raw) => h.update(&raw),
            Err(_) => {
                for s in &self.proto.string_data {
                    h.update((s.len() as u64).to_le_bytes());
                    h.update(s);
                }
            }
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// Product of dims, rejecting negative dims and counts that overflow.
pub fn element_count(dims: &[i64]) -> Result<u64, TensorError> {
    let mut n: u64 = 1;
    for &d in dims {
        if d < 0 {
            return Err(TensorError::NegativeDim(dims.to_vec()));
        }
        n = n.checked_mul(d as u64).ok_or_else(|| TensorError::Overflow(dims.to_vec()))?;
    }
    // Every element takes at least one bit; more than 2^63 bits cannot be stored or indexed.
    if n > (i64::MAX as u64) / 8 {
        return Err(TensorError::Overflow(dims.to_vec()));
    }
    Ok(n)
}

fn typed_len(p: &TensorProto, dtype: DataType) -> u64 {
    use DataType::*;
    (match dtype {
        Float | Complex64 => p.float_data.len(),
        Double | Complex128 => p.double_data.len(),
        Int64 => p.int64_data.len(),
        Uint32 | Uint64 => p.uint64_data.len(),
        String => p.string_data.len(),
        _ => p.int32_data.len(),
    }) as u64
}
