//! `ingest`: JSON Lines in, durable appends out. A reader thread splits the
//! input into chunks of lines, parser threads validate them in parallel, and
//! the main thread appends them in input order (dedup is order-sensitive:
//! the first write wins).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};

use auditstore::event::MAX_EVENT_JSON_BYTES;
use auditstore::{Durability, Event};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::ctx::{outln, printable, CliError, CliResult, Ctx};

const BATCH: usize = 8192;
const CHUNK_BYTES: usize = 4 << 20;
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

enum Line {
    Event(String, Event),
    Rejected(u64, String),
}

/// Lines as read, before parsing: one buffer and the span of each line.
struct RawChunk {
    seq: u64,
    first_line: u64,
    data: Vec<u8>,
    /// `None` for a line longer than the event size limit (not kept).
    spans: Vec<Option<(usize, usize)>>,
    bytes_read: u64,
}

struct Chunk {
    seq: u64,
    lines: Vec<Line>,
    bytes_read: u64,
}

/// Read one line (without the newline) onto the end of `buf`, keeping at
/// most `cap` bytes of it; returns `None` at end of input, `Some(too_long)`
/// otherwise (a too-long line leaves `buf` as it was).
fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
    read: &mut u64,
) -> std::io::Result<Option<bool>> {
    let start = buf.len();
    let mut too_long = false;
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() - start + chunk.len() > cap {
                too_long = true;
                buf.truncate(start);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(avail.len());
        r.consume(used);
        *read += used as u64;
        if done.is_some() {
            return Ok(Some(too_long));
        }
    }
}

/// Whitespace a line may carry around its JSON text beyond the event limit
/// (a `\r` of CRLF input, trailing spaces): the limit is the event's.
const LINE_SLACK: usize = 4096;

fn parse_line(no: u64, raw: &[u8], org: Option<&str>) -> Line {
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = raw.iter().position(|b| !json_space(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !json_space(b)).map_or(start, |p| p + 1);
    let raw = &raw[start..end];
    let event = match Event::from_json_bytes(raw) {
        Ok(e) => e,
        Err(e) => return Line::Rejected(no, e.to_string()),
    };
    let org = match org {
        Some(o) => o.to_owned(),
        None => match event.scope_id() {
            Some(id) => {
                if let Err(e) = auditstore::org::validate_org_name(&id) {
                    return Line::Rejected(no, format!("field `scope.id`: not a usable organization: {e}"));
                }
                id
            }
            None => {
                return Line::Rejected(
                    no,
                    "no organization: the event has no `scope.id` and no --org was given".into(),
                )
            }
        },
    };
    Line::Event(org, event)
}

fn parse_chunk(raw: RawChunk, org: Option<&str>) -> Chunk {
    let mut lines = Vec::with_capacity(raw.spans.len());
    for (i, span) in raw.spans.iter().enumerate() {
        let no = raw.first_line + i as u64;
        match span {
            None => lines.push(Line::Rejected(
                no,
                format!("event larger than {} KiB: rejected", MAX_EVENT_JSON_BYTES / 1024),
            )),
            Some((a, b)) => {
                let text = &raw.data[*a..*b];
                if !text.iter().all(|c| c.is_ascii_whitespace()) {
                    lines.push(parse_line(no, text, org));
                }
            }
        }
    }
    Chunk {
        seq: raw.seq,
        lines,
        bytes_read: raw.bytes_read,
    }
}

/// Split the input into chunks of lines; parsing happens elsewhere.
fn read_chunks(input: Box<dyn Read + Send>, tx: mpsc::SyncSender<std::io::Result<RawChunk>>) {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let (mut no, mut read, mut seq) = (0u64, 0u64, 0u64);
    // A UTF-8 byte order mark (some Windows tools write one) is not part of
    // the first line's JSON text (RFC 8259 lets a parser ignore it).
    match r.fill_buf() {
        Ok(head) if head.starts_with(b"\xEF\xBB\xBF") => {
            r.consume(3);
            read += 3;
        }
        Ok(_) => {}
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    }
    loop {
        let mut chunk = RawChunk {
            seq,
            first_line: no + 1,
            data: Vec::with_capacity(CHUNK_BYTES + 4096),
            spans: Vec::with_capacity(BATCH),
            bytes_read: 0,
        };
        let mut eof = false;
        while chunk.spans.len() < BATCH && chunk.data.len() < CHUNK_BYTES {
            let start = chunk.data.len();
            match read_line_capped(
                &mut r,
                &mut chunk.data,
                MAX_EVENT_JSON_BYTES + LINE_SLACK,
                &mut read,
            ) {
                Ok(Some(too_long)) => {
                    no += 1;
                    chunk.spans.push((!too_long).then_some((start, chunk.data.len())));
                }
                Ok(None) => {
                    eof = true;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        chunk.bytes_read = read;
        seq += 1;
        if tx.send(Ok(chunk)).is_err() || eof {
            return;
        }
    }
}

pub fn run(ctx: &Ctx, file: Option<PathBuf>, org: Option<String>) -> CliResult<ExitCode> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(ctx.path(&p))
                .map_err(|e| CliError::new("io", format!("open {}: {e}", p.display())))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        _ => (ctx.console.stdin(), None),
    };
    // Appends are handed to the OS as they come and fsynced once at the end
    // (and at every segment roll): the command's contract is "durable
    // before exit", and a crash mid-ingest is answered by re-running it
    // (de-duplication makes that safe).
    if ctx.shared.is_none() && ctx.data_dir.join("cluster").is_dir() {
        // Through a running node's socket the session refuses already.
        return Err(CliError::new(
            "unavailable",
            format!(
                "{} is a cluster node's data directory (it has cluster/): events ingested into it \
                 would reach no other node; ingest through a node's HTTP API (POST /api/v1/orgs/ORG/events)",
                ctx.data_dir.display()
            ),
        ));
    }
    let store = ctx.open_store_with(true, Durability::Buffered)?;
    let progress = if ctx.console.progress() {
        match size {
            Some(n) if n >= PROGRESS_MIN_BYTES => {
                let pb = ProgressBar::new(n);
                pb.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                Some(pb)
            }
            None => {
                let pb = ProgressBar::new_spinner();
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {bytes} read {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                Some(pb)
            }
            _ => None,
        }
    } else {
        None
    };
    // One thread splits lines, `parsers` threads parse chunks, this thread
    // appends them in input order.
    let parsers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let (raw_tx, raw_rx) = mpsc::sync_channel::<std::io::Result<RawChunk>>(parsers + 1);
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Chunk>>(parsers + 1);
    let mut threads = Vec::new();
    threads.push(
        std::thread::Builder::new()
            .name("ingest-read".into())
            .spawn(move || read_chunks(input, raw_tx))
            .map_err(|e| CliError::new("io", format!("starting the reader thread: {e}")))?,
    );
    for i in 0..parsers {
        let (raw_rx, tx, org) = (raw_rx.clone(), tx.clone(), org.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("ingest-parse-{i}"))
                .spawn(move || loop {
                    let next = raw_rx.lock().map(|r| r.recv());
                    let Ok(Ok(raw)) = next else { return };
                    let parsed = raw.map(|raw| parse_chunk(raw, org.as_deref()));
                    if tx.send(parsed).is_err() {
                        return;
                    }
                })
                .map_err(|e| CliError::new("io", format!("starting a parser thread: {e}")))?,
        );
    }
    drop(tx);
    let mut waiting: BTreeMap<u64, Chunk> = BTreeMap::new();
    let mut next_seq = 0u64;
    let (mut appended, mut duplicates, mut conflicts, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    let mut failure: Option<CliError> = None;
    'chunks: for chunk in rx {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(CliError::new("io", format!("reading input: {e}")));
                break;
            }
        };
        waiting.insert(chunk.seq, chunk);
        while let Some(chunk) = waiting.remove(&next_seq) {
            next_seq += 1;
            let mut batch: Vec<(&str, &Event)> = Vec::with_capacity(chunk.lines.len());
            for line in &chunk.lines {
                match line {
                    Line::Event(org, event) => batch.push((org.as_str(), event)),
                    Line::Rejected(no, why) => {
                        rejected += 1;
                        let msg = format!("line {no}: {}", printable(why));
                        match &progress {
                            Some(pb) => pb.suspend(|| ctx.eprint_line(&msg)),
                            None => ctx.eprint_line(&msg),
                        }
                    }
                }
            }
            match store.append_batch(batch) {
                Ok(r) => {
                    appended += r.appended;
                    duplicates += r.duplicates;
                    conflicts += r.conflicts;
                }
                Err(e) => {
                    failure = Some(e.into());
                    break 'chunks;
                }
            }
            if let Some(pb) = &progress {
                pb.set_position(chunk.bytes_read);
                pb.set_message(format!("{appended} appended"));
            }
        }
    }
    // The receivers are dropped: the reader and parsers stop if we bailed out.
    drop(raw_rx);
    for t in threads {
        let _ = t.join();
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if failure.is_none() {
        if let Err(e) = store.flush() {
            failure = Some(e.into());
        }
    }
    if let Some(f) = failure {
        let f = f
            .with("appended", appended)
            .with("duplicates", duplicates)
            .with("conflicts", conflicts)
            .with("rejected", rejected);
        return Err(f);
    }
    if ctx.json {
        ctx.print_json(&json!({
            "appended": appended, "duplicates": duplicates,
            "conflicts": conflicts, "rejected": rejected
        }))?;
    } else {
        outln!(
            ctx,
            "appended {appended}, duplicates {duplicates}, conflicts {conflicts}, rejected {rejected}"
        )?;
    }
    Ok(if rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
