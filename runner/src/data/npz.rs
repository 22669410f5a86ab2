//! `.npz` and `.npy` sources.
//!
//! An `.npz` is a zip archive (stored or deflated, as written by `np.savez` and
//! `np.savez_compressed`) of `.npy` members; the member name without `.npy` is the array's key.
//! Keys are model input names, plus an optional `labels` array.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use super::npy::{NpyArray, read_npy};
use super::{DataError, InputSet, input_from, labels_from};

/// Buffer for reading members: `npyz` reads element by element, so keep the decoder's calls big.
const READ_BUFFER: usize = 1 << 20;

impl InputSet {
    /// Loads an `.npz` archive: every array except `labels` is a model input keyed by its name,
    /// axis 0 = sample. `labels` may hold integers (class indices) or strings (`<U`/`|S`).
    /// Call [`InputSet::check_shapes`] to match the keys and shapes with the model's inputs.
    pub fn from_npz(path: impl AsRef<Path>) -> Result<InputSet, DataError> {
        Self::from_npz_within(path, u64::MAX)
    }

    /// [`InputSet::from_npz`], refusing before allocating when the arrays decode to more than
    /// `max_bytes` in all (an archive far smaller than its content, a zip bomb, included).
    pub fn from_npz_within(path: impl AsRef<Path>, max_bytes: u64) -> Result<InputSet, DataError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Self::from_npz_reader(BufReader::new(file), &path.display().to_string(), max_bytes)
    }

    /// [`InputSet::from_npz_within`] from any seekable reader; `file_name` names it in messages.
    pub fn from_npz_reader<R: Read + Seek>(reader: R, file_name: &str, max_bytes: u64) -> Result<InputSet, DataError> {
        let file_name = file_name.to_string();
        let mut zip = zip::ZipArchive::new(reader)
            .map_err(|e| DataError::Format { file: file_name.clone(), what: format!("not a valid .npz (zip) archive: {e}") })?;
        let mut inputs = Vec::new();
        let mut labels = None;
        let mut left = max_bytes;
        for index in 0..zip.len() {
            let member = zip
                .by_index(index)
                .map_err(|e| DataError::Format { file: file_name.clone(), what: format!("cannot read archive member #{index}: {e}") })?;
            if member.is_dir() {
                continue;
            }
            let name = member.name().to_string();
            let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
            let (array, bytes) = read_npy(BufReader::with_capacity(READ_BUFFER, member), &file_name, &key, left)?;
            left = left.saturating_sub(bytes);
            if key == "labels" {
                labels = Some(labels_from(array, &file_name)?);
            } else {
                inputs.push((key.clone(), input_from(array, &file_name, &key)?));
            }
        }
        InputSet::new(file_name, inputs, labels)
    }

    /// Loads an `.npy` file holding the one input `input_name` (axis 0 = sample), no labels.
    pub fn from_npy(path: impl AsRef<Path>, input_name: &str) -> Result<InputSet, DataError> {
        Self::from_npy_within(path, input_name, u64::MAX)
    }

    /// [`InputSet::from_npy`], refusing before allocating an array of more than `max_bytes`.
    pub fn from_npy_within(path: impl AsRef<Path>, input_name: &str, max_bytes: u64) -> Result<InputSet, DataError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Self::from_npy_reader(BufReader::with_capacity(READ_BUFFER, file), &path.display().to_string(), input_name, max_bytes)
    }

    /// [`InputSet::from_npy_within`] from any reader; `file_name` names it in messages.
    pub fn from_npy_reader<R: Read>(reader: R, file_name: &str, input_name: &str, max_bytes: u64) -> Result<InputSet, DataError> {
        let file_name = file_name.to_string();
        let (array, _) = read_npy(reader, &file_name, input_name, max_bytes)?;
        if let NpyArray::Tensor(t) = &array
            && t.rank() == 0
        {
            return Err(DataError::Format { file: file_name, what: "a scalar array has no sample axis".into() });
        }
        let tensor = input_from(array, &file_name, input_name)?;
        InputSet::new(file_name, vec![(input_name.to_string(), tensor)], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Labels;
    use crate::data::test_util::{npy_bytes, shared_dir, values};
    use std::io::Write;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Writes an `.npz` with the given members (name, npy bytes), deflated.
    fn write_npz(path: &Path, members: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    /// A 1 MiB-of-zeros archive member compresses to about a kilobyte; an archive of such
    /// members (or one whose header claims a huge shape) must not be inflated past the limit.
    #[test]
    fn decompression_bombs_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.npz");
        let zeros = vec![0u8; 4 << 20];
        write_npz(&path, &[("x.npy", npy_bytes("<f4", false, "(1, 1048576)", &zeros))]);
        let file_size = std::fs::metadata(&path).unwrap().len();
        assert!(file_size < 64 << 10, "the bomb is small: {file_size}");
        let err = InputSet::from_npz_within(&path, 1 << 20).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("4.0 MiB") && err.to_string().contains("bomb.npz"), "{err}");
        assert_eq!(InputSet::from_npz_within(&path, 8 << 20).unwrap().len(), 1);
        // A header claiming 10^15 elements with no data behind it: refused, not allocated.
        let liar = dir.path().join("liar.npz");
        write_npz(&liar, &[("x.npy", npy_bytes("<f4", false, "(1000000, 1000000000)", &[]))]);
        assert!(matches!(InputSet::from_npz_within(&liar, 1 << 30), Err(DataError::TooLarge { .. })));
        // Several members share one budget.
        let two = dir.path().join("two.npz");
        let half = vec![0u8; 3 << 20];
        write_npz(
            &two,
            &[("a.npy", npy_bytes("<f4", false, "(1, 786432)", &half)), ("b.npy", npy_bytes("<f4", false, "(1, 786432)", &half))],
        );
        assert!(InputSet::from_npz_within(&two, 4 << 20).is_err());
        assert!(InputSet::from_npz_within(&two, 6 << 20).is_ok());
    }

    #[test]
    fn npz_with_int_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let x = npy_bytes("<f4", false, "(2, 3)", &f32_bytes(&[0., 1., 2., 3., 4., 5.]));
        let labels: Vec<u8> = [7i32, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let labels = npy_bytes("<i4", false, "(2,)", &labels);
        write_npz(&path, &[("x.npy", x), ("labels.npy", labels)]);
        let set = InputSet::from_npz(&path).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.labels(), Some(&Labels::Int(vec![7, -1])));
        // Before the shapes are checked, a sample is the array's slice.
        assert_eq!(set.sample(1).unwrap()[0].1.shape(), &[3]);
        let mut set = set;
        set.check_shapes(&[("x".into(), vec![1, 3])]).unwrap();
        let s = set.sample(1).unwrap();
        assert_eq!(s[0].1.shape(), &[1, 3]);
        assert_eq!(values::<f32>(&s[0].1), vec![3., 4., 5.]);
    }

    #[test]
    fn npz_errors_name_file_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.npz");
        let err = InputSet::from_npz(&missing).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }));
        assert!(err.to_string().contains("missing.npz"), "{err}");

        let not_zip = dir.path().join("bad.npz");
        std::fs::write(&not_zip, b"hello").unwrap();
        let err = InputSet::from_npz(&not_zip).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err}");

        let mismatch = dir.path().join("mismatch.npz");
        let x = npy_bytes("<f4", false, "(2,)", &f32_bytes(&[0., 1.]));
        let labels = npy_bytes("<i8", false, "(3,)", &[0; 24]);
        write_npz(&mismatch, &[("x.npy", x.clone()), ("labels.npy", labels)]);
        let err = InputSet::from_npz(&mismatch).unwrap_err();
        assert!(matches!(err, DataError::SampleCountMismatch { found: 3, expected: 2, .. }), "{err}");

        let float_labels = dir.path().join("float_labels.npz");
        let labels = npy_bytes("<f4", false, "(2,)", &f32_bytes(&[0., 1.]));
        write_npz(&float_labels, &[("x.npy", x.clone()), ("labels.npy", labels)]);
        let err = InputSet::from_npz(&float_labels).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedDtype { ref key, .. } if key == "labels"), "{err}");

        let empty = dir.path().join("empty.npz");
        write_npz(&empty, &[("x.npy", npy_bytes("<f4", false, "(0, 3)", &[]))]);
        assert!(matches!(InputSet::from_npz(&empty), Err(DataError::NoSamples { .. })));
    }

    #[test]
    fn npy_single_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, npy_bytes("<i8", false, "(2, 1)", &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        let mut set = InputSet::from_npy(&path, "ids").unwrap();
        assert_eq!(set.input_names(), vec!["ids"]);
        assert_eq!(values::<i64>(&set.sample(1).unwrap()[0].1), vec![2]);
        set.check_shapes(&[("ids".into(), vec![1, 1])]).unwrap();
    }

    #[test]
    fn real_cls_eval_set() {
        let Some(shared) = shared_dir() else { return };
        let mut set = InputSet::from_npz(shared.join("data/ocr_cls_eval.npz")).unwrap();
        assert_eq!(set.len(), 200);
        set.check_shapes(&[("x".into(), vec![1, 3, 48, 192])]).unwrap();
        let Some(Labels::Int(labels)) = set.labels() else { panic!("expected int labels") };
        assert!(labels.iter().all(|&l| l == 0 || l == 1));
        assert!(labels.contains(&0) && labels.contains(&1));
        // Pixels are preprocessed to [-1, 1].
        let x = set.sample(0).unwrap().remove(0).1;
        let v = values::<f32>(&x);
        assert!(v.iter().all(|p| (-1.0..=1.0).contains(p)));
        assert!(v.iter().any(|&p| p != v[0]));
    }

    #[test]
    fn real_rec_eval_set_has_unicode_labels() {
        let Some(shared) = shared_dir() else { return };
        let mut set = InputSet::from_npz(shared.join("data/ocr_rec_eval.npz")).unwrap();
        assert_eq!(set.len(), 64);
        set.check_shapes(&[("x".into(), vec![1, 3, 48, 320])]).unwrap();
        let Some(Labels::Text(labels)) = set.labels() else { panic!("expected text labels") };
        assert_eq!(labels.len(), 64);
        assert!(labels.iter().all(|l| !l.is_empty() && !l.contains('\0')));
        let err = set.check_shapes(&[("x".into(), vec![1, 3, 48, 192])]).unwrap_err();
        assert!(err.to_string().contains("ocr_rec_eval.npz"), "{err}");
    }
}
