//! Quantization parameters and the arithmetic of ONNX `QuantizeLinear`/`DequantizeLinear`:
//! `q = saturate(round_half_even(x / scale) + zero_point)`, `x' = (q - zero_point) · scale`.

use serde::{Deserialize, Serialize};
use whittle_graph::DataType;

/// The integer type of a quantized tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QType {
    #[default]
    Uint8,
    Int8,
}

impl QType {
    pub fn bounds(self) -> (i32, i32) {
        match self {
            QType::Uint8 => (0, 255),
            QType::Int8 => (-128, 127),
        }
    }

    pub fn dtype(self) -> DataType {
        match self {
            QType::Uint8 => DataType::Uint8,
            QType::Int8 => DataType::Int8,
        }
    }
}

/// Scale and zero point of a per-tensor quantization.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
    pub qtype: QType,
}

impl QParams {
    /// The parameters that map `[lo, hi]` (widened to hold 0) onto the type's range: asymmetric
    /// (zero point anywhere) or symmetric (zero point in the middle: 0 for int8, 128 for uint8).
    /// An empty range gets scale 1.
    pub fn for_range(lo: f32, hi: f32, qtype: QType, symmetric: bool) -> QParams {
        let (qmin, qmax) = qtype.bounds();
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let (scale, zero_point) = if symmetric {
            let m = lo.abs().max(hi.abs());
            let zp = if qtype == QType::Int8 { 0 } else { 128 };
            (2.0 * m / (qmax - qmin) as f32, zp)
        } else {
            let scale = (hi - lo) / (qmax - qmin) as f32;
            let zp = if scale > 0.0 { (qmin as f32 - lo / scale).round_ties_even() as i32 } else { qmin.max(0) };
            (scale, zp.clamp(qmin, qmax))
        };
        let scale = if scale.is_finite() && scale > f32::MIN_POSITIVE { scale } else { 1.0 };
        QParams { scale, zero_point, qtype }
    }

    pub fn quantize(&self, x: f32) -> i32 {
        let (qmin, qmax) = self.qtype.bounds();
        ((x / self.scale).round_ties_even() as i64 + self.zero_point as i64).clamp(qmin as i64, qmax as i64) as i32
    }

    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// The smallest and largest representable values.
    pub fn representable(&self) -> (f64, f64) {
        let (qmin, qmax) = self.qtype.bounds();
        ((qmin - self.zero_point) as f64 * self.scale as f64, (qmax - self.zero_point) as f64 * self.scale as f64)
    }
}

/// Symmetric int8 quantization of weights per output channel (`axis`) or per tensor: values in
/// `[-127, 127]` (the restricted range integer kernels expect), scale `max|w| / 127`, zero point 0.
/// Returns the integers and one scale per channel (one in all without `axis`).
pub fn quantize_weights(data: &[f32], dims: &[i64], axis: Option<usize>) -> (Vec<i8>, Vec<f32>) {
    let (channels, inner) = match axis {
        Some(a) => (dims[a].max(1) as usize, dims[a + 1..].iter().product::<i64>().max(1) as usize),
        None => (1, data.len().max(1)),
    };
    let channel_of = |i: usize| if axis.is_some() { (i / inner) % channels } else { 0 };
    let mut absmax = vec![0f32; channels];
    for (i, &w) in data.iter().enumerate() {
        let c = channel_of(i);
        absmax[c] = absmax[c].max(w.abs());
    }
    let scales: Vec<f32> = absmax.iter().map(|&m| if m > 0.0 && m.is_finite() { m / 127.0 } else { 1.0 }).collect();
    let q = data.iter().enumerate().map(|(i, &w)| (w / scales[channel_of(i)]).round_ties_even().clamp(-127.0, 127.0) as i8).collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_uint8_puts_zero_on_an_integer_and_covers_the_range() {
        let q = QParams::for_range(-1.0, 3.0, QType::Uint8, false);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
        let (lo, hi) = q.representable();
        assert!(lo <= -0.99 && hi >= 2.99, "{lo} {hi}");
        // A ReLU output [0, m] gets zero point 0: quantization saturates negatives to 0, which is
        // why the quantizer may drop a ReLU in front of its QuantizeLinear.
        assert_eq!(QParams::for_range(0.0, 6.0, QType::Uint8, false).zero_point, 0);
        assert_eq!(QParams::for_range(0.0, 6.0, QType::Int8, false).zero_point, -128);
    }

    #[test]
    fn symmetric_and_weights() {
        let q = QParams::for_range(-2.0, 1.0, QType::Int8, true);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 4.0 / 255.0).abs() < 1e-7);
        let (w, s) = quantize_weights(&[1.0, -0.5, 0.0, 2.0, 4.0, -8.0], &[2, 3], Some(0));
        assert_eq!(s, vec![1.0 / 127.0, 8.0 / 127.0]);
        assert_eq!(w, vec![127, -64, 0, 32, 64, -127]);
        let (_, s) = quantize_weights(&[0.0; 4], &[4], None);
        assert_eq!(s, vec![1.0]);
    }
}
