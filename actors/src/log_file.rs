//! The files a runtime writes its logs to: the telemetry file and the replay log.
//!
//! Either may be a named pipe that a tool reads as the session runs. Opening a pipe no one
//! reads blocks until a reader comes, which would hold the runtime's build for ever:
//! [`create`] opens without blocking, so such a pipe is refused at once (`ENXIO`), then lets
//! the writes block as a file's do. [`write_lines`] writes a batch of lines so that a write
//! failing part way (a full disk) leaves whole lines only where the file allows it.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::Path;

/// Creates (or truncates) the log file at `path`.
///
/// # Errors
///
/// The file could not be created, or it is a named pipe with no reader.
pub(crate) fn create(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(file)
}

/// A write of lines that failed: why, and how many of the lines are in the file whole.
#[derive(Debug)]
pub(crate) struct FailedLines {
    pub(crate) error: io::Error,
    pub(crate) lines_written: u64,
}

/// Writes `lines` (each ending in a line break) to `file`. One that fails part way leaves
/// the lines it wrote whole and takes back the part of the one it cut, where the file allows
/// it (a pipe does not): a reader of the file then finds whole lines only.
///
/// # Errors
///
/// The write's error, with the lines written whole.
pub(crate) fn write_lines(file: &mut File, lines: &[u8]) -> Result<(), FailedLines> {
    let (error, written) = match write_counting(file, lines) {
        Ok(()) => return Ok(()),
        Err(failed) => failed,
    };
    let (cut, lines_written) = cut_at(lines, written);
    if cut > 0 {
        if let Ok(end) = file.stream_position() {
            let _ = file.set_len(end.saturating_sub(cut));
        }
    }
    Err(FailedLines { error, lines_written })
}

/// Of `lines` written up to `written` bytes: the bytes of the line the end cut, and the
/// lines written whole.
fn cut_at(lines: &[u8], written: usize) -> (u64, u64) {
    let whole = lines[..written].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines_written = lines[..whole].iter().filter(|&&b| b == b'\n').count();
    ((written - whole) as u64, lines_written as u64)
}

/// Writes all of `bytes` to `w`, or fails with the error and how many bytes it wrote.
fn write_counting(w: &mut impl Write, bytes: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut written = 0;
    while written < bytes.len() {
        match w.write(&bytes[written..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written)),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, written)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, a few at a time, then fails as a full disk does.
    struct FillingUp {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for FillingUp {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.room - self.taken.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_failing_part_way_says_how_much_it_wrote() {
        let mut disk = FillingUp { taken: Vec::new(), room: 10 };
        let (error, written) = write_counting(&mut disk, b"one\ntwo\nthree\n").unwrap_err();
        assert_eq!((error.raw_os_error(), written), (Some(28), 10));
        assert_eq!(disk.taken, b"one\ntwo\nth");
        let mut roomy = FillingUp { taken: Vec::new(), room: 100 };
        assert!(write_counting(&mut roomy, b"one\ntwo\n").is_ok());
        assert_eq!(roomy.taken, b"one\ntwo\n");
    }

    #[test]
    fn a_write_cut_part_way_keeps_the_lines_before_the_one_it_cut() {
        let lines = b"one\ntwo\nthree\n";
        assert_eq!(cut_at(lines, 10), (2, 2), "th of three is taken back");
        assert_eq!(cut_at(lines, 8), (0, 2));
        assert_eq!(cut_at(lines, 2), (2, 0));
        assert_eq!(cut_at(lines, 0), (0, 0));
    }
}
