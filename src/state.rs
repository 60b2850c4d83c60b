//! Shared state: immutable handles built once at start and cloned into every request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::TokenIndex;
use crate::config::Config;
use crate::metering::recorder::Recorder;
use crate::metering::settle::Settler;
use crate::proxy::keys::KeyPool;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::proxy::client::ClientError),
    #[error("cannot start the usage recorder: {0}")]
    Recorder(#[from] std::io::Error),
}

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub tokens: TokenIndex,
    pub keys: KeyPool,
    pub client: crate::proxy::client::UpstreamClient,
    pub recorder: Recorder,
    /// Serializes list-then-replace of the caches, so a periodic refresh that read the tables
    /// before an admin change cannot overwrite the newer snapshot that change installed.
    reload_lock: std::sync::Mutex<()>,
}

pub type App = Arc<AppState>;

/// How often `/v1`'s caches are checked against the database.
pub const REFRESH_EVERY: Duration = Duration::from_millis(100);

impl AppState {
    /// Opens the store, loads users and keys, starts the recorder.
    pub fn start(config: Config) -> Result<App, StartError> {
        let store = Store::open(&config.database)?;
        let client = crate::proxy::client::build(&config.upstream)?;
        let spool = spool_path(&config.database, config.spool_dir.as_deref());
        let settler = Settler::new(
            Arc::new(config.prices.clone()),
            config.max_tokens_per_request,
        );
        let recorder = Recorder::start(store.clone(), settler, spool)?;
        let state = AppState {
            keys: KeyPool::new(config.upstream.openai_base_url.clone()),
            config: Arc::new(config),
            store,
            tokens: TokenIndex::new(),
            client,
            recorder,
            reload_lock: std::sync::Mutex::new(()),
        };
        state.reload_users_blocking()?;
        state.reload_keys_blocking()?;
        Ok(Arc::new(state))
    }

    /// Runs blocking store work (and cache reloads) off the async runtime.
    pub async fn blocking<T, F>(app: &App, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&AppState) -> Result<T, StoreError> + Send + 'static,
    {
        let app = app.clone();
        tokio::task::spawn_blocking(move || f(&app))
            .await
            .map_err(|_| StoreError::Join)?
    }

    /// Runs an admin change off the runtime, then reloads the token index and the key pool
    /// before answering: the one way handlers write, so no caller can forget a reload and the
    /// next request already sees the change.
    pub async fn write<T, F>(app: &App, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        AppState::blocking(app, move |s| {
            let done = f(&s.store)?;
            s.reload_users_blocking()?;
            s.reload_keys_blocking()?;
            Ok(done)
        })
        .await
    }

    fn reload_users_blocking(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let users = self.store.list_users(true)?;
        self.tokens.replace(&users);
        Ok(())
    }

    fn reload_keys_blocking(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let keys = self.store.list_keys()?;
        self.keys.replace(keys);
        Ok(())
    }

    /// Reloads users and keys if the database changed since the last reload (the CLI reset a
    /// token, another process added a key). Returns only once the caches are current, also
    /// when another caller's reload was running.
    pub fn refresh_if_changed_blocking(&self) -> Result<bool, StoreError> {
        self.store.reload_if_changed(|| {
            self.reload_users_blocking()?;
            self.reload_keys_blocking()
        })
    }

    /// Picks up changes made by another process within [`REFRESH_EVERY`] for `/v1`, where a
    /// check per request would cost a blocking-pool hop; `/1` checks on every request.
    pub fn spawn_refresh(app: &App) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { break };
                let refreshed =
                    tokio::task::spawn_blocking(move || app.refresh_if_changed_blocking()).await;
                if let Ok(Err(e)) = refreshed {
                    tracing::warn!(error = %e, "reload of users and keys failed");
                }
            }
        })
    }
}

/// `catgate.db` → `catgate.db.usage-spool.jsonl`, next to the database or in `spool_dir`
/// (a different disk survives the database's disk filling up).
pub fn spool_path(db: &std::path::Path, spool_dir: Option<&std::path::Path>) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".usage-spool.jsonl");
    match spool_dir {
        Some(dir) => dir.join(name),
        None => db.with_file_name(name),
    }
}
