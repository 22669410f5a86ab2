//! Rank rules for low-rank factorizations (`separable_conv`, `low_rank`): how many singular
//! components of a weight to keep, from the energy each rank keeps and the MACs it costs.
//!
//! `energy[r]` is the share of the weight's energy `Σσ²` kept by the top `r + 1` components; the
//! relative weight error at rank `m` is `√(1 − energy[m − 1])` (Eckart–Young: truncated SVD is
//! the best rank-`m` approximation in the Frobenius norm).

use serde::{Deserialize, Serialize};

/// How the rank of each layer is chosen. Written as a map of one key: `{energy: 0.95}`,
/// `{max_error: 0.2}`, `{macs_ratio: 0.5}` or `{fixed: 3}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RankSpec", into = "RankSpec")]
pub enum RankRule {
    /// The smallest rank keeping at least this share of the weight's energy (Σσ²), in (0, 1].
    Energy(f64),
    /// The smallest rank whose relative weight error ‖W − Ŵ‖/‖W‖ is at most this.
    MaxError(f64),
    /// The largest rank whose layer MACs are at most this share of the original's.
    MacsRatio(f64),
    /// This rank in every layer (capped at full rank).
    Fixed(usize),
}

/// [`RankRule`] as written in a pipeline: exactly one of the keys.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RankSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    energy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    macs_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<usize>,
}

impl TryFrom<RankSpec> for RankRule {
    type Error = String;
    fn try_from(s: RankSpec) -> Result<RankRule, String> {
        let rules: Vec<RankRule> = [
            s.energy.map(RankRule::Energy),
            s.max_error.map(RankRule::MaxError),
            s.macs_ratio.map(RankRule::MacsRatio),
            s.fixed.map(RankRule::Fixed),
        ]
        .into_iter()
        .flatten()
        .collect();
        match rules[..] {
            [rule] => Ok(rule),
            _ => Err("give exactly one of `energy`, `max_error`, `macs_ratio`, `fixed` (e.g. {energy: 0.95})".into()),
        }
    }
}

impl From<RankRule> for RankSpec {
    fn from(r: RankRule) -> RankSpec {
        let mut s = RankSpec::default();
        match r {
            RankRule::Energy(e) => s.energy = Some(e),
            RankRule::MaxError(e) => s.max_error = Some(e),
            RankRule::MacsRatio(m) => s.macs_ratio = Some(m),
            RankRule::Fixed(m) => s.fixed = Some(m),
        }
        s
    }
}

/// The documentation of the `rank` parameter of the passes that take a [`RankRule`].
pub const RANK_PARAM: (&str, &str, &str) = (
    "rank",
    "{energy|max_error|macs_ratio|fixed: N}",
    "rank rule per layer: energy kept, weight error bound, MACs budget, or a fixed rank",
);
/// The documentation of their `max_macs_ratio` parameter.
pub const MAX_MACS_RATIO_PARAM: (&str, &str, &str) =
    ("max_macs_ratio", "float", "rewrite a layer only where MACs after/before is at most this");

impl RankRule {
    /// Whether the rule's figure is in range; the error names the pass.
    pub fn check(self, pass: &str) -> Result<(), String> {
        let ok = match self {
            RankRule::Energy(e) => e > 0.0 && e <= 1.0,
            RankRule::MaxError(e) => (0.0..1.0).contains(&e),
            RankRule::MacsRatio(r) => r > 0.0,
            RankRule::Fixed(m) => m >= 1,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{pass}: rank {self:?} is out of range (energy in (0, 1], max_error in [0, 1), macs_ratio > 0, fixed >= 1)"))
        }
    }

    /// The rank this rule picks, from the cumulative energy share of each rank (`energy[r]` for
    /// rank `r + 1`, full rank last) and the MACs ratio of each rank.
    pub fn choose(self, energy: &[f64], macs_ratio: impl Fn(usize) -> f64) -> Result<usize, String> {
        let full = energy.len();
        let smallest_with = |share: f64| energy.iter().position(|&e| e >= share - 1e-12).map_or(full, |r| r + 1);
        match self {
            RankRule::Energy(e) => Ok(smallest_with(e)),
            RankRule::MaxError(err) => Ok(smallest_with(1.0 - err * err)),
            RankRule::MacsRatio(budget) => match (1..=full).rev().find(|&m| macs_ratio(m) <= budget) {
                Some(m) => Ok(m),
                None => Err(format!("even rank 1 costs {:.2}x the MACs, above the budget {budget}", macs_ratio(1))),
            },
            RankRule::Fixed(m) => Ok(m.clamp(1, full)),
        }
    }
}

/// Cumulative energy shares from per-rank energies (squared singular values, summed over
/// whatever the factorization sums over); `None` for an all-zero weight.
pub fn cumulative_energy(energy_by_rank: &[f64]) -> Option<Vec<f64>> {
    let total: f64 = energy_by_rank.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut sum = 0.0;
    Some(
        energy_by_rank
            .iter()
            .map(|e| {
                sum += e;
                sum / total
            })
            .collect(),
    )
}

/// Relative weight error at `rank`: `√(1 − energy[rank − 1])`.
pub fn weight_error(energy: &[f64], rank: usize) -> f64 {
    (1.0 - energy[rank - 1]).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pick_ranks() {
        // Energy kept by rank 1..4; MACs of a 3x3 kernel with 16 outputs made separable.
        let energy = [0.5, 0.8, 0.95, 1.0];
        let macs = |m: usize| (m * 25) as f64 / 144.0;
        assert_eq!(RankRule::Energy(0.9).choose(&energy, macs).unwrap(), 3);
        assert_eq!(RankRule::Energy(1.0).choose(&energy, macs).unwrap(), 4);
        // Error 0.5 <=> energy 0.75.
        assert_eq!(RankRule::MaxError(0.5).choose(&energy, macs).unwrap(), 2);
        // m·25/144 <= 0.4 -> m = 2.
        assert_eq!(RankRule::MacsRatio(0.4).choose(&energy, macs).unwrap(), 2);
        assert!(RankRule::MacsRatio(0.1).choose(&energy, macs).is_err());
        assert_eq!(RankRule::Fixed(9).choose(&energy, macs).unwrap(), 4);
        assert!(RankRule::Energy(1.5).check("p").is_err() && RankRule::Fixed(0).check("p").is_err());
        assert_eq!(cumulative_energy(&[3.0, 1.0]), Some(vec![0.75, 1.0]));
        assert!((weight_error(&[0.75, 1.0], 1) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_rule_is_a_map_of_one_key() {
        let rule: RankRule = serde_json::from_str(r#"{"energy": 0.9}"#).unwrap();
        assert_eq!(rule, RankRule::Energy(0.9));
        assert_eq!(serde_json::to_string(&RankRule::Fixed(3)).unwrap(), r#"{"fixed":3}"#);
        let two = serde_json::from_str::<RankRule>(r#"{"energy": 0.9, "fixed": 2}"#).unwrap_err().to_string();
        assert!(two.contains("exactly one"), "{two}");
        assert!(serde_json::from_str::<RankRule>(r#"{"enrgy": 0.9}"#).is_err());
    }
}
