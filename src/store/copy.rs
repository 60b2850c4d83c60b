//! `catgate copy`: moves users, keys and usage from one store to another (SQLite to
//! PostgreSQL when a team outgrows one machine), through the backend-neutral [`Store`] only.
//!
//! Ids, tokens, timestamps and exact costs are kept. Usage goes in pages, each one insert
//! that skips request ids the target already has, so a copy interrupted halfway can simply be
//! run again with `--force`. At the end both sides' all-time totals must agree.

use rust_decimal::Decimal;

use super::report::ReportRow;
use super::{Store, StoreError};

/// Records moved per round trip.
const PAGE: u32 = 5_000;

/// What a copy moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Copied {
    pub users: usize,
    pub keys: usize,
    pub records: u64,
    pub inserted: u64,
    /// All-time cost on each side (equal unless a `--force` merge met data already there).
    pub source_cost: Decimal,
    pub target_cost: Decimal,
}

async fn totals(store: &Store) -> Result<ReportRow, StoreError> {
    Ok(store
        .usage_report("0000-01-01", "9999-12-31", None, &[])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// Copies everything from `from` into `to`. A target holding any user, key or record is
/// refused unless `force` (then the same ids are overwritten and known records skipped).
pub async fn copy(from: &Store, to: &Store, force: bool) -> Result<Copied, StoreError> {
    let users = from.list_users(true).await?;
    let keys = from.all_keys().await?;
    if !force {
        let has_users = !to.list_users(true).await?.is_empty();
        let has_keys = !to.all_keys().await?.is_empty();
        let has_usage = !to.usage_page(0, 1).await?.is_empty();
        if has_users || has_keys || has_usage {
            return Err(StoreError::Invalid(
                "the target database already holds data; pass --force to merge into it".into(),
            ));
        }
    }
    to.import_users(&users).await?;
    to.import_keys(&keys).await?;
    let (mut after, mut records, mut inserted) = (0, 0u64, 0u64);
    loop {
        let page = from.usage_page(after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        let batch: Vec<_> = page.into_iter().map(|(_, r)| r).collect();
        records += batch.len() as u64;
        inserted += to.insert_usage(&batch).await? as u64;
    }
    to.roll_up().await?;
    let (source, target) = (totals(from).await?, totals(to).await?);
    let same = source.requests == target.requests
        && source.total_tokens == target.total_tokens
        && source.cost == target.cost;
    if !same && !force {
        return Err(StoreError::Invalid(format!(
            "after the copy the totals differ: source {} records, {} tokens, ${}; \
             target {} records, {} tokens, ${}",
            source.requests,
            source.total_tokens,
            source.cost,
            target.requests,
            target.total_tokens,
            target.cost
        )));
    }
    Ok(Copied {
        users: users.len(),
        keys: keys.len(),
        records,
        inserted,
        source_cost: source.cost,
        target_cost: target.cost,
    })
}
