//! The linear algebra the rewriting passes share, on [`nalgebra`]'s dense matrices (f64):
//!
//! - [`truncated_svd`]: `M ≈ Σ_{r<m} σ_r u_r v_rᵀ`, singular values in decreasing order, for the
//!   separable and low-rank rewrites;
//! - [`NormalEquations`]: the streaming accumulator of a least-squares fit `Y ≈ X·W` (sums `XᵀX`,
//!   `XᵀY` and `‖Y‖²`, rows added a batch at a time, nothing stored per sample), its ridge
//!   solution and the residual of any `W` computed from the sums alone. Layer refits after a
//!   rewrite (separable convolutions, pruned channels, pruned weights) are all this.

use nalgebra::DMatrix;

/// The singular value decomposition of `m`, singular values in decreasing order: `(U, σ, Vᵀ)` with
/// `m = U · diag(σ) · Vᵀ`, `U` of `min(rows, cols)` columns.
pub fn truncated_svd(m: &DMatrix<f64>) -> (DMatrix<f64>, Vec<f64>, DMatrix<f64>) {
    let svd = m.clone().svd(true, true);
    let (u, vt) = (svd.u.expect("asked for U"), svd.v_t.expect("asked for Vᵀ"));
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
    let sigma: Vec<f64> = order.iter().map(|&i| svd.singular_values[i]).collect();
    // Each component's sign is arbitrary: fix it so the largest entry of `v` is positive (the same
    // factors whatever the SVD routine's conventions).
    let sign: Vec<f64> = order
        .iter()
        .map(|&i| {
            let row = vt.row(i);
            let largest = row.iter().copied().fold(0.0f64, |a, v| if v.abs() > a.abs() { v } else { a });
            if largest < 0.0 { -1.0 } else { 1.0 }
        })
        .collect();
    let u = DMatrix::from_fn(u.nrows(), order.len(), |r, c| sign[c] * u[(r, order[c])]);
    let vt = DMatrix::from_fn(order.len(), vt.ncols(), |r, c| sign[r] * vt[(order[r], c)]);
    (u, sigma, vt)
}

/// Sums for the least-squares fit `Y ≈ X·W` (`X`: rows × `inputs`, `Y`: rows × `outputs`), added
/// a batch of rows at a time.
#[derive(Clone, Debug)]
pub struct NormalEquations {
    /// `XᵀX`, inputs × inputs.
    pub gram: DMatrix<f64>,
    /// `XᵀY`, inputs × outputs.
    pub cross: DMatrix<f64>,
    /// `‖Y‖²` (the sum of squares of every target).
    pub target_energy: f64,
    pub rows: u64,
}

impl NormalEquations {
    pub fn new(inputs: usize, outputs: usize) -> NormalEquations {
        NormalEquations { gram: DMatrix::zeros(inputs, inputs), cross: DMatrix::zeros(inputs, outputs), target_energy: 0.0, rows: 0 }
    }

    /// Adds the rows of `x` (rows × inputs) and their targets `y` (rows × outputs).
    pub fn add(&mut self, x: &DMatrix<f64>, y: &DMatrix<f64>) {
        assert_eq!(x.nrows(), y.nrows(), "one target row per input row");
        self.gram.gemm_tr(1.0, x, x, 1.0);
        self.cross.gemm_tr(1.0, x, y, 1.0);
        self.target_energy += y.norm_squared();
        self.rows += x.nrows() as u64;
    }

    /// `‖Y − X·W‖²` from the sums: `‖Y‖² − 2·tr(WᵀXᵀY) + tr(WᵀXᵀX·W)`.
    pub fn residual(&self, w: &DMatrix<f64>) -> f64 {
        let cross = self.cross.dot(w);
        let quadratic = (&self.gram * w).dot(w);
        (self.target_energy - 2.0 * cross + quadratic).max(0.0)
    }

    /// The `W` minimizing `‖Y − X·W‖² + λ‖W‖²` with `λ = ridge · tr(XᵀX) / inputs` (the ridge is
    /// relative to the mean input energy, so it does not depend on the data's scale or row
    /// count). `Err` when the system is singular even so.
    pub fn solve(&self, ridge: f64) -> Result<DMatrix<f64>, String> {
        let n = self.gram.nrows();
        let lambda = ridge * self.gram.trace() / n.max(1) as f64;
        let mut a = self.gram.clone();
        for i in 0..n {
            a[(i, i)] += lambda;
        }
        let chol = a.cholesky().ok_or("the least-squares system is singular (inputs that are constant or repeated; raise the ridge)")?;
        Ok(chol.solve(&self.cross))
    }
}

/// A `[N, C, spatial...]` tensor as rows (one per batch item and pixel, every `every`-th of them)
/// × `C` columns, with a column of ones appended when `with_ones` (a bias's input).
pub fn channel_rows(t: &ndarray::ArrayD<f32>, with_ones: bool, every: usize) -> Result<DMatrix<f64>, crate::measure::MeasureError> {
    let shape = t.shape();
    if shape.len() < 2 {
        return Err(crate::measure::MeasureError(format!("a tensor of shape {shape:?} has no channel axis")));
    }
    let (n, c) = (shape[0], shape[1]);
    let pixels: usize = shape[2..].iter().product();
    let t = t.as_standard_layout();
    let data = t.as_slice().expect("standard layout");
    let every = every.max(1);
    let cols = c + usize::from(with_ones);
    Ok(DMatrix::from_fn((n * pixels).div_ceil(every), cols, |row, col| {
        if col == c {
            1.0
        } else {
            let row = row * every;
            let (b, p) = (row / pixels, row % pixels);
            data[(b * c + col) * pixels + p] as f64
        }
    }))
}

/// A `[..., K]` tensor as rows (every `every`-th of its leading positions) × `K` columns
/// (`transposed`: a `[K, M]` matrix as its `M` columns).
pub fn feature_rows(t: &ndarray::ArrayD<f32>, transposed: bool, every: usize) -> Result<DMatrix<f64>, crate::measure::MeasureError> {
    let shape = t.shape();
    let every = every.max(1);
    let t = t.as_standard_layout();
    let data = t.as_slice().expect("standard layout");
    if transposed {
        let [k, m] = shape else { return Err(crate::measure::MeasureError(format!("a transposed input of shape {shape:?}"))) };
        let (k, m) = (*k, *m);
        return Ok(DMatrix::from_fn(m.div_ceil(every), k, |row, col| data[col * m + row * every] as f64));
    }
    let k = *shape.last().ok_or_else(|| crate::measure::MeasureError("a scalar input".into()))?;
    let rows = data.len() / k.max(1);
    Ok(DMatrix::from_fn(rows.div_ceil(every), k, |row, col| data[row * every * k + col] as f64))
}

/// Signal-to-error ratio in dB of an error energy against a signal energy (`inf` when exact).
pub fn snr_db(signal: f64, error: f64) -> f64 {
    if error <= 0.0 { f64::INFINITY } else { 10.0 * (signal / error).log10() }
}

/// Adds `Σ f(x)` over each channel along `axis` of `x` to `sum` (its energy with `f = x²`, its
/// L1 mass with `f = |x|`); `sum` is sized by the first sample.
pub fn accumulate_per_channel(sum: &mut Vec<f64>, x: &ndarray::ArrayD<f32>, axis: usize, f: impl Fn(f32) -> f64) -> Result<(), String> {
    reduce_per_channel(sum, x, axis, |s, lane| *s += lane.iter().map(|&v| f(v)).sum::<f64>())
}

/// Raises each channel's entry of `max` to the largest `|x|` along `axis` of `x` (sized by the
/// first sample): a running per-channel range.
pub fn max_abs_per_channel(max: &mut Vec<f64>, x: &ndarray::ArrayD<f32>, axis: usize) -> Result<(), String> {
    reduce_per_channel(max, x, axis, |m, lane| *m = lane.iter().fold(*m, |a, &v| a.max(v.abs() as f64)))
}

/// Folds each channel's lane along `axis` of `x` into its entry of `acc`, sized by the first sample.
fn reduce_per_channel(
    acc: &mut Vec<f64>,
    x: &ndarray::ArrayD<f32>,
    axis: usize,
    fold: impl Fn(&mut f64, ndarray::ArrayViewD<'_, f32>),
) -> Result<(), String> {
    let channels = *x.shape().get(axis).ok_or_else(|| format!("an input of shape {:?} has no axis {axis}", x.shape()))?;
    if acc.is_empty() {
        acc.resize(channels, 0.0);
    } else if acc.len() != channels {
        return Err(format!("input channels changed from {} to {channels} between samples", acc.len()));
    }
    for (a, lane) in acc.iter_mut().zip(x.axis_iter(ndarray::Axis(axis))) {
        fold(a, lane);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_reconstructs_and_sorts() {
        let m = DMatrix::from_row_slice(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let (u, s, vt) = truncated_svd(&m);
        assert!(s[0] >= s[1]);
        let back = &u * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(s.clone())) * &vt;
        assert!((back - &m).norm() < 1e-12);
    }

    #[test]
    fn normal_equations_recover_a_linear_map_streamed_in_batches() {
        let w = DMatrix::from_row_slice(3, 2, &[0.5, -1.0, 2.0, 0.25, -0.75, 1.5]);
        let mut ne = NormalEquations::new(3, 2);
        for batch in 0..4 {
            let x = DMatrix::from_fn(5, 3, |r, c| ((r * 7 + c * 3 + batch * 11) % 13) as f64 - 6.0);
            ne.add(&x, &(&x * &w));
        }
        let fit = ne.solve(0.0).unwrap();
        assert!((&fit - &w).norm() < 1e-9, "{fit}");
        assert!(ne.residual(&fit) < 1e-9);
        assert!(ne.residual(&DMatrix::zeros(3, 2)) > 1.0);
        assert!((ne.residual(&DMatrix::zeros(3, 2)) - ne.target_energy).abs() < 1e-9);
    }
}
