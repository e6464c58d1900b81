//! Text from outside shown on a terminal: a file's name, a key, a decoder's or a log's words.
//!
//! Such text may hold line breaks and control characters: printed raw, a key's newline forges
//! a line of output, and an escape sequence reaches the terminal (clears it, retitles it).
//! Unicode's bidirectional formatting characters make the terminal show it in another order.
//! [`escape_controls`] escapes them, and leaves any other text as it is.

use std::borrow::Cow;

/// `text` with its control characters written as Rust escapes (`\n`, `\u{1b}`), so that it
/// stays on its line and sends the terminal nothing but characters; as it is without any. The
/// Unicode line and paragraph separators and the bidirectional formatting characters (which
/// make a terminal show text in another order than it holds) are escaped too.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, needs_escape, |c, out| out.extend(c.escape_default()))
}

/// `text` with each character `escaped` names written by `escape` instead (into the text being
/// made); as it is, borrowed, when it holds none. For an output with escapes of its own form,
/// such as JSON's `\uXXXX`.
pub fn escape_where(
    text: &str,
    escaped: impl Fn(char) -> bool,
    escape: impl Fn(char, &mut String),
) -> Cow<'_, str> {
    if !text.contains(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_controls`] escapes `c`: a control character, a line or paragraph
/// separator, or a bidirectional formatting character.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_separator_and_bidi_characters_are_escaped_and_other_text_kept_as_it_is() {
        assert!(matches!(escape_controls("blob:a b \"c\" é"), Cow::Borrowed(_)));
        let hostile = escape_controls("left\n  right\u{1b}[2J\t");
        assert_eq!(hostile, r"left\n  right\u{1b}[2J\t");
        assert!(!hostile.contains(char::is_control));
        let reordered = escape_controls("blob:\u{202e}gpj.exe\u{2028}x");
        assert_eq!(reordered, r"blob:\u{202e}gpj.exe\u{2028}x");
    }
}
