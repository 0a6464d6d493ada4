//! Formatting an export's rows, on several threads when it is long.
//!
//! Formatting (quoting the JSON cells, copying ~550 bytes per row) is what
//! bounds an export on one core. A long scan is therefore split into small
//! time slices ([`Scan::split`], about [`SLICE_ROWS`] rows each); formatter
//! threads take the slices in order and format each into chunks of about
//! [`CHUNK`] bytes, and the calling thread passes the chunks on, slice after
//! slice, so the output is byte for byte what one thread would write.
//!
//! Memory stays bounded: the calling thread hands out a slice only when one
//! it handed out before is written, so at most [`SLICES_AHEAD`] slices per
//! thread are formatted ahead of the output (~1 MiB of CSV each, unless
//! thousands of events share one instant: a slice never splits a tie).
//! No deadlock: slices are handed out and written in the same order, so
//! the one being written was handed out first and has a formatter.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use crate::export::csv::RowFormatter;
use crate::export::error::{self, ExportError};
use crate::integrity::Hash;
use crate::scan::{RecordPos, Scan};
use crate::store::record_leaf;

/// Bytes of CSV passed on at a time.
pub const CHUNK: usize = 256 << 10;
/// Rows per time slice, about (~1 MiB of CSV).
pub const SLICE_ROWS: usize = 2_048;
/// Slices per formatter thread handed out ahead of the output.
pub const SLICES_AHEAD: usize = 3;
/// Scans with fewer index entries than this are formatted on the calling
/// thread (threads would not pay for themselves).
pub const PARALLEL_MIN_ROWS: usize = 2_048;
/// At most this many slices, however long the export.
const MAX_SLICES: usize = 1 << 16;
/// At most this many formatter threads, whatever the caller asks for.
pub const MAX_THREADS: usize = 64;

/// The default number of formatter threads: the machine's cores, at most 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Write every row of `scan` (no header) to `out`, formatted on up to
/// `threads` threads (at most [`MAX_THREADS`]); returns the row count.
/// `out` is written from the calling thread only, in scan order.
pub fn write_rows<W: Write>(scan: Scan, threads: usize, out: &mut W) -> Result<u64, ExportError> {
    format_rows(scan, threads, PARALLEL_MIN_ROWS, false, |chunk| {
        out.write_all(chunk.bytes)
            .map_err(|e| error::io("write the CSV output", e))
    })
}

/// Where a row's event is in the log, and its leaf hash: what an export's
/// manifest is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowLeaf {
    pub pos: RecordPos,
    pub leaf: Hash,
}

/// Formatted rows, passed on in scan order.
pub(crate) struct Chunk<'a> {
    /// CSV bytes.
    pub bytes: &'a [u8],
    /// Rows in them.
    pub rows: u64,
    /// Their leaves, one per row, when asked for (else empty).
    pub leaves: &'a [RowLeaf],
}

/// What a formatter sends for its slice.
enum Message {
    /// CSV bytes, the number of rows in them, and their leaves if asked for.
    Rows(Vec<u8>, u64, Vec<RowLeaf>),
    /// The slice is complete.
    Done,
    Failed(ExportError),
}

/// A slice to format and where its chunks go.
type Task = (Scan, Sender<Message>);

/// Format every row of `scan` into chunks of about [`CHUNK`] bytes and
/// hand each, in scan order, to `emit` (on the calling thread) with the
/// number of rows in it, and with `leaves`, each row's [`RowLeaf`] (hashed
/// on the formatter threads). Threads are used when `threads > 1` and the
/// scan has at least `parallel_min_rows` index entries.
pub(crate) fn format_rows(
    scan: Scan,
    threads: usize,
    parallel_min_rows: usize,
    leaves: bool,
    emit: impl FnMut(Chunk<'_>) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let threads = threads.min(MAX_THREADS);
    let entries = scan.index_entries();
    if threads <= 1 || entries < parallel_min_rows.max(2) {
        return format_here([scan], leaves, emit);
    }
    let parts = (entries / SLICE_ROWS).max(threads * 2).min(MAX_SLICES);
    let slices = scan.split(parts);
    if slices.len() <= 1 {
        return format_here(slices, leaves, emit);
    }
    let (tasks, queue) = mpsc::channel::<Task>();
    let queue = Mutex::new(queue);
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let formatters: Vec<_> = (0..threads.min(slices.len()))
            .map_while(|i| {
                std::thread::Builder::new()
                    .name(format!("auditstore-export-format-{i}"))
                    .spawn_scoped(s, || format_slices(&queue, &spare, leaves))
                    .ok()
            })
            .collect();
        if formatters.is_empty() {
            // The OS would not start a thread: format here.
            drop(tasks);
            return format_here(slices, leaves, emit);
        }
        // Returning drops `tasks` and the receivers: idle formatters see
        // the queue closed, busy ones fail their next send and stop.
        let result = pass_on(slices.into_iter(), tasks, threads * SLICES_AHEAD, &spare, emit);
        // A formatter that panicked (a bug) fails the export instead of
        // unwinding through the caller; `pass_on` has already seen its
        // slice end early.
        let panicked = formatters
            .into_iter()
            .map(|f| f.join().is_err())
            .filter(|&p| p)
            .count();
        match result {
            Ok(_) if panicked > 0 => Err(formatting_stopped("a formatter thread panicked")),
            other => other,
        }
    })
}

/// The calling thread's part: hand slices out `ahead` at a time and pass
/// every slice's chunks on, in order.
fn pass_on(
    mut slices: impl Iterator<Item = Scan>,
    tasks: Sender<Task>,
    ahead: usize,
    spare: &Mutex<Vec<Vec<u8>>>,
    mut emit: impl FnMut(Chunk<'_>) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let mut handed_out: VecDeque<Receiver<Message>> = VecDeque::with_capacity(ahead);
    let mut hand_out = |handed_out: &mut VecDeque<Receiver<Message>>| -> Result<(), ExportError> {
        if let Some(slice) = slices.next() {
            let (tx, rx) = mpsc::channel();
            // The queue outlives this function, so this cannot fail; if it
            // did, skipping the slice would silently shorten the file.
            tasks
                .send((slice, tx))
                .map_err(|_| formatting_stopped("the formatters' queue is closed"))?;
            handed_out.push_back(rx);
        }
        Ok(())
    };
    for _ in 0..ahead {
        hand_out(&mut handed_out)?;
    }
    let mut rows = 0;
    while let Some(rx) = handed_out.pop_front() {
        loop {
            match rx.recv() {
                Ok(Message::Rows(bytes, n, leaves)) => {
                    emit(Chunk {
                        bytes: &bytes,
                        rows: n,
                        leaves: &leaves,
                    })?;
                    rows += n;
                    give_back(spare, bytes);
                }
                Ok(Message::Done) => break,
                Ok(Message::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(formatting_stopped(
                        "a formatter thread stopped before the end of its slice",
                    ))
                }
            }
        }
        hand_out(&mut handed_out)?;
    }
    Ok(rows)
}

/// Formatting broke down (not the scan, not the output): why.
fn formatting_stopped(why: &str) -> ExportError {
    error::io("format the CSV rows", std::io::Error::other(why.to_owned()))
}

fn give_back(spare: &Mutex<Vec<Vec<u8>>>, mut bytes: Vec<u8>) {
    bytes.clear();
    if let Ok(mut list) = spare.lock() {
        list.push(bytes);
    }
}

fn take_buffer(spare: &Mutex<Vec<Vec<u8>>>) -> Vec<u8> {
    spare
        .lock()
        .ok()
        .and_then(|mut list| list.pop())
        .unwrap_or_else(|| Vec::with_capacity(CHUNK + (64 << 10)))
}

/// Rows formatted into a buffer that is passed on every [`CHUNK`] bytes.
struct Chunker {
    row: RowFormatter,
    buf: Vec<u8>,
    /// Rows in `buf`.
    rows: u64,
    /// Their leaves, when asked for.
    leaves: Option<Vec<RowLeaf>>,
}

impl Chunker {
    fn new(buf: Vec<u8>, leaves: bool) -> Chunker {
        Chunker {
            row: RowFormatter::default(),
            buf,
            rows: 0,
            leaves: leaves.then(Vec::new),
        }
    }

    /// The leaves gathered so far, leaving an empty list (if asked for).
    fn take_leaves(&mut self) -> Vec<RowLeaf> {
        self.leaves.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Format every row of `scan` onto the buffer, calling `full` with it
    /// and its row count whenever it reaches [`CHUNK`] bytes (`full` leaves
    /// an empty buffer behind). Stops at the first error, the scan's or
    /// `full`'s.
    fn format<E: From<ExportError>>(
        &mut self,
        scan: &mut Scan,
        mut full: impl FnMut(&mut Vec<u8>, u64, Vec<RowLeaf>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(r) = scan.next_at(|pos, v| {
            if let Some(leaves) = &mut self.leaves {
                leaves.push(RowLeaf {
                    pos,
                    leaf: record_leaf(v),
                });
            }
            self.row.push(&mut self.buf, v)
        }) {
            r.map_err(ExportError::from)
                .and_then(|pushed| pushed.map_err(ExportError::from))?;
            self.rows += 1;
            if self.buf.len() >= CHUNK {
                let leaves = self.take_leaves();
                full(&mut self.buf, self.rows, leaves)?;
                self.rows = 0;
            }
        }
        Ok(())
    }
}

/// Why a formatter stops a slice early.
enum Stop {
    Failed(ExportError),
    /// The calling thread gave up (its receiver is gone).
    Abandoned,
}

impl From<ExportError> for Stop {
    fn from(e: ExportError) -> Self {
        Stop::Failed(e)
    }
}

/// A formatter thread: format the slices handed out until there are none.
fn format_slices(queue: &Mutex<Receiver<Task>>, spare: &Mutex<Vec<Vec<u8>>>, leaves: bool) {
    loop {
        let task = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok((mut scan, tx)) = task else {
            return; // no more slices
        };
        let mut chunker = Chunker::new(take_buffer(spare), leaves);
        let outcome = chunker.format(&mut scan, |buf, rows, leaves| {
            let full = std::mem::replace(buf, take_buffer(spare));
            tx.send(Message::Rows(full, rows, leaves))
                .map_err(|_| Stop::Abandoned)
        });
        let last = match outcome {
            Ok(()) => Message::Done,
            Err(Stop::Failed(e)) => Message::Failed(e),
            Err(Stop::Abandoned) => return,
        };
        let leaves = chunker.take_leaves();
        if chunker.rows > 0 && tx.send(Message::Rows(chunker.buf, chunker.rows, leaves)).is_err() {
            return;
        }
        if tx.send(last).is_err() {
            return;
        }
    }
}

/// Format on the calling thread, the scans one after another.
fn format_here(
    scans: impl IntoIterator<Item = Scan>,
    leaves: bool,
    mut emit: impl FnMut(Chunk<'_>) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let mut chunker = Chunker::new(Vec::with_capacity(CHUNK + (64 << 10)), leaves);
    let mut total = 0;
    for mut scan in scans {
        chunker.format(&mut scan, |buf, rows, leaves| {
            emit(Chunk {
                bytes: buf,
                rows,
                leaves: &leaves,
            })?;
            total += rows;
            buf.clear();
            Ok::<(), ExportError>(())
        })?;
    }
    if chunker.rows > 0 {
        let leaves = chunker.take_leaves();
        emit(Chunk {
            bytes: &chunker.buf,
            rows: chunker.rows,
            leaves: &leaves,
        })?;
        total += chunker.rows;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Query;
    use crate::store::{Durability, Options, Store};
    use crate::time::Timestamp;
    use crate::Event;
    use proptest::prelude::*;

    /// Everything `format_rows` hands to `emit`, and the per-chunk counts.
    fn formatted(store: &Store, org: &str, threads: usize) -> (Vec<u8>, u64, u64) {
        let (out, total, counted, leaves) = formatted_with_leaves(store, org, threads, false);
        assert!(leaves.is_empty());
        (out, total, counted)
    }

    fn formatted_with_leaves(
        store: &Store,
        org: &str,
        threads: usize,
        with_leaves: bool,
    ) -> (Vec<u8>, u64, u64, Vec<RowLeaf>) {
        let scan = store
            .scan(&Query::new(org, Timestamp::MIN, Timestamp::MAX))
            .expect("scan");
        let mut out = Vec::new();
        let mut counted = 0;
        let mut leaves = Vec::new();
        let total = format_rows(scan, threads, 2, with_leaves, |chunk| {
            out.extend_from_slice(chunk.bytes);
            counted += chunk.rows;
            leaves.extend_from_slice(chunk.leaves);
            Ok(())
        })
        .expect("format");
        (out, total, counted, leaves)
    }

    /// Absurd thread counts are capped, not obeyed (nor a panic).
    #[test]
    fn huge_thread_counts_are_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            dir.path(),
            Options {
                durability: Durability::Buffered,
                ..Options::default()
            },
        )
        .expect("open");
        crate::sample::SampleGenerator::new(crate::sample::SampleConfig {
            orgs: 1,
            ..crate::sample::SampleConfig::default()
        })
        .append_to(&store, 3_000, 1_000)
        .expect("append");
        let (one, rows, _) = formatted(&store, "org-00", 1);
        assert!(rows > 2_900);
        let (many, _, _) = formatted(&store, "org-00", usize::MAX);
        assert!(many == one);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Any store shape (many small segments, one still active, ties of
        /// one instant, events of two organizations interleaved), any
        /// number of threads: the bytes of one thread, every row counted.
        #[test]
        fn threads_write_the_bytes_of_one_thread(
            instants in prop::collection::vec(0i64..40, 1..600),
            foreign_every in 2usize..9,
            threads in 2usize..6,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open_with(
                dir.path(),
                Options { segment_size: 8192, durability: Durability::Buffered, ..Options::default() },
            )
            .expect("open");
            let base = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("ts").as_nanos();
            let events: Vec<(&str, Event)> = instants
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let at = Timestamp::from_nanos(base + s * 1_000_000_000);
                    let org = if i % foreign_every == 0 { "org-b" } else { "org-a" };
                    let e = Event::builder(uuid::Uuid::from_u128(i as u128 + 1), "user.logged_in", at, true)
                        .actor("u-1", "user", Some("a \"quoted\", name"))
                        .target("t-1", "project", None)
                        .build()
                        .expect("event");
                    (org, e)
                })
                .collect();
            for chunk in events.chunks(37) {
                store.append_batch(chunk.iter().map(|(o, e)| (*o, e))).expect("append");
            }
            let want_rows = events.iter().filter(|(o, _)| *o == "org-a").count() as u64;
            let (one, one_total, one_counted) = formatted(&store, "org-a", 1);
            prop_assert_eq!((one_total, one_counted), (want_rows, want_rows));
            prop_assert_eq!(one.iter().filter(|&&b| b == b'\n').count() as u64, want_rows);
            let (many, total, counted) = formatted(&store, "org-a", threads);
            prop_assert_eq!((total, counted), (want_rows, want_rows));
            prop_assert!(many == one, "{} threads wrote other bytes", threads);
            // Each row's leaf, in row order, whatever the threads: the
            // position it was read from and the hash of the event there.
            let (_, _, _, one_leaves) = formatted_with_leaves(&store, "org-a", 1, true);
            let (bytes, _, _, leaves) = formatted_with_leaves(&store, "org-a", threads, true);
            prop_assert!(bytes == one);
            prop_assert_eq!(leaves.len() as u64, want_rows);
            prop_assert_eq!(&leaves, &one_leaves);
            let mut distinct = leaves.iter().map(|l| l.pos).collect::<Vec<_>>();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len() as u64, want_rows);
        }
    }
}
