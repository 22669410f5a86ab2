//! Finding the line and column of a value in the pipeline text, for errors found after parsing
//! (a missing file, an input the model does not have).
//!
//! `serde_norway` has no spans, but it stamps every error raised while deserializing a node with
//! that node's position. [`locate`] deserializes the document again with a seed that walks down
//! a path and raises an error at the target node (or at its key); the error's position is the
//! answer.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::diagnostic::Position;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// The value of a key in a mapping.
    Key(String),
    /// The key itself (last segment only): points at the name rather than the value.
    KeyName(String),
    /// An item of a sequence.
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

const FOUND: &str = "\u{1}whittle-locate-found";

/// The position of the node at `path` in `text`; [`Position::Unknown`] when the path does not
/// exist (then the caller's message still names the file).
pub fn locate(text: &str, path: &[Seg]) -> Position {
    let de = serde_norway::Deserializer::from_str(text);
    match Walk(path).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => match e.location() {
            Some(l) => Position::File { line: l.line(), column: l.column() },
            None => Position::Unknown,
        },
        _ => Position::Unknown,
    }
}

struct Walk<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.0.first() {
            None => Err(de::Error::custom(FOUND)),
            Some(Seg::KeyName(name)) => {
                while map.next_key_seed(KeyProbe(name))?.is_some() {
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
            Some(Seg::Key(name)) => {
                while let Some(key) = map.next_key::<serde_norway::Value>()? {
                    if key.as_str() == Some(name.as_str()) {
                        return map.next_value_seed(Walk(&self.0[1..]));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
            Some(Seg::Index(_)) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(())
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.0.first() {
            None => Err(de::Error::custom(FOUND)),
            Some(Seg::Index(i)) => {
                for _ in 0..*i {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                }
                seq.next_element_seed(Walk(&self.0[1..])).map(drop)
            }
            Some(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(())
            }
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): treat the tag as transparent.
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

impl Walk<'_> {
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() { Err(E::custom(FOUND)) } else { Ok(()) }
    }
}

/// Deserializes a mapping key; raises [`FOUND`] (stamped with the key's position) when it is
/// the wanted name.
struct KeyProbe<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.0 { Err(E::custom(FOUND)) } else { Ok(()) }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "model: a.onnx\ninputs:\n  x: [1, 3, 8, 8]\n  y: {a: 1}\nsteps:\n  - dead_code\n  - fold_batchnorm: {epsilon: 1}\n";

    fn at(line: usize, column: usize) -> Position {
        Position::File { line, column }
    }

    #[test]
    fn finds_values_keys_and_items() {
        assert_eq!(locate(DOC, &[Seg::key("model")]), at(1, 8));
        assert_eq!(locate(DOC, &[Seg::key("inputs"), Seg::key("x")]), at(3, 6));
        assert_eq!(locate(DOC, &[Seg::key("inputs"), Seg::KeyName("y".into())]), at(4, 3));
        assert_eq!(locate(DOC, &[Seg::key("steps"), Seg::Index(1)]), at(7, 5));
        assert_eq!(locate(DOC, &[Seg::key("steps"), Seg::Index(1), Seg::key("fold_batchnorm"), Seg::key("epsilon")]), at(7, 31));
        assert_eq!(locate(DOC, &[Seg::key("nothing")]), Position::Unknown);
        assert_eq!(locate(DOC, &[Seg::key("steps"), Seg::Index(9)]), Position::Unknown);
    }
}
