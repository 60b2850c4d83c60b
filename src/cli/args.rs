//! The command line as clap types: per-command `--help`, `--version`, and exit code 2 with
//! clap's message on bad usage. Values that can be wrong (`--by`, `--format`) are parsed here,
//! so a typo is a usage error before any database is opened.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::{self, Format};
use crate::store::report::Dimension;

const SERVE_ENV: &str = "Environment (wins over the config file):
  CATGATE_LISTEN      address to listen on, e.g. 0.0.0.0:8080
  PORT                shorthand for CATGATE_LISTEN=0.0.0.0:$PORT
  CATGATE_DATABASE    SQLite file or postgres:// URL
  CATGATE_LOG_FORMAT  text or json (config key log_format)
  CATGATE_METRICS_TOKEN  Bearer token /metrics asks for (config key [metrics] token)
  RUST_LOG            log filter, e.g. info or catgate=debug (default info)
  NO_COLOR            set: no ANSI colours in text logs (there are none unless stderr is a terminal)";

/// A metering reverse proxy for the OpenAI and Azure OpenAI APIs (opencatd-compatible).
#[derive(Debug, Parser)]
#[command(
    name = "catgate",
    version,
    after_help = "Run `catgate <COMMAND> --help` for a command's options."
)]
pub struct Cli {
    /// Config file [default: ./config.toml, built-in defaults when that file is missing]
    #[arg(
        short,
        long,
        global = true,
        env = "CATGATE_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the proxy (the default command)
    #[command(after_help = SERVE_ENV)]
    Serve,
    /// Print root's token
    RootToken,
    /// Give root a new token and print it
    ResetRoot,
    /// Export or import users (ids and tokens kept)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Usage report (default: this UTC month, by user,model, as a table)
    Report(ReportArgs),
    /// Recompute stored costs with the current prices (after a price fix)
    ///
    /// Every record in the window (default: this UTC month) is priced again from its token
    /// columns, in one transaction, and the report rollups are rebuilt.
    Reprice(Window),
    /// Copy users, keys and usage (ids, tokens, exact costs) to another database
    ///
    /// From this config's database to DATABASE (a postgres:// URL or a SQLite path). A target
    /// that holds data is refused unless --force (then merged: same ids are overwritten,
    /// records already there are skipped).
    Copy {
        /// Target database: a postgres:// URL or a SQLite path
        #[arg(long, value_name = "DATABASE")]
        to: String,
        /// Merge into a target that already holds data
        #[arg(long)]
        force: bool,
    },
    /// Write a consistent copy of the live SQLite database to FILE (safe while serving)
    ///
    /// Uses SQLite's online backup API; the copy is written beside FILE and renamed onto it
    /// when complete and checked, readable by its owner only. PostgreSQL: use pg_dump.
    Backup {
        /// Where the copy goes
        file: PathBuf,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Exit 0 when the server's /readyz answers 200, else print why and exit 1
    ///
    /// Probes the configured `listen` address (0.0.0.0 and [::] mean this machine) or --url,
    /// within 5 s. Made for Docker's HEALTHCHECK.
    Health {
        /// Base URL of a catgate (its /readyz is probed), or a full URL to probe as given
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UsersCommand {
    /// Write all users (tokens included) as JSON to FILE, readable by its owner only
    Export { file: PathBuf },
    /// Load users from such a file (ids and tokens kept)
    Import { file: PathBuf },
}

/// `--from`/`--to` as given (validated when the command runs, like the HTTP API does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct Window {
    /// First day, YYYY-MM-DD (UTC); with --to, else this UTC month
    #[arg(long, value_name = "DAY", requires = "to")]
    pub from: Option<String>,
    /// Day after the last (excluded), YYYY-MM-DD
    #[arg(long, value_name = "DAY", requires = "from")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub window: Window,
    /// Group by a comma list of user, model, key, day, tier
    #[arg(long, value_name = "LIST", default_value = "user,model", value_parser = group_by)]
    pub by: GroupBy,
    /// table, csv or json
    #[arg(long, default_value = "table", value_parser = format)]
    pub format: Format,
}

/// `--by`'s dimensions in order (one value, so clap does not treat it as a repeated option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBy(pub Vec<Dimension>);

fn group_by(text: &str) -> Result<GroupBy, String> {
    report::parse_group_by(text).map(GroupBy)
}

fn format(text: &str) -> Result<Format, String> {
    Format::parse(text, true)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn p(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("catgate").chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> Option<Command> {
        p(args).unwrap().command
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_commands() {
        assert_eq!(command(&[]), None);
        let c = p(&["--config", "x.toml", "root-token"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert_eq!(c.command, Some(Command::RootToken));
        // The global option also after the command, and in its `=` form.
        let c = p(&["root-token", "--config=y.toml"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("y.toml")));
        assert_eq!(
            command(&["users", "export", "u.json"]),
            Some(Command::Users(UsersCommand::Export {
                file: "u.json".into()
            }))
        );
        assert_eq!(
            command(&["backup", "b.db", "--force"]),
            Some(Command::Backup {
                file: "b.db".into(),
                force: true
            })
        );
        assert_eq!(command(&["health"]), Some(Command::Health { url: None }));
        assert_eq!(
            command(&["copy", "--to", "postgres://x/y"]),
            Some(Command::Copy {
                to: "postgres://x/y".into(),
                force: false
            })
        );
    }

    #[test]
    fn report_options_are_checked_while_parsing() {
        let r = command(&[
            "report",
            "--by",
            "day,model",
            "--format",
            "csv",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
        ]);
        assert_eq!(
            r,
            Some(Command::Report(ReportArgs {
                window: Window {
                    from: Some("2026-11-01".into()),
                    to: Some("2026-12-01".into())
                },
                by: GroupBy(vec![Dimension::Day, Dimension::Model]),
                format: Format::Csv,
            }))
        );
        let defaults = command(&["report"]);
        assert_eq!(
            defaults,
            Some(Command::Report(ReportArgs {
                window: Window::default(),
                by: GroupBy(report::DEFAULT_GROUP_BY.to_vec()),
                format: Format::Table,
            }))
        );
    }

    #[test]
    fn bad_usage_is_a_clap_error() {
        for args in [
            &["--nope"][..],
            &["users", "delete"],
            &["users"],
            &["--config"],
            &["report", "--by", "nope"],
            &["report", "--format", "xml"],
            &["report", "--from", "2026-11-01"],
            &["reprice", "--to", "2026-11-01"],
            &["reprice", "--by", "user"],
            &["root-token", "--from", "2026-01-01"],
            &["copy"],
            &["backup"],
        ] {
            let e = p(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }
}
