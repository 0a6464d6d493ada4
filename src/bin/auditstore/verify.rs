//! `verify [--against CHECKPOINT]`: the data directory's store, and on a
//! cluster node's data directory every partition store too (docs/cluster.md,
//! "A node's data directory"). Read-only: nothing in the directory changes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use auditstore::export::{ExportPolicy, Exports, POLICY_FILE};
use auditstore::partitions::{partition_dirs, read_count, COUNT_FILE, PARTITIONS_DIR};
use auditstore::{Options, Problem, Store, VerifyReport};
use serde_json::{json, Value};

use crate::ctx::{outln, CliError, CliResult, Ctx};

/// A problem that is no file's damage at a byte offset.
fn problem(file: PathBuf, message: String) -> Problem {
    Problem {
        leaf_index: None,
        file,
        offset: 0,
        message,
    }
}

/// The store in `dir` opened for verifying (`None`: no store there).
fn open(dir: &Path, options: Options) -> CliResult<Option<Store>> {
    if !Store::exists_at(dir) {
        return Ok(None);
    }
    Ok(Some(Store::open_for_verify(dir, options)?))
}

/// One store checked: its files, tree and checkpoints (and `against`), its
/// export requests and files.
fn check(ctx: &Ctx, store: &Store, against: Option<&str>) -> CliResult<VerifyReport> {
    let mut report = store.verify_against(against)?;
    let exports = Exports::new(store).unwrap_or_else(|e| {
        report
            .problems
            .push(problem(store.dir().join(POLICY_FILE), e.to_string()));
        Exports::with_policy(store, ExportPolicy::default())
    });
    let exports = exports.with_clock(ctx.clock());
    match exports.check_files() {
        Ok(found) => report.problems.extend(found),
        Err(e) => report.problems.push(problem(
            store.dir().join(auditstore::meta::META_FILE),
            format!("export requests unreadable: {e}"),
        )),
    }
    Ok(report)
}

fn add(total: &mut VerifyReport, r: VerifyReport) {
    total.segments += r.segments;
    total.records += r.records;
    total.indexes += r.indexes;
    total.bytes += r.bytes;
    total.leaves += r.leaves;
    total.checkpoints += r.checkpoints;
    total.problems.extend(r.problems);
}

/// A node's partition stores (`partitions/p<N>`) opened for verifying, and
/// what is wrong with the layout itself (the count file, stray
/// directories). `None`: not a node's data directory.
#[allow(clippy::type_complexity)]
fn partition_stores(ctx: &Ctx, data: &Path) -> CliResult<Option<(Vec<(u32, Store)>, Vec<Problem>)>> {
    let count_file = data.join(PARTITIONS_DIR).join(COUNT_FILE);
    let mut problems = Vec::new();
    let count = match read_count(data) {
        Ok(count) => count,
        Err(e) => {
            problems.push(problem(count_file.clone(), e.to_string()));
            None
        }
    };
    let dirs = partition_dirs(data)?;
    if count.is_none() && dirs.is_empty() && problems.is_empty() {
        return Ok(None);
    }
    if count.is_none() && problems.is_empty() {
        problems.push(problem(
            count_file,
            "the partition count file is missing, but the directory holds partition stores".into(),
        ));
    }
    let mut stores = Vec::new();
    for (p, dir) in dirs {
        if let Some(count) = count.filter(|c| p >= *c) {
            problems.push(problem(
                dir.clone(),
                format!("a store of partition {p}, but the node's partition count is {count}"),
            ));
        }
        let opened = open(&dir, ctx.options()).map_err(|mut e| {
            e.message = format!("partition {p}'s store {}: {}", dir.display(), e.message);
            e
        })?;
        if let Some(store) = opened {
            stores.push((p, store));
        }
    }
    Ok(Some((stores, problems)))
}

/// The origin a signed checkpoint names: its first line.
fn origin_of(note: &str) -> &str {
    note.lines().next().unwrap_or_default()
}

pub fn verify(ctx: &Ctx, against: Option<&Path>) -> CliResult<ExitCode> {
    let against =
        match against {
            Some(path) => Some(std::fs::read_to_string(ctx.path(path)).map_err(|e| {
                CliError::new("io", format!("reading the checkpoint {}: {e}", path.display()))
            })?),
            None => None,
        };
    let data = ctx.path(&ctx.data_dir);
    let top = open(&data, ctx.options())?;
    let node = partition_stores(ctx, &data)?;
    let mut stores: Vec<(u32, Store)> = top.into_iter().map(|s| (0, s)).collect();
    let mut report = VerifyReport::default();
    let mut checked = Vec::new();
    let node_dir = node.is_some();
    if let Some((partitions, problems)) = node {
        report.problems.extend(problems);
        stores.extend(partitions);
    }
    // A checkpoint given is checked against the store whose log it names
    // (a node's data directory holds one log per partition); partition 0's
    // when none does (which reports the difference).
    let against_at = match &against {
        None => None,
        Some(note) => {
            let named = stores
                .iter()
                .position(|(_, s)| s.key_info().is_ok_and(|k| k.origin == origin_of(note)));
            match named.or_else(|| stores.iter().position(|(p, _)| *p == 0)) {
                Some(i) => Some(i),
                None => return Err(CliError::new(
                    "corrupt",
                    "no store in the data directory, but a signed checkpoint of one was given (--against)",
                )),
            }
        }
    };
    for (i, (p, store)) in stores.iter().enumerate() {
        let note = against.as_deref().filter(|_| against_at == Some(i));
        add(&mut report, check(ctx, store, note)?);
        checked.push(*p);
    }
    // Named as the data directory was on the command line.
    for p in &mut report.problems {
        p.file = ctx.shown(&p.file, &data);
    }
    print(ctx, &report, node_dir.then_some(&checked[..]))
}

fn print(ctx: &Ctx, report: &VerifyReport, partitions: Option<&[u32]>) -> CliResult<ExitCode> {
    let mut summary = format!(
        "checked {} segments, {} indexes, {} records, {} bytes, {} tree leaves",
        report.segments, report.indexes, report.records, report.bytes, report.leaves
    );
    if let Some(partitions) = partitions {
        summary.push_str(&format!(" in {} partition stores", partitions.len()));
    }
    if !report.problems.is_empty() {
        if !ctx.json {
            outln!(ctx, "{summary}")?;
            for p in &report.problems {
                let leaf = p
                    .leaf_index
                    .map(|l| format!(" (leaf index {l})"))
                    .unwrap_or_default();
                outln!(
                    ctx,
                    "problem: {} at byte offset {}{leaf}: {}",
                    p.file.display(),
                    p.offset,
                    p.message
                )?;
            }
        }
        let problems = serde_json::to_value(&report.problems).unwrap_or(Value::Null);
        let first = &report.problems[0];
        let mut err = CliError::new(
            "corrupt",
            format!(
                "{} problem(s); first: {} at byte offset {}: {}",
                report.problems.len(),
                first.file.display(),
                first.offset,
                first.message
            ),
        )
        .with("problems", problems)
        .with("segments", report.segments)
        .with("records", report.records)
        .with("indexes", report.indexes);
        if let Some(partitions) = partitions {
            err = err.with("partitions", partitions.to_vec());
        }
        return Err(err);
    }
    if ctx.json {
        let mut out = json!({
            "ok": true, "segments": report.segments, "indexes": report.indexes,
            "records": report.records, "bytes": report.bytes, "leaves": report.leaves, "problems": []
        });
        if let (Some(partitions), Some(map)) = (partitions, out.as_object_mut()) {
            map.insert("partitions".into(), partitions.to_vec().into());
        }
        ctx.print_json(&out)?;
    } else {
        outln!(ctx, "{summary}: no problems")?;
    }
    Ok(ExitCode::SUCCESS)
}
