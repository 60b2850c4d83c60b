-- Version 2: metering v2. New token columns (0 for older rows), the service tier, where the
-- numbers came from, and a nullable cost (NULL = unpriced: an unknown model is never billed
-- a guess). SQLite cannot relax NOT NULL in place, so the table is rebuilt.
CREATE TABLE usage_v2 (
    id                  INTEGER PRIMARY KEY,
    request_id          TEXT    NOT NULL UNIQUE,    -- UUIDv7; makes a replayed insert a no-op
    user_id             INTEGER NOT NULL REFERENCES users(id),
    key_id              INTEGER REFERENCES keys(id),
    model               TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    prompt_tokens       INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    audio_input_tokens  INTEGER NOT NULL DEFAULT 0,
    completion_tokens   INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    audio_output_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens        INTEGER NOT NULL,
    service_tier        TEXT,                       -- as the response named it; NULL if none
    usage_source        TEXT    NOT NULL,           -- upstream | estimated | none
    cost                TEXT,                       -- exact rust_decimal string; NULL = unpriced
    stream              INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    latency_ms          INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    created_at          TEXT    NOT NULL
);
INSERT INTO usage_v2 (id, request_id, user_id, key_id, model, route, prompt_tokens,
    completion_tokens, total_tokens, usage_source, cost, stream, status, latency_ms, attempts,
    created_at)
SELECT id, request_id, user_id, key_id, model, route, prompt_tokens, completion_tokens,
    total_tokens,
    CASE WHEN estimated = 1 THEN 'estimated'
         WHEN status BETWEEN 200 AND 299 AND total_tokens > 0 THEN 'upstream'
         ELSE 'none' END,
    cost, stream, status, latency_ms, attempts, created_at
FROM usage;
DROP TABLE usage;
ALTER TABLE usage_v2 RENAME TO usage;

-- The rollups lag the records by up to ~100 ms: record inserts are the per-request durable
-- write (group commit), and the recorder folds new records into the rollups in larger
-- transactions. `through_id` is the highest usage id already folded in, updated in the same
-- transaction as the rollups, so a crash between the two re-folds nothing twice; reports fold
-- whatever is pending before they read.
CREATE TABLE rollup_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through_id  INTEGER NOT NULL
);
INSERT INTO rollup_state (id, through_id) VALUES (1, 0);

-- The daily rollup behind every report: one row per (day, user, model, key, tier), so a year
-- of records answers from a few thousand
-- rows. key_id 0 = no key; tier 'default' = none named. Token sums take each record's count
-- capped at 10^12 (far above any plausible count), so no sum can overflow.
CREATE TABLE usage_daily (
    day                 TEXT    NOT NULL,           -- YYYY-MM-DD (UTC)
    user_id             INTEGER NOT NULL,
    model               TEXT    NOT NULL,
    key_id              INTEGER NOT NULL,
    tier                TEXT    NOT NULL,
    requests            INTEGER NOT NULL,
    prompt_tokens       INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    audio_input_tokens  INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    audio_output_tokens INTEGER NOT NULL,
    total_tokens        INTEGER NOT NULL,
    cost                TEXT    NOT NULL,           -- exact sum of the priced records
    estimated_requests  INTEGER NOT NULL,
    unpriced_requests   INTEGER NOT NULL,
    failed_requests     INTEGER NOT NULL,
    PRIMARY KEY (day, user_id, model, key_id, tier)
) WITHOUT ROWID;

-- Coarser rollups of the same sums, so a report reads a few thousand rows whatever the window:
-- by month (for reports without a `day` column: whole months from here, the partial months at
-- the window's edges from the daily tables), and by day for user and model only (charts by day
-- and the default user/model report). All three are folded in the same transaction.
CREATE TABLE usage_monthly (
    month               TEXT    NOT NULL,           -- YYYY-MM
    user_id             INTEGER NOT NULL,
    model               TEXT    NOT NULL,
    key_id              INTEGER NOT NULL,
    tier                TEXT    NOT NULL,
    requests            INTEGER NOT NULL,
    prompt_tokens       INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    audio_input_tokens  INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    audio_output_tokens INTEGER NOT NULL,
    total_tokens        INTEGER NOT NULL,
    cost                TEXT    NOT NULL,
    estimated_requests  INTEGER NOT NULL,
    unpriced_requests   INTEGER NOT NULL,
    failed_requests     INTEGER NOT NULL,
    PRIMARY KEY (month, user_id, model, key_id, tier)
) WITHOUT ROWID;

CREATE TABLE usage_daily_user_model (
    day                 TEXT    NOT NULL,
    user_id             INTEGER NOT NULL,
    model               TEXT    NOT NULL,
    requests            INTEGER NOT NULL,
    prompt_tokens       INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    audio_input_tokens  INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    audio_output_tokens INTEGER NOT NULL,
    total_tokens        INTEGER NOT NULL,
    cost                TEXT    NOT NULL,
    estimated_requests  INTEGER NOT NULL,
    unpriced_requests   INTEGER NOT NULL,
    failed_requests     INTEGER NOT NULL,
    PRIMARY KEY (day, user_id, model)
) WITHOUT ROWID;
