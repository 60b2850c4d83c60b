//! Command line: `catgate [--config PATH] [COMMAND]` (the clap types are in [`args`]). Admin
//! subcommands work on the same database the server uses.

mod args;
mod health;

use std::path::PathBuf;
use std::sync::Arc;

pub use args::{Cli, Command, GroupBy, ReportArgs, UsersCommand, Window};

use crate::admin::usages::window;
use crate::config::Config;
use crate::metering::settle::cost_of;
use crate::metering::usage::Usage;
use crate::report::{self, Format};
use crate::store::usage::UsageRecord;
use crate::store::users::{User, ROOT_ID};
use crate::store::{backup, copy, Database, OpenMode, Store, StoreError};

impl Cli {
    /// `--config`/`CATGATE_CONFIG` must exist; the implicit `./config.toml` may be missing
    /// (built-in defaults then).
    pub fn load_config(&self) -> Result<Config, CliError> {
        Ok(match &self.config {
            Some(path) => Config::load(path, false)?,
            None => Config::load(&PathBuf::from("config.toml"), true)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no root user yet: start catgate and call POST /1/users/init first")]
    NoRoot,
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Server(String),
    #[error("{0}")]
    Usage(String),
    #[error("not ready: {0}")]
    Unhealthy(String),
}

/// Runs `command` (none: `serve`) with `config`.
pub fn execute(command: Option<Command>, config: Config) -> Result<(), CliError> {
    let command = command.unwrap_or(Command::Serve);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Server(e.to_string()))?;
    runtime.block_on(run(command, config))
}

async fn run(command: Command, config: Config) -> Result<(), CliError> {
    let existing = || Store::open(&config.database, OpenMode::Existing);
    match command {
        Command::Serve => crate::run(config)
            .await
            .map_err(|e| CliError::Server(e.to_string())),
        Command::RootToken => {
            let store = existing().await?;
            println!("{}", root(&store).await?.token);
            Ok(())
        }
        Command::ResetRoot => {
            let store = existing().await?;
            root(&store).await?;
            println!("{}", store.reset_token(ROOT_ID, None).await?.token);
            Ok(())
        }
        Command::Users(UsersCommand::Export { file }) => {
            let store = existing().await?;
            let users = store.list_users(true).await?;
            let text =
                serde_json::to_string_pretty(&users).map_err(|e| CliError::File(e.to_string()))?;
            write_private(&file, (text + "\n").as_bytes())
                .map_err(|e| CliError::File(format!("cannot write {}: {e}", file.display())))?;
            eprintln!("exported {} users to {}", users.len(), file.display());
            Ok(())
        }
        Command::Users(UsersCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::File(format!("cannot read {}: {e}", file.display())))?;
            let users: Vec<User> = serde_json::from_str(&text).map_err(|e| {
                CliError::File(format!("{} is not a users export: {e}", file.display()))
            })?;
            let store = Store::open(&config.database, OpenMode::Create).await?;
            let n = store.import_users(&users).await?;
            eprintln!("imported {n} users from {}", file.display());
            Ok(())
        }
        Command::Report(args) => {
            let (from, to) = window(args.window.from, args.window.to).map_err(CliError::Usage)?;
            let store = Store::open(&config.database, OpenMode::Create).await?;
            let by = args.by.0;
            let rows = store.usage_report(&from, &to, None, &by).await?;
            match args.format {
                Format::Table => print!("{}", report::to_table(&rows, &by)),
                Format::Csv => print!("{}", report::to_csv(&rows, &by)),
                Format::Json => println!("{}", String::from_utf8_lossy(&report::to_json(&rows))),
            }
            Ok(())
        }
        Command::Reprice(w) => {
            let (from, to) = window(w.from, w.to).map_err(CliError::Usage)?;
            let store = Store::open(&config.database, OpenMode::Create).await?;
            let prices = config.prices.clone();
            let summary = store
                .reprice(
                    &format!("{from}T00:00:00.000000Z"),
                    &format!("{to}T00:00:00.000000Z"),
                    Arc::new(move |r: &UsageRecord| reprice_one(&prices, r)),
                )
                .await?;
            let moved = summary.total_after - summary.total_before;
            println!(
                "repriced {from} to {to}: {} records, {} changed; total {} -> {} ({}{})",
                summary.records,
                summary.changed,
                report::money(summary.total_before),
                report::money(summary.total_after),
                if moved.is_sign_negative() { "" } else { "+" },
                report::money(moved),
            );
            Ok(())
        }
        Command::Copy { to, force } => {
            let target = Database::parse(&to);
            if target == config.database {
                return Err(CliError::Usage(
                    "--to names the database being copied".into(),
                ));
            }
            let source = existing().await?;
            let target_store = Store::open(&target, OpenMode::Create).await?;
            let copied = copy::copy(&source, &target_store, force).await?;
            let cost = match copied.source_cost == copied.target_cost {
                true => format!("cost {} on both sides", copied.source_cost),
                false => format!(
                    "cost {} in the source, {} in the merged target",
                    copied.source_cost, copied.target_cost
                ),
            };
            println!(
                "copied to {target}: {} users, {} keys, {} usage records ({} new); {cost}",
                copied.users, copied.keys, copied.records, copied.inserted
            );
            Ok(())
        }
        Command::Backup { file, force } => {
            let copied = backup::backup(&config.database, &file, force).await?;
            println!(
                "backed up {} to {}: {} users, {} keys, {} usage records ({} bytes)",
                config.database,
                file.display(),
                copied.users,
                copied.keys,
                copied.records,
                copied.bytes
            );
            Ok(())
        }
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| health::local_url(config.listen));
            let probed = tokio::task::spawn_blocking(move || health::probe(&url))
                .await
                .map_err(|e| CliError::Server(e.to_string()))?
                .map_err(CliError::Unhealthy)?;
            println!("ready: {probed}");
            Ok(())
        }
    }
}

/// A stored record's cost under the current prices (same rules as when it was written).
fn reprice_one(
    prices: &crate::metering::pricing::PriceTable,
    r: &UsageRecord,
) -> Option<rust_decimal::Decimal> {
    let usage = Usage {
        prompt_tokens: r.prompt_tokens,
        cached_tokens: r.cached_tokens,
        cache_write_tokens: r.cache_write_tokens,
        audio_input_tokens: r.audio_input_tokens,
        completion_tokens: r.completion_tokens,
        reasoning_tokens: r.reasoning_tokens,
        audio_output_tokens: r.audio_output_tokens,
        total_tokens: r.total_tokens,
        suspect: false,
    };
    cost_of(
        prices,
        crate::route::Route::parse(&r.route),
        r.status,
        &r.model,
        r.service_tier.as_deref(),
        &usage,
        r.usage_source,
    )
}

/// Writes `file` readable by its owner only, whatever the umask, also when it existed: an
/// export holds every user's token.
fn write_private(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

async fn root(store: &Store) -> Result<User, CliError> {
    match store.user(ROOT_ID).await {
        Ok(u) => Ok(u),
        Err(StoreError::NotFound) => Err(CliError::NoRoot),
        Err(e) => Err(e.into()),
    }
}
