//! Shared state: immutable handles built once at start and cloned into every request.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::TokenIndex;
use crate::config::Config;
use crate::metering::recorder::Recorder;
use crate::metering::settle::Settler;
use crate::metrics::Metrics;
use crate::store::{OpenMode, Store, StoreError};
use crate::upstream::pool::KeyPool;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::upstream::client::ClientError),
    #[error("cannot start the usage recorder: {0}")]
    Recorder(#[from] std::io::Error),
}

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub tokens: TokenIndex,
    pub keys: KeyPool,
    pub client: crate::upstream::client::UpstreamClient,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The store's change marker when the caches were last loaded. Held across a reload, so
    /// a periodic refresh that read the tables before an admin change cannot overwrite the
    /// newer snapshot that change installed, and concurrent callers wait for fresh caches.
    loaded: tokio::sync::Mutex<Option<i64>>,
    /// Requests that outlive their client (see `proxy::finish_detached`), drained at shutdown.
    detached: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

pub type App = Arc<AppState>;

/// How often `/v1`'s caches are checked against the database.
pub const REFRESH_EVERY: Duration = Duration::from_millis(100);

impl AppState {
    /// Opens the store, loads users and keys, starts the recorder.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let store = Store::open(&config.database, OpenMode::Create).await?;
        let client = crate::upstream::client::build(&config.upstream)?;
        let settler = Settler::new(
            Arc::new(config.prices.clone()),
            config.max_tokens_per_request,
        );
        let metrics = Arc::new(Metrics::new(
            config
                .prices
                .models()
                .chain(config.azure_deployments.keys().map(String::as_str)),
        ));
        let recorder = Recorder::start(
            store.clone(),
            settler,
            config.spool.clone(),
            metrics.clone(),
        )
        .await?;
        let state = AppState {
            keys: KeyPool::new(config.upstream.openai_base_url.clone()),
            config: Arc::new(config),
            store,
            tokens: TokenIndex::new(),
            client,
            recorder,
            metrics,
            loaded: tokio::sync::Mutex::new(None),
            detached: std::sync::Mutex::new(tokio::task::JoinSet::new()),
        };
        state.refresh(true).await?;
        Ok(Arc::new(state))
    }

    /// Runs an admin change, then reloads the token index and the key pool before answering:
    /// the one way handlers write, so no caller can forget a reload and the next request
    /// already sees the change.
    pub async fn write<T>(
        &self,
        change: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let done = change.await?;
        self.refresh(true).await?;
        Ok(done)
    }

    /// Before a report: this replica's records are committed, and on a database that other
    /// replicas share, theirs from before this moment too (they commit within their window),
    /// so a report never misses an answer a client already received.
    pub async fn settle_usage(&self) {
        self.recorder.flush().await;
        if self.store.shared() {
            tokio::time::sleep(crate::metering::recorder::PEER_SETTLE).await;
        }
    }

    /// Reloads users and keys if the database changed since the last load (the CLI reset a
    /// token, another replica added a key), or always with `force`. Returns once the caches
    /// are current, also when another caller's reload was running.
    pub async fn refresh(&self, force: bool) -> Result<bool, StoreError> {
        let mut loaded = self.loaded.lock().await;
        // Read before reloading: a commit during the reload shows up on the next call.
        let marker = self.store.change_marker().await?;
        if !force && *loaded == Some(marker) {
            return Ok(false);
        }
        let users = self.store.list_users(true).await?;
        let keys = self.store.list_keys().await?;
        self.tokens.replace(&users);
        self.keys.replace(keys);
        *loaded = Some(marker);
        Ok(true)
    }

    /// The metrics label of a request's or record's model (see [`Metrics::model`]).
    pub fn model_label(&self, model: Option<&str>) -> crate::metrics::ModelLabel {
        let prices = &self.config.prices;
        self.metrics
            .model(model, |m| prices.lookup(m).map(|(name, _)| name))
    }

    /// Runs `task` on its own, so that it goes on when the client's connection (and with it
    /// the request's handler) is gone; the shutdown drain waits for it.
    pub fn spawn_detached(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// At shutdown: waits up to `within` for detached requests, then cancels the rest (each
    /// cancelled one still writes its record, as a request whose client left does).
    pub async fn drain_detached(&self, within: Duration) {
        let mut set = std::mem::take(&mut *self.detached.lock().unwrap_or_else(|p| p.into_inner()));
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(
                left = set.len(),
                "grace period over; cancelling requests whose clients left"
            );
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }

    /// Picks up changes made by another process within [`REFRESH_EVERY`] for `/v1`, where a
    /// check per request would cost a database round trip; `/1` checks on every request.
    pub fn spawn_refresh(app: &App) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { break };
                match app.refresh(false).await {
                    // Keeps serving from the caches it has: a database outage must not stop
                    // members who are already known. Said once, not ten times a second.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "reload of users and keys failed; serving from the cached ones");
                    }
                    Err(_) => {}
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("users and keys reload again");
                    }
                    Ok(_) => {}
                }
            }
        })
    }
}
