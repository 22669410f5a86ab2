//! How single things are spelled in the text form: names, strings, numbers, types and tensors.

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{TensorDigest, TextOptions};
use crate::dtype::DataType;
use crate::onnx::{SparseTensorProto, TensorProto, TypeProto, type_proto};
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

/// Metadata values longer than this many characters print as a digest.
pub(super) const LONG_TEXT: usize = 80;

/// Significant digits kept by [`TensorDigest::Stats`].
const STAT_DIGITS: i32 = 4;

// ----- names and strings -----

/// A name as printed: bare when it is made only of ASCII letters, digits and `_ . : / - @`,
/// quoted (see [`quoted`]) otherwise, and always when empty.
pub(super) fn name(s: &str) -> Cow<'_, str> {
    let bare = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:/-@".contains(&b));
    if bare { Cow::Borrowed(s) } else { Cow::Owned(quoted(s.as_bytes())) }
}

/// A string in double quotes. `"` and `\` are escaped with a backslash, `\n \r \t` as such, other
/// control characters as `\u{hex}` and bytes that are not UTF-8 as `\xhh`.
pub(super) fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// A free-text value (metadata): quoted when short, else its size and a hash.
pub(super) fn long_text(s: &str) -> String {
    let chars = s.chars().count();
    if chars <= LONG_TEXT {
        return quoted(s.as_bytes());
    }
    format!("<{chars} chars, {} lines, hash {}>", s.lines().count(), short_hash(s.as_bytes()))
}

/// The first 8 bytes of the SHA-256 of `bytes`, in hex (as [`Tensor::content_hash`]).
fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

// ----- numbers -----

/// An f32 in Rust's shortest round-trip form (`0.1`, `1.0`, `-0.0`, `1e-5`), `nan`, `inf`, `-inf`.
pub(super) fn float32(v: f32) -> String {
    non_finite(v as f64).unwrap_or_else(|| format!("{v:?}"))
}

/// An f64 in Rust's shortest round-trip form.
pub(super) fn float64(v: f64) -> String {
    non_finite(v).unwrap_or_else(|| format!("{v:?}"))
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("nan".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// `v` rounded to [`STAT_DIGITS`] significant digits, printed without trailing zeros; `0` for
/// zero of either sign.
fn rounded(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let r: f64 = format!("{:.*e}", (STAT_DIGITS - 1) as usize, v).parse().unwrap_or(v);
    if r == 0.0 {
        return "0".into();
    }
    if (1e-4..1e6).contains(&r.abs()) { format!("{r}") } else { format!("{r:e}") }
}

/// `v` rounded to a multiple of `10^exp`, printed without trailing zeros (`0` for zero).
fn rounded_at(v: f64, exp: i32) -> String {
    let s = if exp < 0 { format!("{:.*}", (-exp) as usize, v) } else { format!("{:.0}", (v / 10f64.powi(exp)).round() * 10f64.powi(exp)) };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s.trim_start_matches('-').chars().all(|c| c == '0') { "0".into() } else { s }
}

// ----- types -----

/// A shape: `[1,3,N,?]`; symbolic dims print as names, unknown ones as `?`.
pub(super) fn shape(s: &Shape) -> String {
    let dims: Vec<Cow<'_, str>> =
        s.0.iter()
            .map(|d| match d {
                Dim::Known(v) => Cow::Owned(v.to_string()),
                Dim::Sym(s) => name(s),
                Dim::Unknown => Cow::Borrowed("?"),
            })
            .collect();
    format!("[{}]", dims.join(","))
}

/// A tensor type: `f32[1,3]`; `?` for an unknown element type, `[*]` for an unknown rank
/// (`f32[*]`), `[]` for a scalar (`f32[]`).
pub(super) fn tensor_type(dtype: Option<DataType>, s: Option<&Shape>) -> String {
    let dt = dtype.map(DataType::short_name).unwrap_or("?");
    match s {
        Some(s) => format!("{dt}{}", shape(s)),
        None => format!("{dt}[*]"),
    }
}

fn dtype_code(code: Option<i32>) -> String {
    match code.and_then(DataType::from_onnx) {
        Some(dt) => dt.short_name().to_string(),
        None => "?".into(),
    }
}

/// A declared ONNX type: tensors as [`tensor_type`], `sparse f32[..]`, `seq(..)`,
/// `map(k, v)`, `optional(..)`, `opaque(domain.name)`; `?` when absent.
pub(super) fn type_proto(tp: Option<&TypeProto>) -> String {
    let Some(value) = tp.and_then(|t| t.value.as_ref()) else { return "?".into() };
    let dims = |s: &Option<crate::onnx::TensorShapeProto>| s.as_ref().map(|s| shape(&Shape::from_proto(s))).unwrap_or_else(|| "[*]".into());
    match value {
        type_proto::Value::TensorType(t) => format!("{}{}", dtype_code(t.elem_type), dims(&t.shape)),
        type_proto::Value::SparseTensorType(t) => format!("sparse {}{}", dtype_code(t.elem_type), dims(&t.shape)),
        type_proto::Value::SequenceType(s) => format!("seq({})", type_proto(s.elem_type.as_deref())),
        type_proto::Value::OptionalType(o) => format!("optional({})", type_proto(o.elem_type.as_deref())),
        type_proto::Value::MapType(m) => format!("map({}, {})", dtype_code(m.key_type), type_proto(m.value_type.as_deref())),
        type_proto::Value::OpaqueType(o) => {
            format!("opaque({}.{})", o.domain.as_deref().unwrap_or(""), o.name.as_deref().unwrap_or(""))
        }
    }
}

// ----- tensors -----

/// A tensor with its type: `f32[2,2] [[1.0,2.0],[3.0,4.0]]`.
pub(super) fn tensor(t: &Tensor, opts: &TextOptions) -> String {
    format!("{} {}", type_of(t), tensor_data(t, opts))
}

/// The type of a tensor: `f32[2,2]`.
pub(super) fn type_of(t: &Tensor) -> String {
    tensor_type(Some(t.dtype()), Some(&Shape::from_dims(t.dims())))
}

/// A tensor proto (attribute value) as [`tensor`], or `<invalid tensor: ..>`.
pub(super) fn tensor_proto(t: &TensorProto, opts: &TextOptions) -> String {
    match Tensor::from_proto(t.clone()) {
        Ok(t) => tensor(&t, opts),
        Err(e) => format!("<invalid tensor: {}>", quoted(e.to_string().as_bytes())),
    }
}

/// A sparse tensor: `sparse f32[10,10] {nnz=3, values=.., indices=..}`.
pub(super) fn sparse(s: &SparseTensorProto, opts: &TextOptions) -> String {
    let (ty, data) = sparse_parts(s, opts);
    format!("{ty} {data}")
}

/// The type (`sparse f32[10,10]`) and data (`{nnz=3, values=.., indices=..}`) of a sparse tensor.
pub(super) fn sparse_parts(s: &SparseTensorProto, opts: &TextOptions) -> (String, String) {
    let part = |t: &Option<TensorProto>| t.as_ref().map(|t| tensor_proto(t, opts)).unwrap_or_else(|| "?".into());
    let dtype = s.values.as_ref().and_then(|v| v.data_type);
    let nnz = s.values.as_ref().and_then(|v| v.dims.first()).copied().unwrap_or(0);
    let ty = format!("sparse {}{}", dtype_code(dtype), shape(&Shape::from_dims(&s.dims)));
    (ty, format!("{{nnz={nnz}, values={}, indices={}}}", part(&s.values), part(&s.indices)))
}

/// The data of a tensor: its elements when there are at most `inline_limit` (nested by
/// dimension; `~` in front when rounded by [`TensorDigest::Stats`]), rounded statistics for a
/// larger float tensor under [`TensorDigest::Stats`], else `<hash ..>`.
pub(super) fn tensor_data(t: &Tensor, opts: &TextOptions) -> String {
    let approx = opts.tensors == TensorDigest::Stats;
    if t.numel() <= opts.inline_limit as u64
        && let Some(elems) = element_texts(t, approx)
    {
        let text = nested(&elems, t.dims());
        return if approx && t.dtype().is_float() { format!("~{text}") } else { text };
    }
    if approx && let Some(values) = float_values(t) {
        return stats(&values);
    }
    format!("<hash {}>", t.content_hash())
}

/// Each element as text, or `None` when this element type has no printable view.
fn element_texts(t: &Tensor, approx: bool) -> Option<Vec<String>> {
    let float = |v: f64| if approx { rounded(v) } else { float64(v) };
    let texts: Vec<String> = match t.dtype() {
        DataType::Float | DataType::Float16 | DataType::Bfloat16 => {
            let values = t.to_f32().ok()?;
            values.into_iter().map(|v| if approx { rounded(v as f64) } else { float32(v) }).collect()
        }
        DataType::Double => f64_values(t)?.into_iter().map(float).collect(),
        DataType::Uint64 => {
            t.raw_bytes().ok()?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()).to_string()).collect()
        }
        DataType::Bool => t.to_i64().ok()?.into_iter().map(|v| (v != 0).to_string()).collect(),
        DataType::String => t.proto().string_data.iter().map(|s| quoted(s)).collect(),
        dt if dt.is_integer() => t.to_i64().ok()?.into_iter().map(|v| v.to_string()).collect(),
        _ => return None,
    };
    (texts.len() as u64 == t.numel()).then_some(texts)
}

fn f64_values(t: &Tensor) -> Option<Vec<f64>> {
    Some(t.raw_bytes().ok()?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

/// The elements of a float tensor as f64 (`None` for other types and undecodable ones).
fn float_values(t: &Tensor) -> Option<Vec<f64>> {
    match t.dtype() {
        DataType::Float | DataType::Float16 | DataType::Bfloat16 => Some(t.to_f32().ok()?.into_iter().map(f64::from).collect()),
        DataType::Double => f64_values(t),
        _ => None,
    }
}

/// Elements nested by dimension: `5`, `[1,2]`, `[[1,2],[3,4]]`.
fn nested(elems: &[String], dims: &[i64]) -> String {
    let Some((&n, rest)) = dims.split_first() else { return elems.first().cloned().unwrap_or_default() };
    let inner: usize = rest.iter().map(|&d| d as usize).product();
    let items: Vec<String> = (0..n as usize).map(|i| nested(&elems[i * inner..(i + 1) * inner], rest)).collect();
    format!("[{}]", items.join(","))
}

/// `<min=.. max=.. mean=.. std=..>` over the finite values, each rounded to a multiple of the
/// same power of ten: the one keeping [`STAT_DIGITS`] significant digits of the largest magnitude
/// (so a mean near zero does not show rounding noise). Non-finite values are counted
/// (`nan=`, `inf=`, `-inf=`).
fn stats(values: &[f64]) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut parts = Vec::new();
    if !finite.is_empty() {
        let n = finite.len() as f64;
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = finite.iter().sum::<f64>() / n;
        let std = (finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let scale = min.abs().max(max.abs());
        let fmt = |v: f64| {
            if scale == 0.0 {
                "0".to_string()
            } else if (1e-4..1e6).contains(&scale) {
                rounded_at(v, scale.log10().floor() as i32 - (STAT_DIGITS - 1))
            } else {
                rounded(v)
            }
        };
        parts.extend([
            format!("min={}", fmt(min)),
            format!("max={}", fmt(max)),
            format!("mean={}", fmt(mean)),
            format!("std={}", fmt(std)),
        ]);
    }
    let count = |f: fn(&f64) -> bool| values.iter().filter(|v| f(v)).count();
    for (label, k) in
        [("nan", count(|v| v.is_nan())), ("inf", count(|v| *v == f64::INFINITY)), ("-inf", count(|v| *v == f64::NEG_INFINITY))]
    {
        if k > 0 {
            parts.push(format!("{label}={k}"));
        }
    }
    format!("<{}>", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip() {
        assert_eq!(float32(0.1), "0.1");
        assert_eq!(float32(1.0), "1.0");
        assert_eq!(float32(-0.0), "-0.0");
        assert_eq!(float32(1e-5), "1e-5");
        assert_eq!(float32(f32::NAN), "nan");
        assert_eq!(float32(f32::NEG_INFINITY), "-inf");
        for v in [0.1f32, 1.0 / 3.0, 1e-5, f32::MAX, f32::MIN_POSITIVE, 1e-45] {
            assert_eq!(float32(v).parse::<f32>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(rounded(0.123456), "0.1235");
        assert_eq!(rounded(-0.0), "0");
        assert_eq!(rounded(1234567.0), "1.235e6");
        assert_eq!(rounded(0.00001234567), "1.235e-5");
        assert_eq!(rounded_at(0.50001, -4), "0.5");
        assert_eq!(rounded_at(-0.00001, -4), "0");
        assert_eq!(rounded_at(12345.0, 1), "12350");
        assert_eq!(stats(&[1.0, -1.0, f64::NAN]), "<min=-1 max=1 mean=0 std=1 nan=1>");
    }

    #[test]
    fn names_and_strings() {
        assert_eq!(name("conv2d_0.w_0"), "conv2d_0.w_0");
        assert_eq!(name("/model/Conv_output_0"), "/model/Conv_output_0");
        assert_eq!(name("a b"), "\"a b\"");
        assert_eq!(name(""), "\"\"");
        assert_eq!(quoted(b"a\"\\\n\x01\xff"), "\"a\\\"\\\\\\n\\u{1}\\xff\"");
    }
}
