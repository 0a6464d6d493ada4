//! Appending: de-duplication, encoding, group commit, segment rolls and
//! the installation of sealed segments.

use super::*;

impl Store {
    /// Append one event owned by `org`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use auditstore::{AppendOutcome, Event, Store};
    /// let store = Store::open(dir.path())?;
    /// let event = Event::from_json(r#"{"id":"5f0c7d8e-1b2a-4c3d-9e8f-001122334455",
    ///   "action":"user.logged_in","actor":{"id":"u1","type":"user"},
    ///   "target":{"id":"u1","type":"user"},"occurred_at":"2026-06-01T10:00:00Z",
    ///   "success":true}"#)?;
    /// assert_eq!(store.append("org-01", &event)?, AppendOutcome::Appended);
    /// assert_eq!(store.append("org-01", &event)?, AppendOutcome::Duplicate);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, org: &str, event: &Event) -> Result<AppendOutcome> {
        let report = self.append_batch([(org, event)])?;
        Ok(report
            .outcomes
            .first()
            .copied()
            .unwrap_or(AppendOutcome::Duplicate))
    }

    /// Append a batch of `(org, event)` with one write and (under the default
    /// durability) one `fdatasync`. Duplicates within the batch count too.
    ///
    /// On error, a prefix of the batch may have been stored (when the batch
    /// spanned a segment roll); retrying the whole batch is safe, since
    /// stored events come back as duplicates.
    pub fn append_batch<'a, I>(&self, batch: I) -> Result<BatchReport>
    where
        I: IntoIterator<Item = (&'a str, &'a Event)>,
    {
        self.refuse_if_read_only()?;
        let items: Vec<(&str, &Event)> = batch.into_iter().collect();
        let mut report = BatchReport {
            outcomes: Vec::with_capacity(items.len()),
            ..Default::default()
        };
        for (org, _) in &items {
            org::validate_org_name(org)?;
        }
        // Frames and fingerprints depend on the events alone: made before
        // the writer lock, so that readers and other appenders wait only
        // for the dedup checks and copies (a duplicate's frame is wasted).
        let frames = Frames::encode(&items);
        let (wait_for, depends_from) = {
            let mut w = lock(&self.writer);
            if let Some(p) = &w.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if let Some(e) = self.writeback.as_ref().and_then(Writeback::take_error) {
                w.poisoned = Some(e.clone());
                return Err(Error::Poisoned(e));
            }
            let w = &mut *w;
            self.install_sealed(w);
            // Tickets above this one may still be queued or in flight: a
            // duplicate found among their records counts only if they land.
            let depends_from = w.written_ticket + 1;
            if let Err(e) = self.encode_batch(w, &items, &frames, &mut report) {
                // Unindex the frames that were encoded but not queued.
                w.index
                    .discard_from((w.active.len + w.queued.len() as u64) as u32);
                w.buf.clear();
                return Err(e);
            }
            if self.options.durability == Durability::Sync {
                // Queue the frames: the next group-commit leader writes
                // everything queued with one write, then syncs once.
                self.queue(w);
            } else {
                self.write_now(w)?;
                let end = lsn(w.active.id, w.active.len);
                self.visible_lsn.fetch_max(end, Ordering::AcqRel);
                if let Some(wb) = &self.writeback {
                    if end >= w.writeback_requested + WRITEBACK_BYTES {
                        w.writeback_requested = end;
                        wb.request(w.active.file.clone(), w.active.path.clone(), end);
                    }
                }
            }
            (w.last_ticket, depends_from)
        };
        if self.options.durability == Durability::Sync {
            self.wait_durable(wait_for)?;
            self.check_not_failed(depends_from, wait_for)?;
        }
        Ok(report)
    }

    /// Encode the batch's new events into `w.buf` and index them (readers
    /// do not see them before they are synced: `visible_lsn`), rolling
    /// when the segment is full. Every outcome goes to `report`. On error
    /// the caller unindexes what is still in `w.buf`.
    fn encode_batch(
        &self,
        w: &mut Writer,
        items: &[(&str, &Event)],
        frames: &Frames,
        report: &mut BatchReport,
    ) -> Result<()> {
        let mut scratch = Vec::new();
        w.buf.clear();
        let maybe_sealed = w.fps.contains_each(&frames.fingerprints);
        let fps_at_start = w.fps.clone();
        for (i, &(org, event)) in items.iter().enumerate() {
            if let Some((_, ahead)) = items.get(i + TOUCH_EVENTS_AHEAD) {
                ahead.touch();
            }
            let id = *event.id().as_bytes();
            // A roll inside this batch may have sealed a segment on this
            // thread (without background sealing): then the set grew and
            // the up-front answers are stale.
            let maybe_sealed = match Arc::ptr_eq(&w.fps, &fps_at_start) {
                true => maybe_sealed[i],
                false => w.fps.contains(fingerprint(&id)),
            };
            // Earlier events of this batch are indexed already, so this
            // also catches duplicates within the batch.
            if let Some(outcome) = self.check_stored(w, org, event, maybe_sealed, &mut scratch)? {
                report.record(outcome);
                continue;
            }
            let start = w.buf.len();
            w.buf.extend_from_slice(frames.frame(i));
            let frame_len = (w.buf.len() - start) as u64;
            let base = w.active.len + w.queued.len() as u64;
            if base + w.buf.len() as u64 > self.options.segment_size
                && base + start as u64 > SEGMENT_HEADER_LEN as u64
            {
                let tail = w.buf.split_off(start);
                self.write_now(w)?;
                self.roll(w)?;
                w.buf = tail;
            }
            let offset = w.active.len + (w.queued.len() + w.buf.len()) as u64 - frame_len;
            w.index.insert(
                org,
                ActiveEntry {
                    occurred_at: event.occurred_at().as_nanos(),
                    id,
                    offset: offset as u32,
                },
            );
            report.record(AppendOutcome::Appended);
        }
        Ok(())
    }

    /// Move the batch's frames (in `w.buf`, indexed already) to the commit
    /// queue under a new ticket.
    fn queue(&self, w: &mut Writer) {
        if w.buf.is_empty() {
            return;
        }
        if w.queued.is_empty() {
            // The usual case with one appender: no copy.
            std::mem::swap(&mut w.queued, &mut w.buf);
        } else {
            w.queued.extend_from_slice(&w.buf);
            w.buf.clear();
        }
        w.last_ticket += 1;
    }

    /// Write the queued frames and then the batch's own (`w.buf`): before a
    /// roll, and in buffered mode.
    fn write_now(&self, w: &mut Writer) -> Result<()> {
        self.write_queued(w)?;
        if w.buf.is_empty() {
            return Ok(());
        }
        self.queue(w);
        self.write_queued(w)
    }

    /// Write every queued frame with one write. On failure nothing queued
    /// stays: the frames leave the index, and their tickets are marked
    /// failed (their appenders get the error once the next round ends).
    pub(super) fn write_queued(&self, w: &mut Writer) -> Result<()> {
        if w.queued.is_empty() {
            w.written_ticket = w.last_ticket;
            return Ok(());
        }
        let queued = std::mem::take(&mut w.queued);
        let result = w.active.append(&queued);
        w.queued = queued;
        w.queued.clear();
        let first = w.written_ticket + 1;
        w.written_ticket = w.last_ticket;
        if let Err(e) = result {
            w.index.discard_from(w.active.len as u32);
            lock(&self.failed_tickets).push((first, w.last_ticket, e.to_string()));
            if matches!(&e, Error::Io { context, .. } if context.contains("cutting the partial write failed"))
            {
                w.poisoned = Some(e.to_string());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Err if a write of any ticket in `from..=to` failed.
    fn check_not_failed(&self, from: u64, to: u64) -> Result<()> {
        let failed = lock(&self.failed_tickets);
        match failed.iter().find(|(lo, hi, _)| *lo <= to && from <= *hi) {
            Some((_, _, e)) => Err(Error::Io {
                context: format!("group commit: the write carrying this batch failed: {e}"),
                source: std::io::Error::other(e.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Is this event's id already stored? Returns the outcome if so.
    fn check_stored(
        &self,
        w: &Writer,
        org: &str,
        event: &Event,
        maybe_sealed: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<AppendOutcome>> {
        let id_bytes = *event.id().as_bytes();
        let id = &id_bytes;
        let compare = |view: &RecordView<'_>, scratch: &mut Vec<u8>| {
            scratch.clear();
            codec::encode(org, event, scratch);
            let same_bytes = codec::decode(scratch).map(|v| v == *view).unwrap_or(false);
            if same_bytes || (view.org == org && view.to_event().same_content(event)) {
                AppendOutcome::Duplicate
            } else {
                AppendOutcome::Conflict
            }
        };
        if let Some(off) = w.index.offset_of(id) {
            let mut buf = Vec::new();
            let frame: &[u8] = match (off as u64).checked_sub(w.active.len) {
                // Queued, or encoded earlier in this batch: not yet written.
                Some(at) => match (at as usize).checked_sub(w.queued.len()) {
                    None => w.queued.get(at as usize..).unwrap_or_default(),
                    Some(in_buf) => w.buf.get(in_buf..).unwrap_or_default(),
                },
                None => {
                    segment::read_frame_at(&w.active.file, &w.active.path, off as u64, &mut buf)?;
                    &buf
                }
            };
            let view = segment::decode_frame(frame, &w.active.path, off as u64)?;
            return Ok(Some(compare(&view, scratch)));
        }
        for s in &w.sealing {
            if let Some(off) = s.index.offset_of(id) {
                let mut buf = Vec::new();
                let view = segment::read_record_at(&s.file, &s.path, off as u64, &mut buf)?;
                return Ok(Some(compare(&view, scratch)));
            }
        }
        if !maybe_sealed {
            return Ok(None);
        }
        let sealed = self.sealed_snapshot();
        // Re-sends usually carry the same occurred_at: look there first.
        let ts = event.occurred_at().as_nanos();
        let (likely, rest): (Vec<_>, Vec<_>) = sealed
            .iter()
            .partition(|s| s.layout.min_ts <= ts && ts <= s.layout.max_ts);
        for seg in likely.into_iter().chain(rest) {
            if let Some(off) = seg.find_id(id)? {
                let view = seg.record(off)?;
                return Ok(Some(compare(&view, scratch)));
            }
        }
        Ok(None)
    }

    /// Make the active segment durable and start the next one; the rolled
    /// segment is sealed (its index built) by the sealer thread. Called with
    /// the writer lock held and the write buffer flushed.
    ///
    /// Inlined although cold: when `apply_retention` became its second
    /// caller it stopped being inlined into `encode_batch`, and the ingest
    /// loop measured slower out of line (harness children, 5 alternating
    /// pairs: 743 k vs 658 k events/s medians, more CPU per event).
    #[inline(always)]
    pub(super) fn roll(&self, w: &mut Writer) -> Result<()> {
        self.write_queued(w)?;
        w.active.trim()?;
        if let Err(e) = w.active.sync() {
            w.poisoned = Some(e.to_string());
            return Err(e);
        }
        let end = lsn(w.active.id, w.active.len);
        self.synced_lsn.fetch_max(end, Ordering::AcqRel);
        self.visible_lsn.fetch_max(end, Ordering::AcqRel);
        self.resolved_ticket.fetch_max(w.written_ticket, Ordering::AcqRel);
        // If this fails, nothing changed: the current segment stays active.
        // A crash after it leaves an empty last segment (recovery removes
        // it) or a rolled segment without an index (recovery builds it).
        let next = ActiveFile::create_unsynced(
            self.options.io.clone(),
            &self.dir,
            w.active.id + 1,
            space_ahead(&self.options),
        )?;
        let capacity = w.index.len();
        let index = std::mem::replace(&mut w.index, ActiveIndex::with_capacity(capacity));
        let sealing = Sealing {
            id: w.active.id,
            path: w.active.path.clone(),
            file: w.active.file.clone(),
            len: w.active.len,
            index,
        };
        if self.options.background_sealing {
            let sealing = Arc::new(sealing);
            w.sealing.push(sealing.clone());
            let retry: Vec<Arc<Sealing>> = w.seal_failed.drain(..).map(|(s, _)| s).collect();
            for s in retry.into_iter().chain([sealing]) {
                if self
                    .sealer
                    .submit(s.clone(), w.fps.clone(), self.sealed_snapshot())
                {
                    w.sealing_queued += 1;
                } else {
                    // The sealer thread is gone (it panicked): seal here.
                    let result = sealer::seal(&self.dir, &*self.options.io, &s, &w.fps);
                    self.release_resident_pages();
                    self.install_one(w, Sealed { sealing: s, result });
                }
            }
        } else {
            let result = sealer::seal(&self.dir, &*self.options.io, &sealing, &w.fps);
            if let Err(e) = result {
                // Undo: the current segment stays active; an empty next
                // segment left behind is removed by recovery.
                w.index = sealing.index;
                let _ = std::fs::remove_file(&next.path);
                return Err(e);
            }
            self.release_resident_pages();
            let sealing = Arc::new(sealing);
            self.install_one(w, Sealed { sealing, result });
        }
        w.active = next;
        let start = lsn(w.active.id, w.active.len);
        self.synced_lsn.fetch_max(start, Ordering::AcqRel);
        self.visible_lsn.fetch_max(start, Ordering::AcqRel);
        Ok(())
    }

    /// Install whatever the sealer has finished. Called under the writer
    /// lock by everything that takes it to read or append, so a sealed
    /// segment moves from `sealing` to the sealed list atomically for every
    /// reader.
    pub(super) fn install_sealed(&self, w: &mut Writer) {
        if w.sealing_queued > 0 {
            for done in self.sealer.finished() {
                w.sealing_queued -= 1;
                self.install_one(w, done);
            }
        }
    }

    /// Wait for every queued sealing and install it.
    pub(super) fn settle_sealing(&self, w: &mut Writer) {
        while w.sealing_queued > 0 {
            match self.sealer.wait() {
                Some(done) => {
                    w.sealing_queued -= 1;
                    self.install_one(w, done);
                }
                None => break,
            }
        }
    }

    /// Give back the resident pages of every sealed segment's mappings
    /// (they stay in the page cache), so that mapped memory stays bounded
    /// by what one segment's worth of work touched. At every roll: on the
    /// sealer thread, or here when sealing on the appending thread.
    fn release_resident_pages(&self) {
        for seg in self.sealed_snapshot().iter() {
            seg.release_resident_pages();
        }
    }

    fn install_one(&self, w: &mut Writer, done: Sealed) {
        let (seg, merged, base) = match done.result {
            Ok(r) => r,
            Err(e) => {
                w.seal_failed.push((done.sealing, e.to_string()));
                return;
            }
        };
        w.fps = if Arc::ptr_eq(&w.fps, &base) {
            merged
        } else {
            // The set changed meanwhile (retention, or another install).
            Arc::new(w.fps.merged(&seg.fingerprints()))
        };
        w.checkpoint_current = false;
        w.sealing.retain(|s| !Arc::ptr_eq(s, &done.sealing));
        let mut list = self.sealed.write().unwrap_or_else(|p| p.into_inner());
        let mut next_list: Vec<Arc<SealedSegment>> = list.as_ref().clone();
        let at = next_list.partition_point(|s| s.id < seg.id);
        next_list.insert(at, Arc::new(seg));
        *list = Arc::new(next_list);
    }

    /// Block until batch `ticket` (and every earlier one) is durable or
    /// failed; one caller runs the round for all who wait (group commit).
    fn wait_durable(&self, ticket: u64) -> Result<()> {
        self.group_commit
            .wait(ticket, &self.resolved_ticket, || self.commit_round())
    }

    /// One group-commit round: write everything queued with one write, then
    /// fdatasync once.
    fn commit_round(&self) -> Result<()> {
        let (file, path, upto, ticket, written) = {
            let mut w = lock(&self.writer);
            if let Some(p) = &w.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            let written = self.write_queued(&mut w);
            (
                w.active.file.clone(),
                w.active.path.clone(),
                lsn(w.active.id, w.active.len),
                w.written_ticket,
                written,
            )
        };
        if let Err(e) = self.options.io.sync_data(&file) {
            let err = Error::io(format!("fdatasync {}", path.display()), e);
            lock(&self.writer).poisoned = Some(err.to_string());
            return Err(err);
        }
        self.synced_lsn.fetch_max(upto, Ordering::AcqRel);
        self.visible_lsn.fetch_max(upto, Ordering::AcqRel);
        self.resolved_ticket.fetch_max(ticket, Ordering::AcqRel);
        written
    }

    /// Make everything appended so far durable (useful with
    /// [`Durability::Buffered`]).
    pub fn flush(&self) -> Result<()> {
        let (ticket, from) = {
            let w = lock(&self.writer);
            (w.last_ticket, w.written_ticket + 1)
        };
        self.wait_durable(ticket)?;
        self.check_not_failed(from, ticket)
    }
}

/// A batch's frames, encoded outside the writer lock.
struct Frames {
    bytes: Vec<u8>,
    /// Where each event's frame ends in `bytes`.
    ends: Vec<usize>,
    fingerprints: Vec<u64>,
}

impl Frames {
    fn encode(items: &[(&str, &Event)]) -> Frames {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(items.len());
        let mut fingerprints = Vec::with_capacity(items.len());
        for (org, event) in items {
            let start = frame::begin(&mut bytes);
            codec::encode(org, event, &mut bytes);
            frame::seal_in_place(&mut bytes, start);
            ends.push(bytes.len());
            fingerprints.push(fingerprint(event.id().as_bytes()));
        }
        Frames {
            bytes,
            ends,
            fingerprints,
        }
    }

    fn frame(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.bytes.get(start..end).unwrap_or_default()
    }
}
