-- Version 3: per-member limits (#11). Money is exact decimal text, as in `usage.cost`.
ALTER TABLE users ADD COLUMN monthly_budget TEXT;
ALTER TABLE users ADD COLUMN daily_budget TEXT;
ALTER TABLE users ADD COLUMN rpm INTEGER;
ALTER TABLE users ADD COLUMN max_concurrent INTEGER;

-- Settled cost per user and period (`YYYY-MM` or `YYYY-MM-DD`), kept by the usage insert.
CREATE TABLE spend (
    user_id INTEGER NOT NULL,
    period  TEXT    NOT NULL,
    cost    TEXT    NOT NULL,
    max_cost TEXT,                  -- costliest single record (month rows; NULL = unknown)
    PRIMARY KEY (user_id, period)
) WITHOUT ROWID;

-- One row per admitted request of a limited member, until its record is written.
CREATE TABLE limit_holds (
    request_id  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    amount      TEXT    NOT NULL,   -- reserved worst-case cost ('0' when free or unbudgeted)
    month       TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    open        INTEGER NOT NULL,   -- 1 while the answer is still being sent
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX limit_holds_user ON limit_holds(user_id, expires_ms);

-- GCRA state of members with an rpm limit.
CREATE TABLE limit_rate (
    user_id INTEGER PRIMARY KEY,
    tat_ms  INTEGER NOT NULL
);

-- The spend of every record already stored.
INSERT INTO spend (user_id, period, cost)
    SELECT user_id, substr(created_at, 1, 7), decimal_sum(cost) FROM usage GROUP BY 1, 2;
INSERT INTO spend (user_id, period, cost)
    SELECT user_id, substr(created_at, 1, 10), decimal_sum(cost) FROM usage GROUP BY 1, 2;
