//! The one error type of the `data` module. Every variant names the file (or the generated
//! source, e.g. `random(seed=7)`) and what is wrong with it.

use std::path::PathBuf;

/// An input set could not be loaded or does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },

    /// Reading failed for another reason (permissions, truncated file, ...).
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },

    /// The file exists but is not a valid `.npy`/`.npz`/image.
    #[error("{file}: {what}")]
    Format { file: String, what: String },

    /// A model input (or the `labels` array) is not in the file.
    #[error("{file}: no array named `{key}` (found: {})", available.join(", "))]
    MissingKey { file: String, key: String, available: Vec<String> },

    /// The file holds an array that is neither a declared model input nor `labels`.
    #[error("{file}: array `{key}` is not an input of the model (inputs: {})", expected.join(", "))]
    UnexpectedKey { file: String, key: String, expected: Vec<String> },

    /// The array's element type cannot be used for this key.
    #[error("{file}: array `{key}` has dtype {dtype}, which is not supported here ({expected})")]
    UnsupportedDtype { file: String, key: String, dtype: String, expected: &'static str },

    /// One sample of an input does not have the shape the model declares.
    #[error(
        "{file}: input `{input}`: each sample (axis 0 of the array is the sample axis) has shape {found:?}, the model's input has shape {expected:?}{}",
        if expected.first() == Some(&1) { format!(" (an array of shape [N, {}] is accepted too)", expected[1..].iter().map(usize::to_string).collect::<Vec<_>>().join(", ")) } else { String::new() }
    )]
    ShapeMismatch {
        file: String,
        input: String,
        /// The model input's full shape.
        expected: Vec<usize>,
        /// The shape of one sample in the array (its shape without axis 0).
        found: Vec<usize>,
    },

    /// Arrays (or labels) disagree on the number of samples (axis 0).
    #[error("{file}: `{key}` has {found} samples, `{reference}` has {expected}")]
    SampleCountMismatch { file: String, key: String, found: usize, reference: String, expected: usize },

    /// The source holds no sample at all.
    #[error("{file}: zero samples")]
    NoSamples { file: String },

    /// A sample index past the end of the set.
    #[error("{file}: sample {index} requested, the set has {len}")]
    SampleOutOfRange { file: String, index: usize, len: usize },

    /// Decoding the file would take more memory than the run may use (a decompression bomb, or
    /// simply too much data): refused before allocating.
    #[error("{file}: {what}")]
    TooLarge { file: String, what: String },

    /// A loader option is invalid (e.g. std = 0, lo >= hi, height = 0).
    #[error("invalid data option: {what}")]
    InvalidOption { what: String },
}

impl DataError {
    /// Maps an I/O error on `path`, turning "not found" into [`DataError::NotFound`].
    pub(crate) fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound { path: path.to_path_buf() }
        } else {
            DataError::Io { path: path.to_path_buf(), error }
        }
    }
}
