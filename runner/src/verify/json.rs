//! Serde helpers for values JSON cannot hold.
//!
//! JSON has no `Infinity` or `NaN`. SQNR is `+inf` when the candidate equals the reference, and
//! metrics are NaN when an output holds NaN. We write such values as `null`, never as a made-up
//! large number: a sentinel such as `999` would flow silently into averages, plots and trend
//! checks, while `null` makes every consumer decide. The reports carry the reason beside it
//! (`exact_match: true` for an infinite SQNR, `non_finite > 0` for NaN), so `null` is never
//! ambiguous. Use with `#[serde(serialize_with = "json::finite_or_null")]`.
//!
//! (serde_json alone already writes non-finite floats as `null`, but YAML or other serializers
//! would write `.inf`/`.nan`; the helper makes the choice explicit and the same everywhere.)

use serde::Serializer;

/// Writes a finite `f64` as a number and `±inf`/NaN as `null`.
pub fn finite_or_null<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() { serializer.serialize_f64(*value) } else { serializer.serialize_none() }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Probe {
        #[serde(serialize_with = "super::finite_or_null")]
        v: f64,
    }

    #[test]
    fn infinite_and_nan_become_null() {
        let json = |v| serde_json::to_string(&Probe { v }).unwrap();
        assert_eq!(json(f64::INFINITY), r#"{"v":null}"#);
        assert_eq!(json(f64::NEG_INFINITY), r#"{"v":null}"#);
        assert_eq!(json(f64::NAN), r#"{"v":null}"#);
        assert_eq!(json(31.5), r#"{"v":31.5}"#);
    }
}
