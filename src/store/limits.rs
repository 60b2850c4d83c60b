//! Per-member limits and what the database does to enforce them.
//!
//! Enforcement state lives in the database, never in one replica's memory, so that budgets,
//! `rpm` and `maxConcurrent` hold across replicas:
//! - `spend`: settled cost per user and period (`YYYY-MM` and `YYYY-MM-DD`), added in the same
//!   transaction that inserts the usage records (a replayed record adds nothing). A new month
//!   or day is a new key, so nothing ever resets it: the window is computed, not reset.
//! - `limit_holds`: one row per admitted request of a limited member: its worst-case cost
//!   (reserved until its record is written, then deleted in that same transaction) and whether
//!   it still occupies a concurrency slot (cleared when the answer ends). Rows of a replica that
//!   died expire after the hold time.
//! - `limit_rate`: one row per member with `rpm`: the GCRA "theoretical arrival time".
//!
//! [`Admission`] is checked and recorded in one transaction that locks the member's rate row,
//! so two replicas admitting at once see each other's holds.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A member's limits; `None` = no limit. Budgets are USD over the UTC month / day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(with = "opt_decimal_string", default)]
    pub monthly_budget: Option<Decimal>,
    #[serde(with = "opt_decimal_string", default)]
    pub daily_budget: Option<Decimal>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

impl Limits {
    /// Whether any limit is set: only then does a request cost a database round trip.
    pub fn any(&self) -> bool {
        self.monthly_budget.is_some()
            || self.daily_budget.is_some()
            || self.rpm.is_some()
            || self.max_concurrent.is_some()
    }

    pub fn has_budget(&self) -> bool {
        self.monthly_budget.is_some() || self.daily_budget.is_some()
    }

    /// Whether an admitted request needs a hold row (budgets reserve, concurrency occupies).
    pub fn needs_hold(&self) -> bool {
        self.has_budget() || self.max_concurrent.is_some()
    }
}

/// Budgets travel as decimal strings (`"50.00"`), like every amount of money in the API.
mod opt_decimal_string {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        v.map(|t| t.parse::<Decimal>().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// One request asking to start, as the database checks it.
#[derive(Debug, Clone)]
pub struct Admission {
    pub request_id: String,
    pub user_id: i64,
    pub limits: Limits,
    /// The request's worst-case cost; `None` = free (budgets do not apply).
    pub reserve: Option<Decimal>,
    /// Milliseconds since the Unix epoch, read once by the caller.
    pub now_ms: i64,
    /// `YYYY-MM` and `YYYY-MM-DD` of `now_ms` (UTC).
    pub month: String,
    pub day: String,
    /// When the hold lapses if its record never comes (the replica died).
    pub expires_ms: i64,
}

/// Why a request may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The monthly budget is reached: by settled spend alone (`settled`, final), or counting
    /// what requests in flight reserved (may clear when they settle below their reservation).
    MonthlyBudget {
        budget: Decimal,
        settled: bool,
    },
    DailyBudget {
        budget: Decimal,
        settled: bool,
    },
    /// No request of this member settled this month yet, so nothing tells how much one
    /// really costs, and another one is in flight: wait for it (see [`reservation`]).
    Busy,
    /// `rpm` reached; the next request fits after this many milliseconds.
    Rate {
        rpm: u32,
        retry_after_ms: i64,
    },
    Concurrency(u32),
}

/// Settled spend of one member in the current month and day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    pub month: Decimal,
    pub day: Decimal,
    /// The costliest single request settled this month, if any.
    pub month_max: Option<Decimal>,
}

/// The GCRA step for `rpm` requests per rolling minute: `rpm` at once, then one every
/// `60 s / rpm`. Returns the new arrival time to store, or the wait before one more fits.
pub fn gcra(tat_ms: Option<i64>, now_ms: i64, rpm: u32) -> Result<i64, i64> {
    const WINDOW_MS: i64 = 60_000;
    let interval = WINDOW_MS / i64::from(rpm.max(1));
    let start = tat_ms.map_or(now_ms, |t| t.max(now_ms));
    let next = start.saturating_add(interval.max(1));
    let ahead = next - now_ms;
    if ahead > WINDOW_MS {
        Err(ahead - WINDOW_MS)
    } else {
        Ok(next)
    }
}

/// The budget decision shared by the backends. A request is admitted while settled spend
/// plus what requests in flight reserved stays below the budget, so only the last one
/// admitted can cross it. Returns the amount to reserve, or why not.
///
/// The reservation is the worst-case `estimate`, raised to the costliest request this member
/// settled this month: an upstream can report more tokens than the estimate bounds (reasoning
/// output beyond the default cap, say), and the history catches that. Before any request
/// settled this month there is no history, so budgeted requests then go one at a time.
pub fn reservation(
    limits: &Limits,
    spend: Spend,
    held_month: Decimal,
    held_day: Decimal,
    estimate: Decimal,
) -> Result<Decimal, Refusal> {
    if let Some(b) = limits.monthly_budget {
        if spend.month.saturating_add(held_month) >= b {
            let settled = spend.month >= b;
            return Err(Refusal::MonthlyBudget { budget: b, settled });
        }
    }
    if let Some(b) = limits.daily_budget {
        if spend.day.saturating_add(held_day) >= b {
            let settled = spend.day >= b;
            return Err(Refusal::DailyBudget { budget: b, settled });
        }
    }
    match spend.month_max {
        Some(max) => Ok(estimate.max(max)),
        None if held_month > Decimal::ZERO => Err(Refusal::Busy),
        None => Ok(estimate),
    }
}

/// The month and day keys of a stored timestamp (`YYYY-MM-DDT…`).
pub fn periods_of(created_at: &str) -> Option<(&str, &str)> {
    Some((created_at.get(..7)?, created_at.get(..10)?))
}

/// `YYYY-MM` of a day or timestamp.
pub(crate) fn month_of(ts: &str) -> String {
    ts.get(..7).unwrap_or(ts).to_string()
}

/// The month after the one `ts` falls in (`2026-12-31` → `2027-01`).
pub(crate) fn month_after(ts: &str) -> String {
    let (y, m) = (ts.get(..4), ts.get(5..7));
    match (
        y.and_then(|y| y.parse::<u32>().ok()),
        m.and_then(|m| m.parse::<u32>().ok()),
    ) {
        (Some(y), Some(12)) => format!("{:04}-01", y + 1),
        (Some(y), Some(m)) => format!("{y:04}-{:02}", m + 1),
        _ => "9999-13".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_rpm_at_once_then_one_per_interval() {
        // rpm 2: interval 30 s, two at t=0, the third waits 30 s.
        let t1 = gcra(None, 0, 2).unwrap();
        assert_eq!(t1, 30_000);
        let t2 = gcra(Some(t1), 0, 2).unwrap();
        assert_eq!(t2, 60_000);
        assert_eq!(gcra(Some(t2), 0, 2), Err(30_000));
        assert_eq!(gcra(Some(t2), 10_000, 2), Err(20_000));
        assert_eq!(gcra(Some(t2), 30_000, 2), Ok(90_000));
        // Long idle: back to a full burst.
        assert_eq!(gcra(Some(t2), 1_000_000, 2), Ok(1_030_000));
    }

    #[test]
    fn budget_counts_holds_and_refuses_at_the_line() {
        let cent = Decimal::new(1, 2);
        let l = Limits {
            monthly_budget: Some(cent),
            daily_budget: Some(Decimal::new(5, 3)),
            ..Limits::default()
        };
        let spend = |m, d, max: Option<i64>| Spend {
            month: Decimal::new(m, 4),
            day: Decimal::new(d, 4),
            month_max: max.map(|x| Decimal::new(x, 4)),
        };
        let est = Decimal::new(3, 4);
        let none = Decimal::ZERO;
        // Fresh month, nothing in flight: the estimate.
        assert_eq!(reservation(&l, spend(0, 0, None), none, none, est), Ok(est));
        // Fresh month, one in flight: wait for it.
        assert_eq!(
            reservation(&l, spend(0, 0, None), est, est, est),
            Err(Refusal::Busy)
        );
        // History raises the reservation.
        assert_eq!(
            reservation(&l, spend(20, 20, Some(7)), none, none, est),
            Ok(Decimal::new(7, 4))
        );
        assert_eq!(
            reservation(&l, spend(99, 49, Some(1)), none, none, est),
            Ok(est)
        );
        assert_eq!(
            reservation(&l, spend(90, 40, Some(1)), Decimal::new(10, 4), none, est),
            Err(Refusal::MonthlyBudget {
                budget: cent,
                settled: false
            })
        );
        assert_eq!(
            reservation(&l, spend(100, 40, Some(1)), none, none, est),
            Err(Refusal::MonthlyBudget {
                budget: cent,
                settled: true
            })
        );
        assert_eq!(
            reservation(&l, spend(50, 40, Some(1)), none, Decimal::new(10, 4), est),
            Err(Refusal::DailyBudget {
                budget: Decimal::new(5, 3),
                settled: false
            })
        );
    }

    #[test]
    fn limits_json_uses_strings_for_money() {
        let l: Limits = serde_json::from_str(
            r#"{"monthlyBudget":"50.00","dailyBudget":null,"rpm":60,"maxConcurrent":null}"#,
        )
        .unwrap();
        assert_eq!(l.monthly_budget, Some(Decimal::new(5000, 2)));
        assert_eq!(
            serde_json::to_value(l).unwrap(),
            serde_json::json!({"monthlyBudget":"50.00","dailyBudget":null,"rpm":60,"maxConcurrent":null})
        );
        assert!(!Limits::default().any());
    }
}
