//! Decoding one `.npy` stream (a file, or a member of an `.npz` zip) into a tract [`Tensor`] or a
//! list of strings.
//!
//! All dtypes go through `npyz`, because `ndarray-npy` cannot read NumPy unicode strings (`<U`),
//! which is how the rec eval set stores its labels; one reader for every dtype keeps one code
//! path. `<U` is UTF-32 code points, zero-padded on the right: `npyz` decodes it to `String`
//! (trailing NULs dropped, invalid code points rejected). Byte strings (`|S`) are read too and
//! decoded as UTF-8 (lossily). Fortran-ordered arrays are transposed to C order.

use std::io::Read;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use npyz::{DType, NpyFile, Order, TypeChar};
use tract_onnx::prelude::{Datum, Tensor};

use super::DataError;

/// The decoded content of one `.npy` stream.
pub(crate) enum NpyArray {
    /// A numeric or boolean array.
    Tensor(Tensor),
    /// A string array (`<U` or `|S`) with its shape.
    Text { shape: Vec<usize>, values: Vec<String> },
}

/// Reads one `.npy` stream, refusing (before allocating) an array whose decoded size exceeds
/// `max_bytes`. `file` and `key` are only used in error messages. Returns the array and the bytes
/// it takes.
pub(crate) fn read_npy<R: Read>(mut reader: R, file: &str, key: &str, max_bytes: u64) -> Result<(NpyArray, u64), DataError> {
    let format = |what: String| DataError::Format { file: file.to_string(), what: format!("array `{key}`: {what}") };
    let header = checked_header(&mut reader).map_err(|e| format(format!("bad .npy header: {e}")))?;
    let npy = NpyFile::new(std::io::Cursor::new(header).chain(reader)).map_err(|e| format(format!("bad .npy header: {e}")))?;
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format("dimension too large".into()))?;
    let fortran = npy.order() == Order::Fortran;
    let dtype = npy.dtype();
    let unsupported = || DataError::UnsupportedDtype {
        file: file.to_string(),
        key: key.to_string(),
        dtype: dtype.descr(),
        expected: "bool, int8..int64, uint8..uint64, float32, float64 or strings",
    };
    let DType::Plain(ts) = &dtype else {
        return Err(unsupported());
    };
    // Strings also cost their `String` (24 bytes) each.
    let element =
        ts.num_bytes().unwrap_or(0) as u64 + if matches!(ts.type_char(), TypeChar::UnicodeStr | TypeChar::ByteStr) { 24 } else { 0 };
    let count = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let bytes = count.and_then(|c| c.checked_mul(element)).unwrap_or(u64::MAX);
    if bytes > max_bytes {
        return Err(DataError::TooLarge {
            file: file.to_string(),
            what: format!(
                "array `{key}` of shape {shape:?} decodes to {}, more than the {} this run may still use (the memory limit, --max-memory)",
                crate::memory::human(bytes),
                crate::memory::human(max_bytes)
            ),
        });
    }
    let read_err = |e: std::io::Error| format(format!("cannot read data: {e}"));
    let tensor = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => tensor::<f32, _>(npy, &shape, fortran),
        (TypeChar::Float, 8) => tensor::<f64, _>(npy, &shape, fortran),
        (TypeChar::Int, 1) => tensor::<i8, _>(npy, &shape, fortran),
        (TypeChar::Int, 2) => tensor::<i16, _>(npy, &shape, fortran),
        (TypeChar::Int, 4) => tensor::<i32, _>(npy, &shape, fortran),
        (TypeChar::Int, 8) => tensor::<i64, _>(npy, &shape, fortran),
        (TypeChar::Uint, 1) => tensor::<u8, _>(npy, &shape, fortran),
        (TypeChar::Uint, 2) => tensor::<u16, _>(npy, &shape, fortran),
        (TypeChar::Uint, 4) => tensor::<u32, _>(npy, &shape, fortran),
        (TypeChar::Uint, 8) => tensor::<u64, _>(npy, &shape, fortran),
        (TypeChar::Bool, 1) => tensor::<bool, _>(npy, &shape, fortran),
        (TypeChar::UnicodeStr, _) => {
            let values: Vec<String> = npy.into_vec().map_err(read_err)?;
            return Ok((NpyArray::Text { values: c_order(values, &shape, fortran).map_err(format)?, shape }, bytes));
        }
        (TypeChar::ByteStr, _) => {
            let raw: Vec<Vec<u8>> = npy.into_vec().map_err(read_err)?;
            let values = raw.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect();
            return Ok((NpyArray::Text { values: c_order(values, &shape, fortran).map_err(format)?, shape }, bytes));
        }
        _ => return Err(unsupported()),
    };
    tensor.map(|t| (NpyArray::Tensor(t), bytes)).map_err(|e| format(e.to_string()))
}

/// The magic, version, length and text of an `.npy` header, read and checked before `npyz`
/// parses it: NumPy writes a flat dict literal (`{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }`), and `npyz`'s parser takes exponential time on deeply nested brackets,
/// so a header over 64 KiB or nested deeper than 3 levels is refused.
fn checked_header<R: Read>(reader: &mut R) -> Result<Vec<u8>, String> {
    let mut start = [0u8; 8];
    reader.read_exact(&mut start).map_err(|e| e.to_string())?;
    if &start[..6] != b"\x93NUMPY" {
        return Err("not an .npy stream (no \\x93NUMPY magic)".into());
    }
    let len_bytes = if start[6] == 1 { 2 } else { 4 };
    let mut len = [0u8; 4];
    reader.read_exact(&mut len[..len_bytes]).map_err(|e| e.to_string())?;
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > 64 << 10 {
        return Err(format!("header of {header_len} bytes (NumPy writes under 1 KiB)"));
    }
    let mut text = vec![0u8; header_len];
    reader.read_exact(&mut text).map_err(|e| e.to_string())?;
    let mut depth = 0usize;
    for &b in &text {
        match b {
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > 3 {
                    return Err("header nested deeper than NumPy writes it".into());
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut out = start.to_vec();
    out.extend_from_slice(&len[..len_bytes]);
    out.extend_from_slice(&text);
    Ok(out)
}

/// Reads all elements as `T` and builds a C-ordered tensor.
fn tensor<T, R>(npy: NpyFile<R>, shape: &[usize], fortran: bool) -> Result<Tensor, std::io::Error>
where
    T: Datum + npyz::Deserialize + Clone,
    R: Read,
{
    let values: Vec<T> = npy.into_vec()?;
    let array = c_order(values, shape, fortran).map_err(std::io::Error::other)?;
    let array = ArrayD::from_shape_vec(IxDyn(shape), array).map_err(std::io::Error::other)?;
    Ok(Tensor::from(array))
}

/// Reorders `values` stored in Fortran order into C order (no-op for C order).
fn c_order<T: Clone>(values: Vec<T>, shape: &[usize], fortran: bool) -> Result<Vec<T>, String> {
    if !fortran || shape.len() < 2 {
        return Ok(values);
    }
    let array = ArrayD::from_shape_vec(IxDyn(shape).f(), values).map_err(|e| e.to_string())?;
    Ok(array.as_standard_layout().iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{npy_bytes, values};

    #[test]
    fn nested_headers_are_refused_at_once() {
        // Found by the `npz` fuzz target: npyz's header parser took minutes on this.
        let bytes = npy_bytes("<f4", false, &format!("(2, 3), {}", "{".repeat(100)), &[]);
        let err = read_npy(&bytes[..], "t.npy", "x", u64::MAX).err().unwrap();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    fn utf32(s: &str, width: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = 0;
        for c in s.chars() {
            out.extend_from_slice(&(c as u32).to_le_bytes());
            n += 1;
        }
        out.resize(out.len() + 4 * (width - n), 0);
        out
    }

    #[test]
    fn reads_unicode_strings() {
        let mut data = utf32("héllo", 6);
        data.extend(utf32("文字", 6));
        let bytes = npy_bytes("<U6", false, "(2,)", &data);
        match read_npy(&bytes[..], "t.npy", "labels", u64::MAX).unwrap().0 {
            NpyArray::Text { shape, values } => {
                assert_eq!(shape, vec![2]);
                assert_eq!(values, vec!["héllo".to_string(), "文字".to_string()]);
            }
            NpyArray::Tensor(_) => panic!("expected text"),
        }
    }

    #[test]
    fn reads_fortran_order_as_c_order() {
        // The 2x3 matrix [[0,1,2],[3,4,5]] stored column-major: 0 3 1 4 2 5.
        let data: Vec<u8> = [0i64, 3, 1, 4, 2, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = npy_bytes("<i8", true, "(2, 3)", &data);
        let NpyArray::Tensor(t) = read_npy(&bytes[..], "t.npy", "x", u64::MAX).unwrap().0 else { panic!("expected tensor") };
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(values::<i64>(&t), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn reads_big_endian_f32() {
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = npy_bytes(">f4", false, "(2,)", &data);
        let NpyArray::Tensor(t) = read_npy(&bytes[..], "t.npy", "x", u64::MAX).unwrap().0 else { panic!("expected tensor") };
        assert_eq!(values::<f32>(&t), vec![1.5, -2.0]);
    }

    #[test]
    fn rejects_complex_with_dtype_in_message() {
        let bytes = npy_bytes("<c8", false, "(1,)", &[0; 8]);
        let err = read_npy(&bytes[..], "t.npy", "x", u64::MAX).err().unwrap();
        assert!(matches!(err, DataError::UnsupportedDtype { .. }), "{err}");
        assert!(err.to_string().contains("<c8"), "{err}");
    }

    #[test]
    fn truncated_data_is_a_format_error() {
        let bytes = npy_bytes("<f4", false, "(4,)", &[0; 6]);
        let err = read_npy(&bytes[..], "t.npy", "x", u64::MAX).err().unwrap();
        assert!(matches!(err, DataError::Format { .. }), "{err}");
    }
}
