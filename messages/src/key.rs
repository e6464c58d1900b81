//! Asset keys: an asset type name plus a relative path, validated once at construction.
//!
//! # Invariants
//!
//! An [`AssetKey`] that exists is confined: its path is relative, uses `/` as the only
//! separator, has no empty, `.` or `..` component, no backslash, no NUL, no drive prefix, and is
//! at most [`ASSET_PATH_BYTES_MAX`] bytes. Sources may therefore join it under their root
//! without further checks on the text (symlinks are the source's own concern).
//!
//! Keys compare byte for byte: `mesh:Props/a` and `mesh:props/a` are two keys, with two cache
//! slots. A directory source on a case-insensitive file system (vfat, exFAT, a casefolded
//! ext4 folder) serves one file under both; such a tree should be packed, or requested in one
//! spelling.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::error_text_of;

/// The longest asset path accepted, in bytes.
pub const ASSET_PATH_BYTES_MAX: usize = 1024;
/// The longest asset type name accepted, in bytes.
pub const ASSET_TYPE_BYTES_MAX: usize = 32;

/// Why a key was refused. Each variant names the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The path is empty.
    #[error("invalid key: empty path")]
    Empty,
    /// The path is longer than [`ASSET_PATH_BYTES_MAX`].
    #[error("invalid key: path is {len} bytes, more than {max}")]
    TooLong {
        /// The path's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The path starts with `/`.
    #[error("invalid key {0:?}: absolute path")]
    Absolute(String),
    /// A component is `..`.
    #[error("invalid key {0:?}: `..` component")]
    ParentComponent(String),
    /// A component is `.` or empty (`a//b`), so the key would not be canonical.
    #[error("invalid key {0:?}: empty or `.` component")]
    NonCanonical(String),
    /// The path contains a backslash.
    #[error("invalid key {0:?}: backslash")]
    Backslash(String),
    /// The path contains a NUL byte.
    #[error("invalid key {0:?}: NUL byte")]
    Nul(String),
    /// The path starts with a drive prefix such as `C:`.
    #[error("invalid key {0:?}: drive prefix")]
    DrivePrefix(String),
    /// The asset type name is empty, too long or not `[a-z0-9_-]` (the name, cut at
    /// [`ERROR_TEXT_BYTES_MAX`](crate::ERROR_TEXT_BYTES_MAX) bytes: a key from a client or a
    /// file can be as long as its frame, and each refusal would copy it whole).
    #[error("invalid asset type {0:?}: want 1 to 32 of [a-z0-9_-]")]
    BadType(String),
    /// A textual key has no `type:` prefix (the text, cut as for `BadType`).
    #[error("invalid key {0:?}: want TYPE:PATH")]
    MissingType(String),
}

/// The name of an asset type, such as `mesh` or `texture`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AssetTypeName(Arc<str>);

impl AssetTypeName {
    /// Validates and wraps a type name.
    ///
    /// # Errors
    ///
    /// [`InvalidKey::BadType`] unless the name is 1 to [`ASSET_TYPE_BYTES_MAX`] bytes of
    /// `[a-z0-9_-]`.
    pub fn new(name: &str) -> Result<Self, InvalidKey> {
        validate_type(name)?;
        Ok(Self(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AssetTypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(crate::decode::refuse)
    }
}

impl fmt::Debug for AssetTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for AssetTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated asset path: the confined, relative, `/`-separated half of a key (see the
/// module's invariants), without its type.
///
/// What a per-type table keeps of a key: the type is the table's. Cloning is cheap (one
/// reference count).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AssetPath(Arc<str>);

impl AssetPath {
    /// Validates and wraps a path.
    ///
    /// # Errors
    ///
    /// An [`InvalidKey`] naming the first rule the path breaks.
    pub fn new(path: &str) -> Result<Self, InvalidKey> {
        validate_path(path)?;
        Ok(Self(path.into()))
    }

    /// The path, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The path with its control characters escaped: a path may hold them (a key keeps what an
/// engine names), and a debug print ends up in logs and panics.
impl fmt::Debug for AssetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetPath({})", crate::escape_controls(&self.0))
    }
}

impl fmt::Display for AssetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated asset key: `type:relative/path`.
///
/// Cloning is cheap (two reference counts).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AssetKey {
    asset_type: AssetTypeName,
    path: AssetPath,
}

impl AssetKey {
    /// Builds a key from a type and a path, validating the path.
    ///
    /// # Errors
    ///
    /// An [`InvalidKey`] naming the first rule the path breaks.
    pub fn new(asset_type: AssetTypeName, path: &str) -> Result<Self, InvalidKey> {
        Ok(Self::from_parts(asset_type, AssetPath::new(path)?))
    }

    /// A key from a type and a path, each validated already; no check and no copy of the text.
    pub fn from_parts(asset_type: AssetTypeName, path: AssetPath) -> Self {
        Self { asset_type, path }
    }

    /// Parses `type:path`, as `streamctl` and the control protocol spell keys.
    ///
    /// # Errors
    ///
    /// [`InvalidKey::MissingType`] without a `:`; otherwise as [`AssetTypeName::new`] and
    /// [`AssetKey::new`].
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        let (ty, path) = split_key(text)?;
        Self::new(AssetTypeName::new(ty)?, path)
    }

    /// Whether `text` parses ([`AssetKey::parse`]'s checks, in its order), without making the
    /// key: nothing is allocated unless it is refused.
    ///
    /// # Errors
    ///
    /// As [`AssetKey::parse`].
    pub fn check(text: &str) -> Result<(), InvalidKey> {
        let (ty, path) = split_key(text)?;
        validate_type(ty)?;
        validate_path(path)
    }

    /// The asset type.
    pub fn asset_type(&self) -> &AssetTypeName {
        &self.asset_type
    }

    /// The confined relative path, `/`-separated.
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// The path as a shareable value (what a per-type table keeps).
    pub fn asset_path(&self) -> &AssetPath {
        &self.path
    }
}

impl<'de> Deserialize<'de> for AssetKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            asset_type: AssetTypeName,
            path: String,
        }
        let raw = Raw::deserialize(d)?;
        Self::new(raw.asset_type, &raw.path).map_err(crate::decode::refuse)
    }
}

/// As [`AssetPath`]'s: control characters escaped.
impl fmt::Debug for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = crate::escape_controls(self.path.as_str());
        write!(f, "AssetKey({}:{path})", self.asset_type)
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.asset_type, self.path)
    }
}

/// `type:path` split at its first `:`.
fn split_key(text: &str) -> Result<(&str, &str), InvalidKey> {
    text.split_once(':').ok_or_else(|| InvalidKey::MissingType(error_text_of(text)))
}

fn validate_type(name: &str) -> Result<(), InvalidKey> {
    let ok = !name.is_empty()
        && name.len() <= ASSET_TYPE_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidKey::BadType(error_text_of(name)))
    }
}

fn validate_path(path: &str) -> Result<(), InvalidKey> {
    let owned = || path.to_owned();
    if path.is_empty() {
        return Err(InvalidKey::Empty);
    }
    if path.len() > ASSET_PATH_BYTES_MAX {
        return Err(InvalidKey::TooLong { len: path.len(), max: ASSET_PATH_BYTES_MAX });
    }
    let scan = PathScan::of(path.as_bytes());
    if scan.nul {
        return Err(InvalidKey::Nul(owned()));
    }
    if scan.backslash {
        return Err(InvalidKey::Backslash(owned()));
    }
    if path.starts_with('/') {
        return Err(InvalidKey::Absolute(owned()));
    }
    // A first component of two bytes or more that starts `X:`: a `:` second means the first
    // component is at least two bytes long.
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(InvalidKey::DrivePrefix(owned()));
    }
    match scan.first_bad_component {
        Some(BadComponent::Parent) => Err(InvalidKey::ParentComponent(owned())),
        Some(BadComponent::NonCanonical) => Err(InvalidKey::NonCanonical(owned())),
        None => Ok(()),
    }
}

/// A component no confined, canonical path has.
#[derive(Debug, Clone, Copy)]
enum BadComponent {
    /// `..`
    Parent,
    /// Empty or `.`.
    NonCanonical,
}

/// What one pass over a path's bytes found. Every request's key is checked on the engine's
/// thread, so the check reads the path once instead of once per kind of fault.
struct PathScan {
    nul: bool,
    backslash: bool,
    /// The first bad component, in the path's order.
    first_bad_component: Option<BadComponent>,
}

impl PathScan {
    fn of(path: &[u8]) -> Self {
        let mut scan = Self { nul: false, backslash: false, first_bad_component: None };
        let mut start = 0;
        for (i, &byte) in path.iter().enumerate() {
            match byte {
                0 => scan.nul = true,
                b'\\' => scan.backslash = true,
                b'/' => {
                    scan.component(&path[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        scan.component(&path[start..]);
        scan
    }

    fn component(&mut self, component: &[u8]) {
        let bad = match component {
            b".." => BadComponent::Parent,
            b"" | b"." => BadComponent::NonCanonical,
            _ => return,
        };
        self.first_bad_component.get_or_insert(bad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_debug_print_escapes_the_control_characters_its_path_may_hold() {
        let key = AssetKey::parse("blob:a\u{1b}[2J\nb").unwrap();
        let shown = format!("{key:?} {:?}", key.path());
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with("AssetKey(blob:a"), "{shown}");
    }
    use proptest::prelude::*;

    fn key(path: &str) -> Result<AssetKey, InvalidKey> {
        AssetKey::new(AssetTypeName::new("blob").unwrap(), path)
    }

    #[test]
    fn accepts_ordinary_relative_paths() {
        for p in ["a", "a/b.mesh", "props/chair_01.tex", "x..y/z", "...", "a/.hidden"] {
            assert!(key(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn refuses_each_escape_with_its_reason() {
        assert_eq!(key(""), Err(InvalidKey::Empty));
        assert!(matches!(key("/etc/passwd"), Err(InvalidKey::Absolute(_))));
        assert!(matches!(key("../x"), Err(InvalidKey::ParentComponent(_))));
        assert!(matches!(key("a/../../x"), Err(InvalidKey::ParentComponent(_))));
        assert!(matches!(key("a\\b"), Err(InvalidKey::Backslash(_))));
        assert!(matches!(key("a\0b"), Err(InvalidKey::Nul(_))));
        assert!(matches!(key("C:/windows"), Err(InvalidKey::DrivePrefix(_))));
        assert!(matches!(key("c:x"), Err(InvalidKey::DrivePrefix(_))));
        assert!(matches!(key("a//b"), Err(InvalidKey::NonCanonical(_))));
        assert!(matches!(key("./a"), Err(InvalidKey::NonCanonical(_))));
        assert!(matches!(key("a/"), Err(InvalidKey::NonCanonical(_))));
        let long = "a".repeat(ASSET_PATH_BYTES_MAX + 1);
        assert!(matches!(key(&long), Err(InvalidKey::TooLong { .. })));
    }

    #[test]
    fn a_refused_key_of_any_length_is_named_in_an_error_of_bounded_length() {
        use crate::ERROR_TEXT_BYTES_MAX;
        // Each character shown escaped takes six bytes (`\u{7f}`).
        let bound = 6 * ERROR_TEXT_BYTES_MAX + 64;
        let huge = "\u{7f}".repeat(1 << 20);
        for text in [format!("{huge}:a"), huge.clone(), format!("blob:{huge}")] {
            let refused = AssetKey::parse(&text).unwrap_err();
            assert!(refused.to_string().len() < bound, "{}", refused.to_string().len());
            assert_eq!(AssetKey::check(&text).unwrap_err(), refused);
        }
        let refused = AssetTypeName::new(&huge).unwrap_err();
        assert!(refused.to_string().len() < bound, "{}", refused.to_string().len());
        assert!(key(&"a".repeat(ASSET_PATH_BYTES_MAX)).is_ok());
    }

    #[test]
    fn parses_and_displays_type_colon_path() {
        let k = AssetKey::parse("mesh:props/chair").unwrap();
        assert_eq!(k.asset_type().as_str(), "mesh");
        assert_eq!(k.path(), "props/chair");
        assert_eq!(k.to_string(), "mesh:props/chair");
        assert!(matches!(AssetKey::parse("nocolon"), Err(InvalidKey::MissingType(_))));
        assert!(matches!(AssetKey::parse("Mesh:x"), Err(InvalidKey::BadType(_))));
    }

    #[test]
    fn checking_a_key_gives_what_parsing_it_gives_without_the_key() {
        let texts = ["mesh:props/chair", "nocolon", "Mesh:x", ":x", "blob:", "blob:../x", "a:b:c"];
        for text in texts {
            assert_eq!(AssetKey::check(text), AssetKey::parse(text).map(drop), "{text}");
        }
    }

    #[test]
    fn deserialising_revalidates() {
        #[derive(Serialize)]
        struct Raw<'a> {
            asset_type: &'a str,
            path: &'a str,
        }
        let bytes = postcard::to_allocvec(&Raw { asset_type: "blob", path: "../x" }).unwrap();
        assert!(postcard::from_bytes::<AssetKey>(&bytes).is_err());
        let good = key("a/b").unwrap();
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<AssetKey>(&bytes).unwrap(), good);
    }

    /// The check as it read before it was one pass: each kind of fault looked for in turn.
    fn validate_path_by_steps(path: &str) -> Result<(), InvalidKey> {
        let owned = || path.to_owned();
        if path.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if path.len() > ASSET_PATH_BYTES_MAX {
            return Err(InvalidKey::TooLong { len: path.len(), max: ASSET_PATH_BYTES_MAX });
        }
        if path.contains('\0') {
            return Err(InvalidKey::Nul(owned()));
        }
        if path.contains('\\') {
            return Err(InvalidKey::Backslash(owned()));
        }
        if path.starts_with('/') {
            return Err(InvalidKey::Absolute(owned()));
        }
        let first = path.split('/').next().unwrap_or_default().as_bytes();
        if first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
            return Err(InvalidKey::DrivePrefix(owned()));
        }
        for component in path.split('/') {
            match component {
                ".." => return Err(InvalidKey::ParentComponent(owned())),
                "" | "." => return Err(InvalidKey::NonCanonical(owned())),
                _ => {}
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn the_one_pass_check_gives_the_error_the_step_by_step_check_gives(
            path in prop::collection::vec(
                prop::sample::select(&["a", "b.c", "..", ".", "", "C:", "c:x", "a\\b", "\0", "/"][..]),
                0..5,
            ).prop_map(|components| components.join("/"))
        ) {
            prop_assert_eq!(validate_path(&path), validate_path_by_steps(&path));
        }

        #[test]
        fn every_accepted_path_stays_confined(path in "[a-z./\\\\:]{0,12}") {
            if let Ok(k) = key(&path) {
                prop_assert!(!k.path().starts_with('/'));
                prop_assert!(k.path().split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(!k.path().contains('\\'));
            }
        }
    }
}
