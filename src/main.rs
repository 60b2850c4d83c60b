//! The `catgate` binary: parse the command line, load config, init tracing, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Owner-only files from the start: the database, its -wal/-shm and the usage spool hold
    // tokens, keys and usage, and SQLite creates them with the process umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Bad usage exits 2 with clap's message; --help and --version exit 0.
    let cli = catgate::cli::Cli::parse();
    // Before tracing exists, so a config error is one plain line whatever `log_format` says.
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("catgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    catgate::logging::init(config.log_format);
    raise_open_file_limit();
    match catgate::cli::execute(cli.command, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("catgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Each open stream holds a client and an upstream socket, so the usual soft limit of 1024
/// would cap catgate at a few hundred streams; the hard limit is what the admin allowed.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    match (limit.current, limit.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
                Err(e) => {
                    tracing::debug!(error = %e, soft, hard, "cannot raise the open-file limit")
                }
            }
        }
        _ => tracing::debug!(?limit, "open-file limit left as it is"),
    }
}
