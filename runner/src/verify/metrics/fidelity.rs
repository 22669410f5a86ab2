//! Numeric fidelity of a candidate output to the reference: max and mean absolute error, cosine
//! similarity and SQNR. Sums are taken in f64 over all elements of all samples.

use serde::Serialize;

use super::super::json;

/// Fidelity of one output (or of all outputs pooled).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fidelity {
    /// Number of elements compared.
    pub elements: usize,
    /// max |ref - cand|; NaN if any value is NaN.
    #[serde(serialize_with = "json::finite_or_null")]
    pub max_abs_error: f64,
    /// max |ref|: the output's magnitude, what `max_abs_error` is relative to.
    #[serde(serialize_with = "json::finite_or_null")]
    pub max_abs_reference: f64,
    /// mean |ref - cand|.
    #[serde(serialize_with = "json::finite_or_null")]
    pub mean_abs_error: f64,
    /// <ref, cand> / (|ref| |cand|); 1 when both are all zeros, 0 when only one is.
    #[serde(serialize_with = "json::finite_or_null")]
    pub cosine_similarity: f64,
    /// 10·log10(Σ ref² / Σ (ref - cand)²) in dB; `+inf` (written `null`) when identical.
    #[serde(serialize_with = "json::finite_or_null")]
    pub sqnr_db: f64,
    /// True when every element is equal (then `sqnr_db` is `+inf`).
    pub exact_match: bool,
    /// Count of NaN/inf values in either output (they make the other metrics NaN).
    pub non_finite: usize,
}

/// SQNR in dB from the summed signal power Σ ref² and noise power Σ (ref - cand)²:
/// `+inf` when the noise is 0, `-inf` when only the signal is 0.
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() }
}

/// Running sums for [`Fidelity`], fed one sample at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FidelityAccumulator {
    elements: usize,
    sum_ref2: f64,
    sum_cand2: f64,
    sum_dot: f64,
    sum_err2: f64,
    sum_abs_err: f64,
    max_abs_err: f64,
    max_abs_ref: f64,
    non_finite: usize,
}

impl FidelityAccumulator {
    /// Adds one pair of outputs. Panics if the lengths differ.
    pub fn add(&mut self, reference: &[f32], candidate: &[f32]) {
        assert_eq!(reference.len(), candidate.len(), "fidelity: length mismatch");
        for (&r, &c) in reference.iter().zip(candidate) {
            let (r, c) = (f64::from(r), f64::from(c));
            if !r.is_finite() || !c.is_finite() {
                self.non_finite += 1;
            }
            let err = (r - c).abs();
            self.sum_ref2 += r * r;
            self.sum_cand2 += c * c;
            self.sum_dot += r * c;
            self.sum_err2 += err * err;
            self.sum_abs_err += err;
            self.max_abs_err = nan_max(self.max_abs_err, err);
            self.max_abs_ref = self.max_abs_ref.max(r.abs());
        }
        self.elements += reference.len();
    }

    /// Pools another accumulator into this one.
    pub fn merge(&mut self, other: &FidelityAccumulator) {
        self.elements += other.elements;
        self.sum_ref2 += other.sum_ref2;
        self.sum_cand2 += other.sum_cand2;
        self.sum_dot += other.sum_dot;
        self.sum_err2 += other.sum_err2;
        self.sum_abs_err += other.sum_abs_err;
        self.max_abs_err = nan_max(self.max_abs_err, other.max_abs_err);
        self.max_abs_ref = self.max_abs_ref.max(other.max_abs_ref);
        self.non_finite += other.non_finite;
    }

    /// The SQNR of what was added so far.
    pub fn sqnr_db(&self) -> f64 {
        if self.non_finite > 0 { f64::NAN } else { sqnr_db(self.sum_ref2, self.sum_err2) }
    }

    pub fn finish(&self) -> Fidelity {
        let cosine = if self.non_finite > 0 {
            f64::NAN
        } else {
            match (self.sum_ref2 == 0.0, self.sum_cand2 == 0.0) {
                (true, true) => 1.0,
                (true, false) | (false, true) => 0.0,
                (false, false) => self.sum_dot / (self.sum_ref2.sqrt() * self.sum_cand2.sqrt()),
            }
        };
        Fidelity {
            elements: self.elements,
            max_abs_error: self.max_abs_err,
            max_abs_reference: self.max_abs_ref,
            mean_abs_error: if self.elements == 0 { 0.0 } else { self.sum_abs_err / self.elements as f64 },
            cosine_similarity: cosine,
            sqnr_db: self.sqnr_db(),
            exact_match: self.non_finite == 0 && self.sum_err2 == 0.0,
            non_finite: self.non_finite,
        }
    }
}

impl Fidelity {
    /// `max_abs_error / max_abs_reference` (the absolute error when the reference is all zeros).
    pub fn relative_max_error(&self) -> f64 {
        if self.max_abs_reference > 0.0 { self.max_abs_error / self.max_abs_reference } else { self.max_abs_error }
    }
}

/// NaN-propagating maximum: once a NaN is seen, the maximum stays NaN.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Fidelity of `candidate` to `reference` (same length).
pub fn fidelity(reference: &[f32], candidate: &[f32]) -> Fidelity {
    let mut acc = FidelityAccumulator::default();
    acc.add(reference, candidate);
    acc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn hand_computed_case() {
        // ref = [1, 2, 3, 4], cand = [1, 2, 3, 2]: err = [0, 0, 0, 2].
        let f = fidelity(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 2.0]);
        assert_eq!(f.elements, 4);
        assert!(close(f.max_abs_error, 2.0));
        assert!(close(f.mean_abs_error, 0.5));
        // Σref² = 30, Σerr² = 4 -> 10·log10(7.5) = 8.750612633917...
        assert!(close(f.sqnr_db, 8.750_612_633_917_001), "{}", f.sqnr_db);
        // <r,c> = 1+4+9+8 = 22, |r| = √30, |c| = √18 -> 22/√540 = 0.946729...
        assert!(close(f.cosine_similarity, 22.0 / 540f64.sqrt()));
        assert!(!f.exact_match);
        assert_eq!(f.non_finite, 0);
    }

    #[test]
    fn identical_outputs_have_infinite_sqnr() {
        let f = fidelity(&[0.5, -1.0], &[0.5, -1.0]);
        assert_eq!(f.sqnr_db, f64::INFINITY);
        assert!(f.exact_match);
        assert_eq!(f.max_abs_error, 0.0);
        assert!(close(f.cosine_similarity, 1.0));
        let json = serde_json::to_value(f).unwrap();
        assert!(json["sqnr_db"].is_null());
        assert_eq!(json["exact_match"], true);
    }

    #[test]
    fn sign_flip_gives_negative_cosine_and_low_sqnr() {
        let f = fidelity(&[1.0, -2.0], &[-1.0, 2.0]);
        assert!(close(f.cosine_similarity, -1.0));
        // noise = 4·signal -> 10·log10(1/4) = -6.0206 dB
        assert!(close(f.sqnr_db, -6.020_599_913_279_624), "{}", f.sqnr_db);
    }

    #[test]
    fn zero_vectors() {
        assert!(close(fidelity(&[0.0, 0.0], &[0.0, 0.0]).cosine_similarity, 1.0));
        let f = fidelity(&[0.0, 0.0], &[1.0, 0.0]);
        assert_eq!(f.cosine_similarity, 0.0);
        assert_eq!(f.sqnr_db, f64::NEG_INFINITY);
    }

    #[test]
    fn nan_is_counted_and_propagates() {
        let f = fidelity(&[1.0, 2.0, 3.0], &[1.0, f32::NAN, 3.0]);
        assert_eq!(f.non_finite, 1);
        assert!(f.max_abs_error.is_nan());
        assert!(f.sqnr_db.is_nan());
        assert!(!f.exact_match);
    }

    #[test]
    fn pooled_samples_equal_one_long_vector() {
        let mut acc = FidelityAccumulator::default();
        acc.add(&[1.0, 2.0], &[1.0, 2.5]);
        let mut other = FidelityAccumulator::default();
        other.add(&[3.0, 4.0], &[2.0, 4.0]);
        acc.merge(&other);
        let pooled = acc.finish();
        let whole = fidelity(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.5, 2.0, 4.0]);
        assert_eq!(pooled, whole);
        assert!(close(pooled.max_abs_error, 1.0));
    }
}
