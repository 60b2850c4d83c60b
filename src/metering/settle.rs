//! Turning what a metered body observed into one priced [`UsageRecord`]. Runs on the
//! recorder thread, so JSON parsing and tokenizing never sit on a request's path.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rust_decimal::Decimal;

use super::pricing::PriceTable;
use super::tokenizer::Tokenizer;
use super::usage::{self, StreamOutcome, Usage};
use crate::store::usage::UsageRecord;

/// What the proxy knew about a request when its response body ended.
#[derive(Debug)]
pub struct Finished {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: Option<i64>,
    pub route: String,
    pub request_model: Option<String>,
    /// The request body as sent by the client, for estimating prompt tokens.
    pub request_body: Bytes,
    pub stream: bool,
    pub status: u16,
    pub attempts: u32,
    pub latency_ms: u64,
    /// When the request arrived; formatted on the recorder thread.
    pub created_at: std::time::SystemTime,
    pub observed: Observed,
}

/// What the response body showed.
#[derive(Debug)]
pub enum Observed {
    /// Nothing to meter: an error answer, a binary body, or no upstream answer at all.
    Nothing,
    /// A JSON body whose usage was already read on the response path.
    Usage { usage: Usage, model: Option<String> },
    /// A JSON body without usage (or cut short by a disconnect), as one compact buffer.
    Body(Bytes),
    /// A server-sent event stream.
    Stream(StreamOutcome),
}

/// Routes whose prompt and completion tiktoken can count when the upstream sent no usage.
const ESTIMABLE: &[&str] = &["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

pub struct Settler {
    pub prices: Arc<PriceTable>,
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

/// The usage, the model the response named, and whether tokens were estimated.
fn tokens(f: &Finished) -> (Usage, Option<String>, bool) {
    let success = (200..300).contains(&f.status);
    let (found, model, completion_text) = match &f.observed {
        _ if !success => return (Usage::default(), None, false),
        Observed::Nothing => return (Usage::default(), None, false),
        Observed::Usage { usage, model } => return (*usage, model.clone(), false),
        Observed::Body(body) => {
            let (u, m) = usage::from_json_body(body);
            let text = match u {
                None => usage::completion_text_from_body(body),
                Some(_) => String::new(),
            };
            (u, m, text)
        }
        Observed::Stream(outcome) => {
            let text = match outcome.usage {
                None => usage::completion_text_from_stream(&outcome.raw_data),
                Some(_) => String::new(),
            };
            (outcome.usage, outcome.model.clone(), text)
        }
    };
    if let Some(u) = found {
        return (u, model, false);
    }
    if !ESTIMABLE.contains(&f.route.as_str()) {
        return (Usage::default(), model, false);
    }
    let name = model
        .as_deref()
        .or(f.request_model.as_deref())
        .unwrap_or("");
    let Some(tok) = tokenizer() else {
        return (Usage::default(), model, true);
    };
    let prompt = tok.prompt_tokens(name, &f.request_body);
    let completion = tok.count(name, &completion_text);
    let u = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    };
    (u, model, true)
}

/// Settles with estimation and pricing.
pub fn settle(settler: &Settler, f: Finished) -> UsageRecord {
    let (u, model, estimated) = tokens(&f);
    let model = model
        .filter(|m| !m.is_empty())
        .or_else(|| f.request_model.clone())
        .unwrap_or_default();
    let cost = if u.prompt_tokens == 0 && u.completion_tokens == 0 {
        Decimal::ZERO
    } else {
        match settler
            .prices
            .cost(&model, u.prompt_tokens, u.completion_tokens)
        {
            Some(c) => c,
            None => {
                tracing::warn!(model = %model, "no price configured for model; cost recorded as 0");
                Decimal::ZERO
            }
        }
    };
    record(f, model, u, cost, estimated)
}

fn record(f: Finished, model: String, u: Usage, cost: Decimal, estimated: bool) -> UsageRecord {
    UsageRecord {
        request_id: f.request_id,
        user_id: f.user_id,
        key_id: f.key_id,
        model,
        route: f.route,
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        cost,
        estimated,
        stream: f.stream,
        status: f.status,
        latency_ms: f.latency_ms,
        attempts: f.attempts,
        created_at: crate::timestamp::format(f.created_at.into()),
    }
}
