//! The server's side of the admin socket: `<data-dir>/admin.sock`, owner
//! only, each connection served on its own thread with the shared store.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auditstore::Store;

/// How long a stop waits for the commands in flight before it cuts their
/// connections.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Connections being served: a handle on each socket (to stop its input
/// at shutdown) and its thread.
type Sessions = Arc<Mutex<Vec<(UnixStream, JoinHandle<()>)>>>;

/// The admin socket, accepting until [`Listener::stop`] (or drop).
pub struct Listener {
    dir: PathBuf,
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    sessions: Sessions,
}

impl Listener {
    /// Bind `<data_dir>/admin.sock` (replacing a stale one left by a server
    /// that was killed) and serve its connections with `store`. Spawns
    /// threads only: callable from async code.
    pub fn start(data_dir: &Path, store: Arc<Store>) -> io::Result<Listener> {
        let path = data_dir.join(super::SOCKET_NAME);
        let listener = bind_owner_only(data_dir, &path)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let sessions: Sessions = Arc::default();
        let accept = {
            let (stopping, sessions) = (stopping.clone(), sessions.clone());
            std::thread::Builder::new()
                .name("admin-socket".into())
                .spawn(move || accept_loop(listener, store, &stopping, &sessions))?
        };
        Ok(Listener {
            dir: data_dir.to_path_buf(),
            path,
            stopping,
            accept: Some(accept),
            sessions,
        })
    }

    /// Stop accepting, remove the socket, and wait for the commands in
    /// flight to finish (one still waiting for its client's input has it
    /// broken off: it fails as on a failed read).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(accept) = self.accept.take() else { return };
        self.stopping.store(true, Ordering::SeqCst);
        // New clients find no socket (and run their commands themselves
        // once the store is released); the accept loop is woken through
        // the socket's new name, sees `stopping` and ends.
        let aside_name = format!(".{}.stopping-{}", super::SOCKET_NAME, std::process::id());
        let aside = self.dir.join(&aside_name);
        let connect =
            |name: &str| super::socket_path(&self.dir, name).and_then(|a| UnixStream::connect(&a.path));
        let woken = match std::fs::rename(&self.path, &aside) {
            Ok(()) => {
                let woken = connect(&aside_name).is_ok();
                let _ = std::fs::remove_file(&aside);
                woken
            }
            Err(_) => connect(super::SOCKET_NAME).is_ok(),
        };
        let _ = std::fs::remove_file(&self.path);
        if woken {
            let _ = accept.join();
        }
        let sessions = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|p| p.into_inner()));
        for (stream, _) in &sessions {
            let _ = stream.shutdown(std::net::Shutdown::Read);
        }
        // A client that stops reading its output would hold a command (and
        // the stop) forever: after a grace period its connection is cut,
        // and the command fails as on a closed pipe.
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && sessions.iter().any(|(_, t)| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (stream, thread) in sessions {
            if !thread.is_finished() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            let _ = thread.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Bind in a private directory (0700) inside the data directory, make the
/// socket 0600, then rename it into place: no one else can reach it before
/// it is owner-only, and a stale socket at `path` is replaced atomically.
fn bind_owner_only(data_dir: &Path, path: &Path) -> io::Result<UnixListener> {
    let private = tempfile::Builder::new()
        .prefix(".admin-sock-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(data_dir)?;
    let tmp = private.path().join(super::SOCKET_NAME);
    let listener = UnixListener::bind(&super::socket_path(private.path(), super::SOCKET_NAME)?.path)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

fn accept_loop(listener: UnixListener, store: Arc<Store>, stopping: &AtomicBool, sessions: &Sessions) {
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            // Out of descriptors and the like: not this loop's to end.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        let Ok(handle) = stream.try_clone() else { continue };
        let store = store.clone();
        let thread = std::thread::Builder::new()
            .name("admin-command".into())
            .spawn(move || super::session::serve(stream, store));
        let mut list = sessions.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, t)| !t.is_finished());
        if let Ok(thread) = thread {
            list.push((handle, thread));
        }
    }
}
