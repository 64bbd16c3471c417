//! A small tmpfs mounted for one test (a disk that fills up or turns
//! read-only on demand), unmounted when dropped. Needs root; mounting
//! fails loudly otherwise.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

#[derive(Debug)]
pub struct Tmpfs {
    dir: TempDir,
}

fn run(cmd: &mut Command, what: &str) -> io::Result<()> {
    let status = cmd
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run it ({e})")))?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({status}): this needs root"
        )))
    }
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `size=16k,mode=0755`) on a new
    /// temporary directory.
    pub fn mount(options: &str) -> io::Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(dir.path()),
            &format!("mounting a tmpfs ({options}) on {}", dir.path().display()),
        )?;
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn remount_read_only(&self) -> io::Result<()> {
        run(
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(self.path()),
            &format!("remounting {} read-only", self.path().display()),
        )
    }

    /// Writes a file under the mount until the filesystem refuses another
    /// byte; returns its path (remove it to free the space).
    pub fn fill(&self) -> io::Result<PathBuf> {
        let filler = self.path().join("filler");
        let mut file = fs::File::create(&filler)?;
        let chunk = vec![0_u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(filler),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                    return Ok(filler)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
