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
    match catgate::cli::execute(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("catgate: {e}");
            ExitCode::FAILURE
        }
    }
}
