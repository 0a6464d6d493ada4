//! Upkeep: retention, stats and verification.

use super::*;

impl Store {
    /// Delete every sealed segment all of whose events are past the
    /// retention of their organizations, as of the store's clock.
    ///
    /// Files are renamed aside, the directory fsynced, then unlinked; a
    /// reader still holding a segment keeps its mapping (unlinking never
    /// shrinks a mapped file).
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        self.apply_retention_at(self.options.clock.now())
    }

    /// [`Store::apply_retention`] as of `now` instead of the store's clock.
    pub fn apply_retention_at(&self, now: Timestamp) -> Result<RetentionReport> {
        self.refuse_if_read_only()?;
        let mut report = RetentionReport::default();
        // Every retention run is made at a signed checkpoint, covering
        // every event it may delete (integrity.md, "Retention").
        let checkpoint = self.checkpoint_if_kept()?;
        report.checkpoint = checkpoint.as_ref().map(|c| c.note.clone());
        let mut w = lock(&self.writer);
        let mut cutoffs: HashMap<String, i64> = HashMap::new();
        let mut cutoff_of = |org: &str| -> Result<i64> {
            if let Some(c) = cutoffs.get(org) {
                return Ok(*c);
            }
            let c = self.retention_from(org, now)?;
            cutoffs.insert(org.to_owned(), c);
            Ok(c)
        };
        // An active segment whose every event is past retention is rolled,
        // so that it is sealed and deleted like the others (a small store
        // may never fill a segment).
        // (An event at the last representable instant never expires.)
        let mut active_expired = matches!(w.index.time_bounds(), Some((_, newest)) if newest < i64::MAX);
        for org in w.index.org_names() {
            if !w.index.range_shared(org, cutoff_of(org)?, i64::MAX).is_empty() {
                active_expired = false;
                break;
            }
        }
        if active_expired {
            self.roll(&mut w)?;
        }
        // Only sealed segments are candidates; let the ones sealing finish.
        self.settle_sealing(&mut w);
        let sealed = self.sealed_snapshot();
        let mut keep = Vec::with_capacity(sealed.len());
        let mut doomed = Vec::new();
        for seg in sealed.iter() {
            let mut expired = true;
            for o in &seg.layout.orgs {
                if o.max_ts >= cutoff_of(&o.name)? {
                    expired = false;
                    break;
                }
            }
            // With the tree, only the oldest segments go (a prefix of the
            // log): leaf indexes stay a count from the first retained leaf,
            // and one bottom tile at most is cut (docs/format.md,
            // "Checkpoints file"). A later expired segment waits.
            if expired && (self.tlog.is_none() || keep.is_empty()) {
                doomed.push(seg.clone());
            } else {
                keep.push(seg.clone());
            }
        }
        if doomed.is_empty() {
            return Ok(report);
        }
        // The tree records the deletion before anything is deleted (a crash
        // in between leaves segments the next run deletes).
        let first_kept = keep.first().map_or(w.active.id, |s| s.id);
        if let (Some(t), Some(cp)) = (&self.tlog, &checkpoint) {
            report.first_retained_leaf = Some(t.record_retention(first_kept, cp)?);
        }
        // Index first: a crash between the two renames leaves a log without
        // an index, which the next open re-indexes (and a later run deletes).
        for seg in &doomed {
            for path in [&seg.idx_path, &seg.log_path] {
                let aside = aside_path(path);
                self.options
                    .io
                    .rename(path, &aside)
                    .ctx(|| format!("rename {} aside", path.display()))?;
            }
        }
        segment::sync_dir_via(&*self.options.io, &self.dir)?;
        for seg in &doomed {
            for path in [&seg.idx_path, &seg.log_path] {
                let aside = aside_path(path);
                std::fs::remove_file(&aside).ctx(|| format!("remove {}", aside.display()))?;
                report.files.push(path.clone());
            }
            report.segments_deleted += 1;
            report.events_deleted += seg.layout.event_count;
            report.bytes_freed += seg.disk_bytes();
        }
        segment::sync_dir_via(&*self.options.io, &self.dir)?;
        w.fps = Arc::new(FingerprintSet::from_runs(
            keep.iter().map(|s| s.fingerprints()).collect(),
        ));
        w.checkpoint_current = false;
        *self.sealed.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keep);
        Ok(report)
    }

    /// Every organization with at least one event on disk, sorted.
    pub fn event_orgs(&self) -> Vec<String> {
        let mut w = lock(&self.writer);
        self.install_sealed(&mut w);
        let mut orgs: HashSet<String> = HashSet::new();
        for seg in self.sealed_snapshot().iter() {
            orgs.extend(seg.layout.orgs.iter().map(|o| o.name.clone()));
        }
        for s in &w.sealing {
            orgs.extend(s.index.org_names().map(str::to_owned));
        }
        orgs.extend(w.index.org_names().map(str::to_owned));
        let mut orgs: Vec<String> = orgs.into_iter().collect();
        orgs.sort();
        orgs
    }

    /// Counts over the whole store.
    pub fn stats(&self) -> Result<Stats> {
        let mut w = lock(&self.writer);
        self.install_sealed(&mut w);
        let sealed = self.sealed_snapshot();
        let mut orgs: HashSet<&str> = HashSet::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut stats = Stats {
            segments: (sealed.len() + w.sealing.len()) as u64 + 1,
            index_memory_bytes: (w.fps.memory_bytes() + w.index.memory_bytes()) as u64,
            ..Default::default()
        };
        let mut sealing_orgs: Vec<String> = Vec::new();
        for s in &w.sealing {
            let index = &s.index;
            stats.events += index.len() as u64;
            stats.bytes += s.len;
            stats.index_memory_bytes += index.memory_bytes() as u64;
            sealing_orgs.extend(index.org_names().map(str::to_owned));
            if let Some((a, b)) = index.time_bounds() {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        for seg in sealed.iter() {
            stats.events += seg.layout.event_count;
            stats.bytes += seg.disk_bytes();
            for o in &seg.layout.orgs {
                orgs.insert(&o.name);
            }
            if seg.layout.event_count > 0 {
                lo = lo.min(seg.layout.min_ts);
                hi = hi.max(seg.layout.max_ts);
            }
        }
        // Not the appends still in flight (queued, or not yet synced).
        stats.events += w.index.count_below(self.visible_end(&w)) as u64;
        stats.bytes += w.active.len;
        if let Some((a, b)) = w.index.time_bounds() {
            lo = lo.min(a);
            hi = hi.max(b);
        }
        orgs.extend(sealing_orgs.iter().map(String::as_str));
        let mut count = orgs.len() as u64;
        for o in w.index.org_names() {
            if !orgs.contains(o) {
                count += 1;
            }
        }
        stats.organizations = count;
        if lo <= hi {
            stats.oldest = Some(Timestamp::from_nanos(lo));
            stats.newest = Some(Timestamp::from_nanos(hi));
        }
        stats.bytes += std::fs::metadata(self.dir.join(META_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(stats)
    }

    /// Check every record's checksum and every index against the log, and
    /// the log against the tamper-evidence tree and every stored
    /// checkpoint (`tlog_verify.rs`).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_against(None)
    }

    /// [`Store::verify`], also checking that the store is consistent with
    /// `note`, a signed checkpoint kept elsewhere: a store truncated,
    /// rolled back or rewritten since is reported.
    pub fn verify_against(&self, note: Option<&str>) -> Result<VerifyReport> {
        let mut report = self.verify_files()?;
        self.verify_tree(note, &mut report);
        Ok(report)
    }

    fn verify_files(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        report.problems.extend(self.recovery.problems.iter().cloned());
        // Damage an earlier open cut from the active segment stays a problem
        // until its quarantine file is removed (this open's is in `problems`).
        for kept in quarantine_files(&self.dir) {
            if self
                .recovery
                .quarantined
                .iter()
                .any(|q| q.file_name() == kept.file_name())
            {
                continue;
            }
            let (file, offset) = quarantined_from(&self.dir, &kept).unwrap_or_else(|| (kept.clone(), 0));
            let state = match kept.extension().is_some_and(|e| e == "cut") {
                true => "valid records after it were appended again; remove that file once inspected",
                false => "valid records after it are still to be appended again: the next open retries",
            };
            report.problems.push(Problem {
                leaf_index: None,
                file,
                offset,
                message: format!(
                    "damaged record in what was the active segment, found on an earlier open: the bytes \
                     from it on were cut and kept in {} ({state})",
                    kept.display()
                ),
            });
        }
        let unsealed: Vec<(PathBuf, u64, String)> = {
            let mut w = lock(&self.writer);
            self.settle_sealing(&mut w);
            if self.read_only {
                // Segments without a valid index, read and indexed in memory
                // by the open (which walked every record: it refuses or
                // reports one that is not intact).
                for s in &w.sealing {
                    report.segments += 1;
                    report.records += s.index.len() as u64;
                    report.bytes += s.len;
                }
            }
            w.seal_failed
                .iter()
                .map(|(s, e)| (s.path.clone(), s.len, e.clone()))
                .collect()
        };
        for (path, len, e) in unsealed {
            report.segments += 1;
            report.bytes += len;
            report.problems.push(Problem {
                leaf_index: None,
                file: path,
                offset: 0,
                message: format!(
                    "rolled segment without an index: writing it failed ({e}); the next open builds it"
                ),
            });
        }
        let sealed = self.sealed_snapshot();
        for seg in sealed.iter() {
            report.segments += 1;
            report.indexes += 1;
            report.bytes += seg.disk_bytes();
            verify_sealed(seg, &mut report);
        }
        // The de-duplication checkpoint, if any, must match the indexes it
        // claims to cover (a wrong one would let duplicates in).
        let cp_path = self.dir.join(CHECKPOINT_FILE);
        if let Ok(bytes) = std::fs::read(&cp_path) {
            report.indexes += 1;
            match checkpoint::decode(Arc::new(bytes)) {
                Err(e) => report.problems.push(Problem {
                    leaf_index: None,
                    file: cp_path,
                    offset: 0,
                    message: format!("de-duplication checkpoint unreadable ({e}); it will be rebuilt"),
                }),
                Ok((covered, fps)) => {
                    let by_id: HashMap<u64, &Arc<SealedSegment>> = sealed.iter().map(|s| (s.id, s)).collect();
                    if covered.iter().all(|id| by_id.contains_key(id)) {
                        let runs = covered
                            .iter()
                            .filter_map(|id| by_id.get(id))
                            .map(|s| s.fingerprints())
                            .collect();
                        if FingerprintSet::from_runs(runs).keys() != fps.keys() {
                            report.problems.push(Problem {
                                leaf_index: None,
                                file: cp_path,
                                offset: 0,
                                message: "de-duplication checkpoint does not match the indexes it covers"
                                    .into(),
                            });
                        }
                    }
                }
            }
        }
        // The active segment, up to what has been written.
        let (path, len, file) = {
            let w = lock(&self.writer);
            (w.active.path.clone(), w.active.len, w.active.file.clone())
        };
        if len == 0 {
            // A read-only open found no active segment.
            return Ok(report);
        }
        report.segments += 1;
        report.bytes += len;
        let mut bytes = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut bytes, 0)
            .ctx(|| format!("read {}", path.display()))?;
        let id = segment::parse_name(path.file_name().and_then(|n| n.to_str()).unwrap_or(""))
            .map(|(id, _)| id)
            .unwrap_or(0);
        if let Err(e) = header::check(&bytes, id) {
            report.problems.push(Problem {
                leaf_index: None,
                file: path.clone(),
                offset: 0,
                message: e.to_string(),
            });
        } else {
            let mut n = 0u64;
            let damage = recovery::survey(&bytes, SEGMENT_HEADER_LEN, |_, _| n += 1);
            report.records += n;
            report_damage(&mut report, &path, len, "active segment", &damage);
        }
        Ok(report)
    }
}

/// Check a sealed segment's every record, past any damage, and its index:
/// against the index built from the log when the log is intact, else entry
/// by entry against the records that are still valid.
fn verify_sealed(seg: &SealedSegment, report: &mut VerifyReport) {
    let log = seg.log_bytes();
    let mut found = IndexEntries::default();
    let damage = recovery::survey(log, SEGMENT_HEADER_LEN, |off, v| found.add(off, v));
    report.records += found.entries.len() as u64;
    report_damage(report, &seg.log_path, log.len() as u64, "sealed segment", &damage);
    let actual = seg.idx_bytes();
    let mismatch_at = if damage.is_empty() {
        let expected = idxfile::build(seg.id, log.len() as u64, &found.orgs, &mut found.entries);
        (expected.as_slice() != actual).then(|| {
            expected
                .iter()
                .zip(actual.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(actual.len()))
        })
    } else {
        // Every entry must name a valid record (with its time) or lie in a
        // damaged stretch, and every valid record must have an entry.
        let mut valid: HashMap<u32, (i64, bool)> = found
            .entries
            .iter()
            .map(|e| (e.offset, (e.occurred_at, false)))
            .collect();
        let damaged = |off: u32| damage.iter().any(|d| (d.offset..d.end).contains(&u64::from(off)));
        let mut first_bad = None;
        for i in 0..seg.layout.event_count {
            let (ts, off) = idxfile::time_entry(actual, &seg.layout, i);
            let ok = match valid.get_mut(&off) {
                Some((valid_ts, seen)) if *valid_ts == ts => {
                    *seen = true;
                    true
                }
                Some(_) => false,
                None => damaged(off),
            };
            if !ok {
                first_bad = Some(seg.layout.time_at + i as usize * idxfile::ENTRY_LEN);
                break;
            }
        }
        first_bad.or_else(|| {
            valid
                .values()
                .any(|(_, seen)| !seen)
                .then_some(seg.layout.time_at)
        })
    };
    if let Some(at) = mismatch_at {
        report.problems.push(Problem {
            leaf_index: None,
            file: seg.idx_path.clone(),
            offset: at as u64,
            message: "index does not match its segment".into(),
        });
    }
}

/// One problem per damaged stretch of a segment of `len` bytes.
fn report_damage(report: &mut VerifyReport, file: &Path, len: u64, what: &str, damage: &[recovery::Damage]) {
    for d in damage {
        let span = d.end - d.offset;
        let extent = match d.end >= len {
            true => format!("no valid record in the {span} bytes from there to the end"),
            false => format!("{span} bytes without a valid record, up to offset {}", d.end),
        };
        report.problems.push(Problem {
            leaf_index: None,
            file: file.to_path_buf(),
            offset: d.offset,
            message: format!("{what}: {} ({extent})", d.reason),
        });
    }
}
