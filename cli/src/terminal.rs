//! What whittle prints to a terminal never carries control characters from user data: a tensor
//! or node name holding an escape sequence (which could clear the screen or rewrite the line)
//! is shown escaped, as `dump` writes it. Newlines and tabs of whittle's own layout stay.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character but `\n` and `\t` written as `\u{hex}`.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_control_characters_but_layout() {
        assert_eq!(super::safe("a\u{1b}[2Jb\n\tc"), "a\\u{1b}[2Jb\n\tc");
        assert_eq!(super::safe("plain"), "plain");
    }
}
