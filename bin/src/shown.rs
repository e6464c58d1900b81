//! How `streamctl` shows text that comes from outside (keys from a pack, a daemon or another
//! client) in its `name=value` and column output.
//!
//! A key may legally hold spaces, line breaks and control characters: printed raw, `key=a b`
//! reads as two fields, and an escape sequence reaches the terminal. Such text is shown quoted,
//! with Rust's escapes; any other text as it is, so ordinary keys print unchanged. `--json`
//! output goes through [`json_line`], which escapes what JSON itself lets through raw.

use std::borrow::Cow;

use streamrt::messages::{escape_where, needs_escape};

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

/// `value` as one line of JSON for a terminal: as `serde_json` writes it, with the characters
/// [`needs_escape`] names that JSON lets through raw (C1 controls, `DEL`, the line separators,
/// the bidirectional formatting characters) written as `\uXXXX` escapes, which any JSON reader
/// reads back as the same text.
///
/// # Errors
///
/// `value` cannot be serialised (a map with keys that are not strings).
pub(crate) fn json_line(value: &impl serde::Serialize) -> serde_json::Result<String> {
    Ok(terminal_safe(serde_json::to_string(value)?))
}

/// `json` with every character [`needs_escape`] names written as a `\uXXXX` escape. Outside
/// its strings compact JSON holds ASCII punctuation, letters and digits only (a string's line
/// breaks are escaped already): so every character escaped here lies inside a string, where
/// the escape reads back as the character.
fn terminal_safe(json: String) -> String {
    // Every character it names is in the Basic Multilingual Plane: one escape each.
    let escape = |c: char, out: &mut String| out.push_str(&format!("\\u{:04x}", u32::from(c)));
    if let Cow::Owned(escaped) = escape_where(&json, needs_escape, escape) {
        return escaped;
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_for_a_terminal_escapes_what_json_lets_through_and_reads_back_the_same() {
        let value = serde_json::json!({ "key\u{9b}": "a\u{85}\u{202e}b\n\u{7f}é" });
        let line = json_line(&value).unwrap();
        assert_eq!(line, r#"{"key\u009b":"a\u0085\u202eb\n\u007fé"}"#);
        assert!(!line.contains(needs_escape));
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }

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
