//! The recorder: the usage journal on the request path, one writer thread to the database.
//!
//! Durability: a response's last byte waits for [`Recorder::record_durable`], which resolves
//! once the record's line is in the usage journal (`journal.rs`: one `write(2)`, no fsync — in
//! the kernel's hands, so it survives `kill -9` of catgate). The line is written by the
//! request's own task under a short lock (a few microseconds; measured cheaper than handing
//! the record to a journal thread and back), then the record goes to the writer over a channel
//! in journal order.
//!
//! The writer thread batches records for a 100 ms window (or 1,024 records) into one
//! transaction, folds them into the report rollups, and deletes journal segments whose records
//! are all committed. When the database refuses a batch (locked, full disk, read-only), the
//! journaled records wait in their segments and are replayed every second until it takes them
//! (and on every start); records the journal could not take either (the same full disk) wait
//! in memory, up to [`MAX_QUEUED`], and past that are written to the error log as JSON, the
//! last copy, and counted. `/readyz` reports both. `request_id` is unique and inserts ignore
//! duplicates, so no replay ever charges twice.
//!
//! The writer also writes each record's access log line and counts its tokens and cost in
//! the metrics as it receives it, so that work stays off the request path.
//!
//! The writer never waits on a tokenizer: a record that needs an estimate is settled on the
//! blocking pool first and reaches the threads already priced.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::journal::{self, Journal};
use super::settle::{settle, Finished, Settler};
use crate::metrics::Metrics;
use crate::store::usage::UsageRecord;
use crate::store::{BlockingStore, Store};

/// Records per transaction at most.
const BATCH: usize = 1024;
/// How long the writer gathers records before a transaction.
const WINDOW: Duration = Duration::from_millis(100);
/// How long a report on a shared database waits for other replicas' batches: their window,
/// plus a commit.
pub const PEER_SETTLE: Duration = Duration::from_millis(150);
/// Records kept in memory while neither the journal nor the database can take them.
pub const MAX_QUEUED: usize = 100_000;
/// Longest hold of a finished answer waiting for its record (the journal's disk is stalled);
/// past it the answer goes out and the record follows when it can.
pub const DURABLE_WAIT: Duration = Duration::from_secs(10);
/// How often a degraded writer retries, and an idle journal closes its segment.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// To the writer, in journal order.
enum ToWriter {
    Records {
        records: Vec<UsageRecord>,
        journaled: bool,
    },
    /// Segments below this number will get no more records.
    Rotated(u64),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// What `/readyz` and `/metrics` see of the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Records waiting in memory because neither the journal nor the database took them.
    pub queued: u64,
    /// Records in the journal the database has refused so far (replayed every second).
    pub spooled: u64,
    /// Records that overflowed the memory queue (written to the error log only).
    pub logged_only: u64,
    /// The last write error, while the recorder is degraded.
    pub last_error: Option<String>,
}

struct Log {
    journal: Journal,
    /// `None` once shut down: later records go to the journal only, into a segment the writer
    /// never deletes, and are replayed on the next start.
    to_writer: Option<mpsc::Sender<ToWriter>>,
}

/// Handle to the recorder; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The journal and the channel to the writer, under one lock so that the channel's order
    /// is the journal's.
    log: Mutex<Log>,
    written: AtomicU64,
    journal_errors: AtomicU64,
    /// Records being settled on the blocking pool; shutdown waits for them.
    settling: AtomicUsize,
    health: Mutex<Health>,
    journal: PathBuf,
    settler: Arc<Settler>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Replays what the journal holds from an earlier run, then starts the threads.
    /// `journal` is the journal's base path (`<db>.usage-spool.jsonl` or in `spool_dir`).
    pub async fn start(
        store: Store,
        settler: Settler,
        journal: PathBuf,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Recorder> {
        let (to_writer, writer_rx) = mpsc::channel();
        // The writer thread and the start-up replay wait on the store's async calls from
        // outside the runtime, which stays free to drive them.
        let store = store.blocking(tokio::runtime::Handle::current());
        let left = {
            let (store, journal) = (store.clone(), journal.clone());
            tokio::task::spawn_blocking(move || journal::replay(&store, &journal, u64::MAX).left)
                .await
                .map_err(std::io::Error::other)?
        };
        let log = Log {
            journal: Journal::open(&journal),
            to_writer: Some(to_writer),
        };
        let inner = Arc::new(Inner {
            threads: Mutex::new(Vec::new()),
            log: Mutex::new(log),
            written: AtomicU64::new(0),
            journal_errors: AtomicU64::new(0),
            settling: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
            journal,
            settler: Arc::new(settler),
            metrics,
        });
        if let Ok(mut h) = inner.health.lock() {
            h.spooled = left as u64;
        }
        let writer_inner = inner.clone();
        let writer = std::thread::Builder::new()
            .name("catgate-recorder".into())
            .spawn(move || Writer::new(store, writer_inner, left > 0).run(writer_rx))?;
        if let Ok(mut t) = inner.threads.lock() {
            t.push(writer);
        }
        Ok(Recorder { inner })
    }
    /// Hands a finished request over; never blocks. For paths with no response left to hold
    /// (the client left, no upstream answered).
    pub fn record(&self, finished: Finished) {
        self.submit(finished, None);
    }

    /// Hands a finished request over; the future resolves once its record is in the journal
    /// (or, with the journal's disk failing, queued for the database), or after
    /// [`DURABLE_WAIT`] at the latest, so that an answer is never held for ever.
    pub fn record_durable(&self, finished: Finished) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        self.submit(finished, Some(tx));
        async move {
            if tokio::time::timeout(DURABLE_WAIT, rx).await.is_err() {
                tracing::warn!(wait = ?DURABLE_WAIT, "usage record not confirmed in time; answer released");
            }
        }
    }

    fn submit(&self, finished: Finished, done: Option<oneshot::Sender<()>>) {
        if !finished.needs_estimate() {
            let record = settle(&self.inner.settler, finished);
            return self.send(record, done);
        }
        // Tokenizing can take milliseconds; it runs on the blocking pool, not the writer.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let this = self.clone();
                self.inner.settling.fetch_add(1, Ordering::SeqCst);
                rt.spawn_blocking(move || {
                    let record = settle(&this.inner.settler, finished);
                    this.send(record, done);
                    this.inner.settling.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(_) => {
                let record = settle(&self.inner.settler, finished);
                self.send(record, done);
            }
        }
    }

    /// Journals the record, hands it to the writer, then answers `done`.
    fn send(&self, record: UsageRecord, done: Option<oneshot::Sender<()>>) {
        {
            let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            let Log { journal, to_writer } = &mut *log;
            let before = journal.current();
            let appended = journal.append(std::slice::from_ref(&record));
            match to_writer {
                Some(to_writer) => {
                    if journal.current() != before {
                        // The segment filled up (or failed) and a new one began: the old one
                        // gets no more records. Said before this record, in journal order.
                        let now_open = match &appended {
                            Ok(segment) => *segment,
                            Err(_) => journal.current(),
                        };
                        let _ = to_writer.send(ToWriter::Rotated(now_open));
                    }
                    let journaled = match appended {
                        Ok(_) => true,
                        Err(e) => {
                            self.journal_failed(&e);
                            false
                        }
                    };
                    let records = vec![record];
                    let _ = to_writer.send(ToWriter::Records { records, journaled });
                }
                // After shutdown: the journal keeps it for the next start.
                None => match appended {
                    Ok(_) => {
                        tracing::warn!(request_id = %record.request_id, "recorder stopped; usage record kept in the journal for the next start")
                    }
                    Err(e) => log_only(&self.inner, &[record], &e),
                },
            }
        }
        if let Some(done) = done {
            answer(done);
        }
    }

    fn journal_failed(&self, e: &std::io::Error) {
        let failures = self.inner.journal_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if failures == 1 || failures.is_power_of_two() {
            tracing::error!(error = %e, failures, "usage journal write failed; records go to the database from memory");
        }
        set_error(&self.inner, Some(format!("usage journal: {e}")));
    }

    /// Sends `msg` to the writer in journal order; false once shut down.
    fn to_writer(&self, msg: ToWriter) -> bool {
        let log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        log.to_writer
            .as_ref()
            .is_some_and(|tx| tx.send(msg).is_ok())
    }

    /// Resolves once everything recorded before the call is in the database and the rollups.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.to_writer(ToWriter::Flush(tx)) {
            self.wake_writer();
            let _ = rx.await;
        }
    }

    fn wake_writer(&self) {
        if let Ok(threads) = self.inner.threads.lock() {
            threads.iter().for_each(|t| t.thread().unpark());
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

    /// Writes everything queued, then stops the writer and waits for it.
    pub async fn shutdown(&self) {
        // Estimates still being settled would be cancelled with the runtime: wait for them
        // (bounded; a record settled later still reaches the journal).
        for _ in 0..2000 {
            if self.inner.settling.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        {
            let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(to_writer) = log.to_writer.take() {
                // Close the last segment, so the writer can delete it once all is committed;
                // anything recorded later goes to a newer segment, which it never deletes.
                log.journal.rotate();
                let _ = to_writer.send(ToWriter::Rotated(log.journal.current()));
                let _ = to_writer.send(ToWriter::Shutdown);
            }
        }
        self.wake_writer();
        let handles: Vec<JoinHandle<()>> = self
            .inner
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }

    /// Closes the journal's current segment (the writer calls this when idle).
    fn rotate_idle(inner: &Inner) {
        let mut log = inner.log.lock().unwrap_or_else(|p| p.into_inner());
        let Log { journal, to_writer } = &mut *log;
        if let Some(to_writer) = to_writer {
            let before = journal.current();
            journal.rotate();
            if journal.current() != before {
                let _ = to_writer.send(ToWriter::Rotated(journal.current()));
            }
        }
    }
}

/// Tells a waiting response (or flush) that its record is safe; it may have gone away.
fn answer(done: oneshot::Sender<()>) {
    let _ = done.send(());
}

fn set_error(inner: &Inner, error: Option<String>) {
    if let Ok(mut h) = inner.health.lock() {
        h.last_error = error;
    }
}

/// The writer thread's state.
struct Writer {
    store: BlockingStore,
    inner: Arc<Inner>,
    /// Records the journal could not take and the database has not yet: the only copy.
    unjournaled: VecDeque<UsageRecord>,
    /// The database refused journaled records: replay the journal until it takes them.
    replay_due: bool,
    /// Segments below this are closed; deletable once everything before is committed.
    closed_below: u64,
}

impl Writer {
    fn new(store: BlockingStore, inner: Arc<Inner>, replay_due: bool) -> Writer {
        Writer {
            store,
            inner,
            unjournaled: VecDeque::new(),
            replay_due,
            closed_below: 0,
        }
    }

    fn degraded(&self) -> bool {
        self.replay_due || !self.unjournaled.is_empty()
    }

    fn run(mut self, rx: mpsc::Receiver<ToWriter>) {
        let mut stop = false;
        while !stop {
            let first = match rx.recv_timeout(RETRY_EVERY) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Idle for a second: close the journal segment (its Rotated message
                    // arrives next), so that it is deleted once committed.
                    Recorder::rotate_idle(&self.inner);
                    if !self.degraded() {
                        continue;
                    }
                    None
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut pending: Vec<ToWriter> = first.into_iter().collect();
            // Gather for the window (a commit costs about the same for 1 row as for 1,000),
            // unless someone waits for the rows or the batch is full.
            let deadline = Instant::now() + WINDOW;
            loop {
                pending.extend(rx.try_iter());
                let urgent = pending
                    .iter()
                    .any(|m| matches!(m, ToWriter::Flush(_) | ToWriter::Shutdown));
                let size: usize = pending
                    .iter()
                    .map(|m| match m {
                        ToWriter::Records { records, .. } => records.len(),
                        _ => 0,
                    })
                    .sum();
                let now = Instant::now();
                if pending.is_empty() || urgent || now >= deadline || size >= BATCH {
                    break;
                }
                // Rest while senders only enqueue: a send wakes nobody unless the thread is
                // blocked in recv, so records cost no context switch each; a flush or the
                // shutdown unparks it.
                std::thread::park_timeout(deadline - now);
            }
            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let mut closed_below = self.closed_below;
            for msg in pending {
                match msg {
                    ToWriter::Records { records, journaled } => {
                        observe(&self.inner, &records);
                        if journaled {
                            batch.extend(records);
                        } else {
                            self.queue(records);
                        }
                    }
                    ToWriter::Rotated(n) => closed_below = n,
                    ToWriter::Flush(done) => flushes.push(done),
                    ToWriter::Shutdown => stop = true,
                }
            }
            self.retry();
            let committed = self.write(batch);
            if committed && !self.degraded() {
                // Every record handed over so far is in the database.
                if closed_below > self.closed_below {
                    journal::remove_before(&self.inner.journal, closed_below);
                }
                self.closed_below = closed_below;
            } else {
                self.closed_below = self.closed_below.max(closed_below);
            }
            if let Err(e) = self.store.roll_up() {
                tracing::warn!(error = %e, "folding usage into the report rollups failed; retrying");
            }
            flushes.into_iter().for_each(answer);
        }
        self.retry();
        if !self.degraded() {
            journal::remove_before(&self.inner.journal, self.closed_below);
        }
        let _ = self.store.roll_up();
        if !self.unjournaled.is_empty() {
            let left: Vec<UsageRecord> = self.unjournaled.drain(..).collect();
            let mut log = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = log.journal.append(&left) {
                log_only(&self.inner, &left, &e);
            }
        }
    }

    /// Commits journaled records; on failure they stay in the journal for a replay. Returns
    /// whether they are in the database.
    fn write(&mut self, batch: Vec<UsageRecord>) -> bool {
        if batch.is_empty() {
            return true;
        }
        for chunk in batch.chunks(BATCH) {
            match journal::insert(&self.store, &self.inner.journal, chunk) {
                Ok(_) => {
                    self.inner
                        .written
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, records = batch.len(), "usage insert failed; the records wait in the journal");
                    set_error(&self.inner, Some(e.to_string()));
                    self.replay_due = true;
                    if let Ok(mut h) = self.inner.health.lock() {
                        h.spooled += batch.len() as u64;
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Keeps records only memory has (bounded; past the bound, the error log).
    fn queue(&mut self, records: Vec<UsageRecord>) {
        let room = MAX_QUEUED.saturating_sub(self.unjournaled.len());
        let (keep, over) = records.split_at(room.min(records.len()));
        self.unjournaled.extend(keep.iter().cloned());
        if !over.is_empty() {
            log_only(
                &self.inner,
                over,
                &std::io::Error::other("memory queue full"),
            );
        }
        self.update_queued();
    }

    /// While degraded: the memory-only records, then the journal, into the database.
    fn retry(&mut self) {
        while !self.unjournaled.is_empty() {
            let n = self.unjournaled.len().min(BATCH);
            let chunk: Vec<UsageRecord> = self.unjournaled.iter().take(n).cloned().collect();
            match journal::insert(&self.store, &self.inner.journal, &chunk) {
                Ok(_) => {
                    self.unjournaled.drain(..n);
                    self.inner.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.update_queued();
                }
                Err(e) => {
                    set_error(&self.inner, Some(e.to_string()));
                    return;
                }
            }
        }
        if self.replay_due {
            let done = journal::replay(&self.store, &self.inner.journal, self.closed_below);
            self.replay_due = done.left > 0;
            if let Ok(mut h) = self.inner.health.lock() {
                h.spooled = done.left as u64;
            }
        }
        if !self.degraded() {
            set_error(&self.inner, None);
        }
    }

    fn update_queued(&self) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.queued = self.unjournaled.len() as u64;
        }
    }
}

/// A settled record's access log line and metrics (each record is handed over once).
fn observe(inner: &Inner, records: &[UsageRecord]) {
    let prices = &inner.settler.prices;
    for r in records {
        crate::access::settled(r);
        let model = Some(r.model.as_str()).filter(|m| !m.is_empty());
        let label = inner
            .metrics
            .model(model, |m| prices.lookup(m).map(|(name, _)| name));
        inner.metrics.settled(r, label);
    }
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
