//! Turning what a metered body observed into one priced [`UsageRecord`]. Runs on the
//! recorder thread, so JSON parsing and tokenizing never sit on a request's path.
//!
//! The rules (api.md, Metering v2): upstream numbers when they are plausible; else a tiktoken
//! estimate where the route allows one; a failed answer counts nothing and costs 0; a priced
//! model costs exactly what [`PriceTable::cost`] says; an unknown model, or an answer that
//! should have carried tokens but could not be measured, is unpriced (`cost = None`) — never
//! a guess, never a silent 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rust_decimal::Decimal;

use super::answer_scan;
use super::completion_text;
use super::pricing::PriceTable;
use super::stream_meter::StreamOutcome;
use super::tokenizer::Tokenizer;
use super::usage::Usage;
use crate::route::Route;
use crate::store::usage::{UsageRecord, UsageSource};
use crate::upload::RequestBody;

/// What the proxy knew about a request when its response body ended.
#[derive(Debug)]
pub struct Finished {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: Option<i64>,
    /// What the request is, as the proxy parsed it: decides estimation and pricing.
    pub route: Route,
    /// The request's path, stored as the record's `route` (reports and `reprice` read it).
    pub path: String,
    pub request_model: Option<String>,
    /// The request body as sent by the client, for estimating prompt tokens.
    pub request_body: RequestBody,
    pub stream: bool,
    pub status: u16,
    pub attempts: u32,
    pub latency_ms: u64,
    /// When the request arrived; formatted on the recorder thread.
    pub created_at: std::time::SystemTime,
    pub observed: Observed,
}

impl Finished {
    /// Whether settling needs the tokenizer: a successful answer whose usage was not read on
    /// the response path. Only then is the request body kept for the record.
    pub fn needs_estimate(&self) -> bool {
        (200..300).contains(&self.status)
            && match &self.observed {
                Observed::Body(_) => true,
                Observed::Stream(outcome) => outcome.usage.is_none(),
                Observed::Nothing | Observed::Usage { .. } => false,
            }
    }
}

/// What the response body showed.
#[derive(Debug)]
pub enum Observed {
    /// Nothing to meter: an error answer, a binary body, or no upstream answer at all.
    Nothing,
    /// A JSON body whose usage was already read on the response path.
    Usage {
        usage: Usage,
        model: Option<String>,
        service_tier: Option<String>,
    },
    /// A JSON body without usage (or cut short by a disconnect), as one compact buffer.
    Body(Bytes),
    /// A server-sent event stream.
    Stream(StreamOutcome),
}

/// Default for `[metering] max_tokens_per_request`.
pub const DEFAULT_MAX_TOKENS: u64 = 10_000_000;
/// How often an unpriced model is warned about.
const UNPRICED_WARN_EVERY: Duration = Duration::from_secs(3600);

pub struct Settler {
    pub prices: Arc<PriceTable>,
    /// Upstream counts above this are not believed (a bogus upstream must not bill millions).
    pub max_tokens: u64,
    unpriced_warned: Mutex<HashMap<String, Instant>>,
}

impl Settler {
    pub fn new(prices: Arc<PriceTable>, max_tokens: u64) -> Settler {
        Settler {
            prices,
            max_tokens,
            unpriced_warned: Mutex::new(HashMap::new()),
        }
    }

    /// Logs an unpriced model at most once per model per hour.
    fn warn_unpriced(&self, model: &str) {
        let mut warned = self
            .unpriced_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let due = warned
            .get(model)
            .is_none_or(|at| now.duration_since(*at) >= UNPRICED_WARN_EVERY);
        if due {
            warned.insert(model.to_string(), now);
            tracing::warn!(model = %model, "no price for model; its records are unpriced (cost NULL) until one is configured under [pricing.models]");
        }
    }
}

/// The BPE tables load once per process, on first use: they take tens of MB, and a team
/// whose upstream always reports usage never needs them.
fn tokenizer() -> Option<&'static Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| match Tokenizer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "tokenizer unavailable; estimates will be 0");
                None
            }
        })
        .as_ref()
}

/// What was measured of one answer.
struct Measured {
    usage: Usage,
    source: UsageSource,
    model: Option<String>,
    service_tier: Option<String>,
}

/// Where the text to estimate from comes from, when the upstream sent no usable numbers.
enum Estimate {
    None,
    Text(String),
}

fn measure(settler: &Settler, f: &Finished) -> Measured {
    let success = (200..300).contains(&f.status);
    let none = |model, service_tier| Measured {
        usage: Usage::default(),
        source: UsageSource::None,
        model,
        service_tier,
    };
    let (found, model, tier, text) = match &f.observed {
        _ if !success => return none(None, None),
        Observed::Nothing => return none(None, None),
        Observed::Usage {
            usage,
            model,
            service_tier,
        } => (
            Some(*usage),
            model.clone(),
            service_tier.clone(),
            Estimate::None,
        ),
        Observed::Body(body) => {
            let read = answer_scan::from_json_body(body);
            let text = match read.usage {
                Some(u) if u.largest_count() <= settler.max_tokens => Estimate::None,
                _ => Estimate::Text(completion_text::from_body(body)),
            };
            (read.usage, read.model, read.service_tier, text)
        }
        Observed::Stream(outcome) => {
            let text = match outcome.usage {
                None => Estimate::Text(outcome.text.clone().into_text()),
                Some(_) => Estimate::None,
            };
            (
                outcome.usage,
                outcome.model.clone(),
                outcome.service_tier.clone(),
                text,
            )
        }
    };
    let found = found.filter(|u| plausible(settler, f, u));
    if let Some(u) = found {
        if u.was_inconsistent() {
            tracing::warn!(request_id = %f.request_id, ?u, "upstream usage details did not fit their totals; clamped");
        }
        return Measured {
            usage: u.clamped(),
            source: UsageSource::Upstream,
            model,
            service_tier: tier,
        };
    }
    // Unbelievable numbers arrive where the text was already let go (usage read on the
    // response path): nothing to estimate from, so the record stays unpriced.
    let Estimate::Text(completion_text) = text else {
        return none(model, tier);
    };
    if !f.route.estimable() {
        return none(model, tier);
    }
    let name = model
        .as_deref()
        .or(f.request_model.as_deref())
        .unwrap_or("");
    let Some(tok) = tokenizer() else {
        return none(model, tier);
    };
    let usage = Usage::plain(
        tok.prompt_tokens(name, &f.request_body.contents_blocking()),
        tok.count(name, &completion_text),
    );
    Measured {
        usage,
        source: UsageSource::Estimated,
        model,
        service_tier: tier,
    }
}

/// Whether upstream counts are believable; logs the request id when they are not.
fn plausible(settler: &Settler, f: &Finished, u: &Usage) -> bool {
    let ok = u.largest_count() <= settler.max_tokens;
    if !ok {
        tracing::warn!(request_id = %f.request_id, prompt = u.prompt_tokens, completion = u.completion_tokens,
            total = u.total_tokens, bound = settler.max_tokens,
            "upstream usage beyond the plausibility bound; treated as missing");
    }
    ok
}

/// The cost of a record: 0 for a failed answer, exact for a priced model, `None` (unpriced) for
/// an unknown model or a successful token-billed answer that could not be measured.
pub fn cost_of(
    prices: &PriceTable,
    route: Route,
    status: u16,
    model: &str,
    tier: Option<&str>,
    usage: &Usage,
    source: UsageSource,
) -> Option<Decimal> {
    if !(200..300).contains(&status) {
        return Some(Decimal::ZERO);
    }
    if source == UsageSource::None && route.billed_by_tokens() {
        return None;
    }
    let billable = route.billable();
    match prices.lookup(model) {
        // A billable answer that showed no tokens and has no per-request price (speech as
        // audio bytes, a transcription as plain text) cannot be priced: unpriced, not $0.
        Some((_, price)) if billable && usage.is_zero() && price.per_request.is_none() => None,
        Some(_) => prices.cost(model, tier, usage),
        None => (usage.is_zero() && !billable).then_some(Decimal::ZERO),
    }
}

/// Settles with estimation and pricing.
pub fn settle(settler: &Settler, f: Finished) -> UsageRecord {
    let m = measure(settler, &f);
    let model = m
        .model
        .filter(|m| !m.is_empty())
        .or_else(|| f.request_model.clone())
        .unwrap_or_default();
    let cost = cost_of(
        &settler.prices,
        f.route,
        f.status,
        &model,
        m.service_tier.as_deref(),
        &m.usage,
        m.source,
    );
    if cost.is_none() && settler.prices.lookup(&model).is_none() {
        settler.warn_unpriced(&model);
    }
    let u = m.usage;
    UsageRecord {
        request_id: f.request_id,
        user_id: f.user_id,
        key_id: f.key_id,
        model,
        route: f.path,
        prompt_tokens: u.prompt_tokens,
        cached_tokens: u.cached_tokens,
        cache_write_tokens: u.cache_write_tokens,
        audio_input_tokens: u.audio_input_tokens,
        completion_tokens: u.completion_tokens,
        reasoning_tokens: u.reasoning_tokens,
        audio_output_tokens: u.audio_output_tokens,
        total_tokens: u.total_tokens,
        service_tier: m.service_tier,
        usage_source: m.source,
        cost,
        stream: f.stream,
        status: f.status,
        latency_ms: f.latency_ms,
        attempts: f.attempts,
        created_at: crate::timestamp::format(f.created_at.into()),
    }
}
