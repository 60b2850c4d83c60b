//! Prometheus metrics, exposed at `GET /metrics` when `[metrics] enabled`.
//!
//! Counting is always on (the same cost whether anyone scrapes or not) and stays a few atomic
//! operations per request on the request path: a request is counted once when its response
//! head goes out, an upstream's first byte when it arrives. What a settled usage record says
//! (tokens, cost, total duration) is counted on the recorder's writer thread; gauges (keys,
//! recorder backlog) are read at scrape time. Label values come from fixed sets: routes are
//! [`Route`] names, models the ones catgate prices or routes (else `other`), so no client can
//! grow the series without bound.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use rust_decimal::prelude::ToPrimitive;

use crate::route::Route;
use crate::store::usage::UsageRecord;

/// The `content-type` of a scrape (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The label for models catgate neither prices nor routes (or requests without a model).
pub const OTHER_MODEL: &str = "other";

/// A model as a label value: one shared string per known model, so counting copies no text.
pub type ModelLabel = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
    model: ModelLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    kind: &'static str,
    model: ModelLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: ModelLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Histograms = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Time to an upstream's first byte: 5 ms to 41 s.
fn first_byte_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// A whole upstream answer, streams included: 10 ms to 5.5 min.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    models: HashMap<Box<str>, ModelLabel>,
    other: ModelLabel,
    requests: Family<RequestLabels, Counter>,
    first_byte: Histograms,
    duration: Histograms,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    failovers: Family<ReasonLabels, Counter>,
    keys: Family<StatusLabels, Gauge>,
    recorder_queued: Gauge,
    recorder_spooled: Gauge,
}

impl Metrics {
    /// `known`: the models that get their own label (priced or in `[azure_deployments]`).
    pub fn new<'a>(known: impl IntoIterator<Item = &'a str>) -> Metrics {
        let models = known
            .into_iter()
            .map(|m| (Box::from(m), ModelLabel::from(m)))
            .collect();
        let metrics = Metrics {
            registry: Registry::with_prefix("catgate"),
            models,
            other: ModelLabel::from(OTHER_MODEL),
            requests: Family::default(),
            first_byte: Family::new_with_constructor(first_byte_buckets),
            duration: Family::new_with_constructor(duration_buckets),
            tokens: Family::default(),
            cost: Family::default(),
            failovers: Family::default(),
            keys: Family::default(),
            recorder_queued: Gauge::default(),
            recorder_spooled: Gauge::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Requests answered on /v1 (catgate's own errors and rejections included)",
            self.requests.clone(),
        );
        r.register_with_unit(
            "upstream_first_byte",
            "Time from sending a request upstream to the first byte of its answer",
            Unit::Seconds,
            self.first_byte.clone(),
        );
        r.register_with_unit(
            "upstream_duration",
            "Time from a request's arrival to the end of its upstream answer",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register(
            "tokens",
            "Tokens of settled usage records, by kind",
            self.tokens.clone(),
        );
        r.register(
            "cost_usd",
            "Cost of settled usage records in USD (float; the exact bill is in the database)",
            self.cost.clone(),
        );
        r.register(
            "failovers",
            "Retries on another key, by why the previous key failed",
            self.failovers.clone(),
        );
        r.register("keys", "Upstream keys by status", self.keys.clone());
        r.register(
            "recorder_queued_records",
            "Usage records waiting in memory (neither journal nor database took them)",
            self.recorder_queued.clone(),
        );
        r.register(
            "recorder_spooled_records",
            "Usage records in the journal that the database refused so far",
            self.recorder_spooled.clone(),
        );
        r.register(
            "build",
            "catgate's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        self
    }

    /// The label for `name`: itself when known, else what `canonical` maps it to (a dated
    /// snapshot to its priced name) when that is known, else `other`.
    pub fn model<'p>(
        &self,
        name: Option<&str>,
        canonical: impl FnOnce(&str) -> Option<&'p str>,
    ) -> ModelLabel {
        let Some(name) = name else {
            return self.other.clone();
        };
        self.models
            .get(name)
            .or_else(|| canonical(name).and_then(|c| self.models.get(c)))
            .unwrap_or(&self.other)
            .clone()
    }

    /// One `/v1` request answered (its response head is going out).
    pub fn request(&self, route: Route, status: u16, model: ModelLabel) {
        let labels = RequestLabels {
            route: route.label(),
            status,
            model,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// An upstream answered (head, and for a 2xx its first body bytes) after `took`.
    pub fn upstream_first_byte(&self, route: Route, took: Duration) {
        let labels = RouteLabels {
            route: route.label(),
        };
        self.first_byte
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A request moves on to another key because the last one failed for `reason`.
    pub fn failover(&self, reason: &'static str) {
        self.failovers.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A usage record as settled (recorder thread): its tokens, cost and, when an upstream
    /// was tried, its duration.
    pub fn settled(&self, record: &UsageRecord, model: ModelLabel) {
        let kinds = [
            ("prompt", record.prompt_tokens),
            ("cached", record.cached_tokens),
            ("cache_write", record.cache_write_tokens),
            ("audio_input", record.audio_input_tokens),
            ("completion", record.completion_tokens),
            ("reasoning", record.reasoning_tokens),
            ("audio_output", record.audio_output_tokens),
        ];
        for (kind, n) in kinds.into_iter().filter(|(_, n)| *n > 0) {
            let labels = TokenLabels {
                kind,
                model: model.clone(),
            };
            self.tokens.get_or_create(&labels).inc_by(n);
        }
        if let Some(usd) = record.cost.and_then(|c| c.to_f64()).filter(|c| *c > 0.0) {
            self.cost.get_or_create(&ModelLabels { model }).inc_by(usd);
        }
        if record.attempts > 0 {
            let labels = RouteLabels {
                route: Route::parse(&record.route).label(),
            };
            let secs = Duration::from_millis(record.latency_ms).as_secs_f64();
            self.duration.get_or_create(&labels).observe(secs);
        }
    }

    /// The scrape: gauges set from what the caller read just now, then every family.
    pub fn render(
        &self,
        keys: &[(&'static str, u64)],
        queued: u64,
        spooled: u64,
    ) -> Result<String, std::fmt::Error> {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (status, n) in keys {
            self.keys
                .get_or_create(&StatusLabels { status })
                .set(gauge(*n));
        }
        self.recorder_queued.set(gauge(queued));
        self.recorder_spooled.set(gauge(spooled));
        let mut out = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_share_one_label() {
        let m = Metrics::new(["gpt-4o", "gpt-4o-mini"]);
        assert_eq!(&*m.model(Some("gpt-4o"), |_| None), "gpt-4o");
        assert_eq!(
            &*m.model(Some("gpt-4o-2024-08-06"), |_| Some("gpt-4o")),
            "gpt-4o"
        );
        assert_eq!(&*m.model(Some("my-finetune"), |_| None), "other");
        assert_eq!(&*m.model(None, |_| Some("gpt-4o")), "other");
    }

    #[test]
    fn families_render_in_prometheus_text() {
        let m = Metrics::new(["gpt-4o"]);
        m.request(
            Route::ChatCompletions,
            200,
            m.model(Some("gpt-4o"), |_| None),
        );
        m.failover("server_error");
        m.upstream_first_byte(Route::Embeddings, Duration::from_millis(30));
        let text = m.render(&[("active", 2), ("cooling", 1)], 0, 3).unwrap();
        for line in [
            "catgate_requests_total{route=\"chat_completions\",status=\"200\",model=\"gpt-4o\"} 1",
            "catgate_failovers_total{reason=\"server_error\"} 1",
            "catgate_keys{status=\"cooling\"} 1",
            "catgate_recorder_spooled_records 3",
            "# TYPE catgate_upstream_first_byte_seconds histogram",
            "catgate_upstream_first_byte_seconds_count{route=\"embeddings\"} 1",
            "catgate_upstream_first_byte_seconds_bucket{route=\"embeddings\",le=\"0.04\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        let build = format!(
            "catgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{text}");
    }
}
