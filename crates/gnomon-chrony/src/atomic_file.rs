//! Replacing a file atomically, so that a reader or a crash sees the old
//! content or the new, never a mix: a temporary file beside the target,
//! written, synced, renamed over the target, then the directory synced.
//! The one writer of this kind in gnomon (chrony's sources file, gnomond's
//! state).

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// What was being done when a file could not be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOperation {
    Reading,
    Creating,
    Writing,
    Syncing,
    Renaming,
    SyncingDirectory,
}

impl fmt::Display for FileOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOperation::Reading => "reading",
            FileOperation::Creating => "creating",
            FileOperation::Writing => "writing",
            FileOperation::Syncing => "syncing",
            FileOperation::Renaming => "renaming into place",
            FileOperation::SyncingDirectory => "syncing directory",
        })
    }
}

/// The OS refused a step of the replacement. The message names the step
/// and the path, e.g. `writing /var/lib/gnomon/state.json.tmp: No space
/// left on device (os error 28)`.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {}: {error}", path.display())]
pub struct AtomicWriteError {
    pub operation: FileOperation,
    pub path: PathBuf,
    pub error: io::Error,
}

impl AtomicWriteError {
    /// The disk (or the filesystem's quota) is full.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self.error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }
}

/// The temporary file used to replace `target`: `<name>.tmp` in the same
/// directory, so the rename never crosses filesystems. Its name ends in
/// `.tmp`, so a reader that only looks at its own suffix (chrony reads
/// `*.sources`) never sees a half-written file.
pub fn temp_path(target: &Path) -> Option<PathBuf> {
    let name = target.file_name()?;
    let mut temp = name.to_os_string();
    temp.push(".tmp");
    Some(target.with_file_name(temp))
}

/// Replaces `target` with `bytes`, the new file having `mode` whatever the
/// umask.
///
/// On error the temporary file is removed and the old file is untouched,
/// except after a failed directory sync, where the new content is in place
/// but may not survive a power loss.
pub fn replace(target: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    replace_with(target, mode, |file| file.write_all(bytes))
}

/// [`replace`] with the step that fills the temporary file passed in, for
/// content written piecewise and for tests that make it fail like a full
/// disk.
pub fn replace_with(
    target: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let io_err = |operation, path: &Path| {
        let path = path.to_owned();
        move |error| AtomicWriteError {
            operation,
            path,
            error,
        }
    };
    let temp = temp_path(target).ok_or_else(|| AtomicWriteError {
        operation: FileOperation::Creating,
        path: target.to_owned(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };

    let (mut file, guard) =
        create_temp(&temp, mode).map_err(io_err(FileOperation::Creating, &temp))?;
    fill(&mut file).map_err(io_err(FileOperation::Writing, &temp))?;
    file.sync_all()
        .map_err(io_err(FileOperation::Syncing, &temp))?;
    drop(file);
    fs::rename(&temp, target).map_err(io_err(FileOperation::Renaming, target))?;
    guard.disarm();
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err(FileOperation::SyncingDirectory, dir))
}

/// Creates the temporary file exclusively. A file of that name can only be
/// left over from a crash mid-write (errors remove it), so it is removed and
/// creation tried once more.
fn create_temp(temp: &Path, mode: u32) -> io::Result<(File, TempGuard<'_>)> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(temp)
    };
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp)?;
            open()?
        }
        other => other?,
    };
    let guard = TempGuard { path: Some(temp) };
    // Readers running as another user (chronyd) must not lose access to a
    // restrictive umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok((file, guard))
}

/// Removes the temporary file unless it was renamed into place.
struct TempGuard<'a> {
    path: Option<&'a Path>,
}

impl TempGuard<'_> {
    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.path {
            // Best effort: the write already failed and that error is what
            // the caller needs to see.
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temp_file_is_beside_the_target() {
        assert_eq!(
            temp_path(Path::new("/var/lib/gnomon/state.json")),
            Some(PathBuf::from("/var/lib/gnomon/state.json.tmp"))
        );
        assert_eq!(
            temp_path(Path::new("state.json")),
            Some(PathBuf::from("state.json.tmp"))
        );
        assert_eq!(temp_path(Path::new("/")), None);
    }

    #[test]
    fn replaces_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        fs::write(&target, "old").unwrap();
        let old_ino = fs::metadata(&target).unwrap().ino();
        replace(&target, b"new", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_ne!(meta.ino(), old_ino, "replaced by rename, not rewritten");
        assert_eq!(names_in(dir.path()), vec!["state.json"]);
    }

    #[test]
    fn failed_fill_keeps_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        fs::write(&target, "old").unwrap();
        let err = replace_with(&target, 0o640, |f| {
            f.write_all(b"ne")?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .unwrap_err();
        assert!(err.is_no_space());
        assert_eq!(err.operation, FileOperation::Writing);
        assert_eq!(
            err.to_string(),
            format!(
                "writing {}: No space left on device (os error 28)",
                dir.path().join("state.json.tmp").display()
            )
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(names_in(dir.path()), vec!["state.json"]);
    }

    #[test]
    fn rename_onto_a_directory_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "x").unwrap();
        let err = replace(&target, b"new", 0o640).unwrap_err();
        assert_eq!(err.operation, FileOperation::Renaming);
        assert_eq!(err.path, target);
        assert!(!err.is_no_space());
        assert_eq!(names_in(dir.path()), vec!["state.json"]);
    }
}
