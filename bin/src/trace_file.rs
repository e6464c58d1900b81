//! The file a trace (`simulate --trace`, `report --chrome`) is written to: whole or not at
//! all (see [`TraceFile`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file a trace is written to, opened before the work it traces so that a path that
/// cannot be written is refused before that work, not after it.
///
/// A regular file (or a new one) is written to a temporary file beside it and renamed over it
/// once written whole: a failed or interrupted run leaves an earlier trace as it was, and no
/// half-written one. Anything else that is not a folder (`/dev/null`, a pipe) is written to as
/// it is, and never removed.
pub struct TraceFile {
    path: PathBuf,
    out: Out,
}

enum Out {
    /// Renamed over the path by [`TraceFile::finish`]; removed if dropped before, or should
    /// the process be interrupted.
    Beside {
        // Declared first, so dropped first: removed before it is unregistered.
        temporary: tempfile::NamedTempFile,
        _interrupted_removes: crate::interrupt::Registered,
    },
    InPlace(File),
}

impl TraceFile {
    /// Opens the trace's file for `path`.
    ///
    /// # Errors
    ///
    /// `path` is a folder, or its folder cannot take a new file, or it cannot be opened.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let cannot = || format!("cannot create {}", path.display());
        let out = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => anyhow::bail!("{}: it is a folder", cannot()),
            Ok(meta) if !meta.is_file() => Out::InPlace(
                std::fs::OpenOptions::new().write(true).open(path).with_context(cannot)?,
            ),
            _ => {
                let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
                // The mode `File::create` would give (before the umask), as the pack writer's
                // temporary file has, not a temporary file's 0600.
                let temporary = tempfile::Builder::new()
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                    .tempfile_in(folder.unwrap_or(Path::new(".")))
                    .with_context(cannot)?;
                let registered = crate::interrupt::Registered::new(temporary.path());
                Out::Beside { temporary, _interrupted_removes: registered }
            }
        };
        Ok(Self { path: path.to_owned(), out })
    }

    /// The file to write the trace to.
    pub fn as_file(&self) -> &File {
        match &self.out {
            Out::Beside { temporary, .. } => temporary.as_file(),
            Out::InPlace(file) => file,
        }
    }

    /// Puts the written trace at its path.
    ///
    /// # Errors
    ///
    /// The temporary file could not be renamed over the path.
    pub fn finish(self) -> std::io::Result<()> {
        match self.out {
            Out::Beside { temporary, _interrupted_removes } => {
                temporary.persist(&self.path).map(drop).map_err(|e| e.error)
            }
            Out::InPlace(_) => Ok(()),
        }
    }
}

impl TraceFile {
    /// The path the trace goes to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
