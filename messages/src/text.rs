//! Text from outside shown on a terminal: a file's name, a key, a decoder's or a log's words.
//!
//! Such text may hold line breaks and control characters: printed raw, a key's newline forges
//! a line of output, and an escape sequence reaches the terminal (clears it, retitles it).
//! [`escape_controls`] escapes them, and leaves any other text as it is.

use std::borrow::Cow;

/// `text` with its control characters written as Rust escapes (`\n`, `\u{1b}`), so that it
/// stays on its line and sends the terminal nothing but characters; as it is without any.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_kept_as_it_is() {
        assert!(matches!(escape_controls("blob:a b \"c\" é"), Cow::Borrowed(_)));
        let hostile = escape_controls("left\n  right\u{1b}[2J\t");
        assert_eq!(hostile, r"left\n  right\u{1b}[2J\t");
        assert!(!hostile.contains(char::is_control));
    }
}
