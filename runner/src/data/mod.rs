//! Input data for verification runs.
//!
//! An [`InputSet`] holds one tensor per model input, axis 0 being the sample axis, plus optional
//! [`Labels`]. It is loaded from
//! - an `.npz` archive: one array per model input, keyed by the input name, and an optional
//!   `labels` array ([`InputSet::from_npz`]);
//! - an `.npy` file holding the one input of a single-input model ([`InputSet::from_npy`]);
//! - a folder of images ([`InputSet::from_image_dir`], layout in [`images`]);
//! - a seeded random generator ([`InputSet::random`]), which draws each sample when it is asked
//!   for: memory does not grow with the number of random samples.
//!
//! Declared input shapes ([`InputShape`]) are full model input shapes, of any rank (scalars
//! included): whittle runs the model on one sample at a time, and a sample is one value of every
//! input in its full shape. A data array's axis 0 is the sample axis and the rest is the input's
//! full shape (`[N, 2, 1, 128]` for a recurrent state of shape `[2, 1, 128]`, `[N]` for a scalar).
//! For an input whose first axis is a batch axis of 1, the array may also leave that axis out
//! (`[N, 3, 48, 192]` for an input `[1, 3, 48, 192]`): the samples are then stacked along the
//! batch axis, as most datasets store them. [`InputSet::check_shapes`] brings both forms to the
//! first.

mod error;
pub mod images;
mod npy;
mod npz;
pub mod random;

pub use error::DataError;
pub use images::{ChannelOrder, ImageLayout, ImageOptions};
pub use random::Distribution;
pub use tract_onnx::prelude::{DatumType, Tensor};

use std::collections::HashSet;

/// A model input's name and its full shape, e.g. `("x", [1, 3, 48, 192])`, `("state", [2, 1, 128])`,
/// `("sr", [])`.
pub type InputShape = (String, Vec<usize>);

/// Whether a sample of shape `found` is an input of shape `full` with its leading batch axis of
/// 1 left out (`[3, 48, 192]` for `[1, 3, 48, 192]`), as data files often store samples.
pub fn batch_axis_left_out(full: &[usize], found: &[usize]) -> bool {
    full.first() == Some(&1) && full[1..] == *found
}

/// Ground-truth labels, one per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    /// Class indices (any integer dtype in the file, widened to i64).
    Int(Vec<i64>),
    /// Strings (NumPy `<U` or `|S`), e.g. the text of a rendered line for a recognizer.
    Text(Vec<String>),
}

impl Labels {
    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Text(v) => v.len(),
        }
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels of samples `0..n`.
    pub fn truncated(&self, n: usize) -> Labels {
        match self {
            Labels::Int(v) => Labels::Int(v[..n.min(v.len())].to_vec()),
            Labels::Text(v) => Labels::Text(v[..n.min(v.len())].to_vec()),
        }
    }
}

/// Named input tensors with axis 0 = sample, and optional labels. Always holds at least one
/// sample; every input and the labels have the same number of samples.
#[derive(Debug, Clone)]
pub struct InputSet {
    origin: String,
    source: Source,
    labels: Option<Labels>,
    len: usize,
}

/// Where the samples come from.
#[derive(Debug, Clone)]
enum Source {
    /// Arrays in memory, axis 0 = sample.
    Held(Vec<(String, Tensor)>),
    /// Seeded random samples, drawn on demand.
    Random(random::RandomInputs),
}

impl InputSet {
    /// Builds a set from tensors whose axis 0 is the sample axis. `origin` names the source in
    /// error messages (a path, or e.g. `random(seed=7)`).
    pub fn new(origin: impl Into<String>, inputs: Vec<(String, Tensor)>, labels: Option<Labels>) -> Result<Self, DataError> {
        let origin = origin.into();
        let mut seen = HashSet::new();
        let mut len: Option<(usize, &str)> = None;
        for (name, tensor) in &inputs {
            if !seen.insert(name.as_str()) {
                return Err(DataError::Format { file: origin, what: format!("input `{name}` appears twice") });
            }
            let Some(&n) = tensor.shape().first() else {
                return Err(DataError::Format {
                    file: origin,
                    what: format!("input `{name}` is a scalar; axis 0 must be the sample axis"),
                });
            };
            match len {
                None => len = Some((n, name)),
                Some((expected, reference)) if expected != n => {
                    return Err(DataError::SampleCountMismatch {
                        key: name.clone(),
                        found: n,
                        reference: reference.to_string(),
                        expected,
                        file: origin,
                    });
                }
                Some(_) => {}
            }
        }
        let (len, reference) = len.unwrap_or((0, ""));
        if len == 0 {
            return Err(DataError::NoSamples { file: origin });
        }
        if let Some(labels) = &labels
            && labels.len() != len
        {
            return Err(DataError::SampleCountMismatch {
                key: "labels".into(),
                found: labels.len(),
                reference: reference.to_string(),
                expected: len,
                file: origin,
            });
        }
        Ok(InputSet { origin, source: Source::Held(inputs), labels, len })
    }

    /// Number of samples (at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an `InputSet` holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the data came from, as used in error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Input names, in the order of the source.
    pub fn input_names(&self) -> Vec<&str> {
        match &self.source {
            Source::Held(inputs) => inputs.iter().map(|(n, _)| n.as_str()).collect(),
            Source::Random(r) => r.names().collect(),
        }
    }

    /// The whole tensor of one input (axis 0 = sample), for data held in memory (`None` for
    /// random samples, which are drawn one at a time).
    pub fn input(&self, name: &str) -> Option<&Tensor> {
        let Source::Held(inputs) = &self.source else { return None };
        inputs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Bytes held in memory for the samples (0 for random samples).
    pub fn held_bytes(&self) -> u64 {
        match &self.source {
            Source::Held(inputs) => inputs.iter().map(|(_, t)| (t.len() * t.datum_type().size_of()) as u64).sum(),
            Source::Random(_) => 0,
        }
    }

    /// The labels, if the source had any.
    pub fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }

    /// Sample `index` of every input: the array's slice at `index` of axis 0 (after
    /// [`InputSet::check_shapes`], the input's full shape).
    pub fn sample(&self, index: usize) -> Result<Vec<(String, Tensor)>, DataError> {
        if index >= self.len {
            return Err(DataError::SampleOutOfRange { file: self.origin.clone(), index, len: self.len });
        }
        let inputs = match &self.source {
            Source::Held(inputs) => inputs,
            Source::Random(r) => return r.sample(index),
        };
        inputs
            .iter()
            .map(|(name, t)| {
                let what = |e: String| DataError::Format {
                    file: self.origin.clone(),
                    what: format!("input `{name}`: cannot take sample {index}: {e}"),
                };
                let one = t.slice(0, index, index + 1).map_err(|e| what(e.to_string()))?;
                let one = one.into_shape(&t.shape()[1..]).map_err(|e| what(e.to_string()))?;
                Ok((name.clone(), one))
            })
            .collect()
    }

    /// The first `n` samples (all of them if `n >= len`). `n = 0` is an error.
    pub fn take(&self, n: usize) -> Result<InputSet, DataError> {
        if n == 0 {
            return Err(DataError::NoSamples { file: self.origin.clone() });
        }
        let n = n.min(self.len);
        let labels = self.labels.as_ref().map(|l| l.truncated(n));
        let inputs = match &self.source {
            Source::Held(inputs) => inputs,
            Source::Random(r) => return Ok(InputSet { origin: self.origin.clone(), source: Source::Random(r.clone()), labels, len: n }),
        };
        let inputs = inputs
            .iter()
            .map(|(name, t)| {
                let part = t.slice(0, 0, n).map_err(|e| DataError::Format {
                    file: self.origin.clone(),
                    what: format!("input `{name}`: cannot take {n} samples: {e}"),
                })?;
                Ok((name.clone(), part))
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok(InputSet { origin: self.origin.clone(), source: Source::Held(inputs), labels, len: n })
    }

    /// Checks the set against the model's declared inputs (full shapes) and brings every array
    /// to `[samples, ...full input shape]`: every declared input is present, no other input is,
    /// and each sample has the input's shape (an array may leave out a leading batch axis of 1,
    /// see the module doc). Element types are checked when the model runs (see `verify`).
    pub fn check_shapes(&mut self, declared: &[InputShape]) -> Result<(), DataError> {
        let declared_names: Vec<String> = declared.iter().map(|(n, _)| n.clone()).collect();
        if let Some(name) = self.input_names().into_iter().find(|n| !declared_names.iter().any(|d| d == n)) {
            return Err(DataError::UnexpectedKey { file: self.origin.clone(), key: name.to_string(), expected: declared_names });
        }
        let available: Vec<String> = self.input_names().into_iter().map(str::to_string).collect();
        let inputs = match &mut self.source {
            Source::Held(inputs) => inputs,
            Source::Random(r) => return r.check_shapes(declared, &self.origin),
        };
        for (name, shape) in declared {
            let Some((_, tensor)) = inputs.iter_mut().find(|(n, _)| n == name) else {
                let available = available.clone();
                return Err(DataError::MissingKey { file: self.origin.clone(), key: name.clone(), available });
            };
            let found = tensor.shape()[1..].to_vec();
            let batch_left_out = batch_axis_left_out(shape, &found);
            if found != *shape && !batch_left_out {
                return Err(DataError::ShapeMismatch { file: self.origin.clone(), input: name.clone(), expected: shape.clone(), found });
            }
            if batch_left_out {
                let full: Vec<usize> = std::iter::once(tensor.shape()[0]).chain(shape.iter().copied()).collect();
                let t = std::mem::take(tensor);
                *tensor = t
                    .into_shape(&full)
                    .map_err(|e| DataError::Format { file: self.origin.clone(), what: format!("input `{name}`: {e}") })?;
            }
        }
        Ok(())
    }
}

/// Turns a decoded `labels` array into [`Labels`]: integers of any width, or strings. The array
/// must hold exactly one label per sample (shape `[N]` or e.g. `[N, 1]`).
fn labels_from(array: npy::NpyArray, file: &str) -> Result<Labels, DataError> {
    let bad_shape = |shape: &[usize]| DataError::Format {
        file: file.to_string(),
        what: format!("`labels` must hold one label per sample, found shape {shape:?}"),
    };
    match array {
        npy::NpyArray::Text { shape, values } => {
            if shape.iter().skip(1).any(|&d| d != 1) {
                return Err(bad_shape(&shape));
            }
            Ok(Labels::Text(values))
        }
        npy::NpyArray::Tensor(t) => {
            if t.shape().iter().skip(1).any(|&d| d != 1) {
                return Err(bad_shape(t.shape()));
            }
            let dt = t.datum_type();
            if !dt.is_integer() {
                return Err(DataError::UnsupportedDtype {
                    file: file.to_string(),
                    key: "labels".into(),
                    dtype: format!("{dt:?}"),
                    expected: "integer class indices or strings",
                });
            }
            let as_i64 = t.cast_to::<i64>().map_err(|e| DataError::Format { file: file.to_string(), what: format!("`labels`: {e}") })?;
            let values = as_i64
                .to_plain_array_view::<i64>()
                .map_err(|e| DataError::Format { file: file.to_string(), what: format!("`labels`: {e}") })?
                .iter()
                .copied()
                .collect();
            Ok(Labels::Int(values))
        }
    }
}

/// A model input must be numeric or boolean; a string array under an input's key is an error.
fn input_from(array: npy::NpyArray, file: &str, key: &str) -> Result<Tensor, DataError> {
    match array {
        npy::NpyArray::Tensor(t) => Ok(t),
        npy::NpyArray::Text { .. } => Err(DataError::UnsupportedDtype {
            file: file.to_string(),
            key: key.to_string(),
            dtype: "string".into(),
            expected: "a numeric model input",
        }),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use tract_onnx::prelude::{Datum, Tensor};

    /// The values of a tensor, in C order.
    pub(crate) fn values<T: Datum + Clone>(t: &Tensor) -> Vec<T> {
        t.to_plain_array_view::<T>().unwrap().iter().cloned().collect()
    }

    /// Builds a version-1.0 `.npy` byte stream by hand (header padded to 64 bytes).
    pub(crate) fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}", if fortran { "True" } else { "False" });
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// `../shared` beside the repository, or `None` with a printed reason (a failure under CI).
    pub(crate) fn shared_dir() -> Option<std::path::PathBuf> {
        whittle_testenv::shared_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::values;
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn t(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|v| v as f32).collect()).unwrap())
    }

    #[test]
    fn sample_has_batch_axis_and_right_values() {
        let set = InputSet::new("mem", vec![("x".into(), t(&[3, 2]))], None).unwrap();
        assert_eq!(set.len(), 3);
        let mut set = set;
        set.check_shapes(&[("x".into(), vec![1, 2])]).unwrap();
        let s = set.sample(1).unwrap();
        assert_eq!(s[0].0, "x");
        assert_eq!(s[0].1.shape(), &[1, 2]);
        assert_eq!(values::<f32>(&s[0].1), vec![2.0, 3.0]);
        assert!(matches!(set.sample(3), Err(DataError::SampleOutOfRange { index: 3, len: 3, .. })));
    }

    #[test]
    fn new_rejects_inconsistent_sets() {
        let two = vec![("a".into(), t(&[3, 2])), ("b".into(), t(&[4, 2]))];
        assert!(matches!(InputSet::new("mem", two, None), Err(DataError::SampleCountMismatch { found: 4, expected: 3, .. })));
        assert!(matches!(InputSet::new("mem", vec![("a".into(), t(&[0, 2]))], None), Err(DataError::NoSamples { .. })));
        assert!(matches!(
            InputSet::new("mem", vec![("a".into(), t(&[2]))], Some(Labels::Int(vec![1]))),
            Err(DataError::SampleCountMismatch { found: 1, expected: 2, .. })
        ));
    }

    #[test]
    fn take_truncates_inputs_and_labels() {
        let labels = Some(Labels::Text(vec!["a".into(), "b".into(), "c".into()]));
        let set = InputSet::new("mem", vec![("x".into(), t(&[3, 2]))], labels).unwrap();
        let two = set.take(2).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two.labels(), Some(&Labels::Text(vec!["a".into(), "b".into()])));
        assert_eq!(two.input("x").unwrap().shape(), &[2, 2]);
        assert_eq!(set.take(10).unwrap().len(), 3);
    }

    #[test]
    fn check_shapes_names_the_problem() {
        let mut set = InputSet::new("f.npz", vec![("x".into(), t(&[2, 3, 4]))], None).unwrap();
        set.check_shapes(&[("x".into(), vec![1, 3, 4])]).unwrap();
        let err = set.check_shapes(&[("x".into(), vec![1, 3, 5])]).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { .. }));
        assert!(err.to_string().contains("f.npz") && err.to_string().contains("[1, 3, 5]"), "{err}");
        let err = set.check_shapes(&[("y".into(), vec![1, 3, 4])]).unwrap_err();
        assert!(matches!(err, DataError::UnexpectedKey { ref key, .. } if key == "x"), "{err}");
        let err = set.check_shapes(&[("x".into(), vec![1, 3, 4]), ("y".into(), vec![1])]).unwrap_err();
        assert!(matches!(err, DataError::MissingKey { ref key, .. } if key == "y"), "{err}");
        // A sample of this set is [1, 3, 4] (or [3, 4]), never an input of shape [2, 3, 4]...
        assert!(set.check_shapes(&[("x".into(), vec![2, 3, 4])]).is_err());
        // ...which takes arrays [N, 2, 3, 4]: axis 0 is the sample, the rest the full shape.
        let mut state = InputSet::new("f.npz", vec![("s".into(), t(&[5, 2, 3, 4]))], None).unwrap();
        state.check_shapes(&[("s".into(), vec![2, 3, 4])]).unwrap();
        assert_eq!(state.sample(4).unwrap()[0].1.shape(), &[2, 3, 4]);
        let mut scalar = InputSet::new("f.npz", vec![("sr".into(), t(&[5]))], None).unwrap();
        scalar.check_shapes(&[("sr".into(), vec![])]).unwrap();
        assert_eq!(scalar.sample(0).unwrap()[0].1.rank(), 0);
    }
}
