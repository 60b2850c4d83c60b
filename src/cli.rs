//! Command line: `catgate [--config PATH] [serve | root-token | reset-root | users export FILE |
//! users import FILE | report ... | reprice ...]`. Admin subcommands work on the same database
//! the server uses.

use std::path::PathBuf;
use std::sync::Arc;

use crate::admin::usages::window;
use crate::config::Config;
use crate::metering::settle::cost_of;
use crate::metering::usage::Usage;
use crate::report::{self, Format, DEFAULT_GROUP_BY};
use crate::store::report::Dimension;
use crate::store::usage::UsageRecord;
use crate::store::users::{User, ROOT_ID};
use crate::store::{copy, Database, OpenMode, Store, StoreError};

pub const USAGE: &str = "usage: catgate [--config PATH] [COMMAND]

commands:
  serve                 run the proxy (default)
  root-token            print root's token
  reset-root            give root a new token and print it
  users export FILE     write all users (tokens included) as JSON to FILE
  users import FILE     load users from such a file (ids and tokens kept)
  report [--from D --to D] [--by user,model,key,day,tier] [--format table|csv|json]
                        usage report (default: this UTC month, by user,model, as a table)
  reprice [--from D --to D]
                        recompute stored costs from their token columns with the current
                        prices (after a price fix), in one transaction
  copy --to DATABASE [--force]
                        copy users, keys and usage (ids, tokens, exact costs) from this
                        config's database to DATABASE (a postgres:// URL or a SQLite path);
                        refuses a target that holds data unless --force (then merges: same
                        ids are overwritten, records already there are skipped)

--config defaults to ./config.toml; a missing default file means built-in defaults.";

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Serve,
    RootToken,
    ResetRoot,
    ExportUsers(PathBuf),
    ImportUsers(PathBuf),
    Report(ReportArgs),
    Reprice(Window),
    Copy { to: String, force: bool },
    Help,
    Version,
}

/// `--from`/`--to` as given (validated when the command runs, like the HTTP API does).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ReportArgs {
    pub window: Window,
    pub by: Vec<Dimension>,
    pub format: Format,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    pub config: Option<PathBuf>,
    pub action: Action,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = None;
    let mut words = Vec::new();
    let mut options: Vec<(String, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a path")?))
            }
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            "--help" | "-h" | "help" => words.push("help".to_string()),
            "--version" | "-V" => words.push("version".to_string()),
            "--force" => options.push(("force".to_string(), String::new())),
            "--from" | "--to" | "--by" | "--format" => {
                let value = args.next().ok_or(format!("{a} needs a value"))?;
                options.push((a[2..].to_string(), value));
            }
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            _ => words.push(a),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let option = |name: &str| {
        options
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let window = || Window {
        from: option("from"),
        to: option("to"),
    };
    let allowed: &[&str] = match words.as_slice() {
        ["report"] => &["from", "to", "by", "format"],
        ["reprice"] => &["from", "to"],
        ["copy"] => &["to", "force"],
        _ => &[],
    };
    if let Some((k, _)) = options.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!("`--{k}` does not apply to this command"));
    }
    let action = match words.as_slice() {
        [] | ["serve"] => Action::Serve,
        ["help", ..] => Action::Help,
        ["version", ..] => Action::Version,
        ["root-token"] => Action::RootToken,
        ["reset-root"] => Action::ResetRoot,
        ["users", "export", file] => Action::ExportUsers(PathBuf::from(file)),
        ["users", "import", file] => Action::ImportUsers(PathBuf::from(file)),
        ["report"] => Action::Report(ReportArgs {
            window: window(),
            by: match option("by") {
                Some(by) => report::parse_group_by(&by)?,
                None => DEFAULT_GROUP_BY.to_vec(),
            },
            format: match option("format") {
                Some(f) => Format::parse(&f, true)?,
                None => Format::Table,
            },
        }),
        ["reprice"] => Action::Reprice(window()),
        ["copy"] => Action::Copy {
            to: option("to").ok_or("copy needs --to DATABASE")?,
            force: option("force").is_some(),
        },
        other => return Err(format!("unknown command `{}`", other.join(" "))),
    };
    Ok(Command { config, action })
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
}

pub fn execute(command: Command) -> Result<(), CliError> {
    let (path, optional) = match command.config {
        Some(p) => (p, false),
        None => (PathBuf::from("config.toml"), true),
    };
    match command.action {
        Action::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Action::Version => {
            println!("catgate {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        _ => {}
    }
    let config = Config::load(&path, optional)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Server(e.to_string()))?;
    runtime.block_on(run(command.action, config))
}

async fn run(action: Action, config: Config) -> Result<(), CliError> {
    let existing = || Store::open(&config.database, OpenMode::Existing);
    match action {
        Action::Serve => crate::run(config)
            .await
            .map_err(|e| CliError::Server(e.to_string())),
        Action::RootToken => {
            let store = existing().await?;
            println!("{}", root(&store).await?.token);
            Ok(())
        }
        Action::ResetRoot => {
            let store = existing().await?;
            root(&store).await?;
            println!("{}", store.reset_token(ROOT_ID, None).await?.token);
            Ok(())
        }
        Action::ExportUsers(file) => {
            let store = existing().await?;
            let users = store.list_users(true).await?;
            let text =
                serde_json::to_string_pretty(&users).map_err(|e| CliError::File(e.to_string()))?;
            write_private(&file, (text + "\n").as_bytes())
                .map_err(|e| CliError::File(format!("cannot write {}: {e}", file.display())))?;
            eprintln!("exported {} users to {}", users.len(), file.display());
            Ok(())
        }
        Action::ImportUsers(file) => {
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
        Action::Report(args) => {
            let (from, to) = window(args.window.from, args.window.to).map_err(CliError::Usage)?;
            let store = Store::open(&config.database, OpenMode::Create).await?;
            let rows = store.usage_report(&from, &to, None, &args.by).await?;
            match args.format {
                Format::Table => print!("{}", report::to_table(&rows, &args.by)),
                Format::Csv => print!("{}", report::to_csv(&rows, &args.by)),
                Format::Json => println!("{}", String::from_utf8_lossy(&report::to_json(&rows))),
            }
            Ok(())
        }
        Action::Reprice(w) => {
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
        Action::Copy { to, force } => {
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
        Action::Help | Action::Version => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_commands() {
        assert_eq!(p(&[]).unwrap().action, Action::Serve);
        let c = p(&["--config", "x.toml", "root-token"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert_eq!(c.action, Action::RootToken);
        assert_eq!(
            p(&["users", "export", "u.json"]).unwrap().action,
            Action::ExportUsers("u.json".into())
        );
        assert!(p(&["--nope"]).is_err());
        assert!(p(&["users", "delete"]).is_err());
        assert!(p(&["--config"]).is_err());
        let r = p(&[
            "report",
            "--by",
            "day,model",
            "--format",
            "csv",
            "--from",
            "2026-11-01",
        ]);
        assert_eq!(
            r.unwrap().action,
            Action::Report(ReportArgs {
                window: Window {
                    from: Some("2026-11-01".into()),
                    to: None
                },
                by: vec![Dimension::Day, Dimension::Model],
                format: Format::Csv,
            })
        );
        assert!(p(&["report", "--by", "nope"]).is_err());
        assert!(p(&["report", "--format", "xml"]).is_err());
        assert!(p(&["reprice", "--by", "user"]).is_err());
        assert!(p(&["root-token", "--from", "2026-01-01"]).is_err());
    }
}
