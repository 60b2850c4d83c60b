//! Configuration: `config.toml` (every key optional) → validated [`Config`], then env overrides.
//!
//! Parsing is strict (`deny_unknown_fields`) so a typo fails at start with one line naming the
//! key instead of being silently ignored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::metering::pricing::{self, PriceTable};
use crate::metering::settle::DEFAULT_MAX_TOKENS;
use crate::store::Database;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Upstream client settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub openai_base_url: String,
    pub azure_api_version: String,
    pub connect_timeout: Duration,
    /// Time allowed until upstream response headers arrive.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two body chunks.
    pub idle_timeout: Duration,
    /// Attempts per request, over distinct keys (failover before the first byte).
    pub max_attempts: u32,
    pub cooldown_429: Duration,
    pub cooldown_5xx: Duration,
    /// Wait before the first probe of a key the upstream refused; doubles after each failure.
    pub key_probe_first: Duration,
    /// Longest wait between two probes of one key.
    pub key_probe_max: Duration,
    /// Largest request body accepted on `/v1` (audio uploads are the big ones).
    pub max_request_bytes: usize,
    /// Time a client has to send its whole request body (`/v1` and `/1`).
    pub body_read_timeout: Duration,
}

/// `[limits]`: how members' budgets reserve.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Output tokens a budget reserves for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// How long a reservation outlives a replica that died before writing its record.
    pub hold: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    /// The usage journal's base path: beside the SQLite file, or in `spool_dir` (default for
    /// PostgreSQL: the config file's folder; each replica needs its own).
    pub spool: PathBuf,
    pub upstream: UpstreamConfig,
    pub azure_deployments: HashMap<String, String>,
    pub prices: PriceTable,
    /// Upstream token counts above this (in one answer) are bogus: treated as missing usage.
    pub max_tokens_per_request: u64,
    pub shutdown_grace: Duration,
    pub limits: LimitsConfig,
    pub log_format: LogFormat,
    pub metrics: MetricsConfig,
}

/// How log lines are written to stderr (`log_format`, env `CATGATE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[metrics]`: whether `GET /metrics` exists, and the Bearer token it asks for, if any.
#[derive(Clone, Default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub token: Option<String>,
}

/// The token stays out of any `{:?}` of the config.
impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database: Option<String>,
    shutdown_grace_secs: Option<u64>,
    log_format: Option<String>,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    azure_deployments: HashMap<String, String>,
    #[serde(default)]
    pricing: RawPricing,
    #[serde(default)]
    metering: RawMetering,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    metrics: RawMetrics,
    /// The pre-v2 per-1K section: accepted by the parser only to be refused with a clear reason.
    prices: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    #[serde(default)]
    models: toml::Table,
    #[serde(default)]
    service_tiers: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetering {
    max_tokens_per_request: Option<u64>,
    spool_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    default_max_tokens: Option<u64>,
    hold_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    enabled: Option<bool>,
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    openai_base_url: Option<String>,
    azure_api_version: Option<String>,
    connect_timeout_secs: Option<f64>,
    first_byte_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    max_attempts: Option<u32>,
    cooldown_429_secs: Option<f64>,
    cooldown_5xx_secs: Option<f64>,
    /// No longer used (a refused key is disabled and probed instead of resting); still
    /// accepted so that configs written for older versions keep starting.
    cooldown_auth_secs: Option<f64>,
    key_probe_first_secs: Option<f64>,
    key_probe_max_secs: Option<f64>,
    max_request_bytes: Option<usize>,
    body_read_timeout_secs: Option<f64>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_OPENAI_BASE: &str = "https://api.openai.com";
/// The GA api-version that accepts `stream_options`, so Azure streams report usage.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

impl Config {
    /// Loads `path`. A missing file is an error unless `optional` (the implicit default path).
    pub fn load(path: &Path, optional: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_toml(&text, &base, &env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; relative `database` paths resolve against `base_dir`; `env` supplies
    /// `CATGATE_LISTEN`, `PORT`, `CATGATE_DATABASE`, `CATGATE_LOG_FORMAT` and
    /// `CATGATE_METRICS_TOKEN` overrides.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.message().to_string() + &span_hint(text, e.span()),
        })?;
        if raw.prices.is_some() {
            return Err(ConfigError::Invalid {
                key: "prices".into(),
                message: "the `[prices.*]` section (USD per 1K tokens) was replaced by \
                    `[pricing.models.\"<model>\"]` in USD per 1M tokens (1000x the old numbers, \
                    as OpenAI's pricing page prints them); move the entries there"
                    .into(),
            });
        }
        let mut listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let mut listen_key = "listen";
        if let Some(port) = env.get("PORT").filter(|p| !p.is_empty()) {
            listen_text = format!("0.0.0.0:{port}");
            listen_key = "PORT";
        }
        if let Some(l) = env.get("CATGATE_LISTEN").filter(|l| !l.is_empty()) {
            listen_text = l.clone();
            listen_key = "CATGATE_LISTEN";
        }
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: listen_key.into(),
            message: format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        })?;
        let db_text = env
            .get("CATGATE_DATABASE")
            .filter(|d| !d.is_empty())
            .cloned()
            .or(raw.database)
            .unwrap_or_else(|| "catgate.db".into());
        let database = match Database::parse(&db_text) {
            Database::Sqlite(p) if p.is_relative() => Database::Sqlite(base_dir.join(p)),
            other => other,
        };
        let spool_dir = raw.metering.spool_dir.map(|d| {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                base_dir.join(d)
            }
        });
        let spool = spool_path(&database, spool_dir.as_deref(), base_dir);
        Ok(Config {
            listen,
            database,
            spool,
            upstream: upstream(raw.upstream)?,
            azure_deployments: raw.azure_deployments,
            prices: prices(&raw.pricing)?,
            max_tokens_per_request: max_tokens(raw.metering.max_tokens_per_request)?,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(30)),
            limits: limits(&raw.limits)?,
            log_format: log_format(raw.log_format, env)?,
            metrics: metrics(raw.metrics, env)?,
        })
    }
}

/// `catgate.db` → `catgate.db.usage-spool.jsonl`, next to the database or in `spool_dir` (a
/// different disk survives the database's disk filling up). PostgreSQL has no local file, so
/// its journal goes to `spool_dir` or the config's folder.
fn spool_path(database: &Database, spool_dir: Option<&Path>, base_dir: &Path) -> PathBuf {
    match database {
        Database::Sqlite(db) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".usage-spool.jsonl");
            match spool_dir {
                Some(dir) => dir.join(name),
                None => db.with_file_name(name),
            }
        }
        Database::Postgres(_) => spool_dir
            .unwrap_or(base_dir)
            .join("catgate-postgres.usage-spool.jsonl"),
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(s) => {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn secs(key: &str, v: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let v = v.unwrap_or(default);
    // A week bounds every timeout and cooldown, so deadline arithmetic cannot overflow.
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= 7 * 24 * 3600)
        .ok_or_else(|| ConfigError::Invalid {
            key: format!("upstream.{key}"),
            message: format!("{v} is not a number of seconds between 0 and one week"),
        })
}

fn upstream(raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let base = raw
        .openai_base_url
        .unwrap_or_else(|| DEFAULT_OPENAI_BASE.into());
    let openai_base_url =
        crate::base_url::normalize_base(&base).map_err(|m| ConfigError::Invalid {
            key: "upstream.openai_base_url".into(),
            message: m.to_string(),
        })?;
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if !(1..=16).contains(&max_attempts) {
        return Err(ConfigError::Invalid {
            key: "upstream.max_attempts".into(),
            message: "must be between 1 and 16".into(),
        });
    }
    let key_probe_first = secs("key_probe_first_secs", raw.key_probe_first_secs, 60.0)?;
    let key_probe_max = secs("key_probe_max_secs", raw.key_probe_max_secs, 3600.0)?;
    if key_probe_max < key_probe_first {
        return Err(ConfigError::Invalid {
            key: "upstream.key_probe_max_secs".into(),
            message: "must not be less than upstream.key_probe_first_secs".into(),
        });
    }
    if let Some(v) = raw.cooldown_auth_secs {
        secs("cooldown_auth_secs", Some(v), 0.0)?;
    }
    Ok(UpstreamConfig {
        openai_base_url,
        azure_api_version: raw
            .azure_api_version
            .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()),
        connect_timeout: secs("connect_timeout_secs", raw.connect_timeout_secs, 10.0)?,
        first_byte_timeout: secs(
            "first_byte_timeout_secs",
            raw.first_byte_timeout_secs,
            600.0,
        )?,
        idle_timeout: secs("idle_timeout_secs", raw.idle_timeout_secs, 300.0)?,
        max_attempts,
        cooldown_429: secs("cooldown_429_secs", raw.cooldown_429_secs, 30.0)?,
        cooldown_5xx: secs("cooldown_5xx_secs", raw.cooldown_5xx_secs, 10.0)?,
        key_probe_first,
        key_probe_max,
        max_request_bytes: raw.max_request_bytes.unwrap_or(64 * 1024 * 1024),
        body_read_timeout: secs("body_read_timeout_secs", raw.body_read_timeout_secs, 60.0)?,
    })
}

fn prices(raw: &RawPricing) -> Result<PriceTable, ConfigError> {
    let invalid = |e: pricing::PriceError| ConfigError::Invalid {
        key: e.key,
        message: e.message,
    };
    let mut table = PriceTable::builtin().map_err(invalid)?;
    for (model, price) in pricing::parse_models(&raw.models, "pricing.models").map_err(invalid)? {
        table.insert(model, price);
    }
    for (tier, value) in &raw.service_tiers {
        let multiplier =
            pricing::decimal(&format!("pricing.service_tiers.{tier}"), value).map_err(invalid)?;
        table.set_tier_multiplier(tier.clone(), multiplier);
    }
    Ok(table)
}

/// Default for `[limits] default_max_tokens`: OpenAI's usual output cap for chat models.
pub const DEFAULT_RESERVED_OUTPUT: u64 = 4096;

fn limits(raw: &RawLimits) -> Result<LimitsConfig, ConfigError> {
    let default_max_tokens = raw.default_max_tokens.unwrap_or(DEFAULT_RESERVED_OUTPUT);
    if !(1..=crate::store::usage::MAX_PLAUSIBLE_TOKENS).contains(&default_max_tokens) {
        return Err(ConfigError::Invalid {
            key: "limits.default_max_tokens".into(),
            message: "must be between 1 and 1000000000".into(),
        });
    }
    let hold_secs = raw.hold_secs.unwrap_or(3600);
    if !(60..=7 * 24 * 3600).contains(&hold_secs) {
        return Err(ConfigError::Invalid {
            key: "limits.hold_secs".into(),
            message: "must be between 60 and 604800 seconds".into(),
        });
    }
    Ok(LimitsConfig {
        default_max_tokens,
        hold: Duration::from_secs(hold_secs),
    })
}

fn log_format(
    raw: Option<String>,
    env: &HashMap<String, String>,
) -> Result<LogFormat, ConfigError> {
    let (key, text) = match env.get("CATGATE_LOG_FORMAT").filter(|f| !f.is_empty()) {
        Some(f) => ("CATGATE_LOG_FORMAT", f.clone()),
        None => ("log_format", raw.unwrap_or_else(|| "text".into())),
    };
    match text.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid {
            key: key.into(),
            message: format!("`{other}` is not a log format; use \"text\" or \"json\""),
        }),
    }
}

/// `CATGATE_METRICS_TOKEN` wins over `[metrics] token`, so the secret can stay out of the file.
fn metrics(raw: RawMetrics, env: &HashMap<String, String>) -> Result<MetricsConfig, ConfigError> {
    let token = env
        .get("CATGATE_METRICS_TOKEN")
        .cloned()
        .or(raw.token)
        .filter(|t| !t.is_empty());
    if token.as_deref().is_some_and(|t| t.trim() != t) {
        return Err(ConfigError::Invalid {
            key: "metrics.token".into(),
            message: "must not start or end with whitespace".into(),
        });
    }
    Ok(MetricsConfig {
        enabled: raw.enabled.unwrap_or(false),
        token,
    })
}

fn max_tokens(v: Option<u64>) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(DEFAULT_MAX_TOKENS);
    if !(1..=crate::store::usage::MAX_PLAUSIBLE_TOKENS).contains(&v) {
        return Err(ConfigError::Invalid {
            key: "metering.max_tokens_per_request".into(),
            message: "must be between 1 and 1000000000".into(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/catgate"), &HashMap::new())
    }

    #[test]
    fn empty_config_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("/etc/catgate/catgate.db"))
        );
        assert_eq!(
            c.spool,
            PathBuf::from("/etc/catgate/catgate.db.usage-spool.jsonl")
        );
        assert_eq!(c.upstream.openai_base_url, DEFAULT_OPENAI_BASE);
        assert_eq!(c.upstream.azure_api_version, "2024-10-21");
        assert_eq!(c.max_tokens_per_request, 10_000_000);
        assert_eq!(c.upstream.max_attempts, 3);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("lisen = \"1.2.3.4:5\"").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = parse("[upstream]\ntimeout = 3").unwrap_err().to_string();
        assert!(e.contains("timeout"), "{e}");
        let e = parse("[upstream]\nbody_read_timeout_secs = 0").unwrap_err();
        assert!(
            e.to_string().contains("upstream.body_read_timeout_secs"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("listen = \"nope\"").unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = parse("[pricing.models.m]\ninput = \"x\"\noutput = \"1\"").unwrap_err();
        assert!(
            e.to_string().contains("`pricing.models.\"m\".input`"),
            "{e}"
        );
        let e = parse("[pricing.models.m]\ninput = 0.1\noutput = \"1\"").unwrap_err();
        assert!(e.to_string().contains("pricing.models.\"m\".input"), "{e}");
        let e = parse("[pricing.service_tiers]\nflex = 0.5").unwrap_err();
        assert!(e.to_string().contains("pricing.service_tiers.flex"), "{e}");
        let e = parse("[metering]\nmax_tokens_per_request = 0").unwrap_err();
        assert!(
            e.to_string().contains("metering.max_tokens_per_request"),
            "{e}"
        );
    }

    #[test]
    fn probe_schedule_is_validated() {
        let c = parse("[upstream]\nkey_probe_first_secs = 1\nkey_probe_max_secs = 4").unwrap();
        assert_eq!(c.upstream.key_probe_first, Duration::from_secs(1));
        assert_eq!(c.upstream.key_probe_max, Duration::from_secs(4));
        let e = parse("[upstream]\nkey_probe_first_secs = 10\nkey_probe_max_secs = 5").unwrap_err();
        assert!(e.to_string().contains("upstream.key_probe_max_secs"), "{e}");
        let e = parse("[upstream]\nkey_probe_first_secs = 0").unwrap_err();
        assert!(
            e.to_string().contains("upstream.key_probe_first_secs"),
            "{e}"
        );
        // Older configs still start.
        assert!(parse("[upstream]\ncooldown_auth_secs = 600").is_ok());
    }

    #[test]
    fn env_overrides_win() {
        let env: HashMap<String, String> = [
            ("PORT".to_string(), "9000".to_string()),
            ("CATGATE_DATABASE".to_string(), "/data/x.db".to_string()),
        ]
        .into();
        let c = Config::from_toml("listen = \"127.0.0.1:1\"", Path::new("."), &env).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.database, Database::Sqlite(PathBuf::from("/data/x.db")));
    }

    #[test]
    fn log_format_from_file_or_env() {
        assert_eq!(parse("").unwrap().log_format, LogFormat::Text);
        let json = parse("log_format = \"json\"").unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        let e = parse("log_format = \"xml\"").unwrap_err().to_string();
        assert!(e.contains("`log_format`") && e.contains("xml"), "{e}");
        let env = |v: &str| HashMap::from([("CATGATE_LOG_FORMAT".to_string(), v.to_string())]);
        let from_env = |text: &str, v: &str| Config::from_toml(text, Path::new("."), &env(v));
        let c = from_env("log_format = \"text\"", "json").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let e = from_env("", "JSON").unwrap_err().to_string();
        assert!(
            e.contains("`CATGATE_LOG_FORMAT`") && e.contains("JSON"),
            "{e}"
        );
    }

    #[test]
    fn metrics_token_from_env_and_hidden_from_debug() {
        let c = parse("[metrics]\nenabled = true\ntoken = \"s3cret\"").unwrap();
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.token.as_deref(), Some("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let env = [("CATGATE_METRICS_TOKEN".to_string(), "from-env".to_string())].into();
        let c = Config::from_toml("[metrics]\ntoken = \"x\"", Path::new("."), &env).unwrap();
        assert_eq!(c.metrics.token.as_deref(), Some("from-env"));
        assert!(!c.metrics.enabled);
        assert!(parse("[metrics]\ntoken = \" x\"").is_err());
    }

    #[test]
    fn shipped_config_parses_to_the_defaults() {
        let text = include_str!("../config.toml");
        let c = parse(text).unwrap();
        let d = parse("").unwrap();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.database, d.database);
        assert_eq!(c.upstream.key_probe_first, d.upstream.key_probe_first);
        assert_eq!(c.upstream.key_probe_max, d.upstream.key_probe_max);
        assert_eq!(d.upstream.key_probe_first, Duration::from_secs(60));
        assert_eq!(d.upstream.key_probe_max, Duration::from_secs(3600));
        assert_eq!(c.upstream.max_request_bytes, d.upstream.max_request_bytes);
        assert_eq!(c.upstream.body_read_timeout, d.upstream.body_read_timeout);
        assert_eq!(d.upstream.body_read_timeout, Duration::from_secs(60));
        assert_eq!(c.log_format, d.log_format);
    }

    #[test]
    fn price_override_is_exact() {
        let c = parse(
            "[pricing.models.\"my-model\"]\ninput = \"0.1\"\noutput = \"0.2\"\n\
             [pricing.models.\"my-model\".flex]\ninput = \"0.05\"\noutput = \"0.1\"\n\
             [pricing.service_tiers]\npriority = \"3\"",
        )
        .unwrap();
        let (_, p) = c.prices.lookup("my-model").unwrap();
        assert_eq!(p.standard.input.to_string(), "0.1");
        assert_eq!(p.tiers["flex"].output.to_string(), "0.1");
        // 1M prompt tokens at 0.1 per 1M, priority without a table: × 3.
        let u = crate::metering::usage::Usage::plain(1_000_000, 0);
        assert_eq!(
            c.prices
                .cost("my-model", Some("priority"), &u)
                .unwrap()
                .to_string(),
            "0.3"
        );
        // Built-in entries stay.
        assert!(c.prices.lookup("gpt-5").is_some());
    }

    #[test]
    fn old_per_1k_prices_section_fails_loudly() {
        let e = parse("[prices.\"gpt-4o\"]\ninput = \"0.0025\"\noutput = \"0.01\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`prices`") && e.contains("pricing.models"),
            "{e}"
        );
        assert!(e.contains("1M"), "{e}");
    }
}
