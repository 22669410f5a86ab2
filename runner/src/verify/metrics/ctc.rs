//! Greedy CTC decoding (PP-OCR rec): argmax per time step over the last axis, merge repeats,
//! drop the blank (index 0).
//!
//! Index `i >= 1` maps to line `i - 1` of the model's character list (the `character`
//! metadata_props entry, one character per line) and the index after the last line is a space,
//! so a model over `L` lines has `L + 2` classes. Decoded strings and labels are compared with
//! surrounding whitespace trimmed, as the peer `compare.py` does.

use super::Agreement;
use super::classify::argmax;

/// Greedy CTC decode of scores laid out as rows of `classes` values (one row per time step,
/// leading axes flattened): the class sequence without repeats and blanks.
pub fn ctc_greedy_decode(scores: &[f32], classes: usize) -> Vec<usize> {
    assert!(classes > 0 && scores.len().is_multiple_of(classes), "ctc: {} values are not rows of {classes}", scores.len());
    let mut out = Vec::new();
    let mut previous = None;
    for row in scores.chunks(classes) {
        let best = argmax(row);
        if best != 0 && previous != Some(best) {
            out.push(best);
        }
        previous = Some(best);
    }
    out
}

/// Fraction of samples whose decoded sequences are identical.
pub fn sequence_agreement(reference: &[Vec<usize>], candidate: &[Vec<usize>]) -> Agreement {
    assert_eq!(reference.len(), candidate.len(), "ctc: sample count mismatch");
    let matches = reference.iter().zip(candidate).filter(|(r, c)| r == c).count();
    Agreement::new(matches, reference.len())
}

/// Fraction of decoded strings equal to their label (both trimmed).
pub fn exact_string_accuracy(decoded: &[String], labels: &[String]) -> Agreement {
    assert_eq!(decoded.len(), labels.len(), "ctc: label count mismatch");
    let matches = decoded.iter().zip(labels).filter(|(d, l)| d.trim() == l.trim()).count();
    Agreement::new(matches, decoded.len())
}

/// The symbols of a CTC model: index 0 is the blank, index `i` is `symbols[i - 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charset {
    symbols: Vec<String>,
}

impl Charset {
    /// From a PP-OCR character list (one symbol per line, `\n` or `\r\n`); a space is appended
    /// as the last class.
    pub fn from_character_list(text: &str) -> Charset {
        let mut symbols: Vec<String> = text.lines().map(str::to_string).collect();
        symbols.push(" ".to_string());
        Charset { symbols }
    }

    /// Number of classes the model's last axis must have: blank + symbols.
    pub fn num_classes(&self) -> usize {
        self.symbols.len() + 1
    }

    /// The text of a decoded sequence; an index past the charset becomes U+FFFD.
    pub fn decode(&self, sequence: &[usize]) -> String {
        sequence.iter().map(|&i| i.checked_sub(1).and_then(|j| self.symbols.get(j)).map_or("\u{FFFD}", String::as_str)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-hot rows over 4 classes for the given argmax sequence.
    fn one_hot(seq: &[usize]) -> Vec<f32> {
        seq.iter().flat_map(|&i| (0..4).map(move |c| if c == i { 1.0 } else { 0.0 })).collect()
    }

    #[test]
    fn greedy_decode_merges_repeats_and_drops_blank() {
        // a a _ a b b _ _ b  ->  a a b b  (blank separates the repeated a's and b's)
        let scores = one_hot(&[1, 1, 0, 1, 2, 2, 0, 0, 2]);
        assert_eq!(ctc_greedy_decode(&scores, 4), vec![1, 1, 2, 2]);
        assert_eq!(ctc_greedy_decode(&one_hot(&[0, 0]), 4), Vec::<usize>::new());
    }

    #[test]
    fn charset_maps_indices_and_trailing_space() {
        let cs = Charset::from_character_list("a\nb\r\n");
        assert_eq!(cs.num_classes(), 4); // blank, a, b, space
        assert_eq!(cs.decode(&[1, 3, 2, 9]), "a b\u{FFFD}");
    }

    #[test]
    fn string_and_sequence_agreement() {
        let r = vec![vec![1, 2], vec![3]];
        let c = vec![vec![1, 2], vec![2]];
        assert_eq!(sequence_agreement(&r, &c), Agreement::new(1, 2));
        let decoded = vec!["ab ".to_string(), "x".to_string(), "y".to_string()];
        let labels = vec!["ab".to_string(), "x".to_string(), "z".to_string()];
        assert_eq!(exact_string_accuracy(&decoded, &labels), Agreement::new(2, 3));
    }
}
