//! Member limits on the request path: the worst-case cost a budget reserves, the admission
//! (one database transaction, only for members that have limits), the 429 answers, and the
//! release of a concurrency slot when the answer ends.
//!
//! What is enforced where, and why it holds across replicas: see `store::limits`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use rust_decimal::Decimal;
use time::{Date, OffsetDateTime};

use crate::auth::Caller;
use crate::body::ResponseBody;
use crate::config::LimitsConfig;
use crate::error::{BoxError, ProxyError};
use crate::metering::pricing::PriceTable;
use crate::metering::usage::Usage;
use crate::route::Route;
use crate::store::limits::{Admission, Limits, Refusal};
use crate::store::Store;

/// The longest an admission or a release may wait for the database.
const DB_WAIT: Duration = Duration::from_secs(5);
/// How long a budgeted request waits at the door while requests in flight hold what is left
/// of the budget (they may settle below their reservation and leave room), and how often it
/// looks again. After that it gets the budget's 429.
const BUDGET_QUEUE: Duration = Duration::from_secs(30);
/// The first and the longest pause between two looks (doubling): a quick answer is seen at
/// once, a queue of waiting requests does not keep the database's writer busy.
const BUDGET_POLL: Duration = Duration::from_millis(25);
const BUDGET_POLL_MAX: Duration = Duration::from_millis(500);
/// How long after an abandoned admission its hold is dropped: past any admission still
/// running on the database (its wait plus the database's own lock timeout).
const FORGET_AFTER: Duration = Duration::from_secs(12);

/// The current UTC month and day: the keys spend is kept under, and when each resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub month: String,
    pub day: String,
    pub month_resets: String,
    pub day_resets: String,
}

impl Periods {
    pub fn at(now: OffsetDateTime) -> Periods {
        let today = now.date();
        let (_, next_month) = crate::timestamp::month_bounds(today);
        let tomorrow = today.next_day().unwrap_or(today);
        let ymd = |d: Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
        Periods {
            month: ymd(today)[..7].to_string(),
            day: ymd(today),
            month_resets: format!("{}T00:00:00Z", ymd(next_month)),
            day_resets: format!("{}T00:00:00Z", ymd(tomorrow)),
        }
    }

    pub fn now() -> Periods {
        Periods::at(OffsetDateTime::now_utc())
    }
}

/// What a request may cost at most, before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorstCase {
    /// It costs nothing (a free model or a route that is not billed): budgets never block it.
    Free,
    Cost(Decimal),
    /// A billable request catgate has no price for.
    Unpriced,
}

/// The request's worst-case cost: every byte of the body as a prompt token (a token is at
/// least one byte of text, so this bounds the prompt without running the tokenizer) at the
/// input price, plus `max_tokens` (else `default_output`) × `n` output tokens at the output
/// price. Embeddings produce no output tokens.
pub fn worst_case(prices: &PriceTable, ask: &Ask<'_>, default_output: u64) -> WorstCase {
    if !ask.route.billable() {
        return WorstCase::Free;
    }
    let Some(model) = ask.model else {
        return WorstCase::Unpriced;
    };
    if prices.lookup(model).is_none() {
        return WorstCase::Unpriced;
    }
    let output = match ask.route {
        Route::Embeddings => 0,
        _ => ask
            .max_tokens
            .unwrap_or(default_output)
            .saturating_mul(ask.n.unwrap_or(1).max(1)),
    };
    let bound = crate::store::usage::MAX_PLAUSIBLE_TOKENS;
    let usage = Usage::plain(ask.body_len.min(bound), output.min(bound));
    // The tier asked for (a `priority` request costs more); the standard price at least.
    let standard = prices.cost(model, None, &usage);
    let asked = ask
        .service_tier
        .and_then(|t| prices.cost(model, Some(t), &usage));
    match standard.max(asked) {
        Some(c) if c.is_zero() => WorstCase::Free,
        Some(c) => WorstCase::Cost(c),
        None => WorstCase::Unpriced,
    }
}

/// What a request needs to know to be admitted.
pub struct Ask<'a> {
    pub request_id: &'a str,
    pub method: &'a http::Method,
    pub route: Route,
    pub model: Option<&'a str>,
    pub service_tier: Option<&'a str>,
    pub body_len: u64,
    pub max_tokens: Option<u64>,
    pub n: Option<u64>,
}

/// Checks `caller`'s limits for one request. Members without limits pass without touching
/// the database. `Ok(Some(ticket))` = a concurrency slot to give back when the answer ends.
pub async fn admit(
    store: &Store,
    config: &LimitsConfig,
    prices: &PriceTable,
    caller: Caller,
    ask: Ask<'_>,
) -> Result<Option<Ticket>, ProxyError> {
    let limits = caller.limits;
    if !limits.any() {
        return Ok(None);
    }
    // Routes catgate passes through without metering (batches, fine-tuning, realtime
    // sessions, …) can cost money it never sees: a budget could not hold, so they are closed
    // to budgeted members except for reading and deleting.
    let reads = matches!(
        *ask.method,
        http::Method::GET | http::Method::HEAD | http::Method::DELETE
    );
    if limits.has_budget() && ask.route == Route::Other && !reads {
        return Err(ProxyError::NotMetered(
            "catgate does not meter this endpoint, so it cannot be charged to your budget; \
             ask your admin to remove your budget if you need it."
                .into(),
        ));
    }
    let worst = worst_case(prices, &ask, config.default_max_tokens);
    let reserve = match worst {
        WorstCase::Free => None,
        WorstCase::Cost(c) => Some(c),
        WorstCase::Unpriced if limits.has_budget() => {
            return Err(ProxyError::ModelNotPriced(format!(
                "catgate has no price for model `{}`, so it cannot be charged to your budget; \
                 ask your admin to add it under [pricing.models].",
                ask.model.unwrap_or("(none)")
            )))
        }
        WorstCase::Unpriced => None,
    };
    let queued_until = tokio::time::Instant::now() + BUDGET_QUEUE;
    let mut pause = BUDGET_POLL;
    // Armed until the verdict is known: an admission that times out or is abandoned (the
    // client left) may still commit its hold, which no record would ever settle.
    let mut abandoned = Abandoned {
        store: store.clone(),
        request_id: Some(ask.request_id.to_string()),
    };
    loop {
        let now = OffsetDateTime::now_utc();
        let periods = Periods::at(now);
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let hold_ms = i64::try_from(config.hold.as_millis()).unwrap_or(i64::MAX);
        let admission = Admission {
            request_id: ask.request_id.to_string(),
            user_id: caller.user_id,
            limits,
            reserve,
            now_ms,
            month: periods.month.clone(),
            day: periods.day.clone(),
            expires_ms: now_ms.saturating_add(hold_ms),
        };
        let verdict = match tokio::time::timeout(DB_WAIT, store.admit(&admission)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(user_id = caller.user_id, error = %e, "cannot check limits; request refused");
                return Err(ProxyError::LimitsUnavailable);
            }
            Err(_) => {
                tracing::warn!(
                    user_id = caller.user_id,
                    "limits check timed out; request refused"
                );
                return Err(ProxyError::LimitsUnavailable);
            }
        };
        let may_clear = matches!(
            verdict,
            Some(
                Refusal::Busy
                    | Refusal::MonthlyBudget { settled: false, .. }
                    | Refusal::DailyBudget { settled: false, .. }
            )
        );
        match verdict {
            None => {
                // From here the request's record settles its hold.
                abandoned.request_id = None;
                return Ok(limits.max_concurrent.map(|_| Ticket {
                    store: store.clone(),
                    request_id: ask.request_id.to_string(),
                }));
            }
            Some(_) if may_clear && tokio::time::Instant::now() < queued_until => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BUDGET_POLL_MAX);
            }
            Some(refusal) => {
                abandoned.request_id = None;
                return Err(refused(refusal, &periods));
            }
        }
    }
}

/// The hold of an admission that did not end in a verdict, dropped a little later (after any
/// transaction still running for it).
struct Abandoned {
    store: Store,
    request_id: Option<String>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(request_id) = self.request_id.take() else {
            return;
        };
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(FORGET_AFTER).await;
                if let Err(e) = store.forget_hold(&request_id).await {
                    tracing::warn!(error = %e, "cannot drop the hold of an abandoned admission");
                }
            });
        }
    }
}

/// A budget as the 429 message prints it: dollars with at least two decimals.
fn dollars(d: Decimal) -> String {
    if d.scale() < 2 {
        format!("{d:.2}")
    } else {
        d.to_string()
    }
}

fn refused(refusal: Refusal, periods: &Periods) -> ProxyError {
    match refusal {
        Refusal::MonthlyBudget { budget, .. } => ProxyError::QuotaExceeded(format!(
            "Monthly budget of ${} reached; resets {}",
            dollars(budget),
            periods.month_resets
        )),
        Refusal::DailyBudget { budget, .. } => ProxyError::QuotaExceeded(format!(
            "Daily budget of ${} reached; resets {}",
            dollars(budget),
            periods.day_resets
        )),
        Refusal::Busy => ProxyError::RateLimited {
            message: "Another request of yours is still running; retry when it finishes.".into(),
            retry_after: 1,
        },
        Refusal::Rate {
            rpm,
            retry_after_ms,
        } => {
            let secs = u64::try_from(retry_after_ms.max(1))
                .unwrap_or(60)
                .div_ceil(1000);
            ProxyError::RateLimited {
                message: format!(
                    "Rate limit of {rpm} requests per minute reached; retry in {secs} s."
                ),
                retry_after: secs,
            }
        }
        Refusal::Concurrency(max) => ProxyError::RateLimited {
            message: format!(
                "Too many requests in flight: at most {max} at a time; retry when one finishes."
            ),
            retry_after: 1,
        },
    }
}

/// A concurrency slot held by an admitted request, given back when its answer ends.
pub struct Ticket {
    store: Store,
    request_id: String,
}

impl Ticket {
    /// Gives the slot back when `resp`'s body ends, before its last bytes go out (so a client
    /// that waits for one answer before sending the next never finds its own slot taken), or
    /// when the body is dropped.
    pub fn attach(self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        resp.map(|inner| {
            ResponseBody::stream(Releasing {
                inner,
                ticket: Some(self),
                pending: None,
                held: None,
            })
        })
    }

    async fn release(self) {
        let released = tokio::time::timeout(DB_WAIT, self.store.release(&self.request_id));
        match released.await {
            Ok(Ok(())) => {}
            // The record's write frees the slot anyway, a moment later.
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot free a concurrency slot"),
            Err(_) => tracing::warn!("freeing a concurrency slot timed out"),
        }
    }
}

type Release = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The answer body of a request holding a concurrency slot.
struct Releasing {
    inner: ResponseBody,
    ticket: Option<Ticket>,
    /// The release in progress; `held` goes out when it is done.
    pending: Option<Release>,
    held: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

impl Releasing {
    fn start_release(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.pending = Some(Box::pin(ticket.release()));
        }
    }
}

impl Body for Releasing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(pending) = this.pending.as_mut() {
            if pending.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pending = None;
            return Poll::Ready(this.held.take().flatten());
        }
        if this.held.is_some() {
            return Poll::Ready(this.held.take().flatten());
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(frame) => {
                let last = match &frame {
                    None | Some(Err(_)) => true,
                    Some(Ok(_)) => this.inner.is_end_stream(),
                };
                if !last || this.ticket.is_none() {
                    return Poll::Ready(frame);
                }
                this.held = Some(frame);
                this.start_release();
                Pin::new(this).poll_frame(cx)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ticket.is_none()
            && self.pending.is_none()
            && self.held.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        // The client left (or the server is closing) before the end.
        if let Some(ticket) = self.ticket.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(ticket.release());
            }
        }
    }
}

/// Spend shown to a member (`GET /1/me`): settled cost this month and today, and when each
/// window resets.
pub async fn spend_view(
    store: &Store,
    user_id: i64,
    limits: &Limits,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let p = Periods::now();
    let spend = store.spend(user_id, &p.month, &p.day).await?;
    let left = |budget: Option<Decimal>, spent: Decimal| {
        budget.map(|b| (b - spent).max(Decimal::ZERO).to_string())
    };
    Ok(serde_json::json!({
        "spend": { "month": spend.month.to_string(), "day": spend.day.to_string() },
        "remaining": {
            "month": left(limits.monthly_budget, spend.month),
            "day": left(limits.daily_budget, spend.day),
        },
        "resetsAt": { "month": p.month_resets, "day": p.day_resets },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_roll_over_months_and_years() {
        let t = time::macros::datetime!(2026-12-31 23:59:59 UTC);
        let p = Periods::at(t);
        assert_eq!(p.month, "2026-12");
        assert_eq!(p.day, "2026-12-31");
        assert_eq!(p.month_resets, "2027-01-01T00:00:00Z");
        assert_eq!(p.day_resets, "2027-01-01T00:00:00Z");
        let p = Periods::at(time::macros::datetime!(2026-11-27 10:00 UTC));
        assert_eq!(p.month_resets, "2026-12-01T00:00:00Z");
        assert_eq!(p.day_resets, "2026-11-28T00:00:00Z");
    }

    #[test]
    fn dollars_have_two_decimals_at_least() {
        assert_eq!(dollars(Decimal::new(50, 0)), "50.00");
        assert_eq!(dollars(Decimal::new(5000, 2)), "50.00");
        assert_eq!(dollars(Decimal::new(1, 2)), "0.01");
        assert_eq!(dollars(Decimal::new(5, 3)), "0.005");
    }

    /// A chat request for gpt-4o-mini with a 1000-byte body.
    fn ask(max_tokens: Option<u64>, n: Option<u64>, tier: Option<&'static str>) -> Ask<'static> {
        Ask {
            request_id: "r",
            method: &http::Method::POST,
            route: Route::ChatCompletions,
            model: Some("gpt-4o-mini"),
            service_tier: tier,
            body_len: 1000,
            max_tokens,
            n,
        }
    }

    #[test]
    fn worst_case_bounds_prompt_by_bytes_and_output_by_cap() {
        let prices = PriceTable::builtin().unwrap();
        let cost = |d: &str| WorstCase::Cost(d.parse().unwrap());
        // gpt-4o-mini: $0.15 in, $0.60 out per 1M. 1000 bytes + 100 × 2 choices:
        // 1000 × 0.15/1M + 200 × 0.60/1M = 0.00015 + 0.00012 = 0.00027.
        assert_eq!(
            worst_case(&prices, &ask(Some(100), Some(2), None), 4096),
            cost("0.00027")
        );
        // No cap: the default 4096 → 0.00015 + 4096 × 0.6/1M = 0.00015 + 0.0024576.
        assert_eq!(
            worst_case(&prices, &ask(None, None, None), 4096),
            cost("0.0026076")
        );
        // Priority tier: 1000 × 0.25/1M + 100 × 1.00/1M = 0.00025 + 0.0001; flex (cheaper,
        // by multiplier) never lowers the reservation below standard.
        assert_eq!(
            worst_case(&prices, &ask(Some(100), None, Some("priority")), 4096),
            cost("0.00035")
        );
        assert_eq!(
            worst_case(&prices, &ask(Some(100), None, Some("flex")), 4096),
            cost("0.00021")
        );
        let models = Ask {
            route: Route::Models,
            model: None,
            ..ask(None, None, None)
        };
        assert_eq!(worst_case(&prices, &models, 4096), WorstCase::Free);
        let unknown = Ask {
            model: Some("no-such-model"),
            ..ask(None, None, None)
        };
        assert_eq!(worst_case(&prices, &unknown, 4096), WorstCase::Unpriced);
    }
}
