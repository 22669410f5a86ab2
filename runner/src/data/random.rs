//! Seeded random inputs, for models without a data set (f32 inputs only).
//!
//! Each input draws from its own ChaCha8 stream: the generator is seeded with
//! `ChaCha8Rng::seed_from_u64(seed)` and the stream number is the input's position in the declared
//! list. ChaCha8 is a named, portable generator (rand's reproducibility guarantee), so the same
//! seed gives the same values on every platform; values are drawn in C order, sample after
//! sample.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal, Uniform};
use tract_onnx::prelude::{DatumType, Tensor};

use super::{DataError, InputSet, InputShape};

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

impl InputSet {
    /// `samples` random samples for each declared input (full shape, any rank), f32, from
    /// `distribution`, deterministic for `seed`.
    pub fn random(inputs: &[InputShape], samples: usize, distribution: Distribution, seed: u64) -> Result<InputSet, DataError> {
        let origin = format!("random({distribution:?}, seed={seed})");
        let sampler = Sampler::new(distribution)?;
        let mut tensors = Vec::with_capacity(inputs.len());
        for (stream, (name, shape)) in inputs.iter().enumerate() {
            let full: Vec<usize> = std::iter::once(samples).chain(shape.iter().copied()).collect();
            let count: usize = full.iter().product();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream as u64);
            let values: Vec<f32> = (0..count).map(|_| sampler.sample(&mut rng)).collect();
            let tensor =
                Tensor::from_shape(&full, &values).map_err(|e| DataError::InvalidOption { what: format!("input `{name}`: {e}") })?;
            tensors.push((name.clone(), tensor));
        }
        InputSet::new(origin, tensors, None)
    }
}

impl InputSet {
    /// Converts inputs to the element types the model takes (`dtypes` by input name): random
    /// samples are drawn as f32, and an integer input gets them rounded to the nearest integer,
    /// a bool input `value != 0`.
    pub fn into_dtypes(mut self, dtypes: &[(String, DatumType)]) -> Result<InputSet, DataError> {
        for (name, tensor) in &mut self.inputs {
            let Some((_, dt)) = dtypes.iter().find(|(n, _)| n == name) else { continue };
            if tensor.datum_type() == *dt {
                continue;
            }
            let bad = |e: String| DataError::InvalidOption { what: format!("input `{name}`: random samples as {dt:?}: {e}") };
            let rounded = if dt.is_integer() {
                let shape = tensor.shape().to_vec();
                let values: Vec<f32> =
                    tensor.to_plain_array_view::<f32>().map_err(|e| bad(e.to_string()))?.iter().map(|v| v.round()).collect();
                Tensor::from_shape(&shape, &values).map_err(|e| bad(e.to_string()))?
            } else {
                tensor.clone()
            };
            *tensor = rounded.cast_to_dt(*dt).map_err(|e| bad(e.to_string()))?.into_owned();
        }
        Ok(self)
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

    fn values(set: &InputSet, name: &str) -> Vec<f32> {
        crate::data::test_util::values::<f32>(set.input(name).unwrap())
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
        assert_eq!(one.input("a").unwrap().shape(), &[40, 1, 2, 50]);
        assert_eq!(values(&one, "a"), values(&two, "a"));
        assert_ne!(values(&one, "a"), values(&other, "a"));
        // Each input has its own stream.
        assert_ne!(values(&one, "a")[..3], values(&one, "b")[..3]);
        one.check_shapes(&decl()).unwrap();
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
        let set = InputSet::random(&[("x".into(), vec![1, 3])], 1, Distribution::Uniform { lo: 0.0, hi: 1.0 }, 42).unwrap();
        let v = values(&set, "x");
        assert_eq!(v, PINNED.to_vec(), "got {v:?}");
    }
    const PINNED: [f32; 3] = [0.224_080_68, 0.681_896_1, 0.146_386_15];

    #[test]
    fn invalid_distributions_are_rejected() {
        let d = decl();
        assert!(InputSet::random(&d, 2, Distribution::Uniform { lo: 1.0, hi: 1.0 }, 0).is_err());
        assert!(InputSet::random(&d, 2, Distribution::Normal { mean: 0.0, std: -1.0 }, 0).is_err());
        assert!(InputSet::random(&d, 2, Distribution::Normal { mean: f32::NAN, std: 1.0 }, 0).is_err());
        assert!(matches!(InputSet::random(&d, 0, Distribution::default(), 0), Err(DataError::NoSamples { .. })));
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
        assert_eq!(typed.input("sr").unwrap().datum_type(), DatumType::I64);
        assert_eq!(typed.input("state").unwrap().datum_type(), DatumType::F32);
    }
}
