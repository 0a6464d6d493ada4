//! Where a command's output goes and its input comes from: this process's
//! own stdout, stderr and stdin, or, for a command a running server carries
//! out (`remote`), the client's, through the admin socket. Commands never
//! touch `std::io::stdout()` and the like directly.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

type Sink = Box<dyn Write + Send>;

pub struct Console {
    out: Mutex<Sink>,
    err: Mutex<Sink>,
    stdin: Mutex<Option<Box<dyn Read + Send>>>,
    /// The client's working directory; `None`: this process's own.
    cwd: Option<PathBuf>,
    /// Who runs the command (`$USER`, else `$LOGNAME`), the client's.
    user: String,
    /// Whether progress may be drawn on stderr: it is this process's own
    /// and a terminal.
    progress: bool,
}

/// One of the console's output streams, held for as long as this lives:
/// do not ask for the same stream again while holding it.
pub struct Stream<'a>(MutexGuard<'a, Sink>);

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Console {
    /// This process's own streams, working directory and user.
    pub fn local() -> Self {
        Console {
            out: Mutex::new(Box::new(std::io::stdout())),
            err: Mutex::new(Box::new(std::io::stderr())),
            stdin: Mutex::new(Some(Box::new(std::io::stdin()))),
            cwd: None,
            user: os_user(),
            progress: std::io::stderr().is_terminal(),
        }
    }

    /// A client's streams, working directory (absolute) and user name.
    pub fn remote(out: Sink, err: Sink, stdin: Box<dyn Read + Send>, cwd: PathBuf, user: String) -> Self {
        Console {
            out: Mutex::new(out),
            err: Mutex::new(err),
            stdin: Mutex::new(Some(stdin)),
            cwd: Some(cwd),
            user,
            progress: false,
        }
    }

    pub fn out(&self) -> Stream<'_> {
        Stream(self.out.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn err(&self) -> Stream<'_> {
        Stream(self.err.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The command's standard input (once; later calls read nothing).
    pub fn stdin(&self) -> Box<dyn Read + Send> {
        let mut slot = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        slot.take().unwrap_or_else(|| Box::new(std::io::empty()))
    }

    /// A path from the command line, resolved against the client's working
    /// directory (locally: as given, which the OS resolves the same way).
    pub fn path(&self, p: &Path) -> PathBuf {
        match &self.cwd {
            Some(cwd) => cwd.join(p),
            None => p.to_path_buf(),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether a progress bar may be drawn on stderr.
    pub fn progress(&self) -> bool {
        self.progress
    }
}

/// The operating system's user name (`$USER`, else `$LOGNAME`), for the
/// store's own audit events when `--user` is not given.
pub fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| auditstore::export::validate_user(u).is_ok())
        .unwrap_or_else(|| "unknown".to_string())
}
