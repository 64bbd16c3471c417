//! Making chrony's sources match a plan: render and write the sources file,
//! `reload sources`, read chrony's view back, and reload again while it
//! disagrees.
//!
//! The read-back is not paranoia: chrony before 4.5 compares whole lines on
//! reload, and when a source only loses `noselect` it adds the new line
//! before removing the old one; the add fails (same address) and the source
//! is gone until a second reload. A change of `noselect` alone also resets
//! the source's samples and reach in every version.

use gnomon_core::source::{plan_disagreement, SourcePlan};

use crate::{
    client::ChronyClient,
    error::ChronyError,
    sources_file::{try_render, PlanError, SourcesFile, SourcesFileError},
};

/// Reloads tried before the applier gives up on chrony agreeing.
pub const MAX_RELOADS: u32 = 3;

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The sources file content changed and was written.
    pub written: bool,
    /// `reload sources` commands sent.
    pub reloads: u32,
    /// chrony's disagreement seen after the first reload, if any (the
    /// second reload then fixed it).
    pub repaired: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("rendering the sources file: {0}")]
    Render(#[from] PlanError),
    #[error(transparent)]
    Write(#[from] SourcesFileError),
    #[error(transparent)]
    Chrony(#[from] ChronyError),
    #[error("{why} (after {reloads} reloads of {path})")]
    Disagrees {
        why: String,
        reloads: u32,
        path: String,
    },
}

/// Applies plans through one sources file.
#[derive(Debug)]
pub struct PlanApplier {
    file: SourcesFile,
}

impl PlanApplier {
    pub fn new(file: SourcesFile) -> Self {
        Self { file }
    }

    pub fn file(&self) -> &SourcesFile {
        &self.file
    }

    /// Writes the plan (only if its text changed), reloads chrony's sources
    /// and checks that chrony now has what the plan says, reloading again
    /// up to [`MAX_RELOADS`] times.
    pub async fn apply(
        &self,
        client: &mut ChronyClient,
        plan: &SourcePlan,
    ) -> Result<ApplyReport, ApplyError> {
        let text = try_render(plan)?;
        let written = self.file.write(&text)?;
        let mut report = ApplyReport {
            written,
            reloads: 0,
            repaired: None,
        };
        loop {
            client.reload_sources().await?;
            // chronyd answers a reload only once it has done it, so the
            // read-back needs no pause.
            report.reloads += 1;
            let sources = client.sources().await?;
            match plan_disagreement(plan, &sources) {
                None => return Ok(report),
                Some(why) if report.reloads >= MAX_RELOADS => {
                    return Err(ApplyError::Disagrees {
                        why,
                        reloads: report.reloads,
                        path: self.file.path().display().to_string(),
                    })
                }
                Some(why) => {
                    report.repaired.get_or_insert(why);
                }
            }
        }
    }
}
