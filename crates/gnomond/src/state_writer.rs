//! Persistence as a task of its own: the engine loop hands over what to
//! write and goes on; a thread does the blocking writes and fsyncs (an SD
//! card can take a while) and reports each outcome back as an engine input.

use std::thread;

use gnomon_core::{
    engine::{Decision, Input, PersistedState},
    samples::Sample,
};
use tokio::sync::{mpsc, oneshot};

use crate::{persist::StateStore, samples::SampleLog};

/// What to write.
#[derive(Debug)]
pub enum StateJob {
    State(PersistedState),
    Decision(Box<Decision>),
    /// One more offset sample for `samples.jsonl`.
    Sample(Box<Sample>),
    /// Write this state, then stop and say so.
    Final(PersistedState, oneshot::Sender<Result<(), String>>),
}

/// Starts the writer thread over `store` and `samples`. Outcomes go to
/// `inputs` as [`Input::StateSaved`]; a failure to append a decision or a
/// sample is reported the same way (the state directory is not writable
/// either way).
pub fn spawn(
    mut store: StateStore,
    mut samples: SampleLog,
    inputs: mpsc::Sender<Input>,
) -> std::io::Result<mpsc::UnboundedSender<StateJob>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    thread::Builder::new()
        .name("gnomon-state".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                let outcome = match job {
                    StateJob::State(state) => store.save_state(&state).map_err(|e| e.to_string()),
                    StateJob::Decision(d) => {
                        match store.append_decision(&d).map_err(|e| e.to_string()) {
                            // A decision written is not news for the engine.
                            Ok(()) => continue,
                            Err(e) => Err(e),
                        }
                    }
                    StateJob::Sample(sample) => match samples.append(&sample) {
                        Ok(()) => continue,
                        Err(e) => Err(e.to_string()),
                    },
                    StateJob::Final(state, done) => {
                        let _ = done.send(store.save_state(&state).map_err(|e| e.to_string()));
                        return;
                    }
                };
                if inputs.blocking_send(Input::StateSaved { outcome }).is_err() {
                    return;
                }
            }
        })?;
    Ok(tx)
}
