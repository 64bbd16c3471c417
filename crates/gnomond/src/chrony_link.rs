//! The one task that talks to chronyd: periodic snapshots for the engine,
//! plan applies, steps and the sourcestats `gnomonctl sources` shows. One
//! owner for the command socket keeps requests in order and never
//! concurrent.

use std::{path::PathBuf, time::Duration};

use gnomon_chrony::{
    apply::PlanApplier,
    client::{ChronyClient, ClientConfig},
    sources_file::SourcesFile,
};
use gnomon_core::{chrony::SourceStatistics, engine::Input, source::SourcePlan};
use gnomon_gps::pps::read_clocks;
use tokio::sync::{mpsc, oneshot};

/// How often chronyd is asked for tracking and sources. Cheap (≈0.1 ms per
/// snapshot) and well inside `chrony-max-age`.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the engine loop asks of chronyd.
#[derive(Debug)]
pub enum ChronyJob {
    /// Take a snapshot now (after an apply, or on `reassess`).
    Poll,
    Apply(SourcePlan),
    Step,
    SourceStats(oneshot::Sender<Result<Vec<SourceStatistics>, String>>),
}

/// Where the task finds chronyd and writes the sources file.
#[derive(Debug, Clone)]
pub struct ChronyLinkConfig {
    pub server_socket: PathBuf,
    pub client_dir: PathBuf,
    pub sources_dir: PathBuf,
}

/// What the task reports besides engine inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChronyNote {
    /// A step was asked for; the words say how it went.
    Stepped(Result<(), String>),
    /// An apply needed more than one reload; the words say why.
    Repaired(String),
}

/// Runs until `jobs` closes. Inputs for the engine go to `inputs`. Jobs
/// come unbounded so that the engine loop never waits on chrony; they are
/// rare (a few per state change).
pub async fn run(
    config: ChronyLinkConfig,
    mut jobs: mpsc::UnboundedReceiver<ChronyJob>,
    inputs: mpsc::Sender<Input>,
    notes: mpsc::Sender<ChronyNote>,
) {
    let mut client =
        ChronyClient::new(ClientConfig::new(&config.server_socket, &config.client_dir));
    let applier = PlanApplier::new(SourcesFile::new(&config.sources_dir));
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let job = tokio::select! {
            _ = poll.tick() => ChronyJob::Poll,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let input = match job {
            ChronyJob::Poll => Some(snapshot(&mut client).await),
            ChronyJob::Apply(plan) => {
                let outcome = match applier.apply(&mut client, &plan).await {
                    Ok(report) => {
                        if let Some(why) = report.repaired {
                            let _ = notes.send(ChronyNote::Repaired(why)).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let applied = Input::PlanApplied { plan, outcome };
                if inputs.send(applied).await.is_err() {
                    return;
                }
                // The engine judges the new plan from chrony's view of it.
                Some(snapshot(&mut client).await)
            }
            ChronyJob::Step => {
                let outcome = client.makestep().await.map_err(|e| e.to_string());
                let _ = notes.send(ChronyNote::Stepped(outcome)).await;
                Some(snapshot(&mut client).await)
            }
            ChronyJob::SourceStats(reply) => {
                let stats = client.sourcestats().await.map_err(|e| e.to_string());
                let _ = reply.send(stats);
                None
            }
        };
        if let Some(input) = input {
            if inputs.send(input).await.is_err() {
                return;
            }
        }
    }
}

async fn snapshot(client: &mut ChronyClient) -> Input {
    let (wall, _) = read_clocks();
    match client.snapshot(wall).await {
        Ok(snapshot) => Input::Chrony(snapshot),
        Err(e) => Input::ChronyUnreachable {
            error: e.to_string(),
        },
    }
}
