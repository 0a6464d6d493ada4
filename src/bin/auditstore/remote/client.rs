//! The client side: send the command to the server holding the data
//! directory, copy what comes back to this process's stdout and stderr,
//! its stdin over when asked, and return the command's exit status.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::wire::{self, Header};
use crate::ctx::{CliError, CliResult, Ctx};

/// Run the command (`args`: the command line after the program's name) in
/// the server holding `ctx.data_dir`: `Ok(Some(status))` once it is done,
/// `Ok(None)` when no server is there (no socket, or a stale one nobody
/// listens on): then the caller runs it itself.
pub fn forward(ctx: &Ctx, args: &[std::ffi::OsString]) -> CliResult<Option<u8>> {
    let socket = ctx.data_dir.join(super::SOCKET_NAME);
    // A directory that cannot be opened holds no server: the command run
    // here says what is wrong with it.
    let Ok(address) = super::socket_path(&ctx.data_dir, super::SOCKET_NAME) else {
        return Ok(None);
    };
    let stream = match UnixStream::connect(&address.path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_error(&socket, "connect to the server at", e)),
    };
    let header = header(ctx, args)?;
    let text = serde_json::to_vec(&header).map_err(|e| CliError::new("io", e.to_string()))?;
    let writer = stream
        .try_clone()
        .map_err(|e| io_error(&socket, "use the connection to", e))?;
    let writer = Arc::new(Mutex::new(writer));
    send(&writer, wire::HEADER, &text).map_err(|e| io_error(&socket, "send the command to", e))?;
    relay(stream, writer).map_err(|e| io_error(&socket, "carry the command out through", e))
}

fn io_error(socket: &Path, what: &str, e: io::Error) -> CliError {
    CliError::new("io", format!("{what} {}: {e}", socket.display()))
}

fn header(ctx: &Ctx, args: &[std::ffi::OsString]) -> CliResult<Header> {
    let text = |what: &str, s: &std::ffi::OsStr| {
        s.to_str().map(str::to_owned).ok_or_else(|| {
            CliError::new(
                "io",
                format!("{what} {s:?} is not UTF-8: it cannot be sent to the server holding the store"),
            )
        })
    };
    let cwd = std::env::current_dir()?;
    Ok(Header {
        version: wire::VERSION,
        argv: args
            .iter()
            .map(|a| text("the argument", a))
            .collect::<CliResult<_>>()?,
        cwd: text("the working directory", cwd.as_os_str())?,
        user: ctx.user(),
        data_dir: text("the data directory", ctx.data_dir.as_os_str())?,
        data_dir_given: ctx.data_dir_given,
    })
}

fn send(writer: &Mutex<UnixStream>, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    wire::write_frame(&mut *w, kind, payload)
}

/// Copy the server's frames out until its exit status.
fn relay(mut stream: UnixStream, writer: Arc<Mutex<UnixStream>>) -> io::Result<Option<u8>> {
    let mut buf = Vec::with_capacity(wire::MAX_PAYLOAD);
    let mut stdout = io::stdout().lock();
    let mut stdout_open = true;
    let mut stdin_started = false;
    loop {
        let Some(kind) = wire::read_frame(&mut stream, &mut buf)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before the command finished",
            ));
        };
        match kind {
            wire::STDOUT if stdout_open => {
                if stdout.write_all(&buf).and_then(|_| stdout.flush()).is_err() {
                    // As a local command sees it: its stdout is gone.
                    // (Not waiting behind stdin being sent: the notice is
                    // best effort, and what still comes is dropped.)
                    stdout_open = false;
                    if let Ok(mut w) = writer.try_lock() {
                        let _ = wire::write_frame(&mut *w, wire::STDOUT_CLOSED, b"");
                    }
                }
            }
            wire::STDOUT => {}
            wire::STDERR => {
                let _ = stdout.flush();
                let mut stderr = io::stderr().lock();
                let _ = stderr.write_all(&buf).and_then(|_| stderr.flush());
            }
            wire::WANT_STDIN if !stdin_started => {
                stdin_started = true;
                let writer = writer.clone();
                std::thread::Builder::new()
                    .name("stdin-to-server".into())
                    .spawn(move || copy_stdin(&writer))?;
            }
            wire::WANT_STDIN => {}
            wire::EXIT => {
                let _ = stdout.flush();
                return Ok(Some(buf.first().copied().unwrap_or(1)));
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an unknown frame kind {other:?} from the server"),
                ))
            }
        }
    }
}

/// This process's stdin to the server, then the empty frame that ends it.
/// A read error ends the connection's sending side without that frame:
/// the command sees its input fail, not end.
fn copy_stdin(writer: &Mutex<UnixStream>) {
    let mut stdin = io::stdin().lock();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match stdin.read(&mut chunk) {
            Ok(0) => {
                let _ = send(writer, wire::STDIN, b"");
                return;
            }
            Ok(n) => {
                if send(writer, wire::STDIN, &chunk[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                let w = writer.lock().unwrap_or_else(|p| p.into_inner());
                let _ = w.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    }
}
