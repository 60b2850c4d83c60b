//! The `catgate` binary: parse the command line, load config, init tracing, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // Owner-only files from the start: the database, its -wal/-shm and the usage spool hold
    // tokens, keys and usage, and SQLite creates them with the process umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let command = match catgate::cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("catgate: {message}\n\n{}", catgate::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_open_file_limit();
    match catgate::cli::execute(command) {
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
