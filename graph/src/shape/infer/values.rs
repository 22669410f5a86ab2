//! Known contents of small tensors: the values of shapes computed at run time.
//!
//! Integer (and bool) contents are [`Dim`]s: a known number, a symbol (the value of a symbolic
//! dimension read by `Shape`), or unknown. Float contents are only kept when fully known. Tensors
//! of more than [`MAX_TRACKED`] elements are never tracked. Everything here answers `None` when it
//! cannot compute a result exactly. The semantics of each op on known elements are those of the
//! one evaluator ([`crate::eval::scalar`]); only the rules for symbols live here.

use crate::dtype::DataType;
use crate::eval::scalar::{self, BinOp};
use crate::shape::Dim;
use crate::tensor::Tensor;

/// Largest tensor whose contents are tracked.
pub(crate) const MAX_TRACKED: usize = 64;

/// The contents of a small tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Vals {
    Int(Vec<Dim>),
    Float(Vec<f64>),
}

impl Vals {
    /// The contents of a small constant of a numeric or bool type.
    pub(crate) fn from_tensor(t: &Tensor) -> Option<Vals> {
        let n = usize::try_from(t.numel()).ok().filter(|n| *n <= MAX_TRACKED)?;
        let dt = t.dtype();
        let vals = if dt.is_integer() || dt == DataType::Bool {
            Vals::Int(t.to_i64().ok()?.into_iter().map(Dim::Known).collect())
        } else if matches!(dt, DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16) {
            Vals::Float(t.to_f32().ok()?.into_iter().map(f64::from).collect())
        } else {
            return None;
        };
        (vals.len() == n).then_some(vals)
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Vals::Int(v) => v.len(),
            Vals::Float(v) => v.len(),
        }
    }

    /// Every element as an integer, if all are known (floats are not converted).
    pub(crate) fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Vals::Int(v) => v.iter().map(Dim::known).collect(),
            Vals::Float(_) => None,
        }
    }

    /// Every element as a float, if all are known.
    pub(crate) fn floats(&self) -> Option<Vec<f64>> {
        match self {
            Vals::Int(v) => v.iter().map(|d| d.known().map(|x| x as f64)).collect(),
            Vals::Float(v) => Some(v.clone()),
        }
    }

    /// The elements at these flat indices.
    pub(crate) fn pick(&self, idx: &[usize]) -> Option<Vals> {
        Some(match self {
            Vals::Int(v) => Vals::Int(idx.iter().map(|&i| v.get(i).cloned()).collect::<Option<_>>()?),
            Vals::Float(v) => Vals::Float(idx.iter().map(|&i| v.get(i).copied()).collect::<Option<_>>()?),
        })
    }

    /// Several contents laid end to end (all of the same kind).
    pub(crate) fn concat<'a>(parts: impl IntoIterator<Item = &'a Vals>) -> Option<Vals> {
        let mut ints: Vec<Dim> = Vec::new();
        let mut floats: Vec<f64> = Vec::new();
        for p in parts {
            match p {
                Vals::Int(v) => ints.extend(v.iter().cloned()),
                Vals::Float(v) => floats.extend(v.iter().copied()),
            }
        }
        match (ints.is_empty(), floats.is_empty()) {
            (_, true) => Some(Vals::Int(ints)),
            (true, false) => Some(Vals::Float(floats)),
            (false, false) => None,
        }
    }

    /// The contents converted by `Cast` to `to`.
    pub(crate) fn cast(&self, to: DataType) -> Option<Vals> {
        if to.is_float() {
            return Some(Vals::Float(self.floats()?.into_iter().map(|x| scalar::round_float(x, to)).collect::<Option<_>>()?));
        }
        let as_int = |d: &Dim| -> Dim {
            match d {
                Dim::Known(v) => scalar::wrap_int(*v, to).map_or(Dim::Unknown, Dim::Known),
                // A symbol is a dimension: it fits any integer type; as a bool it may be 0 or not.
                Dim::Sym(s) if to != DataType::Bool => Dim::Sym(s.clone()),
                _ => Dim::Unknown,
            }
        };
        match self {
            Vals::Int(v) => Some(Vals::Int(v.iter().map(as_int).collect())),
            Vals::Float(v) => Some(Vals::Int(v.iter().map(|x| scalar::float_to_int(*x, to).map_or(Dim::Unknown, Dim::Known)).collect())),
        }
    }
}

/// For each element of a tensor of shape `out`, the flat index of the element of a tensor of shape
/// `input` that numpy broadcasting reads. Shapes must broadcast.
pub(crate) fn broadcast_index(out: &[i64], input: &[i64]) -> Option<Vec<usize>> {
    let n: usize = out.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))?;
    if n > MAX_TRACKED || input.len() > out.len() {
        return None;
    }
    let offset = out.len() - input.len();
    // Stride of each output axis in the input (0 where the input broadcasts).
    let mut strides = vec![0usize; out.len()];
    let mut stride = 1usize;
    for (i, &d) in input.iter().enumerate().rev() {
        let o = out[i + offset];
        if d == o {
            strides[i + offset] = stride;
        } else if d != 1 {
            return None;
        }
        stride = stride.checked_mul(usize::try_from(d).ok()?)?;
    }
    let mut idx = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut rem, mut src) = (flat, 0usize);
        for (axis, &d) in out.iter().enumerate().rev() {
            let d = d as usize;
            src += (rem % d) * strides[axis];
            rem /= d;
        }
        idx.push(src);
    }
    Some(idx)
}

/// `op` applied element by element to two contents of the same length (already broadcast), the
/// inputs of element type `dtype`.
pub(crate) fn binary(op: BinOp, a: &Vals, b: &Vals, dtype: DataType) -> Option<Vals> {
    if a.len() != b.len() {
        return None;
    }
    match (a, b) {
        (Vals::Int(x), Vals::Int(y)) if !dtype.is_float() => {
            Some(Vals::Int(x.iter().zip(y).map(|(p, q)| int_op(op, p, q, dtype)).collect()))
        }
        _ => {
            let (x, y) = (a.floats()?, b.floats()?);
            let r: Vec<f64> = x.iter().zip(&y).map(|(p, q)| scalar::float_binary(op, *p, *q)).collect::<Option<_>>()?;
            Some(if op.gives_bool() {
                Vals::Int(r.into_iter().map(|v| Dim::Known(v as i64)).collect())
            } else {
                Vals::Float(r.into_iter().map(|v| scalar::round_float(v, dtype).unwrap_or(v)).collect())
            })
        }
    }
}

fn int_op(op: BinOp, a: &Dim, b: &Dim, dtype: DataType) -> Dim {
    use BinOp::*;
    use Dim::{Known, Sym};
    let same_sym = matches!((a, b), (Sym(x), Sym(y)) if x == y);
    let (Known(x), Known(y)) = (a, b) else {
        // Rules that hold for symbols too.
        return match (op, a, b) {
            (Add, d, Known(0)) | (Add, Known(0), d) | (Sub, d, Known(0)) => d.clone(),
            (Mul, d, Known(1)) | (Mul, Known(1), d) | (Div, d, Known(1)) => d.clone(),
            (Mul, _, Known(0)) | (Mul, Known(0), _) => Known(0),
            (Sub, _, _) if same_sym => Known(0),
            (Div, _, _) if same_sym => Known(1),
            (Max | Min, d, _) if same_sym => d.clone(),
            (Equal | LessOrEqual | GreaterOrEqual, _, _) if same_sym => Known(1),
            (Less | Greater, _, _) if same_sym => Known(0),
            _ => Dim::Unknown,
        };
    };
    scalar::int_binary(op, *x, *y, dtype).map_or(Dim::Unknown, Known)
}

/// Element-wise unary ops on known elements of type `dtype`.
pub(crate) fn unary(op: &str, v: &Vals, dtype: DataType) -> Option<Vals> {
    match v {
        Vals::Int(x) if !dtype.is_float() => Some(Vals::Int(
            x.iter()
                .map(|d| match d {
                    Dim::Known(v) => scalar::int_unary(op, *v, dtype).map_or(Dim::Unknown, Dim::Known),
                    // A dimension is never negative.
                    Dim::Sym(_) if matches!(op, "Abs" | "Identity" | "Relu") => d.clone(),
                    _ => Dim::Unknown,
                })
                .collect(),
        )),
        Vals::Int(_) => None,
        Vals::Float(x) => {
            let r: Vec<f64> =
                x.iter().map(|v| scalar::float_unary(op, *v).and_then(|r| scalar::round_float(r, dtype))).collect::<Option<_>>()?;
            Some(Vals::Float(r))
        }
    }
}

/// `Where(cond, x, y)` on contents of the same length (already broadcast).
pub(crate) fn select(cond: &Vals, x: &Vals, y: &Vals) -> Option<Vals> {
    let Vals::Int(c) = cond else { return None };
    if c.len() != x.len() || c.len() != y.len() {
        return None;
    }
    match (x, y) {
        (Vals::Int(a), Vals::Int(b)) => Some(Vals::Int(
            c.iter()
                .zip(a.iter().zip(b))
                .map(|(c, (a, b))| match c {
                    Dim::Known(c) => {
                        if *c != 0 {
                            a.clone()
                        } else {
                            b.clone()
                        }
                    }
                    _ if a == b => a.clone(),
                    _ => Dim::Unknown,
                })
                .collect(),
        )),
        _ => {
            let (a, b, c) = (x.floats()?, y.floats()?, cond.ints()?);
            Some(Vals::Float(c.iter().zip(a.iter().zip(&b)).map(|(c, (a, b))| if *c != 0 { *a } else { *b }).collect()))
        }
    }
}
