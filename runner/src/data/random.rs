//! Seeded random inputs, for models without a data set (drawn as f32; integer inputs get them
//! rounded, bool inputs `value != 0`).
//!
//! Samples are drawn when asked for, never held: memory does not grow with the number of
//! samples. Sample `i` of the input at position `k` in the declared list draws from ChaCha8
//! (`ChaCha8Rng::seed_from_u64(seed)`) stream `k`, starting at word position `i * 2^40`, its values
//! in C order. ChaCha8 is a named, portable generator (rand's reproducibility guarantee), so the
//! same seed gives the same values on every platform and in any order of access; 2^40 words per
//! sample is far more than any sample that fits in memory draws, so samples never overlap.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal, Uniform};
use tract_onnx::prelude::{DatumType, Tensor};

use super::{DataError, InputSet, InputShape, Source};

/// The distribution of every element of a random input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Uniform on `[lo, hi)`; requires `lo < hi`, both finite.
    Uniform { lo: f32, hi: f32 },
    /// Normal with the given mean and standard deviation (`std >= 0`, finite).
    Normal { mean: f32, std: f32 },
}

impl Default for Distribution {
    /// Uniform on [0, 1), like the peer scripts' synthetic feed.
    fn default() -> Self {
        Distribution::Uniform { lo: 0.0, hi: 1.0 }
    }
}

/// Most samples a random set can have (each gets 2^40 words of its stream's 2^68).
pub const MAX_SAMPLES: usize = 1 << 28;

/// The recipe of a random set: what [`InputSet::sample`] draws from.
#[derive(Debug, Clone)]
pub(super) struct RandomInputs {
    /// Each input's name, full shape and element type.
    inputs: Vec<(String, Vec<usize>, DatumType)>,
    distribution: Distribution,
    seed: u64,
}

impl InputSet {
    /// `samples` random samples for each declared input (full shape, any rank), f32, from
    /// `distribution`, deterministic for `seed`.
    pub fn random(inputs: &[InputShape], samples: usize, distribution: Distribution, seed: u64) -> Result<InputSet, DataError> {
        let origin = format!("random({distribution:?}, seed={seed})");
        Sampler::new(distribution)?;
        if samples == 0 {
            return Err(DataError::NoSamples { file: origin });
        }
        if samples > MAX_SAMPLES {
            return Err(DataError::InvalidOption { what: format!("{samples} random samples: at most {MAX_SAMPLES}") });
        }
        if inputs.is_empty() {
            return Err(DataError::NoSamples { file: origin });
        }
        let inputs = inputs.iter().map(|(name, shape)| (name.clone(), shape.clone(), DatumType::F32)).collect();
        Ok(InputSet { origin, source: Source::Random(RandomInputs { inputs, distribution, seed }), labels: None, len: samples })
    }

    /// Converts inputs to the element types the model takes (`dtypes` by input name): random
    /// samples are drawn as f32, and an integer input gets them rounded to the nearest integer,
    /// a bool input `value != 0`.
    pub fn into_dtypes(mut self, dtypes: &[(String, DatumType)]) -> Result<InputSet, DataError> {
        let wanted = |name: &str| dtypes.iter().find(|(n, _)| n == name).map(|(_, dt)| *dt);
        match &mut self.source {
            Source::Random(r) => {
                for (name, _, dt) in &mut r.inputs {
                    if let Some(want) = wanted(name) {
                        *dt = want;
                    }
                }
            }
            Source::Held(inputs) => {
                for (name, tensor) in inputs {
                    if let Some(dt) = wanted(name) {
                        *tensor = convert(std::mem::take(tensor), dt, name)?;
                    }
                }
            }
        }
        Ok(self)
    }
}

/// An f32 tensor as `dt`: rounded for integers, `!= 0` for bool.
fn convert(tensor: Tensor, dt: DatumType, name: &str) -> Result<Tensor, DataError> {
    if tensor.datum_type() == dt {
        return Ok(tensor);
    }
    let bad = |e: String| DataError::InvalidOption { what: format!("input `{name}`: random samples as {dt:?}: {e}") };
    let rounded = if dt.is_integer() {
        let shape = tensor.shape().to_vec();
        let values: Vec<f32> = tensor.to_plain_array_view::<f32>().map_err(|e| bad(e.to_string()))?.iter().map(|v| v.round()).collect();
        Tensor::from_shape(&shape, &values).map_err(|e| bad(e.to_string()))?
    } else {
        tensor
    };
    Ok(rounded.cast_to_dt(dt).map_err(|e| bad(e.to_string()))?.into_owned())
}

impl RandomInputs {
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|(n, _, _)| n.as_str())
    }

    /// Sample `index` of every input (see the module doc).
    pub(super) fn sample(&self, index: usize) -> Result<Vec<(String, Tensor)>, DataError> {
        let sampler = Sampler::new(self.distribution)?;
        self.inputs
            .iter()
            .enumerate()
            .map(|(stream, (name, shape, dt))| {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(stream as u64);
                rng.set_word_pos((index as u128) << 40);
                let count: usize = shape.iter().product();
                let values: Vec<f32> = (0..count).map(|_| sampler.sample(&mut rng)).collect();
                let tensor =
                    Tensor::from_shape(shape, &values).map_err(|e| DataError::InvalidOption { what: format!("input `{name}`: {e}") })?;
                Ok((name.clone(), convert(tensor, *dt, name)?))
            })
            .collect()
    }

    /// Random samples have the declared shapes by construction; the names must match.
    pub(super) fn check_shapes(&self, declared: &[InputShape], origin: &str) -> Result<(), DataError> {
        for (name, shape) in declared {
            match self.inputs.iter().find(|(n, _, _)| n == name) {
                None => {
                    return Err(DataError::MissingKey {
                        file: origin.to_string(),
                        key: name.clone(),
                        available: self.names().map(str::to_string).collect(),
                    });
                }
                Some((_, own, _)) if own != shape => {
                    return Err(DataError::ShapeMismatch {
                        file: origin.to_string(),
                        input: name.clone(),
                        expected: shape.clone(),
                        found: own.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

enum Sampler {
    Uniform(Uniform<f32>),
    Normal(Normal<f32>),
}

impl Sampler {
    fn new(d: Distribution) -> Result<Self, DataError> {
        let invalid = |why: String| DataError::InvalidOption { what: format!("{d:?}: {why}") };
        match d {
            Distribution::Uniform { lo, hi } => {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(invalid("needs finite lo < hi".into()));
                }
                Uniform::new(lo, hi).map(Sampler::Uniform).map_err(|e| invalid(e.to_string()))
            }
            Distribution::Normal { mean, std } => {
                if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
                    return Err(invalid("needs finite mean and std >= 0".into()));
                }
                Normal::new(mean, std).map(Sampler::Normal).map_err(|e| invalid(e.to_string()))
            }
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f32 {
        match self {
            Sampler::Uniform(u) => u.sample(rng),
            Sampler::Normal(n) => n.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample's values of one input, concatenated.
    fn values(set: &InputSet, name: &str) -> Vec<f32> {
        (0..set.len())
            .flat_map(|i| {
                let sample = set.sample(i).unwrap();
                let t = &sample.iter().find(|(n, _)| n == name).unwrap().1;
                crate::data::test_util::values::<f32>(t)
            })
            .collect()
    }

    fn decl() -> Vec<InputShape> {
        vec![("a".into(), vec![1, 2, 50]), ("b".into(), vec![1, 3])]
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let d = Distribution::Uniform { lo: -2.0, hi: 3.0 };
        let mut one = InputSet::random(&decl(), 40, d, 7).unwrap();
        let two = InputSet::random(&decl(), 40, d, 7).unwrap();
        let other = InputSet::random(&decl(), 40, d, 8).unwrap();
        assert_eq!(one.len(), 40);
        assert_eq!(one.sample(39).unwrap()[0].1.shape(), &[1, 2, 50]);
        assert_eq!(values(&one, "a"), values(&two, "a"));
        assert_ne!(values(&one, "a"), values(&other, "a"));
        // Each input has its own stream, each sample its own values.
        assert_ne!(values(&one, "a")[..3], values(&one, "b")[..3]);
        assert_ne!(values(&one, "a")[..100], values(&one, "a")[100..200]);
        one.check_shapes(&decl()).unwrap();
        assert!(one.check_shapes(&[("a".into(), vec![1, 2, 51]), ("b".into(), vec![1, 3])]).is_err());
        // Nothing is held, whatever the count; a subset draws the same samples.
        assert_eq!(one.held_bytes(), 0);
        let first = one.take(3).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(values(&first, "a"), values(&one, "a")[..300]);
    }

    #[test]
    fn uniform_range_and_moments() {
        let set = InputSet::random(&[("x".into(), vec![1, 1000])], 10, Distribution::Uniform { lo: -2.0, hi: 3.0 }, 1).unwrap();
        let v = values(&set, "x");
        assert!(v.iter().all(|x| (-2.0..3.0).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn normal_moments() {
        let set = InputSet::random(&[("x".into(), vec![1, 1000])], 20, Distribution::Normal { mean: 1.0, std: 2.0 }, 3).unwrap();
        let v = values(&set, "x");
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "std {}", var.sqrt());
    }

    #[test]
    fn pinned_values_detect_generator_changes() {
        // If this fails after a dependency update, seeded inputs changed: recorded reports made
        // with a seed are no longer reproducible. Update deliberately.
        let set = InputSet::random(&[("x".into(), vec![1, 3])], 2, Distribution::Uniform { lo: 0.0, hi: 1.0 }, 42).unwrap();
        let v = values(&set, "x");
        assert_eq!(v[..3], PINNED, "got {v:?}");
        assert_eq!(v[3..], PINNED_SECOND, "got {v:?}");
    }
    const PINNED: [f32; 3] = [0.224_080_68, 0.681_896_1, 0.146_386_15];
    const PINNED_SECOND: [f32; 3] = [0.593_827_25, 0.546_139_36, 0.786_150_34];

    #[test]
    fn invalid_distributions_are_rejected() {
        let d = decl();
        assert!(InputSet::random(&d, 2, Distribution::Uniform { lo: 1.0, hi: 1.0 }, 0).is_err());
        assert!(InputSet::random(&d, 2, Distribution::Normal { mean: 0.0, std: -1.0 }, 0).is_err());
        assert!(InputSet::random(&d, 2, Distribution::Normal { mean: f32::NAN, std: 1.0 }, 0).is_err());
        assert!(matches!(InputSet::random(&d, 0, Distribution::default(), 0), Err(DataError::NoSamples { .. })));
        assert!(InputSet::random(&d, MAX_SAMPLES + 1, Distribution::default(), 0).is_err());
    }

    #[test]
    fn any_input_shape_scalars_included() {
        let decl = vec![("state".to_string(), vec![2, 1, 3]), ("sr".to_string(), vec![])];
        let mut set = InputSet::random(&decl, 4, Distribution::default(), 0).unwrap();
        set.check_shapes(&decl).unwrap();
        let s = set.sample(3).unwrap();
        assert_eq!(s[0].1.shape(), &[2, 1, 3]);
        assert_eq!(s[1].1.shape(), &[] as &[usize]);
        let typed = set.into_dtypes(&[("sr".into(), DatumType::I64)]).unwrap();
        let s = typed.sample(0).unwrap();
        assert_eq!(s[1].1.datum_type(), DatumType::I64);
        assert_eq!(s[0].1.datum_type(), DatumType::F32);
    }
}
