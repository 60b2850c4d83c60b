//! The open client connections, so that near the file-descriptor limit the idle ones are
//! closed first and new clients keep being served, as nginx does.
//!
//! A connection is busy from the moment a request arrives until its response body is done
//! (the guard rides inside the body); otherwise it is idle: a keep-alive connection waiting
//! for its next request, or a client still sending its request head. Shedding drops idle
//! connections only, least recently active first; a streaming answer is never cut.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::body::ResponseBody;
use crate::error::BoxError;

/// One connection's state, shared with its task and its in-flight response bodies.
pub struct Conn {
    busy: AtomicUsize,
    /// Milliseconds since the registry started, at the last request.
    last_active: AtomicU64,
    /// Notified when this connection should close now.
    pub shed: Notify,
    epoch: Instant,
}

impl Conn {
    /// Marks a request in flight until the returned guard (moved into the response body)
    /// is dropped.
    pub fn begin(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_active.store(now, Ordering::Relaxed);
        BusyGuard(self.clone())
    }
}

pub struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection marked busy until it is done.
pub struct TrackedBody {
    inner: ResponseBody,
    _guard: BusyGuard,
}

impl TrackedBody {
    pub fn new(inner: ResponseBody, guard: BusyGuard) -> TrackedBody {
        TrackedBody {
            inner,
            _guard: guard,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

/// All open connections.
pub struct Connections {
    registry: Mutex<Registry>,
    epoch: Instant,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            registry: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Connections {
    /// Registers a new connection; `remove(id)` when it ends.
    pub fn add(&self) -> (u64, Arc<Conn>) {
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            shed: Notify::new(),
            epoch: self.epoch,
        });
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.next_id += 1;
        let id = r.next_id;
        r.conns.insert(id, conn.clone());
        (id, conn)
    }

    pub fn remove(&self, id: u64) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.conns.remove(&id);
    }

    pub fn len(&self) -> usize {
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes up to `n` idle connections, least recently active first; returns how many.
    pub fn shed_idle(&self, n: usize) -> usize {
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut idle: Vec<&Arc<Conn>> = r
            .conns
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .collect();
        idle.sort_by_key(|c| c.last_active.load(Ordering::Relaxed));
        let chosen = idle.into_iter().take(n).collect::<Vec<_>>();
        chosen.iter().for_each(|c| c.shed.notify_one());
        chosen.len()
    }
}

/// The soft limit on open files (after `main` raised it to the hard limit).
pub fn fd_limit() -> usize {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn idle_connections_are_shed_oldest_first_and_busy_ones_never() {
        let all = Connections::default();
        let (_, a) = all.add();
        let (_, b) = all.add();
        let (_, c) = all.add();
        let _busy = c.begin();
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(b.begin()); // b was active more recently than a
        assert_eq!(all.shed_idle(1), 1);
        // a was chosen: its notification is stored; b's and c's are not.
        let permit = |conn: &Arc<Conn>| {
            let n = conn.shed.notified();
            futures_now(n)
        };
        assert!(permit(&a));
        assert!(!permit(&b));
        assert_eq!(all.shed_idle(10), 2, "a and b are idle, c is busy");
        assert!(!permit(&c));
    }

    /// Whether a `notified()` future is ready at once (a stored permit).
    fn futures_now(n: tokio::sync::futures::Notified<'_>) -> bool {
        let mut n = std::pin::pin!(n);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        n.as_mut().poll(&mut cx).is_ready()
    }
}
