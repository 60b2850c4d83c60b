//! Command line: `catgate [--config PATH] [serve | root-token | reset-root | users export FILE |
//! users import FILE]`. Admin subcommands work on the same database the server uses.

use std::path::PathBuf;

use crate::config::Config;
use crate::store::users::{User, ROOT_ID};
use crate::store::{Store, StoreError};

pub const USAGE: &str = "usage: catgate [--config PATH] [COMMAND]

commands:
  serve                 run the proxy (default)
  root-token            print root's token
  reset-root            give root a new token and print it
  users export FILE     write all users (tokens included) as JSON to FILE
  users import FILE     load users from such a file (ids and tokens kept)

--config defaults to ./config.toml; a missing default file means built-in defaults.";

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Serve,
    RootToken,
    ResetRoot,
    ExportUsers(PathBuf),
    ImportUsers(PathBuf),
    Help,
    Version,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    pub config: Option<PathBuf>,
    pub action: Action,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = None;
    let mut words = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a path")?))
            }
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            "--help" | "-h" | "help" => words.push("help".to_string()),
            "--version" | "-V" => words.push("version".to_string()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            _ => words.push(a),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let action = match words.as_slice() {
        [] | ["serve"] => Action::Serve,
        ["help", ..] => Action::Help,
        ["version", ..] => Action::Version,
        ["root-token"] => Action::RootToken,
        ["reset-root"] => Action::ResetRoot,
        ["users", "export", file] => Action::ExportUsers(PathBuf::from(file)),
        ["users", "import", file] => Action::ImportUsers(PathBuf::from(file)),
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
    match command.action {
        Action::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Server(e.to_string()))?;
            runtime
                .block_on(crate::run(config))
                .map_err(|e| CliError::Server(e.to_string()))
        }
        Action::RootToken => {
            let store = Store::open_existing(&config.database)?;
            println!("{}", root(&store)?.token);
            Ok(())
        }
        Action::ResetRoot => {
            let store = Store::open_existing(&config.database)?;
            root(&store)?;
            println!("{}", store.reset_token(ROOT_ID, None)?.token);
            Ok(())
        }
        Action::ExportUsers(file) => {
            let store = Store::open_existing(&config.database)?;
            let users = store.list_users(true)?;
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
            let store = Store::open(&config.database)?;
            let n = store.import_users(&users)?;
            eprintln!("imported {n} users from {}", file.display());
            Ok(())
        }
        Action::Help | Action::Version => Ok(()),
    }
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

fn root(store: &Store) -> Result<User, CliError> {
    match store.user(ROOT_ID) {
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
    }
}
