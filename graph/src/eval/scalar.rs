//! The element-wise semantics of ONNX operators, written once: the constant evaluator
//! ([`super::eval_node`]) computes with these on whole tensors, and shape inference
//! (`shape::infer::values`) on the known elements of small shape tensors, so the two can never
//! disagree.
//!
//! Choices where ONNX leaves room (each matches onnxruntime and tract, and is cross-checked against
//! tract in `tests/constant_eval.rs`):
//! - integer arithmetic wraps in the element type (two's complement); integer division truncates
//!   toward zero; division (and Mod) by zero is undefined and not computed (`None`);
//! - `Mod` with `fmod=0` takes the sign of the divisor (Python), with `fmod=1` the sign of the
//!   dividend (C `fmod`); floats need `fmod=1`;
//! - a float cast to an integer type truncates toward zero; NaN, infinities and values outside
//!   the target type are undefined in ONNX (runtimes differ), so they are not computed (`None`);
//! - an integer cast to a narrower integer type wraps (keeps the low bits);
//! - floats compute in f64 and round to the element type (exact for + − × ÷ and √ of f32).

use crate::dtype::DataType;

/// Binary element-wise ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `fmod`: the attribute of `Mod`.
    Mod {
        fmod: bool,
    },
    Pow,
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
    /// The op of a node type (`Sum` adds; `fmod` is `Mod`'s attribute).
    pub fn from_op(op: &str, fmod: bool) -> Option<BinOp> {
        use BinOp::*;
        Some(match op {
            "Add" | "Sum" => Add,
            "Sub" => Sub,
            "Mul" => Mul,
            "Div" => Div,
            "Mod" => Mod { fmod },
            "Pow" => Pow,
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

    /// Comparisons and logical ops: their result is bool.
    pub fn gives_bool(self) -> bool {
        use BinOp::*;
        matches!(self, Equal | Less | Greater | LessOrEqual | GreaterOrEqual | And | Or | Xor)
    }

    /// And, Or, Xor: defined on bool inputs only.
    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Xor)
    }
}

/// `op` on two integers of element type `dtype` (bool is 0/1); bool results are 0/1.
pub fn int_binary(op: BinOp, x: i64, y: i64, dtype: DataType) -> Option<i64> {
    use BinOp::*;
    let r = match op {
        Add => x.wrapping_add(y),
        Sub => x.wrapping_sub(y),
        Mul => x.wrapping_mul(y),
        Div if y == 0 => return None,
        Div => x.wrapping_div(y),
        Mod { .. } if y == 0 => return None,
        Mod { fmod: true } => x.wrapping_rem(y),
        Mod { fmod: false } => {
            let r = x.wrapping_rem(y);
            if r != 0 && (r < 0) != (y < 0) { r + y } else { r }
        }
        Pow => x.wrapping_pow(u32::try_from(y).ok()?),
        Max => x.max(y),
        Min => x.min(y),
        Equal => (x == y) as i64,
        Less => (x < y) as i64,
        Greater => (x > y) as i64,
        LessOrEqual => (x <= y) as i64,
        GreaterOrEqual => (x >= y) as i64,
        And => (x != 0 && y != 0) as i64,
        Or => (x != 0 || y != 0) as i64,
        Xor => ((x != 0) != (y != 0)) as i64,
    };
    if op.gives_bool() { Some(r) } else { wrap_int(r, dtype) }
}

/// `op` on two floats; bool results are 0.0/1.0. `None` where ONNX does not define it
/// (logical ops, `Mod` without `fmod`).
pub fn float_binary(op: BinOp, x: f64, y: f64) -> Option<f64> {
    use BinOp::*;
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    Some(match op {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div => x / y,
        Mod { fmod: true } => x % y,
        Mod { fmod: false } => return None,
        Pow => x.powf(y),
        Max => x.max(y),
        Min => x.min(y),
        Equal => b(x == y),
        Less => b(x < y),
        Greater => b(x > y),
        LessOrEqual => b(x <= y),
        GreaterOrEqual => b(x >= y),
        And | Or | Xor => return None,
    })
}

/// `op` on an integer of element type `dtype` (`Not` on bool 0/1).
pub fn int_unary(op: &str, x: i64, dtype: DataType) -> Option<i64> {
    match op {
        "Identity" => Some(x),
        "Neg" => wrap_int(x.wrapping_neg(), dtype),
        "Abs" => wrap_int(x.wrapping_abs(), dtype),
        "Relu" => Some(x.max(0)),
        "Not" if dtype == DataType::Bool => Some((x == 0) as i64),
        _ => None,
    }
}

/// `op` on a float.
pub fn float_unary(op: &str, x: f64) -> Option<f64> {
    Some(match op {
        "Identity" => x,
        "Neg" => -x,
        "Abs" => x.abs(),
        "Sqrt" => x.sqrt(),
        "Reciprocal" => 1.0 / x,
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        "Round" => x.round_ties_even(),
        "Exp" => x.exp(),
        "Relu" => x.max(0.0),
        _ => return None,
    })
}

/// The unary ops [`int_unary`] and [`float_unary`] know.
pub const UNARY_OPS: [&str; 11] = ["Identity", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Exp", "Relu", "Not"];

/// An integer converted to integer type `to` the way a C cast does (keeps the low bits).
pub fn wrap_int(v: i64, to: DataType) -> Option<i64> {
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

/// A float cast to integer type `to` (truncated toward zero), or `None` when ONNX leaves it
/// undefined: NaN, an infinity, or a value outside `to`.
pub fn float_to_int(x: f64, to: DataType) -> Option<i64> {
    use DataType::*;
    if to == Bool {
        return Some((x != 0.0) as i64);
    }
    let t = x.trunc();
    let (lo, hi): (f64, f64) = match to {
        Int64 => (-9.223_372_036_854_776e18, 9.223_372_036_854_776e18),
        Uint64 => (0.0, 1.844_674_407_370_955_2e19),
        Int32 => (i32::MIN as f64, i32::MAX as f64 + 1.0),
        Uint32 => (0.0, u32::MAX as f64 + 1.0),
        Int16 => (i16::MIN as f64, i16::MAX as f64 + 1.0),
        Uint16 => (0.0, u16::MAX as f64 + 1.0),
        Int8 => (i8::MIN as f64, i8::MAX as f64 + 1.0),
        Uint8 => (0.0, u8::MAX as f64 + 1.0),
        _ => return None,
    };
    (t.is_finite() && t >= lo && t < hi).then_some(if to == Uint64 { t as u64 as i64 } else { t as i64 })
}

/// A float rounded to float type `to` (f32 for Float; f16/bf16 as their f32 value).
pub fn round_float(x: f64, to: DataType) -> Option<f64> {
    use DataType::*;
    Some(match to {
        Double => x,
        Float => x as f32 as f64,
        Float16 => half::f16::from_f64(x).to_f64(),
        Bfloat16 => half::bf16::from_f64(x).to_f64(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_wrap_in_their_type() {
        assert_eq!(int_binary(BinOp::Add, i64::MAX, 1, DataType::Int64), Some(i64::MIN));
        assert_eq!(int_binary(BinOp::Add, i32::MAX as i64, 1, DataType::Int32), Some(i32::MIN as i64));
        assert_eq!(int_binary(BinOp::Div, 7, 0, DataType::Int64), None);
        assert_eq!(int_binary(BinOp::Div, -7, 2, DataType::Int64), Some(-3));
    }

    #[test]
    fn mod_follows_fmod() {
        assert_eq!(int_binary(BinOp::Mod { fmod: false }, -7, 3, DataType::Int64), Some(2));
        assert_eq!(int_binary(BinOp::Mod { fmod: true }, -7, 3, DataType::Int64), Some(-1));
        assert_eq!(float_binary(BinOp::Mod { fmod: true }, -7.5, 2.0), Some(-1.5));
        assert_eq!(float_binary(BinOp::Mod { fmod: false }, -7.5, 2.0), None);
    }

    #[test]
    fn undefined_float_casts_are_refused() {
        assert_eq!(float_to_int(f64::NAN, DataType::Int64), None);
        assert_eq!(float_to_int(f64::INFINITY, DataType::Int32), None);
        assert_eq!(float_to_int(300.0, DataType::Uint8), None);
        assert_eq!(float_to_int(-2.7, DataType::Int8), Some(-2));
        assert_eq!(float_to_int(255.9, DataType::Uint8), Some(255));
    }
}
