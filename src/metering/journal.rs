//! The usage journal: append-only segment files of settled records, one JSON line each.
//!
//! A response's last byte waits for its record's line to be written with `write(2)` (no fsync:
//! the data is in the kernel's hands, so it survives `kill -9` of catgate). The database
//! takes the records later in large batches; a segment is deleted once every record in it is
//! committed, and every segment left over (a crash, a database that refused writes) is
//! replayed into the database on start and when writes succeed again. `request_id` is unique
//! and inserts ignore duplicates, so a replay never charges twice.
//!
//! Files are `<base>.<n>` (n counts up), created 0600; `<base>` itself is the spool file of
//! earlier versions and is replayed like a segment.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::usage::UsageRecord;
use crate::store::{BlockingStore, StoreError};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// The segment being appended to.
pub struct Journal {
    base: PathBuf,
    current: u64,
    file: Option<std::fs::File>,
    written: u64,
}

impl Journal {
    /// Starts a new segment numbered after every existing one.
    pub fn open(base: &Path) -> Journal {
        let current = segments(base).last().map_or(1, |(n, _)| n + 1);
        Journal {
            base: base.to_path_buf(),
            current,
            file: None,
            written: 0,
        }
    }

    /// The segment the next append goes to.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Appends `records` with one `write(2)`; returns the segment they went to.
    pub fn append(&mut self, records: &[UsageRecord]) -> std::io::Result<u64> {
        let mut text = Vec::with_capacity(records.len() * 512);
        for r in records {
            serde_json::to_writer(&mut text, r)?;
            text.push(b'\n');
        }
        if self.written >= SEGMENT_BYTES {
            self.file = None;
            self.current += 1;
            self.written = 0;
        }
        if self.file.is_none() {
            self.file = Some(create_private(&segment_path(&self.base, self.current))?);
        }
        let segment = self.current;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(&text) {
                // A partial line may be left behind: start a fresh segment next time (replay
                // skips lines that do not parse).
                self.file = None;
                self.current += 1;
                self.written = 0;
                return Err(e);
            }
        }
        self.written += text.len() as u64;
        Ok(segment)
    }

    /// Closes the current segment so that it can be deleted once committed.
    pub fn rotate(&mut self) {
        if self.file.take().is_some() {
            self.current += 1;
            self.written = 0;
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn segment_path(base: &Path, n: u64) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(format!(".{n:010}"));
    PathBuf::from(name)
}

/// Every segment on disk, oldest first; the legacy spool file counts as segment 0.
pub fn segments(base: &Path) -> Vec<(u64, PathBuf)> {
    let mut found = Vec::new();
    if base.exists() {
        found.push((0, base.to_path_buf()));
    }
    let (Some(dir), Some(stem)) = (base.parent(), base.file_name()) else {
        return found;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix(&prefix)
                .filter(|rest| rest.len() == 10)
                .and_then(|rest| rest.parse::<u64>().ok());
            if let Some(n) = n {
                found.push((n, entry.path()));
            }
        }
    }
    found.sort();
    found
}

/// Deletes the segments numbered below `before` (all their records are committed).
pub fn remove_before(base: &Path, before: u64) {
    for (n, path) in segments(base) {
        if n < before {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(error = %e, path = %path.display(), "cannot remove a committed usage journal segment");
            }
        }
    }
}

/// Inserts `records`; when the database refuses the data itself (a constraint), inserts them
/// one by one and sets the refused ones aside in `<base>.rejected` (and the error log), so one
/// bad record can never hold back the ones after it. Other errors (locked, full) are returned.
pub fn insert(
    store: &BlockingStore,
    base: &Path,
    records: &[UsageRecord],
) -> Result<usize, StoreError> {
    match store.insert_usage(records) {
        Err(e) if e.is_refused_data() => {}
        other => return other,
    }
    let mut inserted = 0;
    for record in records {
        match store.insert_usage(std::slice::from_ref(record)) {
            Ok(n) => inserted += n,
            Err(e) if e.is_refused_data() => set_aside(base, record, &e),
            Err(e) => return Err(e),
        }
    }
    Ok(inserted)
}

fn set_aside(base: &Path, record: &UsageRecord, e: &StoreError) {
    let line = serde_json::to_string(record).unwrap_or_default();
    tracing::error!(error = %e, request_id = %record.request_id, "the database refused a usage record; set aside in the .rejected file: {line}");
    let mut name = base.as_os_str().to_os_string();
    name.push(".rejected");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(name))
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the .rejected file; the record is only in the line above");
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub inserted: usize,
    /// Records still waiting because the database refused them.
    pub left: usize,
}

/// Inserts the records of every segment (duplicates are ignored), deleting each one numbered
/// below `delete_before` once it is in (a higher one may still be appended to); stops at the
/// first segment the database refuses. Lines that do not
/// parse (a write cut short by a crash or a full disk) are skipped with one error line.
pub fn replay(store: &BlockingStore, base: &Path, delete_before: u64) -> Replayed {
    let mut done = Replayed::default();
    let mut failed = false;
    for (n, path) in segments(base) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Unreadable now is not empty: keep it (and everything after) for a retry.
                tracing::error!(error = %e, path = %path.display(), "cannot read a usage journal segment");
                failed = true;
                done.left += 1;
                continue;
            }
        };
        let mut records = Vec::new();
        let mut bad = 0;
        let lines: Vec<&[u8]> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_slice::<UsageRecord>(line) {
                Ok(r) => records.push(r),
                // The last line of a segment still being written may be incomplete.
                Err(_) if i + 1 == lines.len() && n >= delete_before => {}
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            tracing::error!(
                segment = n,
                lines = bad,
                "usage journal lines that are not records were skipped"
            );
        }
        if failed {
            done.left += records.len();
            continue;
        }
        let mut inserted = 0;
        for chunk in records.chunks(4096) {
            match insert(store, base, chunk) {
                Ok(k) => inserted += k,
                Err(e) => {
                    tracing::warn!(error = %e, "usage journal replay paused: the database is not taking writes");
                    failed = true;
                    break;
                }
            }
        }
        done.inserted += inserted;
        if failed {
            done.left += records.len();
            continue;
        }
        if n < delete_before {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(error = %e, path = %path.display(), "cannot remove a replayed usage journal segment");
            }
        }
    }
    if done.inserted > 0 {
        tracing::info!(
            inserted = done.inserted,
            left = done.left,
            "usage journal replayed"
        );
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::usage::UsageSource;
    use crate::store::{Database, OpenMode, Store};

    /// A fresh SQLite store with root, driven from this (non-runtime) test thread.
    fn store(dir: &Path) -> (tokio::runtime::Runtime, BlockingStore, i64) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let db = Database::Sqlite(dir.join("c.db"));
        let store = rt.block_on(Store::open(&db, OpenMode::Create)).unwrap();
        let root = rt.block_on(store.init_root()).unwrap().unwrap();
        let blocking = store.blocking(rt.handle().clone());
        (rt, blocking, root.id)
    }

    fn record(id: &str, user_id: i64) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            user_id,
            key_id: None,
            model: "gpt-4o-mini".into(),
            route: "/v1/chat/completions".into(),
            prompt_tokens: 9,
            cached_tokens: 0,
            cache_write_tokens: 0,
            audio_input_tokens: 0,
            completion_tokens: 12,
            reasoning_tokens: 0,
            audio_output_tokens: 0,
            total_tokens: 21,
            service_tier: None,
            usage_source: UsageSource::Upstream,
            cost: Some("0.00000855".parse().unwrap()),
            stream: false,
            status: 200,
            latency_ms: 1,
            attempts: 1,
            created_at: "2026-11-27T12:00:00.000000Z".into(),
        }
    }

    #[test]
    fn a_refused_record_is_set_aside_and_the_others_get_in() {
        let dir = tempfile::tempdir().unwrap();
        let (_rt, store, root) = store(dir.path());
        let base = dir.path().join("c.db.usage-spool.jsonl");
        let records = [record("a", root), record("b", 999), record("c", root)];
        assert_eq!(insert(&store, &base, &records).unwrap(), 2);
        let rejected = std::fs::read_to_string(dir.path().join("c.db.usage-spool.jsonl.rejected"));
        let rejected = rejected.unwrap();
        assert_eq!(rejected.lines().count(), 1);
        assert!(rejected.contains(r#""request_id":"b""#), "{rejected}");
        // A replayed duplicate is ignored, never an error.
        assert_eq!(insert(&store, &base, &records[..1]).unwrap(), 0);
    }

    #[test]
    fn segments_replay_once_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store, root) = store(dir.path());
        let base = dir.path().join("c.db.usage-spool.jsonl");
        let mut log = Journal::open(&base);
        log.append(&[record("a", root), record("b", root)]).unwrap();
        log.rotate();
        // A write cut short by a crash: half a line, not valid UTF-8 either.
        let torn = segment_path(&base, log.current());
        std::fs::write(
            &torn,
            [
                &br#"{"request_id":"c","user_id":1,"model":"gpt-"#[..],
                &[0xe2, 0x82],
            ]
            .concat(),
        )
        .unwrap();
        let done = replay(&store, &base, u64::MAX);
        assert_eq!(
            done,
            Replayed {
                inserted: 2,
                left: 0
            }
        );
        assert!(segments(&base).is_empty(), "replayed segments are deleted");
        assert_eq!(replay(&store, &base, u64::MAX), Replayed::default());
        let stored = rt.block_on(store.store().usage_records(10)).unwrap();
        assert_eq!(stored.len(), 2);
    }
}
