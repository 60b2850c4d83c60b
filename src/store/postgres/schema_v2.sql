-- Version 2: per-member limits (#11). Same tables and meaning as SQLite's schema_v3.sql.
ALTER TABLE users ADD COLUMN monthly_budget NUMERIC;
ALTER TABLE users ADD COLUMN daily_budget NUMERIC;
ALTER TABLE users ADD COLUMN rpm INTEGER;
ALTER TABLE users ADD COLUMN max_concurrent INTEGER;

-- Settled cost per user and period (`YYYY-MM` or `YYYY-MM-DD`), kept by the usage insert.
-- No change triggers on these tables: they change on every request and must not make the
-- replicas reload users and keys.
CREATE TABLE spend (
    user_id BIGINT NOT NULL,
    period  TEXT COLLATE "C" NOT NULL,
    cost    NUMERIC NOT NULL,
    max_cost NUMERIC,               -- costliest single record (NULL = unknown)
    PRIMARY KEY (user_id, period)
);

CREATE TABLE limit_holds (
    request_id  TEXT COLLATE "C" PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    amount      NUMERIC NOT NULL,
    month       TEXT COLLATE "C" NOT NULL,
    day         TEXT COLLATE "C" NOT NULL,
    open        BOOLEAN NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX limit_holds_user ON limit_holds(user_id, expires_ms);

-- One row per limited member: its GCRA arrival time, and the row admissions lock.
CREATE TABLE limit_rate (
    user_id BIGINT PRIMARY KEY,
    tat_ms  BIGINT NOT NULL
);

INSERT INTO spend (user_id, period, cost)
    SELECT user_id, substr(created_at, 1, 7), sum(cost) FROM usage
    WHERE cost IS NOT NULL GROUP BY 1, 2;
INSERT INTO spend (user_id, period, cost)
    SELECT user_id, substr(created_at, 1, 10), sum(cost) FROM usage
    WHERE cost IS NOT NULL GROUP BY 1, 2;
