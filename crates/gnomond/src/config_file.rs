//! Reading `gnomon.toml` from disk: the file's errors name the path, and a
//! config that anyone may rewrite is flagged (it decides which servers set
//! the clock).

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use gnomon_core::config::{Config, ConfigError, ConfigProblem};

/// Where gnomond looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/gnomon/gnomon.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading configuration {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("configuration {}: {error}", path.display())]
    Invalid { path: PathBuf, error: ConfigError },
}

/// Reads and checks the file; warnings come back with the config.
pub fn load(path: &Path) -> Result<(Config, Vec<ConfigProblem>), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    let (config, mut problems) = Config::load(&text).map_err(|error| ConfigFileError::Invalid {
        path: path.to_owned(),
        error,
    })?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o002 != 0 {
            problems.push(ConfigProblem::warning(
                "(file)",
                format!(
                    "{} is world-writable: any local user could choose the servers that set \
                     this clock; chmod o-w it",
                    path.display()
                ),
            ));
        }
    }
    Ok((config, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_and_world_writable_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "role = \"sundial\"\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("line 1"), "{e}");

        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "role = \"client\"\n[[primary.servers]]\naddress = \"192.0.2.1\"\n\
             [[fallback.servers]]\naddress = \"192.0.2.9\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (_, problems) = load(&good).unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("world-writable")),
            "{problems:?}"
        );
    }
}
