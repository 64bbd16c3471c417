//! Finding the system programs the lab runs (chronyd, journald, ip,
//! unshare, ...). A missing program is an error that says what to install:
//! tests that need one fail, they never skip.

use std::{io, path::PathBuf};

/// `$env` if set (it must name a file), else `name` in PATH, else in
/// `dirs`; the error names where it looked and `hint` says what to install.
pub fn find(name: &str, env: Option<&str>, dirs: &[&str], hint: &str) -> io::Result<PathBuf> {
    if let Some(var) = env {
        if let Some(path) = std::env::var_os(var) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("${var} names {}, which is not a file", path.display()),
                ))
            };
        }
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let mut looked = format!("PATH, {}", dirs.join(", "));
            if let Some(var) = env {
                looked.push_str(&format!(" (or ${var})"));
            }
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{name} not found in {looked}: {hint}; what needs it fails rather than skips"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_dirs_and_names_what_is_missing() {
        assert!(find("sh", None, &["/bin", "/usr/bin"], "x")
            .unwrap()
            .is_file());
        let e = find(
            "gnomon-no-such-program",
            None,
            &["/nonexistent"],
            "install nothing",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent") && e.contains("install nothing"),
            "{e}"
        );
    }
}
