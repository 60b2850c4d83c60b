//! `catgate backup`: SQLite's online backup API copies the live database page by page into a
//! temp file beside the target, which is checked, made a single self-contained file and only
//! then renamed onto the target, so the target is either the old file or a whole copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::open_error;
use crate::store::backup::BackedUp;
use crate::store::{OpenMode, StoreError};

/// How long a busy source may hold the copy off before it gives up.
const BUSY_RETRIES: u32 = 300;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

pub(in crate::store) fn backup(
    source: &Path,
    target: &Path,
    force: bool,
) -> Result<BackedUp, StoreError> {
    let from =
        Connection::open_with_flags(source, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)
            .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c))
            .map_err(|e| open_error(source, OpenMode::Existing, e))?;
    refuse_the_source_itself(source, target)?;
    if !force && target.exists() {
        return Err(invalid(format!(
            "{} exists; pass --force to replace it",
            target.display()
        )));
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".catgate-backup-")
        .tempfile_in(&dir)
        .map_err(|e| invalid(format!("cannot write in {}: {e}", dir.display())))?;
    let mut to = Connection::open(temp.path())?;
    copy_pages(&from, &mut to)?;
    drop(from);
    let backed_up = check_and_count(&to)?;
    // Closing the connection writes everything to the file and removes its journal.
    to.close().map_err(|(_, e)| StoreError::from(e))?;
    let written = |e: std::io::Error| invalid(format!("cannot write {}: {e}", target.display()));
    temp.as_file().sync_all().map_err(written)?;
    let bytes = temp.as_file().metadata().map_err(written)?.len();
    let placed = match force {
        true => temp.persist(target).map(drop),
        false => temp.persist_noclobber(target).map(drop),
    };
    placed.map_err(|e| written(e.error))?;
    // The rename itself must survive a crash too.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(written)?;
    Ok(BackedUp { bytes, ..backed_up })
}

/// Renaming a copy over the live database would swap it under the running server.
fn refuse_the_source_itself(source: &Path, target: &Path) -> Result<(), StoreError> {
    let same = match (std::fs::canonicalize(source), std::fs::canonicalize(target)) {
        (Ok(s), Ok(t)) => s == t,
        _ => false,
    };
    match same {
        true => Err(invalid(format!(
            "{} is the database itself; name another file",
            target.display()
        ))),
        false => Ok(()),
    }
}

/// All pages in one step: in WAL mode that is one read transaction, a consistent snapshot that
/// never blocks the server's writers. Small steps would restart at every write the server
/// makes in between, and might never finish under load.
fn copy_pages(from: &Connection, to: &mut Connection) -> Result<(), StoreError> {
    let backup = Backup::new(from, to)?;
    for _ in 0..BUSY_RETRIES {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // Busy or Locked: the server holds a lock for a moment.
            _ => std::thread::sleep(BUSY_PAUSE),
        }
    }
    Err(invalid(
        "the database stayed busy for 30 s; try again".to_string(),
    ))
}

/// The copy holds the source's WAL flag: back to a rollback journal so the file alone is the
/// whole database. Then SQLite's own check, and what the copy holds.
fn check_and_count(to: &Connection) -> Result<BackedUp, StoreError> {
    let mode: String = to.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(invalid(format!("the copy stayed in journal mode {mode}")));
    }
    let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(invalid(format!("the copy fails SQLite's check: {check}")));
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        let n: i64 = to.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(BackedUp {
        users: count("users")?,
        keys: count("keys")?,
        records: count("usage")?,
        bytes: 0,
    })
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_catgate_database_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("other.db");
        Connection::open(&source)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let e = backup(&source, &out.join("copy.db"), false).unwrap_err();
        assert!(e.to_string().contains("no such table: users"), "{e}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn the_source_itself_is_refused_even_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("catgate.db");
        Connection::open(&source)
            .unwrap()
            .execute_batch("CREATE TABLE users (x);")
            .unwrap();
        let e = backup(&source, &source, true).unwrap_err();
        assert!(e.to_string().contains("the database itself"), "{e}");
    }
}
