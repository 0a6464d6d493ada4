//! The server side of a client's streams: stdout and stderr as frames on
//! the connection (stdout gathered into frames of up to 64 KiB, sent before
//! any stderr so the two keep their order), stdin as the frames the client
//! sends once asked.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::wire;

const STDOUT_FRAME: usize = 64 << 10;

/// The sending half of a connection, shared by the command's streams.
pub struct Frames {
    state: Mutex<State>,
    /// Set when the client's stdout is gone: writes to it fail as a local
    /// write to a closed pipe does.
    stdout_closed: AtomicBool,
}

struct State {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl Frames {
    pub fn new(stream: UnixStream) -> Arc<Self> {
        Arc::new(Frames {
            state: Mutex::new(State {
                stream,
                pending: Vec::with_capacity(STDOUT_FRAME),
            }),
            stdout_closed: AtomicBool::new(false),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn close_stdout(&self) {
        self.stdout_closed.store(true, Ordering::SeqCst);
    }

    /// Send a frame, after the stdout gathered so far.
    pub fn send(&self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        s.flush_stdout()?;
        wire::write_frame(&mut s.stream, kind, payload)
    }

    /// The stdout gathered so far, then a frame; for the last one, sent
    /// even when the client's stdout is closed.
    pub fn flush_then(&self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        if self.stdout_closed.load(Ordering::SeqCst) {
            s.pending.clear();
        }
        s.flush_stdout()?;
        wire::write_frame(&mut s.stream, kind, payload)
    }

    fn write_stdout(&self, buf: &[u8]) -> io::Result<usize> {
        if self.stdout_closed.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut s = self.state();
        s.pending.extend_from_slice(buf);
        if s.pending.len() >= STDOUT_FRAME {
            s.flush_stdout()?;
        }
        Ok(buf.len())
    }

    fn flush(&self) -> io::Result<()> {
        if self.stdout_closed.load(Ordering::SeqCst) {
            self.state().pending.clear();
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.state().flush_stdout()
    }
}

impl State {
    fn flush_stdout(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = wire::write_frame(&mut self.stream, wire::STDOUT, &self.pending);
        self.pending.clear();
        result
    }
}

/// The command's stdout.
pub struct Stdout(pub Arc<Frames>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_stdout(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The command's stderr: every write a frame, as unbuffered as a local one.
pub struct Stderr(pub Arc<Frames>);

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(wire::STDERR, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the connection's reader hands the command's stdin: bytes, or the
/// end of the input (`None`). A reader gone without an end: the client
/// went away, or its input failed.
pub type StdinChunk = Option<Vec<u8>>;

/// The command's stdin: asks the client for it on the first read.
pub struct Stdin {
    frames: Arc<Frames>,
    chunks: mpsc::Receiver<StdinChunk>,
    asked: bool,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Stdin {
    pub fn new(frames: Arc<Frames>, chunks: mpsc::Receiver<StdinChunk>) -> Self {
        Stdin {
            frames,
            chunks,
            asked: false,
            current: Vec::new(),
            at: 0,
            ended: false,
        }
    }
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.asked {
            self.asked = true;
            self.frames.send(wire::WANT_STDIN, b"")?;
        }
        while self.at == self.current.len() && !self.ended {
            match self.chunks.recv() {
                Ok(Some(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(None) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the client's input broke off (the client went away, its input failed, or the server is stopping)",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
