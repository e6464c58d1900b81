//! Reading a file the user named, whole and within a limit: a pack's entry, a `--deps` file, the
//! daemon's configuration.
//!
//! Such a path may name anything: a named pipe, a device, a file that grows while it is read.
//! The file is opened without blocking (a pipe with no writer would hold the open for ever),
//! refused unless it is a regular file, refused by its size before a byte is read, and read no
//! further than one byte past the limit should it grow meanwhile.

use std::io::Read;
use std::path::Path;

use anyhow::bail;

/// Opens `path` for reading with `flags` (an `O_NOFOLLOW`, say), never blocking.
pub fn open_nonblocking(path: &Path, flags: libc::c_int) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = flags | libc::O_NONBLOCK;
    std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// The bytes of the regular file at `path`, at most `max` of them (`limit` names the limit in
/// errors).
///
/// # Errors
///
/// The file cannot be opened or read, is not a regular file, or is or grows over `max` bytes.
pub fn read_whole(path: &Path, max: u64, limit: &str) -> anyhow::Result<Vec<u8>> {
    let file = open_nonblocking(path, 0)?;
    let meta = file.metadata()?;
    read_regular(file, &meta, max, limit)
}

/// Reads `file` (whose metadata is `meta`) whole if it is a regular file of at most `max`
/// bytes (`limit` names the limit in errors); one that grows while read is read no further
/// than one byte past `max`.
///
/// # Errors
///
/// As [`read_whole`]'s, but for opening.
pub fn read_regular(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    max: u64,
    limit: &str,
) -> anyhow::Result<Vec<u8>> {
    if !meta.is_file() {
        bail!("not a regular file");
    }
    // Refused before it is read: a file far past the limit would not fit in memory.
    if meta.len() > max {
        bail!("{} bytes, over the {max}-byte {limit}", meta.len());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        bail!("grew past the {max}-byte {limit} while read");
    }
    Ok(bytes)
}
