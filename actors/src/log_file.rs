//! The files a runtime writes its logs to: the telemetry file and the replay log.
//!
//! Either may be a named pipe that a tool reads as the session runs. Opening a pipe no one
//! reads blocks until a reader comes, which would hold the runtime's build for ever:
//! [`create`] opens without blocking, so such a pipe is refused at once (`ENXIO`), then lets
//! the writes block as a file's do.

use std::fs::File;
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
