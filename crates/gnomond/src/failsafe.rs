//! The fail-safe: what chrony keeps while gnomond is not running. gnomond
//! must never be a single point of failure, so whenever it stops (cleanly,
//! killed, crashed, or refusing a broken configuration) systemd runs
//! `gnomond --fail-safe`, which leaves chrony with every configured source
//! selectable; at boot, chrony.service's drop-in copies the stored file
//! into place before chronyd starts. gnomond takes over from that file
//! when it starts ([`in_place`], `Engine::take_over_failsafe`).
//!
//! The file is rendered from the configuration when it loads, else the
//! copy kept in the state directory by the last gnomond that ran with a
//! good configuration is used.

use std::{
    io,
    path::{Path, PathBuf},
};

use gnomon_chrony::{
    client::{ChronyClient, ClientConfig},
    sources_file::{self, PlanError, SourcesFile, SourcesFileError},
};
use gnomon_core::{
    config::{Config, Paths},
    engine::failsafe_plan,
};

use crate::{config_file, exit, persist::StateStore};

/// The copy of the fail-safe file in the state directory.
pub const STORED_NAME: &str = "failsafe.sources";

/// Why the fail-safe could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum FailsafeError {
    #[error("rendering the fail-safe sources: {0}")]
    Plan(#[from] PlanError),
    #[error("writing the fail-safe sources: {0}")]
    Write(#[from] SourcesFileError),
    #[error("reading the stored fail-safe sources {path}: {error}")]
    ReadStored { path: PathBuf, error: io::Error },
    #[error("the stored fail-safe sources {path} are not a gnomon fail-safe file; left unused")]
    NotFailsafe { path: PathBuf },
}

/// The fail-safe file for a configuration.
pub fn render(config: &Config) -> Result<String, PlanError> {
    sources_file::try_render_failsafe(&failsafe_plan(config))
}

/// Keeps the fail-safe file for `config` in its state directory, for a
/// stop with a configuration that no longer loads and for chrony's start at
/// boot. `Ok(false)` when the stored copy was current already (no write).
pub fn store(config: &Config) -> Result<bool, FailsafeError> {
    let text = render(config)?;
    let file = SourcesFile::with_name(&config.paths.state_dir, STORED_NAME)?;
    Ok(file.write(&text)?)
}

/// Whether chrony's sources file in `sources_dir` is the fail-safe file,
/// i.e. gnomond starts over a chrony that was left on its own.
pub fn in_place(sources_dir: &Path) -> bool {
    matches!(
        SourcesFile::new(sources_dir).read_back(),
        Ok(Some(text)) if sources_file::is_failsafe(&text)
    )
}

/// What `gnomond --fail-safe` will install, and from where.
#[derive(Debug)]
struct Prepared {
    paths: Paths,
    text: String,
    from: String,
}

fn prepare(config_path: &Path) -> Result<Prepared, FailsafeError> {
    match config_file::load(config_path) {
        Ok((config, _)) => {
            let text = render(&config)?;
            if let Err(e) = store(&config) {
                tracing::warn!(
                    "fail-safe: keeping a copy in {}: {e}",
                    config.paths.state_dir
                );
            }
            Ok(Prepared {
                paths: config.paths,
                text,
                from: format!("rendered from {}", config_path.display()),
            })
        }
        Err(e) => {
            // The state directory of a configuration that does not load is
            // unknown: the packaged default is where the copy was kept.
            let paths = Paths::default();
            let stored = Path::new(&paths.state_dir).join(STORED_NAME);
            tracing::warn!(
                "fail-safe: {e}; using the copy kept by the last good configuration, {}",
                stored.display()
            );
            let text =
                std::fs::read_to_string(&stored).map_err(|error| FailsafeError::ReadStored {
                    path: stored.clone(),
                    error,
                })?;
            if !sources_file::is_failsafe(&text) {
                return Err(FailsafeError::NotFailsafe { path: stored });
            }
            Ok(Prepared {
                paths,
                text,
                from: format!("the stored copy {}", stored.display()),
            })
        }
    }
}

/// `gnomond --fail-safe`: puts the fail-safe file in chrony's sourcedir and
/// asks chronyd to reload its sources. Under a freeze it changes nothing
/// (the operator asked for hands off). Returns the exit code.
pub fn install(config_path: &Path) -> u8 {
    let prepared = match prepare(config_path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("fail-safe: nothing installed: {e}");
            return exit::CONFIG;
        }
    };
    let restored = StateStore::new(&prepared.paths.state_dir).load();
    if let Some(freeze) = &restored.state.freeze {
        tracing::warn!(
            "fail-safe: gnomon is frozen ({}): chrony's sources are left as they are",
            freeze.reason
        );
        return exit::OK;
    }
    let file = SourcesFile::new(&prepared.paths.sources_dir);
    let changed = match file.write(&prepared.text) {
        Ok(changed) => changed,
        Err(e) => {
            tracing::error!("fail-safe: {e}");
            return if e.io_kind() == Some(io::ErrorKind::PermissionDenied) {
                exit::NOPERM
            } else {
                exit::OSERR
            };
        }
    };
    if !changed {
        tracing::info!(
            "fail-safe: {} already holds the fail-safe sources",
            file.path().display()
        );
        return exit::OK;
    }
    let reloaded = reload(&prepared.paths);
    match reloaded {
        Ok(()) => tracing::info!(
            "fail-safe: every source selectable while gnomond is not running ({}, {}); chronyd reloaded its sources",
            file.path().display(),
            prepared.from
        ),
        // chronyd reads the file when it starts: nothing is lost.
        Err(e) => tracing::warn!(
            "fail-safe: wrote {} ({}), but chronyd did not reload: {e}; it reads the file when it starts",
            file.path().display(),
            prepared.from
        ),
    }
    exit::OK
}

fn reload(paths: &Paths) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let mut client =
            ChronyClient::new(ClientConfig::new(&paths.chrony_socket, &paths.runtime_dir));
        // Twice: chrony before 4.5 loses a source whose line only drops
        // `noselect` on the first reload and adds it back on the second
        // (see gnomon_chrony::apply); a reload of unchanged lines keeps
        // every source as it is.
        for _ in 0..2 {
            client.reload_sources().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::example_client();
        config.paths.state_dir = dir.join("state").display().to_string();
        config.paths.sources_dir = dir.join("sources").display().to_string();
        config
    }

    #[test]
    fn stored_copy_is_the_failsafe_file_and_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        std::fs::create_dir_all(&config.paths.state_dir).unwrap();
        assert!(store(&config).unwrap());
        assert!(
            !store(&config).unwrap(),
            "an unchanged copy is not rewritten"
        );
        let text =
            std::fs::read_to_string(Path::new(&config.paths.state_dir).join(STORED_NAME)).unwrap();
        assert!(sources_file::is_failsafe(&text));
        assert!(!text.contains("noselect"), "{text}");
        // Every configured source is in it: the primary and four fallbacks.
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(lines, 5, "{text}");
    }

    #[test]
    fn in_place_tells_the_failsafe_file_from_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let sources = Path::new(&config.paths.sources_dir);
        std::fs::create_dir_all(sources).unwrap();
        assert!(!in_place(sources), "no file");
        let file = SourcesFile::new(sources);
        file.write(&render(&config).unwrap()).unwrap();
        assert!(in_place(sources));
        file.write(&sources_file::render(&failsafe_plan(&config)))
            .unwrap();
        assert!(!in_place(sources), "gnomond's own plan");
    }
}
