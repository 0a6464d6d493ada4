//! `ingest`: JSON Lines in, durable appends out. One thread reads and
//! parses, the other appends, so both cores work.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use auditstore::event::MAX_EVENT_JSON_BYTES;
use auditstore::Event;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::ctx::{CliError, CliResult, Ctx};

const BATCH: usize = 8192;
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

enum Line {
    Event(String, Event),
    Rejected(u64, String),
}

struct Chunk {
    lines: Vec<Line>,
    bytes_read: u64,
}

/// Read one line into `buf` (without the newline), keeping at most `cap`
/// bytes; returns `None` at end of input, `Some(too_long)` otherwise.
fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
    read: &mut u64,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, done) = match memchr(b'\n', avail) {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap {
                too_long = true;
                buf.clear();
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

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

fn parse_line(no: u64, raw: &[u8], org: Option<&str>) -> Line {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
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

fn reader_thread(
    input: Box<dyn Read + Send>,
    org: Option<String>,
    tx: mpsc::SyncSender<std::io::Result<Chunk>>,
) {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::with_capacity(4096);
    let mut no = 0u64;
    let mut read = 0u64;
    let mut lines = Vec::with_capacity(BATCH);
    loop {
        let line = match read_line_capped(&mut r, &mut buf, MAX_EVENT_JSON_BYTES, &mut read) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let Some(too_long) = line else { break };
        no += 1;
        if too_long {
            lines.push(Line::Rejected(
                no,
                format!("event larger than {} KiB: rejected", MAX_EVENT_JSON_BYTES / 1024),
            ));
        } else if !buf.iter().all(|b| b.is_ascii_whitespace()) {
            lines.push(parse_line(no, &buf, org.as_deref()));
        }
        if lines.len() >= BATCH {
            let chunk = Chunk {
                lines: std::mem::replace(&mut lines, Vec::with_capacity(BATCH)),
                bytes_read: read,
            };
            if tx.send(Ok(chunk)).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Ok(Chunk {
        lines,
        bytes_read: read,
    }));
}

pub fn run(ctx: &Ctx, file: Option<PathBuf>, org: Option<String>) -> CliResult<ExitCode> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(&p).map_err(|e| CliError::new("io", format!("open {}: {e}", p.display())))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        _ => (Box::new(std::io::stdin()), None),
    };
    let store = ctx.open_store(true)?;
    let progress = if std::io::stderr().is_terminal() {
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
    let (tx, rx) = mpsc::sync_channel(4);
    let reader = std::thread::spawn(move || reader_thread(input, org, tx));
    let (mut appended, mut duplicates, mut conflicts, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    let mut failure: Option<CliError> = None;
    for chunk in rx {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(CliError::new("io", format!("reading input: {e}")));
                break;
            }
        };
        let mut batch: Vec<(&str, &Event)> = Vec::with_capacity(chunk.lines.len());
        for line in &chunk.lines {
            match line {
                Line::Event(org, event) => batch.push((org.as_str(), event)),
                Line::Rejected(no, why) => {
                    rejected += 1;
                    let msg = format!("line {no}: {why}");
                    match &progress {
                        Some(pb) => pb.suspend(|| eprintln!("{msg}")),
                        None => eprintln!("{msg}"),
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
                break;
            }
        }
        if let Some(pb) = &progress {
            pb.set_position(chunk.bytes_read);
            pb.set_message(format!("{appended} appended"));
        }
    }
    // Dropping the receiver stops the reader if we bailed out early.
    let _ = reader.join();
    if let Some(pb) = progress {
        pb.finish_and_clear();
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
        println!("appended {appended}, duplicates {duplicates}, conflicts {conflicts}, rejected {rejected}");
    }
    Ok(if rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
