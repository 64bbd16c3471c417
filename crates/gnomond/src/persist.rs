//! What gnomond remembers across restarts, under the state directory: the
//! engine's [`PersistedState`] (`state.json`, replaced atomically), the
//! decision history (`history.jsonl`, one decision per line, appended and
//! synced), and the operator's time-floor file.
//!
//! Reading never fails: a damaged file is reported, kept aside and replaced
//! by defaults, because a daemon that refuses to start over a bad state file
//! would leave chrony unwatched exactly after a power cut. Writing returns a
//! [`PersistError`] that the daemon turns into an alert.

use std::{
    collections::{vec_deque, VecDeque},
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use gnomon_chrony::atomic_file::{self, AtomicWriteError, FileOperation};
use gnomon_core::{
    engine::{Decision, PersistedState},
    time::WallTime,
};
use serde::Serialize;

/// How many decisions the history keeps.
pub const HISTORY_CAPACITY: usize = 1000;

/// The engine's state, in the state directory.
pub const STATE_FILE: &str = "state.json";

/// The decision history, in the state directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The history file is rewritten to its newest [`HISTORY_CAPACITY`] lines
/// once it would hold more than this: appends stay cheap and the file
/// stays bounded.
const HISTORY_COMPACT_ABOVE: usize = 2 * HISTORY_CAPACITY;

/// `state.json`'s format. Raised only for a change an older gnomond would
/// misread; new fields alone do not need it (older readers ignore them and
/// a missing field takes its default).
const STATE_FORMAT: u64 = 1;

/// A real state file is a few hundred bytes; anything far larger is not
/// gnomon's and is not read into memory.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// The operator's floor file holds one time and some comments.
const MAX_FLOOR_FILE_BYTES: u64 = 4096;

const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;

/// What was being done when the state could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistOperation {
    CreatingDirectory,
    Reading,
    Opening,
    Appending,
    Syncing,
    SyncingDirectory,
    /// A step of replacing a whole file atomically.
    Replacing(FileOperation),
}

impl fmt::Display for PersistOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PersistOperation::CreatingDirectory => "creating directory",
            PersistOperation::Reading => "reading",
            PersistOperation::Opening => "opening",
            PersistOperation::Appending => "appending to",
            PersistOperation::Syncing => "syncing",
            PersistOperation::SyncingDirectory => "syncing directory",
            PersistOperation::Replacing(op) => return op.fmt(f),
        })
    }
}

/// Why the state or the history could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The OS refused; e.g. `writing /var/lib/gnomon/state.json.tmp: No
    /// space left on device (os error 28)`.
    #[error("{operation} {}: {error}", path.display())]
    Io {
        operation: PersistOperation,
        path: PathBuf,
        error: io::Error,
    },
    #[error("encoding {what} for {}: {error}", path.display())]
    Encoding {
        what: &'static str,
        path: PathBuf,
        error: serde_json::Error,
    },
}

impl PersistError {
    /// The disk (or the filesystem's quota) is full: the operator must free
    /// space, nothing in gnomon can fix it.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self.io_kind(),
            Some(io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        )
    }

    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            PersistError::Io { error, .. } => Some(error.kind()),
            PersistError::Encoding { .. } => None,
        }
    }

    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PersistError::Io { path, .. } | PersistError::Encoding { path, .. } => path,
        }
    }

    pub(crate) fn io(
        operation: PersistOperation,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> PersistError {
        let path = path.to_owned();
        move |error| PersistError::Io {
            operation,
            path,
            error,
        }
    }
}

impl From<AtomicWriteError> for PersistError {
    fn from(e: AtomicWriteError) -> Self {
        PersistError::Io {
            operation: PersistOperation::Replacing(e.operation),
            path: e.path,
            error: e.error,
        }
    }
}

/// The newest decisions, oldest first, at most [`HISTORY_CAPACITY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionHistory {
    entries: VecDeque<Decision>,
}

impl DecisionHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the newest decision, dropping the oldest when full.
    pub fn push(&mut self, d: Decision) {
        if self.entries.len() >= HISTORY_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(d);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest `n` decisions, oldest first.
    pub fn newest(&self, n: usize) -> Vec<Decision> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).cloned().collect()
    }

    /// Every decision kept, oldest first.
    pub fn iter(&self) -> vec_deque::Iter<'_, Decision> {
        self.entries.iter()
    }
}

impl<'a> IntoIterator for &'a DecisionHistory {
    type Item = &'a Decision;
    type IntoIter = vec_deque::Iter<'a, Decision>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What [`StateStore::load`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    pub state: PersistedState,
    pub history: DecisionHistory,
    /// What was wrong and what was done about it, one sentence each, for
    /// the log. Empty on a clean start (including a first start).
    pub problems: Vec<String>,
}

/// What the history file held when last read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HistoryFileShape {
    /// Newline-terminated lines, readable or not.
    lines: usize,
    /// A torn last line or unreadable lines: appending after them would
    /// glue the new line to a fragment, so the file is rewritten first.
    damaged: bool,
}

/// gnomond's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStore {
    dir: PathBuf,
    /// `None` until the first append reads the file, and again after a
    /// failed append, whose partial line may be on disk.
    history_shape: Option<HistoryFileShape>,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            history_shape: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn history_path(&self) -> PathBuf {
        self.dir.join(HISTORY_FILE)
    }

    /// Reads the state and the history. Never fails: whatever is missing,
    /// unreadable, corrupt, truncated or of a newer format is listed in
    /// [`Restored::problems`] and replaced by defaults. A damaged state file
    /// is renamed to `state.json.corrupt` (one of a newer format to
    /// `state.json.newer`), so nothing is lost. A history file with a torn
    /// last line or unreadable lines is rewritten without them, the
    /// unreadable ones first copied to `history.jsonl.corrupt`.
    pub fn load(&self) -> Restored {
        let mut problems = Vec::new();
        let state = self.load_state(&mut problems);
        let history = self.load_history(&mut problems);
        Restored {
            state,
            history,
            problems,
        }
    }

    fn load_state(&self, problems: &mut Vec<String>) -> PersistedState {
        let path = self.state_path();
        let bytes = match read_capped(&path, MAX_STATE_BYTES) {
            Ok(bytes) => bytes,
            // A first start.
            Err(ReadProblem::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                return PersistedState::default()
            }
            Err(ReadProblem::Io(e)) => {
                problems.push(format!(
                    "reading {}: {e}; starting from the default state",
                    path.display()
                ));
                return PersistedState::default();
            }
            Err(ReadProblem::TooLarge) => {
                let aside = set_aside(&path, "corrupt");
                problems.push(format!(
                    "{} is larger than {MAX_STATE_BYTES} bytes, not gnomon's state; {}, starting from the default state",
                    path.display(),
                    describe_aside(&aside),
                ));
                return PersistedState::default();
            }
        };
        match decode_state(&bytes) {
            Ok(state) => state,
            Err(problem) => {
                let suffix = match problem {
                    StateProblem::NewerFormat(_) => "newer",
                    _ => "corrupt",
                };
                let aside = set_aside(&path, suffix);
                problems.push(format!(
                    "{} {problem}; {}, starting from the default state",
                    path.display(),
                    describe_aside(&aside),
                ));
                PersistedState::default()
            }
        }
    }

    fn load_history(&self, problems: &mut Vec<String>) -> DecisionHistory {
        let path = self.history_path();
        let scan = match scan_history(&path) {
            Ok(scan) => scan,
            Err(e) => {
                problems.push(format!(
                    "reading {}: {e}; starting with an empty decision history",
                    path.display()
                ));
                return DecisionHistory::new();
            }
        };
        if let Some(line) = scan.torn_line {
            problems.push(format!(
                "{}: line {line} was cut short (a write interrupted by a crash or power loss) and was skipped",
                path.display()
            ));
        }
        // The file is rewritten clean, so that the next append does not
        // glue onto a fragment and the next start does not report the same
        // lines again; but unreadable lines only once they are kept aside.
        let mut repair = scan.torn_line.is_some();
        if let Some((line, error)) = &scan.first_bad {
            let aside = copy_aside(&path, "corrupt");
            repair = aside.is_ok();
            problems.push(format!(
                "{}: {} unreadable line(s) skipped (the first, line {line}: {error}); {}",
                path.display(),
                scan.bad_lines,
                describe_aside(&aside),
            ));
        }
        if repair {
            if let Err(e) = write_history(&path, &scan.history) {
                problems.push(format!(
                    "rewriting the decision history without its damage: {e}"
                ));
            }
        }
        scan.history
    }

    /// Replaces `state.json` atomically, creating the state directory if
    /// it is missing. On error the previous file is intact.
    pub fn save_state(&self, state: &PersistedState) -> Result<(), PersistError> {
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(&StateFile {
            format: STATE_FORMAT,
            state,
        })
        .map_err(|error| PersistError::Encoding {
            what: "the state",
            path: path.clone(),
            error,
        })?;
        bytes.push(b'\n');
        self.ensure_dir()?;
        atomic_file::replace(&path, &bytes, FILE_MODE)?;
        Ok(())
    }

    /// Appends one decision to `history.jsonl` and syncs it, creating the
    /// state directory if it is missing. A failed append leaves the lines
    /// before it intact. The file is rewritten atomically to its newest
    /// [`HISTORY_CAPACITY`] decisions when it would grow beyond twice
    /// that, or when it was found damaged.
    pub fn append_decision(&mut self, d: &Decision) -> Result<(), PersistError> {
        let path = self.history_path();
        let mut line = serde_json::to_vec(d).map_err(|error| PersistError::Encoding {
            what: "a decision",
            path: path.clone(),
            error,
        })?;
        line.push(b'\n');
        self.ensure_dir()?;

        let shape = match self.history_shape {
            Some(shape) => shape,
            None => {
                let scan = scan_history(&path)
                    .map_err(PersistError::io(PersistOperation::Reading, &path))?;
                scan.shape()
            }
        };
        if shape.damaged || shape.lines >= HISTORY_COMPACT_ABOVE {
            return self.rewrite_history(&path, d);
        }

        // Unknown until this append has succeeded: a partial line may stay.
        self.history_shape = None;
        append_line(&path, &self.dir, &line)?;
        self.history_shape = Some(HistoryFileShape {
            lines: shape.lines.saturating_add(1),
            damaged: false,
        });
        Ok(())
    }

    /// Rewrites the history to its newest readable decisions plus `d`.
    fn rewrite_history(&mut self, path: &Path, d: &Decision) -> Result<(), PersistError> {
        let mut history = scan_history(path)
            .map_err(PersistError::io(PersistOperation::Reading, path))?
            .history;
        history.push(d.clone());
        self.history_shape = None;
        write_history(path, &history)?;
        self.history_shape = Some(HistoryFileShape {
            lines: history.len(),
            damaged: false,
        });
        Ok(())
    }

    /// Creates the state directory (mode 0750) when it is missing.
    pub fn ensure_dir(&self) -> Result<(), PersistError> {
        let fail = PersistError::io(PersistOperation::CreatingDirectory, &self.dir);
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(fail(io::Error::from(io::ErrorKind::NotADirectory))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&self.dir)
                // The umask must not take the group's access away.
                .and_then(|()| fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE)))
                .map_err(fail),
            Err(e) => Err(fail(e)),
        }
    }
}

/// `state.json` as written: the format, then the state's own fields.
#[derive(Serialize)]
struct StateFile<'a> {
    format: u64,
    #[serde(flatten)]
    state: &'a PersistedState,
}

/// Why a state file's content cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateProblem {
    Empty,
    Truncated(String),
    NotJson(String),
    NotAnObject,
    BadFormat(String),
    NewerFormat(u64),
    NotState(String),
}

impl fmt::Display for StateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateProblem::Empty => f.write_str("is empty"),
            StateProblem::Truncated(e) => write!(f, "is cut short ({e})"),
            StateProblem::NotJson(e) => write!(f, "is not valid JSON ({e})"),
            StateProblem::NotAnObject => f.write_str("does not hold a JSON object"),
            StateProblem::BadFormat(v) => write!(f, "has an invalid format field {v}"),
            StateProblem::NewerFormat(n) => write!(
                f,
                "was written in format {n} by a newer gnomond; this one reads format {STATE_FORMAT}"
            ),
            StateProblem::NotState(e) => write!(f, "does not hold gnomon's state ({e})"),
        }
    }
}

fn decode_state(bytes: &[u8]) -> Result<PersistedState, StateProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateProblem::Empty);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            StateProblem::Truncated(e.to_string())
        } else {
            StateProblem::NotJson(e.to_string())
        }
    })?;
    let object = value.as_object().ok_or(StateProblem::NotAnObject)?;
    // A file without the field predates it: the first format.
    match object.get("format") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(n) if n > STATE_FORMAT => return Err(StateProblem::NewerFormat(n)),
            Some(n) if n >= 1 => {}
            _ => return Err(StateProblem::BadFormat(v.to_string())),
        },
    }
    serde_json::from_value(value).map_err(|e| StateProblem::NotState(e.to_string()))
}

enum ReadProblem {
    Io(io::Error),
    TooLarge,
}

/// The file's bytes, unless there are more than `max`.
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadProblem> {
    let file = File::open(path).map_err(ReadProblem::Io)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(ReadProblem::TooLarge);
    }
    Ok(bytes)
}

/// What a read of the history file found.
#[derive(Debug, Default)]
struct HistoryScan {
    history: DecisionHistory,
    lines: usize,
    /// The number of a last line without its newline.
    torn_line: Option<usize>,
    bad_lines: usize,
    first_bad: Option<(usize, String)>,
}

impl HistoryScan {
    fn shape(&self) -> HistoryFileShape {
        HistoryFileShape {
            lines: self.lines,
            damaged: self.torn_line.is_some() || self.bad_lines > 0,
        }
    }
}

/// Reads the history file line by line, keeping the newest readable
/// decisions; a missing file is an empty history.
fn scan_history(path: &Path) -> io::Result<HistoryScan> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HistoryScan::default()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut scan = HistoryScan::default();
    let mut line = Vec::new();
    let mut number = 0_usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number = number.saturating_add(1);
        let Some(body) = line.strip_suffix(b"\n") else {
            // Only the last line can lack its newline: the append that
            // wrote it was cut short.
            scan.torn_line = Some(number);
            break;
        };
        scan.lines = number;
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Decision>(body) {
            Ok(d) => scan.history.push(d),
            Err(e) => {
                scan.bad_lines = scan.bad_lines.saturating_add(1);
                scan.first_bad.get_or_insert((number, e.to_string()));
            }
        }
    }
    Ok(scan)
}

/// Replaces the history file atomically with `history`, one decision a line.
fn write_history(path: &Path, history: &DecisionHistory) -> Result<(), PersistError> {
    let mut text = Vec::new();
    for decision in history {
        serde_json::to_writer(&mut text, decision).map_err(|error| PersistError::Encoding {
            what: "a decision",
            path: path.to_owned(),
            error,
        })?;
        text.push(b'\n');
    }
    atomic_file::replace(path, &text, FILE_MODE)?;
    Ok(())
}

/// Appends `line` and syncs it. On a failed write the file is cut back to
/// its old length, so no fragment stays for the next append to glue onto.
fn append_line(path: &Path, dir: &Path, line: &[u8]) -> Result<(), PersistError> {
    let open = |create: bool| {
        OpenOptions::new()
            .append(true)
            .create_new(create)
            .mode(FILE_MODE)
            .open(path)
    };
    let (mut file, created) = match open(false) {
        Ok(file) => (file, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (
            open(true).map_err(PersistError::io(PersistOperation::Opening, path))?,
            true,
        ),
        Err(e) => return Err(PersistError::io(PersistOperation::Opening, path)(e)),
    };
    if created {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(PersistError::io(PersistOperation::Opening, path))?;
    }
    let old_len = file
        .metadata()
        .map_err(PersistError::io(PersistOperation::Opening, path))?
        .len();
    if let Err(e) = file.write_all(line) {
        // Best effort: the write's error is the one to report; a fragment
        // left behind is found and skipped by the next read.
        let _ = file.set_len(old_len);
        return Err(PersistError::io(PersistOperation::Appending, path)(e));
    }
    file.sync_data()
        .map_err(PersistError::io(PersistOperation::Syncing, path))?;
    if created {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(PersistError::io(PersistOperation::SyncingDirectory, dir))?;
    }
    Ok(())
}

/// A name beside `path` for keeping a damaged file: `<name>.<suffix>`, or
/// `<name>.<suffix>.1` to `.9` when earlier ones are taken (the last is
/// then reused), so a second incident does not erase the first.
fn aside_name(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = path.with_file_name(format!("{name}.{suffix}"));
    for i in 1..=9 {
        if fs::symlink_metadata(&candidate).is_err() {
            break;
        }
        candidate = path.with_file_name(format!("{name}.{suffix}.{i}"));
    }
    candidate
}

/// Renames a damaged file out of the way; where it went, or why it stayed.
fn set_aside(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let aside = aside_name(path, suffix);
    fs::rename(path, &aside)?;
    sync_parent(path);
    Ok(aside)
}

/// Copies a damaged file aside; it stays in place until rewritten.
fn copy_aside(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let aside = aside_name(path, suffix);
    fs::copy(path, &aside)?;
    sync_parent(path);
    Ok(aside)
}

/// Best effort: losing a set-aside copy to a power cut loses nothing the
/// daemon needs.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

fn describe_aside(aside: &io::Result<PathBuf>) -> String {
    match aside {
        Ok(p) => format!("kept as {}", p.display()),
        Err(e) => format!("could not be kept aside ({e})"),
    }
}

/// Why the operator's time-floor file gives no floor.
#[derive(Debug, thiserror::Error)]
pub enum FloorFileError {
    #[error("reading time floor file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("time floor file {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// Reads the operator's time-floor file: one time, as RFC 3339 in UTC
/// (`2026-11-01T00:00:00Z`, `+00:00` also accepted, fractional seconds
/// optional) or as Unix seconds. Blank lines, lines starting with `#` and
/// whitespace around the time are ignored.
pub fn read_floor_file(path: &Path) -> Result<WallTime, FloorFileError> {
    let bytes = read_capped(path, MAX_FLOOR_FILE_BYTES).map_err(|e| match e {
        ReadProblem::Io(error) => FloorFileError::Read {
            path: path.to_owned(),
            error,
        },
        ReadProblem::TooLarge => FloorFileError::Invalid {
            path: path.to_owned(),
            problem: format!(
                "is larger than {MAX_FLOOR_FILE_BYTES} bytes; it should hold one time"
            ),
        },
    })?;
    let invalid = |problem| FloorFileError::Invalid {
        path: path.to_owned(),
        problem,
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text".to_owned()))?;
    parse_floor(&text).map_err(invalid)
}

/// The time in a floor file's text (see [`read_floor_file`]).
pub fn parse_floor(text: &str) -> Result<WallTime, String> {
    let mut found: Option<(usize, WallTime)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index.saturating_add(1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((first, _)) = found {
            return Err(format!(
                "line {number}: a second time (the first is on line {first}); the file holds one"
            ));
        }
        let time = parse_floor_time(line).map_err(|why| format!("line {number}: {why}"))?;
        found = Some((number, time));
    }
    found
        .map(|(_, t)| t)
        .ok_or_else(|| "holds no time, only blank and # comment lines".to_owned())
}

fn parse_floor_time(s: &str) -> Result<WallTime, String> {
    let shown: String = s.chars().take(64).collect();
    if s.bytes().all(|b| b.is_ascii_digit()) {
        // WallTime's nanoseconds reach 2262; beyond is a typo, not a floor.
        const MAX_SECS: i64 = i64::MAX / 1_000_000_000;
        return match s.parse::<i64>() {
            Ok(secs) if secs <= MAX_SECS => Ok(WallTime::from_unix_secs(secs)),
            _ => Err(format!("{shown:?} is too large for Unix seconds")),
        };
    }
    parse_rfc3339_utc(s).map_err(|why| {
        format!(
            "{shown:?} is neither Unix seconds nor an RFC 3339 UTC time like 2026-11-01T00:00:00Z: {why}"
        )
    })
}

/// A strict RFC 3339 time in UTC: `YYYY-MM-DDTHH:MM:SS[.fraction]` then
/// `Z` or `+00:00` (`t` and `z` also accepted, as RFC 3339 allows). Other
/// offsets are refused rather than converted: a floor is written in UTC.
pub fn parse_rfc3339_utc(s: &str) -> Result<WallTime, String> {
    let (date, time) = s
        .split_once(['T', 't'])
        .ok_or("no T between date and time")?;
    let mut parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the date is not YYYY-MM-DD".to_owned());
    };
    let (Some(year), Some(month), Some(day)) = (digits(y, 4), digits(mo, 2), digits(d, 2)) else {
        return Err("the date is not YYYY-MM-DD".to_owned());
    };
    let clock = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        clock
    } else if let Some(clock) = time.strip_suffix("+00:00") {
        clock
    } else if let Some(at) = time.rfind(['+', '-']) {
        let offset = time.get(at..).unwrap_or_default();
        return Err(format!("offset {offset} is not UTC; write Z or +00:00"));
    } else {
        return Err("no time zone; write Z (UTC) at the end".to_owned());
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (clock, None),
    };
    let mut parts = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the time of day is not HH:MM:SS".to_owned());
    };
    let (Some(hour), Some(minute), Some(second)) = (digits(h, 2), digits(mi, 2), digits(sec, 2))
    else {
        return Err("the time of day is not HH:MM:SS".to_owned());
    };
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            // Right-pad to nanoseconds: ".5" is 500 ms.
            format!("{f:0<9}")
                .parse::<u32>()
                .map_err(|_| "bad fractional seconds".to_owned())?
        }
        Some(_) => return Err("fractional seconds must be 1 to 9 digits".to_owned()),
    };
    let year = i32::try_from(year).map_err(|_| "bad year".to_owned())?;
    WallTime::from_utc(year, month, day, hour, minute, second, nanos)
        .ok_or_else(|| "no such date or time of day".to_owned())
}

/// Exactly `n` ASCII digits as a number.
fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use gnomon_core::{
        engine::{DecisionKind, EngineState},
        time::MonoTime,
    };

    use super::*;

    fn decision(i: u64) -> Decision {
        Decision {
            at: MonoTime::from_nanos(i),
            wall: None,
            kind: DecisionKind::StateChange,
            state: EngineState::Primary,
            reason: format!("decision {i}"),
        }
    }

    #[test]
    fn history_keeps_the_newest_capacity_oldest_first() {
        let mut h = DecisionHistory::new();
        assert!(h.is_empty());
        for i in 0..1500 {
            h.push(decision(i));
        }
        assert_eq!(h.len(), HISTORY_CAPACITY);
        assert_eq!(h.iter().next(), Some(&decision(500)));
        assert_eq!(h.iter().last(), Some(&decision(1499)));
        assert_eq!(
            h.newest(3),
            vec![decision(1497), decision(1498), decision(1499)]
        );
        assert_eq!(h.newest(usize::MAX).len(), HISTORY_CAPACITY);
        assert!(h.newest(0).is_empty());
    }

    #[test]
    fn rfc3339_utc_forms() {
        let t = |s| parse_rfc3339_utc(s);
        let base = WallTime::from_utc(2026, 11, 1, 0, 0, 0, 0).unwrap();
        assert_eq!(t("2026-11-01T00:00:00Z"), Ok(base));
        assert_eq!(t("2026-11-01t00:00:00z"), Ok(base));
        assert_eq!(t("2026-11-01T00:00:00+00:00"), Ok(base));
        assert_eq!(
            t("2026-11-01T00:00:00.5Z"),
            Ok(WallTime::from_unix_nanos(base.unix_nanos() + 500_000_000))
        );
        assert_eq!(
            t("2026-11-01T00:00:00.000000001Z"),
            Ok(WallTime::from_unix_nanos(base.unix_nanos() + 1))
        );
        for bad in [
            "2026-11-01 00:00:00Z",
            "2026-11-01T00:00:00",
            "2026-11-01T00:00:00+01:00",
            "2026-11-01T00:00:00-00:00",
            "2026-11-01T00:00Z",
            "2026-11-1T00:00:00Z",
            "26-11-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T00:00:00.Z",
            "2026-11-01T00:00:00.0000000001Z",
            "2026-11-01T00:00:00.5xZ",
            "+2026-11-01T00:00:00Z",
            "2026-11-01T00:00:00ZZ",
        ] {
            assert!(t(bad).is_err(), "{bad:?} accepted");
        }
        assert!(t("2026-11-01T00:00:00+02:00")
            .unwrap_err()
            .contains("offset +02:00 is not UTC"));
    }

    #[test]
    fn state_problems_are_classified() {
        assert_eq!(decode_state(b""), Err(StateProblem::Empty));
        assert_eq!(decode_state(b" \n"), Err(StateProblem::Empty));
        assert!(matches!(
            decode_state(b"{\"format\": 1, \"gate-open\": tr"),
            Err(StateProblem::Truncated(_))
        ));
        assert!(matches!(
            decode_state(b"\x00\x01garbage"),
            Err(StateProblem::NotJson(_))
        ));
        assert_eq!(decode_state(b"[1, 2]"), Err(StateProblem::NotAnObject));
        assert_eq!(
            decode_state(b"{\"format\": 2}"),
            Err(StateProblem::NewerFormat(2))
        );
        assert!(matches!(
            decode_state(b"{\"format\": 0}"),
            Err(StateProblem::BadFormat(_))
        ));
        assert!(matches!(
            decode_state(b"{\"format\": \"one\"}"),
            Err(StateProblem::BadFormat(_))
        ));
        assert!(matches!(
            decode_state(b"{\"gate-open\": \"yes\"}"),
            Err(StateProblem::NotState(_))
        ));
        // No format field: the first format, and missing fields default.
        assert_eq!(
            decode_state(b"{\"gate-open\": true}"),
            Ok(PersistedState {
                gate_open: true,
                ..PersistedState::default()
            })
        );
    }
}
