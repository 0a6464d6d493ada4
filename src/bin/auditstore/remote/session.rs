//! One connection in the server: read the client's header, run its command
//! on this thread with the server's store and the client's streams, send
//! the exit status.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use auditstore::Store;
use clap::Parser;

use super::stdio::{Frames, Stderr, Stdin, StdinChunk, Stdout};
use super::wire::{self, Header};
use crate::cli::{self, Cli};
use crate::console::Console;
use crate::ctx::Ctx;

/// How long a client may take to send its header, and to hang up once
/// told the exit status.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

/// Serve one connection to its end. Errors are the connection's (a client
/// gone, a malformed frame): there is no one left to tell.
pub fn serve(stream: UnixStream, store: Arc<Store>) {
    let _ = run(stream, store);
}

fn run(stream: UnixStream, store: Arc<Store>) -> io::Result<()> {
    let mut reader = stream.try_clone()?;
    reader.set_read_timeout(Some(CLIENT_PATIENCE))?;
    let mut buf = Vec::new();
    let header: Option<Header> = match wire::read_frame(&mut reader, &mut buf)? {
        Some(wire::HEADER) => serde_json::from_slice(&buf).ok(),
        _ => None,
    };
    reader.set_read_timeout(None)?;
    let frames = Frames::new(stream.try_clone()?);
    let Some(header) = header.filter(|h| h.version == wire::VERSION) else {
        let msg = format!(
            "auditstore: io: the server expected a command (wire version {})\n",
            wire::VERSION
        );
        frames.send(wire::STDERR, msg.as_bytes())?;
        return frames.send(wire::EXIT, &[1]);
    };
    let (tx, rx) = mpsc::sync_channel::<StdinChunk>(4);
    let from_client = {
        let frames = frames.clone();
        std::thread::Builder::new()
            .name("admin-client-reader".into())
            .spawn(move || read_client(reader, tx, &frames))?
    };
    let status = run_command(header, &frames, rx, store);
    let sent = frames.flush_then(wire::EXIT, &[status]);
    // Hang up only once the client has (it does as soon as it has the
    // status): closing with its bytes unread would reset its side.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(CLIENT_PATIENCE));
    let _ = from_client.join();
    sent
}

/// The client's frames after the header: stdin, and the notice that its
/// stdout is closed; until it hangs up.
fn read_client(mut reader: UnixStream, stdin: mpsc::SyncSender<StdinChunk>, frames: &Frames) {
    let mut buf = Vec::new();
    let mut stdin = Some(stdin);
    while let Ok(Some(kind)) = wire::read_frame(&mut reader, &mut buf) {
        match kind {
            wire::STDIN => {
                let chunk = (!buf.is_empty()).then(|| std::mem::take(&mut buf));
                let end = chunk.is_none();
                // A command that stopped reading drops its end: the rest
                // of the input is read and dropped.
                if let Some(tx) = &stdin {
                    if tx.send(chunk).is_err() || end {
                        stdin = None;
                    }
                }
            }
            wire::STDOUT_CLOSED => frames.close_stdout(),
            _ => {}
        }
    }
}

fn run_command(
    header: Header,
    frames: &Arc<Frames>,
    stdin: mpsc::Receiver<StdinChunk>,
    store: Arc<Store>,
) -> u8 {
    let console = Console::remote(
        Box::new(Stdout(frames.clone())),
        Box::new(Stderr(frames.clone())),
        Box::new(Stdin::new(frames.clone(), stdin)),
        PathBuf::from(&header.cwd),
        header.user,
    );
    let argv = std::iter::once("auditstore".to_owned()).chain(header.argv);
    let parsed = Cli::try_parse_from(argv);
    let data_dir = PathBuf::from(header.data_dir);
    let cli = match parsed {
        Ok(cli) if cli.command.forwarded() => cli,
        Ok(_) => {
            let _ = frames.send(
                wire::STDERR,
                b"auditstore: io: this command is not run by a server\n",
            );
            return 1;
        }
        // The client parsed the same command line already: not reached
        // but by a client of another version.
        Err(e) => {
            let _ = frames.send(wire::STDERR, e.render().to_string().as_bytes());
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let ctx = Ctx {
        data_dir,
        data_dir_given: header.data_dir_given,
        json: cli.json,
        as_of: cli.as_of,
        console,
        shared: Some(store),
        partitions: super::PARTITION_STORES.get().cloned(),
    };
    if super::CLUSTER_NODE.load(std::sync::atomic::Ordering::Relaxed)
        && matches!(cli.command, cli::Command::Ingest { .. })
    {
        let refusal = crate::ctx::CliError::new(
            "unavailable",
            "this server is a cluster node: its events go through the cluster's streams; \
             ingest through its HTTP API (POST /api/v1/orgs/ORG/events)",
        );
        let _ = ctx.fail(&refusal);
        let _ = std::io::Write::flush(&mut ctx.out());
        return 1;
    }
    let run = std::panic::AssertUnwindSafe(|| cli::run(&ctx, cli.command));
    let status = std::panic::catch_unwind(run).unwrap_or(101);
    let _ = std::io::Write::flush(&mut ctx.out());
    status
}
