//! The recorder: one OS thread that turns finished requests into usage rows.
//!
//! Metered bodies send a [`Finished`] over an unbounded channel (sending never blocks or fails
//! the request path). The thread settles each one — parses the upstream usage, or estimates
//! with the tokenizer when there is none, prices it — and inserts a whole batch in one
//! transaction. After the first record of a batch the thread rests for [`WINDOW`] (or until
//! [`BATCH`] records wait) instead of waking per record: a commit costs about the same for 1
//! row as for 1,000 and a wake-up costs a context switch, so under load SQLite and the recorder
//! stay a small share of the CPU, and when idle a record is on disk within the window. A batch that cannot be written after retries is appended to a spool file
//! that is replayed on the next start, so no record is lost; `request_id` is unique, so a
//! replay never charges twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::settle::{settle, Finished, Settler};
use crate::store::usage::UsageRecord;
use crate::store::Store;

const BATCH: usize = 1024;
const WINDOW: Duration = Duration::from_millis(100);

// Records dominate the traffic; boxing them would add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(Finished),
    Flush(oneshot::Sender<()>),
    Shutdown,
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
    spool: PathBuf,
    settler: Arc<Settler>,
}

impl Recorder {
    /// Replays any spooled records, then starts the thread.
    pub fn start(store: Store, settler: Settler, spool: PathBuf) -> std::io::Result<Recorder> {
        replay_spool(&store, &spool);
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            thread: Mutex::new(None),
            closed: RwLock::new(false),
            written: AtomicU64::new(0),
            spool,
            settler: Arc::new(settler),
        });
        let thread_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("catgate-recorder".into())
            .spawn(move || run(rx, store, &thread_inner))?;
        if let Ok(mut t) = inner.thread.lock() {
            *t = Some(handle);
        }
        Ok(Recorder { tx, inner })
    }

    /// Hands a finished request over; never blocks.
    pub fn record(&self, finished: Finished) {
        let closed = self.inner.closed.read().unwrap_or_else(|p| p.into_inner());
        let late = if *closed {
            Some(finished)
        } else {
            match self.tx.send(Msg::Record(finished)) {
                Ok(()) => None,
                Err(mpsc::SendError(Msg::Record(f))) => Some(f),
                Err(_) => None,
            }
        };
        drop(closed);
        if let Some(f) = late {
            // Only after shutdown began: keep the record anyway, for the next start.
            tracing::warn!("recorder stopped; spooling a late usage record");
            spool(&self.inner.spool, &[settle(&self.inner.settler, f)]);
        }
    }

    /// Resolves once everything recorded before the call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            self.wake();
            let _ = rx.await;
        }
    }

    fn wake(&self) {
        if let Some(t) = self
            .inner
            .thread
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|h| h.thread().clone()))
        {
            t.unpark();
        }
    }

    /// Rows written since start.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
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
        self.wake();
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn run(rx: mpsc::Receiver<Msg>, store: Store, inner: &Inner) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop = false;
    while !stop {
        // Idle: block until something arrives.
        let Ok(first) = rx.recv() else {
            break;
        };
        let mut pending = vec![first];
        // Then rest for the window while senders only enqueue (a send wakes nobody unless we
        // are blocked in recv); flush() and shutdown() unpark us early.
        let deadline = Instant::now() + WINDOW;
        loop {
            pending.extend(rx.try_iter());
            let urgent = pending
                .iter()
                .any(|m| matches!(m, Msg::Flush(_) | Msg::Shutdown));
            let now = Instant::now();
            if urgent || now >= deadline || pending.len() >= BATCH {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        for msg in pending.drain(..).chain(rx.try_iter()) {
            match msg {
                Msg::Record(f) => batch.push(settle(&inner.settler, f)),
                Msg::Flush(done) => flushes.push(done),
                Msg::Shutdown => stop = true,
            }
            if batch.len() >= BATCH {
                write(&store, &batch, inner);
                batch.clear();
            }
        }
        write(&store, &batch, inner);
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn write(store: &Store, batch: &[UsageRecord], inner: &Inner) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        match store.insert_usage(batch) {
            Ok(_) => {
                inner
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, records = batch.len(), "usage insert failed");
                std::thread::sleep(delay);
                delay *= 4;
            }
        }
    }
    spool(&inner.spool, batch);
}

/// Appends records as JSON lines to the spool file.
fn spool(path: &Path, records: &[UsageRecord]) {
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            let mut text = Vec::new();
            for r in records {
                serde_json::to_writer(&mut text, r)?;
                text.push(b'\n');
            }
            f.write_all(&text)?;
            f.sync_data()
        });
    match result {
        Ok(()) => tracing::warn!(records = records.len(), path = %path.display(), "usage spooled"),
        Err(e) => tracing::error!(error = %e, "usage spool failed; records only in this log: {}",
            serde_json::to_string(records).unwrap_or_default()),
    }
}

/// Inserts spooled records one by one (duplicates are ignored by `request_id`). Lines that
/// cannot be parsed or inserted stay in the file for the next start; the rest are removed.
fn replay_spool(store: &Store, path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut kept = String::new();
    let mut replayed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let inserted = serde_json::from_str::<UsageRecord>(line)
            .map_err(|e| e.to_string())
            .and_then(|r| store.insert_usage(&[r]).map_err(|e| e.to_string()));
        match inserted {
            Ok(n) => replayed += n,
            Err(e) => {
                tracing::error!(error = %e, "spooled usage record kept for the next start");
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    tracing::info!(replayed, "usage spool replayed");
    let result = if kept.is_empty() {
        std::fs::remove_file(path)
    } else {
        std::fs::write(path, kept)
    };
    if let Err(e) = result {
        tracing::error!(error = %e, path = %path.display(), "cannot update the usage spool");
    }
}
