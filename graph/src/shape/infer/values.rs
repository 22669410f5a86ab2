//! Known contents of small tensors: the values of shapes computed at run time.
//!
//! Integer (and bool) contents are [`Dim`]s: a known number, a symbol (the value of a symbolic
//! dimension read by `Shape`), or unknown. Float contents are only kept when fully known. Tensors
//! of more than [`MAX_TRACKED`] elements are never tracked. Everything here answers `None` when it
//! cannot compute a result exactly.

use crate::dtype::DataType;
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
            let f = self.floats()?;
            return Some(Vals::Float(if to == DataType::Float { f.into_iter().map(|x| x as f32 as f64).collect() } else { f }));
        }
        let as_int = |d: &Dim| -> Dim {
            match d {
                Dim::Known(v) => wrap_int(*v, to).map_or(Dim::Unknown, Dim::Known),
                // A symbol is a dimension: it fits any integer type; as a bool it may be 0 or not.
                Dim::Sym(s) if to != DataType::Bool => Dim::Sym(s.clone()),
                _ => Dim::Unknown,
            }
        };
        match self {
            Vals::Int(v) => Some(Vals::Int(v.iter().map(as_int).collect())),
            Vals::Float(v) => {
                let truncated = v.iter().map(|x| x.is_finite().then(|| Dim::Known(x.trunc() as i64))).collect::<Option<Vec<_>>>()?;
                Some(Vals::Int(truncated.iter().map(as_int).collect()))
            }
        }
    }
}

/// An integer converted to a (narrower) integer type the way a C cast does.
fn wrap_int(v: i64, to: DataType) -> Option<i64> {
    use DataType::*;
    Some(match to {
        Int64 | Uint64 => v,
        Int32 => v as i32 as i64,
        Uint32 => v as u32 as i64,
        Int16 => v as i16 as i64,
        Uint16 => v as u16 as i64,
        Int8 => v as i8 as i64,
        Uint8 => v as u8 as i64,
        Bool => (v != 0) as i64,
        _ => return None,
    })
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

/// Element-wise ops with known-value rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Max,
    Min,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinOp {
    pub(crate) fn from_op(op: &str) -> Option<BinOp> {
        use BinOp::*;
        Some(match op {
            "Add" | "Sum" => Add,
            "Sub" => Sub,
            "Mul" => Mul,
            "Div" => Div,
            "Mod" => Mod,
            "Max" => Max,
            "Min" => Min,
            "Equal" => Equal,
            "Less" => Less,
            "Greater" => Greater,
            "LessOrEqual" => LessOrEqual,
            "GreaterOrEqual" => GreaterOrEqual,
            "And" => And,
            "Or" => Or,
            "Xor" => Xor,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        use BinOp::*;
        matches!(self, Equal | Less | Greater | LessOrEqual | GreaterOrEqual | And | Or | Xor)
    }
}

/// `op` applied element by element to two contents of the same length (already broadcast).
pub(crate) fn binary(op: BinOp, a: &Vals, b: &Vals) -> Option<Vals> {
    if a.len() != b.len() {
        return None;
    }
    match (a, b) {
        (Vals::Int(x), Vals::Int(y)) => Some(Vals::Int(x.iter().zip(y).map(|(p, q)| int_op(op, p, q)).collect())),
        _ => {
            let (x, y) = (a.floats()?, b.floats()?);
            let r: Vec<f64> = x.iter().zip(&y).map(|(p, q)| float_op(op, *p, *q)).collect::<Option<_>>()?;
            Some(if op.is_comparison() { Vals::Int(r.into_iter().map(|v| Dim::Known(v as i64)).collect()) } else { Vals::Float(r) })
        }
    }
}

fn int_op(op: BinOp, a: &Dim, b: &Dim) -> Dim {
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
    let (x, y) = (*x, *y);
    let r = match op {
        Add => x.checked_add(y),
        Sub => x.checked_sub(y),
        Mul => x.checked_mul(y),
        // Integer division truncates (onnxruntime, tract); Mod takes the divisor's sign (fmod = 0).
        Div => x.checked_div(y),
        Mod => x.checked_rem(y).map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
        Max => Some(x.max(y)),
        Min => Some(x.min(y)),
        Equal => Some((x == y) as i64),
        Less => Some((x < y) as i64),
        Greater => Some((x > y) as i64),
        LessOrEqual => Some((x <= y) as i64),
        GreaterOrEqual => Some((x >= y) as i64),
        And => Some((x != 0 && y != 0) as i64),
        Or => Some((x != 0 || y != 0) as i64),
        Xor => Some(((x != 0) != (y != 0)) as i64),
    };
    r.map_or(Dim::Unknown, Known)
}

fn float_op(op: BinOp, x: f64, y: f64) -> Option<f64> {
    use BinOp::*;
    let bool_f = |b: bool| if b { 1.0 } else { 0.0 };
    Some(match op {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div => x / y,
        Mod => return None,
        Max => x.max(y),
        Min => x.min(y),
        Equal => bool_f(x == y),
        Less => bool_f(x < y),
        Greater => bool_f(x > y),
        LessOrEqual => bool_f(x <= y),
        GreaterOrEqual => bool_f(x >= y),
        And | Or | Xor => return None,
    })
}

/// Element-wise unary ops with known-value rules.
pub(crate) fn unary(op: &str, v: &Vals) -> Option<Vals> {
    match (op, v) {
        ("Identity", _) => Some(v.clone()),
        ("Neg", Vals::Int(x)) => {
            Some(Vals::Int(x.iter().map(|d| d.known().and_then(i64::checked_neg).map_or(Dim::Unknown, Dim::Known)).collect()))
        }
        ("Abs", Vals::Int(x)) => Some(Vals::Int(
            x.iter()
                .map(|d| match d {
                    Dim::Known(v) => v.checked_abs().map_or(Dim::Unknown, Dim::Known),
                    // A dimension is never negative.
                    d => d.clone(),
                })
                .collect(),
        )),
        ("Not", Vals::Int(x)) => {
            Some(Vals::Int(x.iter().map(|d| d.known().map_or(Dim::Unknown, |v| Dim::Known((v == 0) as i64))).collect()))
        }
        ("Floor" | "Ceil" | "Round" | "Neg" | "Abs" | "Sqrt" | "Reciprocal", Vals::Float(x)) => {
            let f: fn(f64) -> f64 = match op {
                "Floor" => f64::floor,
                "Ceil" => f64::ceil,
                "Round" => f64::round_ties_even,
                "Neg" => |v| -v,
                "Abs" => f64::abs,
                "Sqrt" => f64::sqrt,
                _ => |v| 1.0 / v,
            };
            Some(Vals::Float(x.iter().map(|v| f(*v)).collect()))
        }
        _ => None,
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
