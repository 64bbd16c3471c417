//! The offset samples behind `gnomonctl plot`, kept in memory (the newest
//! `[history] keep` worth) and in `samples.jsonl` in the state directory,
//! one JSON sample per line, so a restart keeps the plot.
//!
//! Appends are not synced: a power cut costs at most the last sample, and a
//! sync a minute would wear an SD card for nothing. The file is rewritten
//! atomically to the newest samples once it has grown by a quarter past the
//! capacity. Reading never fails the daemon: unreadable lines (a torn last
//! line, a hand edit) are skipped and counted.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use gnomon_chrony::atomic_file;
use gnomon_core::samples::Sample;

use crate::persist::{PersistError, PersistOperation, StateStore};

/// The samples file, in the state directory.
pub const SAMPLES_FILE: &str = "samples.jsonl";

const FILE_MODE: u32 = 0o640;

/// A sample line is a few hundred bytes; a longer line is not one.
const MAX_LINE_BYTES: u64 = 16 * 1024;

/// The newest samples, oldest first, at most `capacity`.
#[derive(Debug, Clone)]
pub struct SampleRing {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl SampleRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        while self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    pub fn oldest(&self) -> Option<&Sample> {
        self.samples.front()
    }
}

/// What [`SampleLog::load`] found.
#[derive(Debug)]
pub struct LoadedSamples {
    pub ring: SampleRing,
    /// Lines skipped, in words, for the log (at most a few, then a count).
    pub problems: Vec<String>,
    /// Reading the file failed (not a bad line: the file itself), so
    /// `ring` may lack samples that are on disk.
    pub read_error: Option<io::Error>,
}

/// `samples.jsonl` in the state directory.
#[derive(Debug)]
pub struct SampleLog {
    store: StateStore,
    path: PathBuf,
    capacity: usize,
    /// Lines in the file, when known; a rewrite is due past `compact_above`.
    lines: Option<usize>,
}

impl SampleLog {
    pub fn new(state_dir: impl Into<PathBuf>, capacity: usize) -> Self {
        let store = StateStore::new(state_dir);
        let path = store.dir().join(SAMPLES_FILE);
        Self {
            store,
            path,
            capacity: capacity.max(1),
            lines: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn compact_above(&self) -> usize {
        self.capacity.saturating_add((self.capacity / 4).max(16))
    }

    /// Reads the file: the newest `capacity` readable samples. A missing
    /// file is an empty history; an unreadable one is reported and left
    /// alone (the next rewrite replaces it).
    pub fn load(&mut self) -> LoadedSamples {
        let mut ring = SampleRing::new(self.capacity);
        let mut problems = Vec::new();
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.lines = Some(0);
                return LoadedSamples {
                    ring,
                    problems,
                    read_error: None,
                };
            }
            Err(e) => {
                problems.push(format!("reading {}: {e}", self.path.display()));
                return LoadedSamples {
                    ring,
                    problems,
                    read_error: Some(e),
                };
            }
        };
        let mut reader = BufReader::new(file);
        let shown = self.path.display().to_string();
        let (mut lines, mut bad) = (0_usize, 0_usize);
        let mut read_error = None;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // Bounded: a line longer than any sample is read in part, then
            // the rest of it is skipped.
            let n = match reader
                .by_ref()
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut buf)
            {
                Ok(n) => n,
                Err(e) => {
                    problems.push(format!(
                        "reading {} after {lines} lines: {e}",
                        self.path.display()
                    ));
                    read_error = Some(e);
                    break;
                }
            };
            if n == 0 {
                break;
            }
            lines += 1;
            if buf.last() != Some(&b'\n') && n as u64 >= MAX_LINE_BYTES {
                let mut rest = Vec::new();
                let _ = reader.read_until(b'\n', &mut rest);
                bad += 1;
                note(&mut problems, &shown, bad, lines, "longer than any sample");
                continue;
            }
            match serde_json::from_slice::<Sample>(&buf) {
                Ok(sample) => ring.push(sample),
                Err(e) => {
                    bad += 1;
                    note(&mut problems, &shown, bad, lines, &e.to_string());
                }
            }
        }
        if bad > MAX_NOTED {
            problems.push(format!(
                "{}: {bad} unreadable lines skipped in all",
                self.path.display()
            ));
        }
        // A damaged file is rewritten clean at the next append.
        self.lines = Some(if bad > 0 { usize::MAX } else { lines });
        LoadedSamples {
            ring,
            problems,
            read_error,
        }
    }

    /// Appends `sample`; then, when the file has grown a quarter past the
    /// capacity or was found damaged, rewrites it to its newest readable
    /// samples (read back from the file, so the writer keeps no second copy
    /// of the history in memory).
    pub fn append(&mut self, sample: &Sample) -> Result<(), PersistError> {
        self.store.ensure_dir()?;
        let lines = match self.lines {
            Some(n) => n,
            None => count_lines(&self.path)
                .map_err(PersistError::io(PersistOperation::Reading, &self.path))?,
        };
        let mut line = serde_json::to_vec(sample).map_err(|error| PersistError::Encoding {
            what: "a sample",
            path: self.path.clone(),
            error,
        })?;
        line.push(b'\n');
        self.lines = None;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(PersistError::io(PersistOperation::Opening, &self.path))?;
        let old_len = file
            .metadata()
            .map_err(PersistError::io(PersistOperation::Opening, &self.path))?
            .len();
        if let Err(e) = file.write_all(&line) {
            // A fragment left behind is skipped by the next read.
            let _ = file.set_len(old_len);
            return Err(PersistError::io(PersistOperation::Appending, &self.path)(e));
        }
        let lines = lines.saturating_add(1);
        self.lines = Some(lines);
        if lines > self.compact_above() {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with its newest readable samples, atomically.
    fn rewrite(&mut self) -> Result<(), PersistError> {
        let loaded = self.load();
        if let Some(e) = loaded.read_error {
            // Rewriting from a partial read would lose the rest.
            self.lines = None;
            return Err(PersistError::io(PersistOperation::Reading, &self.path)(e));
        }
        let ring = loaded.ring;
        let mut bytes = Vec::with_capacity(ring.len().saturating_mul(256));
        for s in ring.iter() {
            serde_json::to_writer(&mut bytes, s).map_err(|error| PersistError::Encoding {
                what: "a sample",
                path: self.path.clone(),
                error,
            })?;
            bytes.push(b'\n');
        }
        self.lines = None;
        atomic_file::replace(&self.path, &bytes, FILE_MODE)?;
        // replace() honours the umask; keep the file group-readable only.
        let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(FILE_MODE));
        self.lines = Some(ring.len());
        Ok(())
    }
}

/// The first few unreadable lines are named; the rest only counted.
const MAX_NOTED: usize = 3;

fn note(problems: &mut Vec<String>, path: &str, bad: usize, line: usize, why: &str) {
    if bad <= MAX_NOTED {
        problems.push(format!("{path}: line {line} skipped: {why}"));
    }
}

fn count_lines(path: &Path) -> io::Result<usize> {
    match File::open(path) {
        Ok(f) => {
            let mut n = 0_usize;
            let mut reader = BufReader::new(f);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if reader.read_until(b'\n', &mut buf)? == 0 {
                    return Ok(n);
                }
                n += 1;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use gnomon_core::{
        engine::EngineState,
        samples::SourceOffset,
        time::{Offset, WallTime},
    };

    use super::*;

    fn sample(i: i64) -> Sample {
        Sample {
            at: WallTime::from_unix_secs(1_790_000_000 + i * 60),
            state: EngineState::Primary,
            fallbacks_engaged: false,
            gps: Some(Offset::from_nanos(i)),
            gps_from_pps: true,
            chrony: None,
            sources: vec![SourceOffset {
                source: "PPS".into(),
                offset: Offset::from_nanos(-i),
            }],
        }
    }

    fn fill(log: &mut SampleLog, ring: &mut SampleRing, range: std::ops::Range<i64>) {
        for i in range {
            let s = sample(i);
            ring.push(s.clone());
            log.append(&s).unwrap();
        }
    }

    #[test]
    fn survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut log = SampleLog::new(&state, 100);
        let mut ring = SampleRing::new(100);
        fill(&mut log, &mut ring, 0..1000);
        assert_eq!(ring.len(), 100);
        let lines = fs::read_to_string(log.path()).unwrap().lines().count();
        assert!((100..=125).contains(&lines), "{lines} lines on disk");

        let loaded = SampleLog::new(&state, 100).load();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let got: Vec<Sample> = loaded.ring.iter().cloned().collect();
        let want: Vec<Sample> = ring.iter().cloned().collect();
        assert_eq!(got, want);
        assert_eq!(got.last().unwrap(), &sample(999));
        let mode = fs::metadata(log.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn a_torn_or_damaged_line_is_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SampleLog::new(dir.path(), 50);
        let mut ring = SampleRing::new(50);
        fill(&mut log, &mut ring, 0..10);
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"at\":17,\"sta").unwrap(); // a power cut mid-write
        f.write_all(b"\nnot json at all\n").unwrap();
        f.write_all(&vec![b'x'; 40_000]).unwrap(); // no sample is this long
        f.write_all(b"\n").unwrap();
        let s = serde_json::to_string(&sample(10)).unwrap();
        writeln!(f, "{s}").unwrap();
        drop(f);

        let mut log = SampleLog::new(dir.path(), 50);
        let loaded = log.load();
        assert_eq!(loaded.ring.len(), 11);
        assert_eq!(loaded.problems.len(), 3, "{:?}", loaded.problems);
        assert!(
            loaded.problems[0].contains("line 11 skipped"),
            "{:?}",
            loaded.problems
        );
        assert!(loaded.problems[2].contains("longer than any sample"));

        // The next append rewrites the damaged file clean.
        log.append(&sample(11)).unwrap();
        let reloaded = SampleLog::new(dir.path(), 50).load();
        assert!(reloaded.problems.is_empty(), "{:?}", reloaded.problems);
        assert_eq!(reloaded.ring.len(), 12);
    }

    #[test]
    fn a_missing_file_is_an_empty_history_and_an_unwritable_dir_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SampleLog::new(dir.path().join("none"), 10);
        let loaded = log.load();
        assert!(loaded.ring.is_empty() && loaded.problems.is_empty());

        // The state directory's place is taken by a file.
        let blocked = dir.path().join("blocked");
        fs::write(&blocked, b"").unwrap();
        let mut log = SampleLog::new(&blocked, 10);
        let err = log.append(&sample(0)).unwrap_err();
        assert!(err.to_string().contains("blocked"), "{err}");
    }
}
