//! The differential check after an exact step: the candidate so far against the original on a
//! few evaluation samples, fidelity only.

use ndarray::ArrayD;

use crate::data::InputSet;
use crate::manager::Differential;
use crate::verify::{CompareOptions, Runnable, VerifyError, run_all};

/// Runs `model` (the candidate so far, loaded by the caller, or the error that stopped tract
/// loading it) on the first `reference.len()` samples of `data` and compares with `reference`
/// (the original's outputs on those samples).
pub fn check(
    model: Result<&Runnable, &VerifyError>,
    data: &InputSet,
    reference: &[Vec<ArrayD<f32>>],
    output_names: &[String],
    tolerance: f64,
) -> Differential {
    let failed = |error: String| Differential {
        samples: reference.len(),
        relative_max_error: f64::NAN,
        worst_output: String::new(),
        min_sqnr_db: f64::NAN,
        tolerance,
        passed: false,
        error: Some(error),
    };
    let outputs = model.map_err(|e| e.to_string()).and_then(|m| {
        let subset = data.take(reference.len()).map_err(|e| e.to_string())?;
        run_all(m, &subset).map_err(|e| e.to_string())
    });
    let outputs = match outputs {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    match compare(reference, &outputs, output_names) {
        Ok((relative_max_error, worst_output, min_sqnr_db)) => Differential {
            samples: reference.len(),
            relative_max_error,
            worst_output,
            min_sqnr_db,
            tolerance,
            passed: relative_max_error <= tolerance,
            error: None,
        },
        Err(e) => failed(e),
    }
}

/// (worst relative max error, its output, lowest SQNR) over outputs, from the runner's one
/// output comparison ([`crate::verify::compare`]).
pub fn compare(reference: &[Vec<ArrayD<f32>>], candidate: &[Vec<ArrayD<f32>>], names: &[String]) -> Result<(f64, String, f64), String> {
    let cmp = crate::verify::compare(reference, candidate, names, None, &CompareOptions::default()).map_err(|e| e.to_string())?;
    let mut worst = (0.0f64, String::new());
    let mut min_sqnr = f64::INFINITY;
    for out in &cmp.outputs {
        let relative = out.fidelity.relative_max_error();
        if relative.is_nan() || relative > worst.0 || worst.1.is_empty() {
            worst = (relative, out.name.clone());
        }
        min_sqnr = min_sqnr.min(out.fidelity.sqnr_db);
    }
    Ok((worst.0, worst.1, min_sqnr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn relative_error_is_against_the_output_magnitude() {
        let a = |v: &[f32]| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap();
        let names = vec!["y".to_string()];
        let (rel, out, sqnr) = compare(&[vec![a(&[10.0, -20.0])]], &[vec![a(&[10.0, -20.002])]], &names).unwrap();
        assert!((rel - 1e-4).abs() < 1e-6, "{rel}");
        assert_eq!(out, "y");
        assert!(sqnr > 80.0);
        assert!(compare(&[vec![a(&[1.0])]], &[vec![a(&[1.0, 2.0])]], &names).is_err());
    }
}
