//! The child: one system run through the workload.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstore::export;
use auditstore::export::pipe::PipedFile;
use auditstore::{Event, FixedClock, Options, Query, Store, Timestamp};
use serde_json::{json, Value};

use crate::*;

thread_local! {
    static SYS: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

pub(crate) fn child(a: &Args, sys: &str) -> Res<()> {
    SYS.with(|s| s.set(SYSTEMS.iter().find(|n| **n == sys).copied().unwrap_or("")));
    let dir = a.dir.clone().ok_or("--only needs --dir")?;
    std::fs::create_dir_all(&dir)?;
    let store_dir = dir.join("store");
    eprintln!("[{sys}] generating {} events ...", a.events);
    let keep = match sys {
        "auditstore" | "auditstore-notree" => Keep::Events,
        "raw" => Keep::Records,
        _ => Keep::Json,
    };
    let wl = generate(a.events, a.seed, keep);
    let qs = queries(&wl, a.queries, a.seed);
    eprintln!("[{sys}] generated in {:.1}s; ingesting ...", wl.gen_secs);
    prefault(a.prefault_mb);
    profiling_pause();
    let mut out = json!({
        "system": sys,
        "events_offered": wl.offered,
        "offered_json_bytes": wl.offered_json_bytes,
        "unique_events": wl.unique,
        "unique_json_bytes": wl.unique_json_bytes,
        "unique_record_bytes": wl.unique_record_bytes,
        "offered_record_bytes": wl.offered_record_bytes,
        "batch": a.batch,
        "gen_secs": wl.gen_secs,
    });
    let extra = match sys {
        "raw" => run_raw(a, &wl, &store_dir)?,
        "auditstore" | "auditstore-notree" => run_auditstore(a, &wl, &qs, &store_dir, &dir)?,
        "sled" => run_sled(a, &wl, &qs, &store_dir)?,
        "sqlite" => run_sqlite(a, &wl, &qs, &store_dir)?,
        "redb" => run_redb(a, &wl, &qs, &store_dir)?,
        "fjall" => run_fjall(a, &wl, &qs, &store_dir)?,
        _ => unreachable!(),
    };
    let o = out.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        o.insert(k.clone(), v.clone());
    }
    let secs = o["ingest_secs"].as_f64().unwrap_or(0.0);
    o.insert("events_per_sec".into(), json!(wl.offered as f64 / secs.max(1e-9)));
    o.insert(
        "mb_per_sec".into(),
        json!(wl.offered_json_bytes as f64 / 1e6 / secs.max(1e-9)),
    );
    eprintln!("[{sys}] done");
    println!("RESULT {out}");
    Ok(())
}

/// With `COMPARE_PAUSE_MS` set, sleep between phases (outside every timed
/// section) so that a profiler attached with `perf record -p` can be
/// started and stopped on the phase markers printed to stderr.
pub(crate) fn profiling_pause() {
    if let Some(ms) = std::env::var("COMPARE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Common fields after an ingest phase.
pub(crate) fn ingest_json(p: &Phase, appended: u64, duplicates: u64) -> Value {
    let (secs, cpu, rss0, peak) = p.end();
    json!({
        "ingest_secs": secs,
        "ingest_cpu_secs": cpu,
        "ingest_sys_secs": p.user_sys().1,
        "appended": appended,
        "duplicates": duplicates,
        "rss_before_ingest": rss0,
        "ingest_peak_rss": peak,
        "ingest_peak_rss_above_workload": peak.saturating_sub(rss0),
        "peak_reset_ok": p.peak_reset,
    })
}

pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    let o = a.as_object_mut().unwrap();
    for (k, v) in b.as_object().unwrap() {
        o.insert(k.clone(), v.clone());
    }
    a
}

pub(crate) fn disk_json(prefix: &str, dir: &Path) -> Value {
    let (alloc, apparent) = disk_usage(dir);
    json!({ format!("{prefix}disk_bytes"): alloc, format!("{prefix}disk_apparent_bytes"): apparent })
}

// raw ceiling ----------------------------------------------------------------

pub(crate) fn run_raw(a: &Args, wl: &Workload, dir: &Path) -> Res<Value> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("raw.log");
    let p = Phase::start();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    for batch in wl.records.chunks(a.batch) {
        for body in batch {
            w.write_all(&(body.len() as u32).to_le_bytes())?;
            w.write_all(&crc32fast::hash(body).to_le_bytes())?;
            w.write_all(body)?;
        }
        w.flush()?;
        w.get_ref().sync_data()?;
    }
    let ingest = ingest_json(&p, wl.offered, 0);
    drop(w);
    // Sequential read with CRC check (no index: no range queries).
    let p = Phase::start();
    let mut r = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let mut hdr = [0u8; 8];
    let mut body = Vec::new();
    let mut n = 0u64;
    let mut first_us = 0.0;
    loop {
        match r.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        if crc32fast::hash(&body) != u32::from_le_bytes(hdr[4..].try_into().unwrap()) {
            return Err("raw log: CRC mismatch".into());
        }
        if n == 0 {
            first_us = p.t.elapsed().as_secs_f64() * 1e6;
        }
        n += 1;
    }
    let (secs, _, _, _) = p.end();
    Ok(merge(
        merge(ingest, disk_json("", dir)),
        json!({
            "scan_kind": "full sequential read + CRC, no decode",
            "scan_events": n,
            "scan_secs": secs,
            "scan_events_per_sec": n as f64 / secs.max(1e-9),
            "first_event_us_p50": first_us,
        }),
    ))
}

// auditstore -------------------------------------------------------------------

pub(crate) fn run_auditstore(
    a: &Args,
    wl: &Workload,
    qs: &[(String, i64, i64)],
    dir: &Path,
    run_dir: &Path,
) -> Res<Value> {
    let clock = Arc::new(FixedClock::new(Timestamp::from_nanos(wl.max_ts + DAY)));
    let open = |clock: Arc<FixedClock>| {
        Store::open_with(
            dir,
            Options {
                clock,
                // `auditstore-notree`: the tamper-evidence tree and its
                // checkpoints off, to measure what they cost.
                integrity: SYS.with(|s| s.get()) != "auditstore-notree",
                ..Options::default()
            },
        )
    };
    let store = open(clock.clone())?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.events.chunks(a.batch) {
        let r = store.append_batch(batch.iter().map(|(o, e)| (wl.orgs[*o as usize].as_str(), e)))?;
        appended += r.appended;
        dups += r.duplicates + r.conflicts;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let stats = store.stats()?;
    let disk_open = disk_json("open_", dir);

    let p = Phase::start();
    let scan = run_queries(qs, |org, from, to, f| {
        let q = Query::new(org, Timestamp::from_nanos(from), Timestamp::from_nanos(to));
        for e in store.scan(&q)? {
            f(&e?);
        }
        Ok(())
    })?;
    let (_, _, _, scan_peak) = p.end();
    let (scan_user, scan_sys) = p.user_sys();

    // Zero-copy visit of the same queries (no owned Event).
    let t = Instant::now();
    let mut zc = 0u64;
    for (org, from, to) in qs {
        let q = Query::new(
            org.as_str(),
            Timestamp::from_nanos(*from),
            Timestamp::from_nanos(*to),
        );
        let mut s = store.scan(&q)?;
        while let Some(r) = s.next_with(|v| v.payload.len()) {
            r?;
            zc += 1;
        }
    }
    let zc_secs = t.elapsed().as_secs_f64();

    // CSV export of every stored event, formatted on `--export-threads`
    // threads (as export builds are), to a file written by a helper thread
    // (PipedFile, as export builds do), fsynced.
    eprintln!("[auditstore] queried; exporting ...");
    profiling_pause();
    let csv_path = run_dir.join("export.csv");
    let p = Phase::start();
    let mut out = PipedFile::create(&csv_path)?;
    out.write_all(&export::csv::header())?;
    let mut rows = 0;
    for org in &wl.orgs {
        let q = Query::new(org.as_str(), Timestamp::MIN, Timestamp::MAX);
        rows += export::rows::write_rows(store.scan(&q)?, a.export_threads, &mut out)?;
    }
    let file = out.finish()?;
    file.sync_all()?;
    let (export_secs, export_cpu, _, export_peak) = p.end();
    let export_sys = p.user_sys().1;
    let export_bytes = std::fs::metadata(&csv_path)?.len();
    drop(file);
    std::fs::remove_file(&csv_path)?;
    drop(store);

    // Reopen after a clean close (its cost, for the record).
    let t = Instant::now();
    let store = open(clock)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(store);

    Ok(merge(
        merge(
            merge(ingest, scan.to_json()),
            merge(disk_open, disk_json("", dir)),
        ),
        json!({
            "scan_peak_rss": scan_peak,
            "scan_user_secs": scan_user,
            "scan_sys_secs": scan_sys,
            "zero_copy_scan_events": zc,
            "zero_copy_scan_events_per_sec": zc as f64 / zc_secs.max(1e-9),
            "export_rows": rows,
            "export_threads": a.export_threads,
            "export_secs": export_secs,
            "export_cpu_secs": export_cpu,
            "export_sys_secs": export_sys,
            "export_rows_per_sec": rows as f64 / export_secs.max(1e-9),
            "export_bytes": export_bytes,
            "export_peak_rss": export_peak,
            "stats_events": stats.events,
            "stats_segments": stats.segments,
            "index_memory_bytes": stats.index_memory_bytes,
            "reopen_ms": reopen_ms,
        }),
    ))
}

// sled -------------------------------------------------------------------------

pub(crate) fn run_sled(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    let db = sled::open(dir)?;
    let time = db.open_tree("time")?;
    let ids = db.open_tree("ids")?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    let mut seen = HashSet::new();
    for batch in wl.items.chunks(a.batch) {
        let mut tb = sled::Batch::default();
        let mut ib = sled::Batch::default();
        seen.clear();
        for it in batch {
            if !seen.insert(it.id) || ids.contains_key(it.id)? {
                dups += 1;
                continue;
            }
            let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
            ib.insert(&it.id[..], key.as_slice());
            tb.insert(key, it.json.as_bytes());
            appended += 1;
        }
        time.apply_batch(tb)?;
        ids.apply_batch(ib)?;
        db.flush()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        for kv in time.range(time_key(org, from, None)..time_key(org, to, None)) {
            let (_, v) = kv?;
            f(&parse_stored(&v)?);
        }
        Ok(())
    })?;
    drop((time, ids));
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// SQLite -------------------------------------------------------------------------

pub(crate) fn run_sqlite(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    use rusqlite::{params, Connection};
    std::fs::create_dir_all(dir)?;
    let mut conn = Connection::open(dir.join("events.sqlite"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode.to_lowercase(), "wal");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events(id BLOB NOT NULL UNIQUE, org TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX events_org_ts ON events(org, ts);",
    )?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.items.chunks(a.batch) {
        let tx = conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO events(id, org, ts, body) VALUES (?1, ?2, ?3, ?4)")?;
            for it in batch {
                let n = st.execute(params![&it.id[..], wl.orgs[it.org as usize], it.ts, it.json])?;
                if n == 0 {
                    dups += 1;
                } else {
                    appended += 1;
                }
            }
        }
        tx.commit()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = {
        let mut st =
            conn.prepare("SELECT body FROM events WHERE org = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts")?;
        run_queries(qs, |org, from, to, f| {
            let mut rows = st.query(params![org, from, to])?;
            while let Some(row) = rows.next()? {
                let body = row.get_ref(0)?.as_str()?;
                f(&Event::from_json(body)?);
            }
            Ok(())
        })?
    };
    drop(conn);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// redb ---------------------------------------------------------------------------

pub(crate) const REDB_TIME: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("time");
pub(crate) const REDB_IDS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ids");

pub(crate) fn run_redb(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    // redb 5: `begin_read` is on the `ReadableDatabase` trait.
    use redb::{ReadableDatabase, ReadableTable};
    std::fs::create_dir_all(dir)?;
    // The default concurrency mode (ExclusiveWriter), as with redb 2.
    let db = redb::Database::create(dir.join("events.redb"))?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    for batch in wl.items.chunks(a.batch) {
        let mut tx = db.begin_write()?;
        // Every batch a synced commit. Immediate is redb's default in 2 and
        // 5 alike; redb 5's `set_durability` returns a Result (it refuses
        // `None` in the multi-process modes), hence the `?`.
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut time = tx.open_table(REDB_TIME)?;
            let mut ids = tx.open_table(REDB_IDS)?;
            for it in batch {
                if ids.get(&it.id[..])?.is_some() {
                    dups += 1;
                    continue;
                }
                let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
                time.insert(key.as_slice(), it.json.as_bytes())?;
                ids.insert(&it.id[..], key.as_slice())?;
                appended += 1;
            }
        }
        tx.commit()?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        let rtx = db.begin_read()?;
        let time = rtx.open_table(REDB_TIME)?;
        let (lo, hi) = (time_key(org, from, None), time_key(org, to, None));
        // redb 5's `range` takes the key type from the range: no turbofish.
        for kv in time.range(lo.as_slice()..hi.as_slice())? {
            let (_, v) = kv?;
            f(&parse_stored(v.value())?);
        }
        Ok(())
    })?;
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}

// fjall --------------------------------------------------------------------------

pub(crate) fn run_fjall(a: &Args, wl: &Workload, qs: &[(String, i64, i64)], dir: &Path) -> Res<Value> {
    // fjall 3 renamed fjall 2's Keyspace (the whole store, with the journal)
    // to `Database` and its partitions to `Keyspace`s; the settings are the
    // same as with fjall 2: the defaults, two keyspaces, and after each
    // batch's commit (journal written, `PersistMode::Buffer`, the default)
    // an explicit `persist(PersistMode::SyncAll)`, so each acknowledged batch
    // is fsynced.
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};
    let db = Database::builder(dir).open()?;
    let time = db.keyspace("time", KeyspaceCreateOptions::default)?;
    let ids = db.keyspace("ids", KeyspaceCreateOptions::default)?;
    let p = Phase::start();
    let (mut appended, mut dups) = (0, 0);
    let mut seen = HashSet::new();
    for batch in wl.items.chunks(a.batch) {
        let mut b = db.batch();
        seen.clear();
        for it in batch {
            if !seen.insert(it.id) || ids.contains_key(it.id)? {
                dups += 1;
                continue;
            }
            let key = time_key(&wl.orgs[it.org as usize], it.ts, Some(&it.id));
            b.insert(&ids, &it.id[..], key.as_slice());
            b.insert(&time, key, it.json.as_bytes());
            appended += 1;
        }
        b.commit()?;
        db.persist(PersistMode::SyncAll)?;
    }
    let ingest = ingest_json(&p, appended, dups);
    eprintln!("[{}] ingested; querying ...", SYS.with(|s| s.get()));
    profiling_pause();
    let disk_open = disk_json("open_", dir);
    let scan = run_queries(qs, |org, from, to, f| {
        // fjall 3's iterators yield guards; `into_inner` reads the pair.
        for kv in time.range(time_key(org, from, None)..time_key(org, to, None)) {
            let (_, v) = kv.into_inner()?;
            f(&parse_stored(&v)?);
        }
        Ok(())
    })?;
    drop((time, ids));
    drop(db);
    Ok(merge(
        merge(ingest, scan.to_json()),
        merge(disk_open, disk_json("", dir)),
    ))
}
