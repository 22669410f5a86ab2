//! Shape and dtype inference (see the issue for the op list).
