//! The accept loop and graceful shutdown: stop accepting, let in-flight requests finish
//! (bounded by `shutdown_grace`), drain the usage recorder, checkpoint the database.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::connections::{self, Connections, TrackedBody};
use crate::router;
use crate::state::{App, AppState};

/// Serves until `shutdown` resolves, then drains. Returns after every usage record is written.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let refresh = AppState::spawn_refresh(&app);
    let probes = crate::proxy::key_health::spawn_probes(&app);
    // HTTP/1.1 only: clients reach catgate over plain HTTP (TLS, if any, ends in front of it),
    // where HTTP/2 would need prior knowledge that no OpenAI SDK uses. The h1-only connection
    // is smaller than hyper-util's auto one (no preface sniffing) — ~8 KB less per open stream.
    let mut builder = http1::Builder::new();
    // A client that never finishes its request head must not hold a connection forever.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    // Told to every connection at shutdown: finish the request in flight, then close.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let conns = Arc::new(Connections::default());
    // Each proxied request also holds an upstream socket, and SQLite and the runtime need a
    // few descriptors: past about half of the limit, idle client connections make room.
    let high_water = (connections::fd_limit().saturating_sub(64) / 2).max(16);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors (EMFILE, ENFILE): close idle connections to make
                        // room. Any accept error: back off instead of spinning.
                        let out_of_fds = matches!(e.raw_os_error(), Some(23 | 24));
                        let shed = match out_of_fds {
                            true => conns.shed_idle((conns.len() / 10).max(16)),
                            false => 0,
                        };
                        if let Some(suppressed) = accept_errors.log_now(Instant::now()) {
                            tracing::warn!(error = %e, suppressed, idle_closed = shed, "accept failed");
                        }
                        let pause = if shed > 0 { 5 } else { 50 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        continue;
                    }
                };
                let open = conns.len();
                if open >= high_water {
                    conns.shed_idle(open + 1 - high_water);
                }
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let (id, state) = conns.add();
                let tracked = state.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    let busy = tracked.begin();
                    async move {
                        let resp = router::route(app, req).await;
                        Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, busy)))
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conns = conns.clone();
                let mut stop = stop_rx.clone();
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    let mut conn = std::pin::pin!(conn);
                    let mut closing = false;
                    // A shed or a shutdown closes the connection the graceful way: at once when
                    // it is idle, else after the answer in flight (never cut mid-stream).
                    loop {
                        tokio::select! {
                            ended = conn.as_mut() => {
                                if let Err(e) = ended {
                                    tracing::debug!(error = %e, "connection ended with an error");
                                }
                                break;
                            }
                            _ = state.shed.notified(), if !closing => {
                                tracing::debug!("idle connection closed to make room for new clients");
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                            _ = stop.changed(), if !closing => {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                    }
                    conns.remove(id);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    refresh.abort();
    probes.abort();
    tracing::info!("shutting down: waiting for in-flight requests");
    let grace = app.config.shutdown_grace;
    let draining_since = Instant::now();
    let _ = stop_tx.send(true);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_ok() {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!(
            ?grace,
            "grace period over; closing the remaining connections"
        );
        // Dropping them records what each answer showed so far, before the recorder stops.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    app.drain_detached(grace.saturating_sub(draining_since.elapsed()))
        .await;
    app.recorder.shutdown().await;
    if let Err(e) = app.store.close().await {
        tracing::warn!(error = %e, "closing the database failed");
    }
    tracing::info!(
        records = app.recorder.written(),
        "usage recorder drained; bye"
    );
}

/// Accept errors come in storms (EMFILE lasts as long as the load that caused it): at most one
/// log line per second, each saying how many errors went unlogged before it.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    /// For an error at `now`: `Some(errors left unlogged since the last line)` if this one
    /// should be logged, else `None` (and it is counted).
    fn log_now(&mut self, now: Instant) -> Option<u64> {
        let recent = self
            .last_logged
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if recent {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_log_once_a_second_with_the_count_left_out() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(errors.log_now(at(0)), Some(0));
        for ms in (50..1000).step_by(50) {
            assert_eq!(errors.log_now(at(ms)), None, "{ms} ms");
        }
        assert_eq!(errors.log_now(at(1000)), Some(19));
        assert_eq!(errors.log_now(at(1500)), None);
        assert_eq!(errors.log_now(at(5000)), Some(1));
        assert_eq!(errors.log_now(at(5001)), None);
    }
}
