//! The accept loop and graceful shutdown: stop accepting, let in-flight requests finish
//! (bounded by `shutdown_grace`), drain the usage recorder, checkpoint the database.

use std::convert::Infallible;
use std::future::Future;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::router;
use crate::state::{App, AppState};

/// Serves until `shutdown` resolves, then drains. Returns after every usage record is written.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let refresh = AppState::spawn_refresh(&app);
    // HTTP/1.1 only: clients reach catgate over plain HTTP (TLS, if any, ends in front of it),
    // where HTTP/2 would need prior knowledge that no OpenAI SDK uses. The h1-only connection
    // is smaller than hyper-util's auto one (no preface sniffing) — ~8 KB less per open stream.
    let mut builder = http1::Builder::new();
    // A client that never finishes its request head must not hold a connection forever.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(router::route(app, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    refresh.abort();
    tracing::info!("shutting down: waiting for in-flight requests");
    let grace = app.config.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing anyway"),
    }
    app.recorder.shutdown().await;
    let store = app.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.checkpoint()).await;
    tracing::info!(
        records = app.recorder.written(),
        "usage recorder drained; bye"
    );
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
