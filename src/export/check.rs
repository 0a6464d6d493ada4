//! `verify`'s part for exports: the export files and the requests in the
//! metadata must agree, since a lost or older `meta.redb` shows first as a
//! file nobody requested, or a request whose file is gone.

use std::path::PathBuf;

use uuid::Uuid;

use crate::export::builder;
use crate::export::error::{self, ExportError};
use crate::export::request::Status;
use crate::export::Exports;
use crate::store::Problem;

impl Exports<'_> {
    /// Every disagreement between the export files and the requests:
    /// - a finished file `exports/<id>.csv` whose request is unknown;
    /// - a request stored as `success` with data, not yet past its expiry,
    ///   whose file is missing.
    ///
    /// Reads only (files being built, `*.csv.tmp`, are not looked at).
    pub fn check_files(&self) -> Result<Vec<Problem>, ExportError> {
        let dir = self.dir();
        let now = self.now();
        let mut problems = Vec::new();
        let requests = self.registry().all()?;
        let known: std::collections::HashSet<Uuid> = requests.iter().map(|r| r.id).collect();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| error::io(format!("list {}", dir.display()), e))?;
                    let name = entry.file_name();
                    let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".csv")) else {
                        continue;
                    };
                    if Uuid::parse_str(stem).is_ok_and(|id| !known.contains(&id)) {
                        problems.push(Problem {
                            file: entry.path(),
                            offset: 0,
                            message: "export file without its request in the metadata (meta.redb lost or \
                                      replaced by an older copy?)"
                                .into(),
                        });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error::io(format!("list {}", dir.display()), e)),
        }
        for r in requests {
            let downloadable =
                r.status == Status::Success && r.has_data && r.status_at(now) == Status::Success;
            let path: PathBuf = builder::final_path(&dir, &r.id);
            if downloadable && !path.exists() {
                problems.push(Problem {
                    file: path,
                    offset: 0,
                    message: format!(
                        "export request {} of {} succeeded with {} row(s) but its file is missing",
                        r.id,
                        r.org,
                        r.rows.unwrap_or(0)
                    ),
                });
            }
        }
        Ok(problems)
    }
}
