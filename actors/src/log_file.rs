//! The files a runtime writes its logs to: the telemetry file and the replay log.
//!
//! Either may be a named pipe that a tool reads as the session runs. Opening a pipe no one
//! reads blocks until a reader comes, which would hold the runtime's build for ever:
//! [`create`] opens without blocking, so such a pipe is refused at once (`ENXIO`), then lets
//! the writes block as a file's do. [`write_lines`] writes a batch of lines so that a write
//! failing part way (a full disk) leaves whole lines only where the file allows it, and
//! [`WholeWrites`] buffers the replay log's frames so that it ends at a whole frame however
//! its last write ended. [`Spool`] writes the replay log on a thread of its own, so that no
//! thread that records waits on the file.

mod spool;

pub(crate) use spool::{Spool, SPOOL_BEHIND_BYTES_MAX};

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

/// A file whose end can be taken back to a length (where the file allows it: a pipe does not).
pub(crate) trait TakeBack: Write {
    /// Cuts the file back to `len` bytes, if it can.
    fn take_back_to(&mut self, len: u64);
}

impl TakeBack for File {
    fn take_back_to(&mut self, len: u64) {
        let _ = self.set_len(len);
    }
}

/// The bytes [`WholeWrites`] gathers before it writes them out: `BufWriter`'s, so a recorder
/// that dies loses what it lost before.
const WHOLE_WRITES_BUFFER_BYTES: usize = 8 << 10;

/// A buffered writer that writes out only what it was given whole, each `write` call's bytes
/// in full (a replay log's writer gives it one frame a call). A write out that fails part way
/// is taken back to the end of the last one that succeeded, and nothing is written after it,
/// not even at drop: the file then ends at a whole frame, which a reader takes as a log cut
/// short, rather than inside one, which it refuses (`BufWriter` leaves the part it wrote).
pub(crate) struct WholeWrites<F: TakeBack> {
    file: F,
    buf: Vec<u8>,
    /// The bytes written out whole so far.
    len: u64,
    /// Set once a write out failed.
    failed: bool,
}

impl<F: TakeBack> WholeWrites<F> {
    pub(crate) fn new(file: F) -> Self {
        Self { file, buf: Vec::new(), len: 0, failed: false }
    }

    /// Refuses to write once a write out failed.
    fn still_writing(&self) -> io::Result<()> {
        match self.failed {
            true => Err(io::Error::other("an earlier write to this log failed")),
            false => Ok(()),
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.still_writing()?;
        if let Err((e, _)) = write_counting(&mut self.file, &self.buf) {
            self.failed = true;
            self.file.take_back_to(self.len);
            return Err(e);
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl<F: TakeBack> Write for WholeWrites<F> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.still_writing()?;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WHOLE_WRITES_BUFFER_BYTES {
            self.write_out()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.file.flush()
    }
}

impl<F: TakeBack> Drop for WholeWrites<F> {
    fn drop(&mut self) {
        if !self.failed && !self.buf.is_empty() {
            let _ = self.write_out();
        }
    }
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

    impl TakeBack for &mut FillingUp {
        fn take_back_to(&mut self, len: u64) {
            self.taken.truncate(usize::try_from(len).unwrap());
        }
    }

    #[test]
    fn whole_writes_end_at_the_last_write_out_that_succeeded_and_write_nothing_after() {
        let mut disk = FillingUp { taken: Vec::new(), room: 10 };
        let mut w = WholeWrites::new(&mut disk);
        assert_eq!(w.write(b"frame1").unwrap(), 6, "taken whole, into the buffer");
        w.flush().unwrap();
        w.write_all(b"frame2").unwrap();
        let refused = w.flush().unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(28));
        assert!(w.write_all(b"f3").is_err(), "nothing after a failure");
        drop(w);
        assert_eq!(disk.taken, b"frame1", "the part of frame2 written is taken back");
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
