//! Index arithmetic of the structural ops, written once: the evaluator ([`super::eval_node`])
//! and shape inference (`shape::infer`) both use these, on whole tensors and on dimensions.

/// The first index and the length of `start:end:step` on an axis of size `n`, with ONNX's
/// clamping (negative bounds count from the end; for a negative step, `start` is clamped to
/// `[0, n-1]` and `end` to `[-1, n-1]`). `step` must not be 0.
///
/// `None` where runtimes disagree: a negative step whose start lies before the axis (e.g.
/// `-10:-20:-1` on 6 elements). The ONNX text clamps the start to 0 and onnxruntime returns one
/// element; numpy, the ONNX reference evaluator and tract return none. Such a slice is never
/// folded and its length is left unknown.
pub fn slice_range(start: i64, end: i64, step: i64, n: i64) -> Option<(i64, i64)> {
    let (start, end, step, n) = (start as i128, end as i128, step as i128, n as i128);
    let norm = |v: i128| if v < 0 { v + n } else { v };
    if step < 0 && norm(start) < 0 {
        return None;
    }
    let (first, len) = if step > 0 {
        let (s, e) = (norm(start).clamp(0, n), norm(end).clamp(0, n));
        (s, if e > s { (e - s - 1) / step + 1 } else { 0 })
    } else {
        if n == 0 {
            return Some((0, 0));
        }
        let (s, e) = (norm(start).clamp(0, n - 1), norm(end).clamp(-1, n - 1));
        (s, if s > e { (s - e - 1) / -step + 1 } else { 0 })
    };
    Some((first as i64, len as i64))
}

/// The indices `start:end:step` picks on an axis of size `n` (`None`: see [`slice_range`]).
pub fn slice_indices(start: i64, end: i64, step: i64, n: i64) -> Option<Vec<usize>> {
    let (first, len) = slice_range(start, end, step, n)?;
    Some((0..len).map(|k| (first + k * step) as usize).collect())
}

/// The `[start, end)` range of axes `Shape` returns for an input of rank `rank` (`start`/`end`
/// attributes from opset 15, negative counting from the end, clamped).
pub fn shape_bounds(rank: usize, start: i64, end: i64) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end));
    (s, e.max(s))
}

/// A `Gather` index on an axis of size `n` (negative counts from the end), if in range.
pub fn gather_index(i: i64, n: i64) -> Option<usize> {
    let j = if i < 0 { i.checked_add(n)? } else { i };
    (0..n).contains(&j).then_some(j as usize)
}

/// The length of `Range(start, limit, delta)` on integers: `max(ceil((limit − start) / delta), 0)`,
/// exact. `None` when `delta` is 0.
pub fn range_len_int(start: i64, limit: i64, delta: i64) -> Option<i128> {
    let (s, l, d) = (start as i128, limit as i128, delta as i128);
    if d == 0 {
        return None;
    }
    let span = l - s;
    Some(if (span > 0) == (d > 0) && span != 0 { (span.abs() + d.abs() - 1) / d.abs() } else { 0 })
}

/// The length of `Range` on floats; `None` when it is not finite (delta 0, NaN).
pub fn range_len_float(start: f64, limit: f64, delta: f64) -> Option<u64> {
    let n = ((limit - start) / delta).ceil();
    n.is_finite().then_some(n.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_clamp_like_onnx() {
        assert_eq!(slice_indices(0, i64::MAX, 1, 4).unwrap(), [0, 1, 2, 3]);
        assert_eq!(slice_indices(-1, -10, -1, 6).unwrap(), [5, 4, 3, 2, 1, 0]);
        assert_eq!(slice_indices(9, 2, -2, 6).unwrap(), [5, 3]);
        // Runtimes disagree (onnxruntime: [0]; numpy, tract: []): not computed.
        assert_eq!(slice_indices(-10, -20, -1, 6), None);
        assert_eq!(slice_indices(1, 100, 2, 6).unwrap(), [1, 3, 5]);
        assert!(slice_indices(3, 1, 1, 6).unwrap().is_empty());
        assert_eq!(shape_bounds(4, -1, 4), (3, 4));
        assert_eq!(shape_bounds(4, 3, 1), (3, 3));
        assert_eq!(gather_index(-1, 3), Some(2));
        assert_eq!(gather_index(3, 3), None);
        assert_eq!(range_len_int(2, 11, 3), Some(3));
        assert_eq!(range_len_int(5, 1, 1), Some(0));
        assert_eq!(range_len_int(10, 1, -4), Some(3));
        assert_eq!(range_len_float(0.0, 1.0, 0.3), Some(4));
    }
}
