//! Background writeback for [`Durability::Buffered`](crate::Durability):
//! every few MiB of appended data, a helper thread `fdatasync`s the active
//! segment, so that the disk writes while the caller keeps appending, the
//! final `flush` has little left to do, and the window a power loss can
//! lose stays bounded. It never acknowledges anything: appends in buffered
//! mode are acknowledged on `write`, as documented.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::io::Io;

/// Request a writeback once this many bytes were appended since the last.
pub(crate) const WRITEBACK_BYTES: u64 = 8 << 20;

struct Request {
    file: Arc<File>,
    path: PathBuf,
    lsn: u64,
}

#[derive(Default)]
struct State {
    request: Option<Request>,
    shutdown: bool,
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Writeback {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Start the thread; it raises `synced` after each successful sync.
    pub(crate) fn start(io: Arc<dyn Io>, synced: Arc<AtomicU64>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("auditstore-writeback".into())
            .spawn(move || loop {
                let req = {
                    let mut st = lock(&s.state);
                    loop {
                        if let Some(r) = st.request.take() {
                            break r;
                        }
                        if st.shutdown {
                            return;
                        }
                        st = s.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                };
                match io.sync_data(&req.file) {
                    Ok(()) => {
                        synced.fetch_max(req.lsn, Ordering::AcqRel);
                    }
                    Err(e) => {
                        lock(&s.state).error = Some(format!("fdatasync {}: {e}", req.path.display()));
                    }
                }
            })?;
        Ok(Writeback {
            shared,
            thread: Some(thread),
        })
    }

    /// Ask for everything of `file` up to `lsn` to be synced (the latest
    /// request replaces an unserved one).
    pub(crate) fn request(&self, file: Arc<File>, path: PathBuf, lsn: u64) {
        lock(&self.shared.state).request = Some(Request { file, path, lsn });
        self.shared.wake.notify_one();
    }

    /// A sync failure the thread saw, if any (reported once).
    pub(crate) fn take_error(&self) -> Option<String> {
        lock(&self.shared.state).error.take()
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
