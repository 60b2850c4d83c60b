//! The recorder: one OS thread that writes usage rows with group commit.
//!
//! Durability: a response's last byte waits for [`Recorder::record_durable`], which resolves
//! once the record's transaction has committed (SQLite WAL: the commit is in the OS's hands,
//! so it survives `kill -9`). The thread takes whatever records are waiting, writes them in one
//! transaction and answers them all: under load the batches grow by themselves, idle a record
//! waits for one commit only.
//!
//! The rows a response waits for are plain inserts; the thread folds them into the report
//! rollups in one larger transaction every 100 ms (reports fold whatever is pending before
//! they read, so they are exact all the same).
//!
//! The writer never waits on a tokenizer: a record that needs an estimate is settled on the
//! blocking pool first and reaches the thread already priced.
//!
//! When the database cannot take a batch (locked, full disk, read-only), the batch goes to the
//! spool file (`<db>.usage-spool.jsonl`, or `[metering] spool_dir`), flushed to disk, and is
//! replayed when writes succeed again and on every start. If the spool cannot be written
//! either, the records wait in memory (up to [`MAX_QUEUED`]) and are retried every second;
//! past that limit they are written to the error log as JSON (the last copy) and counted.
//! `request_id` is unique, so no replay ever charges twice.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::settle::{settle, Finished, Observed, Settler};
use crate::store::usage::UsageRecord;
use crate::store::Store;

/// Records per transaction at most.
const BATCH: usize = 4096;
/// Records kept in memory while neither the database nor the spool can take them.
pub const MAX_QUEUED: usize = 100_000;
/// How often a degraded recorder retries.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Longest delay between a record's commit and its fold into the report rollups.
const ROLLUP_EVERY: Duration = Duration::from_millis(100);

// Records dominate the traffic; boxing them would add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(UsageRecord, Option<oneshot::Sender<()>>),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// What `/readyz` and `/metrics` see of the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Records waiting in memory because neither the database nor the spool took them.
    pub queued: u64,
    /// Records in the spool file, waiting for the database.
    pub spooled: u64,
    /// Records that overflowed the memory queue (written to the error log only).
    pub logged_only: u64,
    /// The last write error, while the recorder is degraded.
    pub last_error: Option<String>,
}

/// Handle to the recorder thread; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    inner: Arc<Inner>,
}

struct Inner {
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set (under the write lock) before `Shutdown` is sent; senders check it under the read
    /// lock, so every record either precedes `Shutdown` in the channel or goes to the spool.
    closed: RwLock<bool>,
    written: AtomicU64,
    health: Mutex<Health>,
    spool: PathBuf,
    settler: Arc<Settler>,
}

impl Recorder {
    /// Replays any spooled records, then starts the thread.
    pub fn start(store: Store, settler: Settler, spool: PathBuf) -> std::io::Result<Recorder> {
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            thread: Mutex::new(None),
            closed: RwLock::new(false),
            written: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            spool,
            settler: Arc::new(settler),
        });
        replay_spool(&store, &inner);
        let thread_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("catgate-recorder".into())
            .spawn(move || Writer::new(store, thread_inner).run(rx))?;
        if let Ok(mut t) = inner.thread.lock() {
            *t = Some(handle);
        }
        Ok(Recorder { tx, inner })
    }

    /// Hands a finished request over; never blocks. For paths with no response left to hold
    /// (the client left, no upstream answered).
    pub fn record(&self, finished: Finished) {
        self.submit(finished, None);
    }

    /// Hands a finished request over; the receiver resolves once its row is committed (or
    /// spooled to disk, or — with both failing — queued in memory).
    pub fn record_durable(&self, finished: Finished) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(finished, Some(tx));
        rx
    }

    fn submit(&self, finished: Finished, done: Option<oneshot::Sender<()>>) {
        if !needs_estimate(&finished) {
            let record = settle(&self.inner.settler, finished);
            return self.send(record, done);
        }
        // Tokenizing can take milliseconds; it runs on the blocking pool, not the writer.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                rt.spawn_blocking(move || {
                    let record = settle(&this.inner.settler, finished);
                    this.send(record, done);
                });
            }
            Err(_) => {
                let record = settle(&self.inner.settler, finished);
                self.send(record, done);
            }
        }
    }

    fn send(&self, record: UsageRecord, done: Option<oneshot::Sender<()>>) {
        let closed = self.inner.closed.read().unwrap_or_else(|p| p.into_inner());
        let late = if *closed {
            Some((record, done))
        } else {
            match self.tx.send(Msg::Record(record, done)) {
                Ok(()) => None,
                Err(mpsc::SendError(Msg::Record(r, d))) => Some((r, d)),
                Err(_) => None,
            }
        };
        drop(closed);
        if let Some((record, done)) = late {
            // Only after shutdown began: keep the record anyway, for the next start.
            tracing::warn!(request_id = %record.request_id, "recorder stopped; spooling a late usage record");
            if let Err(e) = spool(&self.inner.spool, std::slice::from_ref(&record)) {
                log_only(&self.inner, &[record], &e);
            }
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }

    /// Resolves once everything recorded before the call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Rows written since start.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        self.inner
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Writes everything queued, then stops the thread and waits for it.
    pub async fn shutdown(&self) {
        {
            let mut closed = self.inner.closed.write().unwrap_or_else(|p| p.into_inner());
            if !*closed {
                *closed = true;
                let _ = self.tx.send(Msg::Shutdown);
            }
        }
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// Tells a waiting response (or flush) that its rows are stored; it may have gone away.
fn answer(done: oneshot::Sender<()>) {
    let _ = done.send(());
}

/// Whether settling needs the tokenizer (no usage was read on the response path).
fn needs_estimate(f: &Finished) -> bool {
    (200..300).contains(&f.status)
        && match &f.observed {
            Observed::Body(_) => true,
            Observed::Stream(outcome) => outcome.usage.is_none(),
            Observed::Nothing | Observed::Usage { .. } => false,
        }
}

/// The thread's state: records that could not be written yet, oldest first.
struct Writer {
    store: Store,
    inner: Arc<Inner>,
    waiting: VecDeque<UsageRecord>,
    /// The spool file has records the database has not taken yet.
    spool_dirty: bool,
    /// When the rows written since the last fold are due to be folded into the rollups.
    rollup_due: Option<Instant>,
}

impl Writer {
    fn new(store: Store, inner: Arc<Inner>) -> Writer {
        let spool_dirty = inner.spool.exists();
        Writer {
            store,
            inner,
            waiting: VecDeque::new(),
            spool_dirty,
            // Records from before a restart may not be folded yet.
            rollup_due: Some(Instant::now()),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut stop = false;
        while !stop {
            let degraded = !self.waiting.is_empty() || self.spool_dirty;
            let wait = match (degraded, self.rollup_due) {
                (true, _) => Some(RETRY_EVERY),
                (false, Some(due)) => Some(due.saturating_duration_since(Instant::now())),
                (false, None) => None,
            };
            let first = match wait {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            let mut batch = Vec::new();
            let mut acks = Vec::new();
            let mut flushes = Vec::new();
            for msg in first.into_iter().chain(rx.try_iter()) {
                match msg {
                    Msg::Record(r, done) => {
                        batch.push(r);
                        acks.extend(done);
                    }
                    Msg::Flush(done) => flushes.push(done),
                    Msg::Shutdown => stop = true,
                }
                if batch.len() >= BATCH {
                    self.write(std::mem::take(&mut batch));
                    acks.drain(..).for_each(answer);
                }
            }
            self.retry();
            self.write(batch);
            acks.into_iter().for_each(answer);
            let rollup_now = self.rollup_due.is_some_and(|due| Instant::now() >= due);
            if rollup_now || !flushes.is_empty() || stop {
                self.roll_up();
            }
            flushes.into_iter().for_each(answer);
        }
        self.retry();
        self.roll_up();
        if !self.waiting.is_empty() {
            let left: Vec<UsageRecord> = self.waiting.drain(..).collect();
            if let Err(e) = spool(&self.inner.spool, &left) {
                log_only(&self.inner, &left, &e);
            }
        }
    }

    /// Folds the records written since the last time into the report rollups: one larger
    /// transaction every [`ROLLUP_EVERY`] instead of rollup work in every response's commit.
    fn roll_up(&mut self) {
        if self.rollup_due.is_none() {
            return;
        }
        match self.store.roll_up() {
            Ok(_) => self.rollup_due = None,
            Err(e) => {
                tracing::warn!(error = %e, "folding usage into the report rollups failed; retrying");
                self.rollup_due = Some(Instant::now() + RETRY_EVERY);
            }
        }
    }

    /// Commits `batch`; on failure spools it, and failing that keeps it in memory.
    fn write(&mut self, batch: Vec<UsageRecord>) {
        if batch.is_empty() {
            return;
        }
        // Records still waiting go first, so none overtakes another for long.
        if !self.waiting.is_empty() {
            self.queue(batch);
            return;
        }
        match self.store.insert_usage(&batch) {
            Ok(_) => {
                self.inner
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.rollup_soon();
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "usage insert failed; spooling");
                self.set_error(Some(e.to_string()));
                match spool(&self.inner.spool, &batch) {
                    Ok(()) => {
                        self.spool_dirty = true;
                        self.bump_spooled(batch.len() as u64);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "usage spool failed; keeping records in memory");
                        self.queue(batch);
                    }
                }
            }
        }
    }

    fn queue(&mut self, batch: Vec<UsageRecord>) {
        let room = MAX_QUEUED.saturating_sub(self.waiting.len());
        let (keep, over) = batch.split_at(room.min(batch.len()));
        self.waiting.extend(keep.iter().cloned());
        if !over.is_empty() {
            log_only(
                &self.inner,
                over,
                &std::io::Error::other("memory queue full"),
            );
        }
        self.update_queued();
    }

    /// While degraded: the memory queue into the database, then the spool file.
    fn retry(&mut self) {
        while !self.waiting.is_empty() {
            let n = self.waiting.len().min(BATCH);
            let chunk: Vec<UsageRecord> = self.waiting.iter().take(n).cloned().collect();
            match self.store.insert_usage(&chunk) {
                Ok(_) => {
                    self.rollup_soon();
                    self.waiting.drain(..n);
                    self.inner.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.update_queued();
                }
                Err(e) => {
                    self.set_error(Some(e.to_string()));
                    return;
                }
            }
        }
        if self.spool_dirty {
            self.spool_dirty = !replay_spool(&self.store, &self.inner);
            self.rollup_soon();
        }
        if !self.spool_dirty {
            self.set_error(None);
        }
    }

    /// New rows are waiting for the rollups: fold them within [`ROLLUP_EVERY`].
    fn rollup_soon(&mut self) {
        if self.rollup_due.is_none() {
            self.rollup_due = Some(Instant::now() + ROLLUP_EVERY);
        }
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.last_error = error;
        }
    }

    fn bump_spooled(&self, n: u64) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.spooled += n;
        }
    }

    fn update_queued(&self) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.queued = self.waiting.len() as u64;
        }
    }
}

/// Appends records as JSON lines to the spool file and flushes them to disk. Created 0600:
/// records name users and models.
fn spool(path: &Path, records: &[UsageRecord]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r)?;
        text.push(b'\n');
    }
    f.write_all(&text)?;
    f.sync_data()?;
    tracing::warn!(records = records.len(), path = %path.display(), "usage spooled");
    Ok(())
}

/// The last resort: the records, as JSON, in the error log.
fn log_only(inner: &Inner, records: &[UsageRecord], e: &std::io::Error) {
    if let Ok(mut h) = inner.health.lock() {
        h.logged_only += records.len() as u64;
    }
    tracing::error!(error = %e, records = records.len(),
        "usage records could not be stored; they are only in this log: {}",
        serde_json::to_string(records).unwrap_or_default());
}

/// Inserts spooled records (duplicates are ignored by `request_id`), oldest first, stopping at
/// the first insert that fails (the database is still not taking writes; the rest stays for
/// the next try). Lines that are not records are moved to `<spool>.rejected` once, with an
/// error line. Returns whether the spool is now empty.
fn replay_spool(store: &Store, inner: &Inner) -> bool {
    let path = &inner.spool;
    let Ok(text) = std::fs::read_to_string(path) else {
        return true;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    let mut rejected = String::new();
    let mut replayed = 0;
    while let Some(line) = lines.peek() {
        let record = match serde_json::from_str::<UsageRecord>(line) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "a spooled line is not a usage record; moved aside");
                rejected.push_str(line);
                rejected.push('\n');
                lines.next();
                continue;
            }
        };
        match store.insert_usage(&[record]) {
            Ok(n) => replayed += n,
            Err(e) => {
                tracing::warn!(error = %e, "usage spool replay paused: the database is not taking writes");
                break;
            }
        }
        lines.next();
    }
    let kept: Vec<&str> = lines.collect();
    if !rejected.is_empty() {
        let mut aside = path.clone().into_os_string();
        aside.push(".rejected");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&aside)
            .and_then(|mut f| f.write_all(rejected.as_bytes()));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot move rejected spool lines aside: {rejected}");
        }
    }
    if replayed > 0 {
        tracing::info!(replayed, left = kept.len(), "usage spool replayed");
    }
    let result = if kept.is_empty() {
        std::fs::remove_file(path)
    } else {
        std::fs::write(path, kept.join("\n") + "\n")
    };
    if let Err(e) = result {
        tracing::error!(error = %e, path = %path.display(), "cannot update the usage spool");
    }
    if let Ok(mut h) = inner.health.lock() {
        h.spooled = kept.len() as u64;
    }
    kept.is_empty()
}
