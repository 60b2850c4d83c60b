//! catgate: a metering reverse proxy for the OpenAI and Azure OpenAI APIs that speaks the
//! opencatd admin API. See ARCHITECTURE.md for the map and the invariants.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod auth;
pub mod base_url;
pub mod body;
pub mod cli;
pub mod config;
pub mod connections;
pub mod error;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod logging;
pub mod metering;
pub mod metrics;
pub mod proxy;
pub mod report;
pub mod route;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod timestamp;
pub mod ui;
pub mod upload;
pub mod upstream;

pub use server::serve;
pub use state::{App, AppState};

/// Binds the configured address and serves until SIGINT/SIGTERM, then drains.
pub async fn run(config: config::Config) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let app = AppState::start(config).await?;
    tracing::info!(addr = %listener.local_addr()?, database = app.store.kind(), "catgate listening");
    serve(listener, app, server::shutdown_signal()).await;
    Ok(())
}
