//! Element types of ONNX tensors (`TensorProto.DataType`).

use std::fmt;

/// An ONNX tensor element type. The discriminants are the wire values of `TensorProto.DataType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Uint16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    Uint32 = 12,
    Uint64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    Bfloat16 = 16,
    Float8E4M3FN = 17,
    Float8E4M3FNUZ = 18,
    Float8E5M2 = 19,
    Float8E5M2FNUZ = 20,
    Uint4 = 21,
    Int4 = 22,
    Float4E2M1 = 23,
    Float8E8M0 = 24,
    Uint2 = 25,
    Int2 = 26,
}

const ALL: [DataType; 26] = [
    DataType::Float,
    DataType::Uint8,
    DataType::Int8,
    DataType::Uint16,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::String,
    DataType::Bool,
    DataType::Float16,
    DataType::Double,
    DataType::Uint32,
    DataType::Uint64,
    DataType::Complex64,
    DataType::Complex128,
    DataType::Bfloat16,
    DataType::Float8E4M3FN,
    DataType::Float8E4M3FNUZ,
    DataType::Float8E5M2,
    DataType::Float8E5M2FNUZ,
    DataType::Uint4,
    DataType::Int4,
    DataType::Float4E2M1,
    DataType::Float8E8M0,
    DataType::Uint2,
    DataType::Int2,
];

impl DataType {
    /// The type for a wire value, or `None` for 0 (undefined) and values this IR version lacks.
    pub fn from_onnx(code: i32) -> Option<DataType> {
        ALL.iter().copied().find(|t| *t as i32 == code)
    }

    pub fn to_onnx(self) -> i32 {
        self as i32
    }

    /// Storage size in bits of one element in `raw_data` (`None` for strings).
    pub fn bit_width(self) -> Option<u32> {
        use DataType::*;
        Some(match self {
            Uint2 | Int2 => 2,
            Uint4 | Int4 | Float4E2M1 => 4,
            Bool | Uint8 | Int8 | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2 | Float8E5M2FNUZ | Float8E8M0 => 8,
            Uint16 | Int16 | Float16 | Bfloat16 => 16,
            Float | Int32 | Uint32 => 32,
            Double | Int64 | Uint64 | Complex64 => 64,
            Complex128 => 128,
            String => return None,
        })
    }

    /// Bytes taken by `count` elements in `raw_data` (sub-byte types are packed, rounded up).
    pub fn storage_bytes(self, count: u64) -> Option<u64> {
        self.bit_width().map(|bits| (count * bits as u64).div_ceil(8))
    }

    pub fn is_float(self) -> bool {
        use DataType::*;
        matches!(
            self,
            Float | Double | Float16 | Bfloat16 | Float8E4M3FN | Float8E4M3FNUZ | Float8E5M2 | Float8E5M2FNUZ | Float8E8M0 | Float4E2M1
        )
    }

    pub fn is_integer(self) -> bool {
        use DataType::*;
        matches!(self, Uint8 | Int8 | Uint16 | Int16 | Int32 | Int64 | Uint32 | Uint64 | Uint4 | Int4 | Uint2 | Int2)
    }

    /// Short lower-case name used by the text form and reports (`f32`, `i64`, `u8`...).
    pub fn short_name(self) -> &'static str {
        use DataType::*;
        match self {
            Float => "f32",
            Uint8 => "u8",
            Int8 => "i8",
            Uint16 => "u16",
            Int16 => "i16",
            Int32 => "i32",
            Int64 => "i64",
            String => "string",
            Bool => "bool",
            Float16 => "f16",
            Double => "f64",
            Uint32 => "u32",
            Uint64 => "u64",
            Complex64 => "c64",
            Complex128 => "c128",
            Bfloat16 => "bf16",
            Float8E4M3FN => "f8e4m3fn",
            Float8E4M3FNUZ => "f8e4m3fnuz",
            Float8E5M2 => "f8e5m2",
            Float8E5M2FNUZ => "f8e5m2fnuz",
            Uint4 => "u4",
            Int4 => "i4",
            Float4E2M1 => "f4e2m1",
            Float8E8M0 => "f8e8m0",
            Uint2 => "u2",
            Int2 => "i2",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}
