//! What every command shares: global options, opening the store, printing
//! results and errors in the contract's shapes.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use auditstore::{Clock, Durability, FixedClock, Options, Store, SystemClock, Timestamp};
use serde_json::{json, Map, Value};

use crate::console::{Console, Stream};

/// A refusal or failure: printed as `{"error": {...}}` with `--json`, as one
/// line on stderr without; exit status 1.
#[derive(Debug)]
pub struct CliError {
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl CliError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<auditstore::Error> for CliError {
    fn from(e: auditstore::Error) -> Self {
        let code = match e.code() {
            "invalid_argument" => "invalid_range",
            other => other,
        };
        let mut err = CliError::new(code, e.to_string());
        if let auditstore::Error::Corrupt { path, offset, .. } = &e {
            err = err
                .with("file", path.display().to_string())
                .with("offset", *offset);
        }
        err
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new("io", e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// An open store; for a read-only command on a missing data directory, an
/// empty one in a temporary directory that is removed afterwards; under a
/// running server, the server's.
pub struct OpenStore {
    store: Arc<Store>,
    _empty: Option<tempfile::TempDir>,
}

impl OpenStore {
    /// A store held open by the server that carries the command out.
    pub fn shared(store: Arc<Store>) -> Self {
        OpenStore { store, _empty: None }
    }

    /// Whether the data directory holds no store (the store is an empty
    /// stand-in): nothing is stored, not even the files of an empty store.
    pub fn is_missing(&self) -> bool {
        self._empty.is_some()
    }
}

impl std::ops::Deref for OpenStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub struct Ctx {
    pub data_dir: PathBuf,
    /// Whether `data_dir` was named (`--data-dir` or the environment), not
    /// the default.
    pub data_dir_given: bool,
    pub json: bool,
    pub as_of: Option<Timestamp>,
    /// Where output goes and input comes from, whose working directory
    /// and user name the command line means.
    pub console: Console,
    /// The store held by the running server that carries the command out:
    /// commands use it instead of opening the data directory.
    pub shared: Option<Arc<Store>>,
    /// The partition stores of the cluster node whose server carries the
    /// command out (`shared` is its partition 0's): commands about an
    /// organization use its partition's (`node_dir`).
    pub partitions: Option<Arc<crate::node_dir::PartitionStores>>,
}

impl Ctx {
    /// "now" for every time-dependent rule: `--as-of` or the system clock.
    pub fn now(&self) -> Timestamp {
        self.clock().now()
    }

    /// `--as-of`'s instant; without it, the clock of the server that
    /// carries the command out (its own `--as-of` may have set it), else
    /// the system's.
    pub fn clock(&self) -> Arc<dyn Clock> {
        match (self.as_of, &self.shared) {
            (Some(t), _) => Arc::new(FixedClock::new(t)),
            (None, Some(store)) => store.clock().clone(),
            (None, None) => Arc::new(SystemClock),
        }
    }

    /// The store options of every command: the defaults, with `--as-of`'s clock.
    pub fn options(&self) -> Options {
        Options {
            clock: self.clock(),
            ..Options::default()
        }
    }

    /// Open the store for a command. Commands that only read do not create
    /// the data directory: on a missing one, or one without a store's files,
    /// they see an empty store.
    pub fn open_store(&self, writes: bool) -> CliResult<OpenStore> {
        self.open_store_with(writes, Durability::Sync)
    }

    /// [`Ctx::open_store`] with a chosen durability mode.
    pub fn open_store_with(&self, writes: bool, durability: Durability) -> CliResult<OpenStore> {
        if let Some(shared) = &self.shared {
            return Ok(OpenStore::shared(shared.clone()));
        }
        self.open_dir(&self.data_dir, writes, false, durability)
    }

    /// Open the store in `dir` as [`Ctx::open_store`] opens the data
    /// directory's; `read_only`: never for writing (no lock taken, nothing
    /// repaired).
    pub fn open_dir(
        &self,
        dir: &Path,
        writes: bool,
        read_only: bool,
        durability: Durability,
    ) -> CliResult<OpenStore> {
        let options = Options {
            durability,
            // A node's partition stores follow the node's export policy.
            policy_dir: Some(self.path(&self.data_dir)),
            ..self.options()
        };
        if !writes && !Store::exists_at(dir) {
            let empty = tempfile::tempdir()?;
            let store = Store::open_with(empty.path(), options)?;
            return Ok(OpenStore {
                store: Arc::new(store),
                _empty: Some(empty),
            });
        }
        let store = match read_only {
            true => Store::open_read_only(dir, options)?,
            false => match Store::open_with(dir, options.clone()) {
                // Another process holds the store for writing: a command
                // that only reads gets a read-only snapshot (one that
                // writes, say `export process`, is refused by it with
                // `locked`).
                Err(auditstore::Error::Locked { .. }) if !writes => Store::open_read_only(dir, options)?,
                other => other?,
            },
        };
        Ok(OpenStore {
            store: Arc::new(store),
            _empty: None,
        })
    }

    /// The command's stdout.
    pub fn out(&self) -> Stream<'_> {
        self.console.out()
    }

    /// The command's stderr.
    pub fn err(&self) -> Stream<'_> {
        self.console.err()
    }

    /// A path from the command line, resolved against the working
    /// directory of whoever ran the command.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.console.path(p)
    }

    /// A path inside the store (as the store names it) shown as the data
    /// directory was named on the command line: locally the same path.
    pub fn shown(&self, p: &Path, store_dir: &Path) -> PathBuf {
        match p.strip_prefix(store_dir) {
            Ok(rest) if store_dir != self.data_dir => self.data_dir.join(rest),
            _ => p.to_path_buf(),
        }
    }

    /// A message naming the shared store's directory (as the server named
    /// it) with the data directory named as on the command line instead.
    pub fn as_named(&self, text: &str) -> String {
        let Some(shared) = &self.shared else {
            return text.to_owned();
        };
        let (theirs, ours) = (
            shared.dir().display().to_string(),
            self.data_dir.display().to_string(),
        );
        if theirs == ours {
            return text.to_owned();
        }
        text.replace(&theirs, &ours)
    }

    /// Who runs the command, for the store's own audit events when no
    /// `--user` is given: the operating system's user name (the client's).
    pub fn user(&self) -> String {
        self.console.user().to_owned()
    }

    /// Print one JSON value as a line on stdout.
    pub fn print_json(&self, value: &Value) -> CliResult {
        let mut out = self.out();
        serde_json::to_writer(&mut out, value).map_err(|e| CliError::new("io", e.to_string()))?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    /// Print text on stdout.
    pub fn print(&self, text: &str) -> CliResult {
        let mut out = self.out();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Print one line on stderr; an error writing it is ignored (there is
    /// nowhere left to report it).
    pub fn eprint_line(&self, line: &str) {
        let mut err = self.err();
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    }

    /// Report a failure in the contract's shape; returns the exit status.
    pub fn fail(&self, err: &CliError) -> ExitCode {
        if self.json {
            let mut obj = Map::new();
            obj.insert("code".into(), json!(err.code));
            obj.insert("message".into(), json!(self.as_named(&err.message)));
            for (k, v) in &err.extra {
                let v = match v {
                    Value::String(s) => Value::String(self.as_named(s)),
                    v => v.clone(),
                };
                obj.insert(k.clone(), v);
            }
            let _ = self.print_json(&json!({ "error": Value::Object(obj) }));
        } else {
            let message = self.as_named(&err.message);
            self.eprint_line(&format!("auditstore: {}: {}", err.code, printable(&message)));
        }
        ExitCode::from(1)
    }
}

/// Parse an instant or a `YYYY-MM-DD` date for clap.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_instant_or_date(s).map_err(|e| e.to_string())
}

/// Parse the end of a query range for clap: like [`parse_time`], but a
/// time outside the store's representable years (1677-2262) is taken as
/// the nearest representable instant (no event lies beyond it).
pub fn parse_range_end(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_instant_or_date_saturating(s).map_err(|e| e.to_string())
}

/// Parse a user name (who acted) for clap.
pub fn parse_user(s: &str) -> Result<String, String> {
    auditstore::export::validate_user(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Parse an organization name for clap.
pub fn parse_org(s: &str) -> Result<String, String> {
    auditstore::org::validate_org_name(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Text for a terminal: control characters (which could move the cursor,
/// recolour or split a line: event fields and ids are the sender's) shown
/// escaped, as `\n` or `\u{1b}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c.is_control() {
            true => out.extend(c.escape_debug()),
            false => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Render rows as an aligned text table (control characters escaped).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut first = true;
        for (i, c) in cells.enumerate() {
            if !first {
                out.push_str("  ");
            }
            first = false;
            out.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            if i + 1 < widths.len() {
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(&mut headers.iter().copied(), &mut out);
    for r in &rows {
        line(&mut r.iter().map(|c| c.as_ref()), &mut out);
    }
    out
}

/// `println!` on the command's stdout: `outln!(ctx, "...", args)?`.
macro_rules! outln {
    ($ctx:expr, $($arg:tt)*) => {
        $ctx.print(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;
