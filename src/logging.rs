//! Tracing set-up, once the config is loaded (a config error is printed plainly before it):
//! `RUST_LOG` filter (default `info`), text or JSON lines on stderr.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the global subscriber; call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(colours(
                std::io::stderr().is_terminal(),
                no_color.as_deref(),
            ))
            .init(),
        // Flat objects: fields such as `request_id` sit beside `message`, where collectors
        // index them without a nested path.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Escape codes only for a person at a terminal: never into a file or a pipe (log collectors
/// store them verbatim), and never when `NO_COLOR` is set to anything (no-color.org).
fn colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colours(true, None));
        assert!(colours(true, empty));
        assert!(!colours(true, set));
        assert!(!colours(false, None));
        assert!(!colours(false, set));
    }
}
