//! How `streamctl` shows text that comes from outside (keys from a pack, a daemon or another
//! client) in its `name=value` and column output.
//!
//! A key may legally hold spaces, line breaks and control characters: printed raw, `key=a b`
//! reads as two fields, and an escape sequence reaches the terminal. Such text is shown quoted,
//! with Rust's escapes; any other text as it is, so ordinary keys print unchanged.

use std::borrow::Cow;

use streamrt::messages::needs_escape;

/// `text` as `streamctl` prints it: as it is, or quoted and escaped when it holds whitespace,
/// a quote or a character [`needs_escape`] names (a control or bidirectional formatting
/// character, which `{:?}` escapes).
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().any(|c| c.is_whitespace() || needs_escape(c) || c == '"') {
        Cow::Owned(format!("{text:?}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_print_as_they_are_and_others_quoted_with_no_raw_control_character() {
        assert_eq!(shown("mesh:props/chair.mesh"), "mesh:props/chair.mesh");
        assert_eq!(shown("blob:a b"), r#""blob:a b""#);
        let hostile = shown("blob:a\u{1b}[2J\nstate=ready");
        assert_eq!(hostile, r#""blob:a\u{1b}[2J\nstate=ready""#);
        assert!(!hostile.chars().any(char::is_control));
        assert_eq!(shown("blob:\u{202e}gpj.exe"), r#""blob:\u{202e}gpj.exe""#);
    }
}
