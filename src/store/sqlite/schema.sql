-- Version 1 of catgate's schema. Later versions append migrations in store/mod.rs.
-- Times are fixed-width RFC 3339 UTC strings (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is
-- time order and window queries can use plain string comparison on an index.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: root stays id 1
    name        TEXT    NOT NULL,
    token       TEXT    NOT NULL UNIQUE,            -- unique across deleted users too
    is_delete   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE UNIQUE INDEX users_live_name ON users(name) WHERE is_delete = 0;

CREATE TABLE keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    api_type    TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL DEFAULT '',
    is_delete   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE UNIQUE INDEX keys_live_name ON keys(name) WHERE is_delete = 0;

CREATE TABLE usage (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL UNIQUE,      -- UUIDv7 (time-ordered, cheap to index);
                                                    -- makes a retried batch insert idempotent
    user_id           INTEGER NOT NULL REFERENCES users(id),
    key_id            INTEGER REFERENCES keys(id),
    model             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    cost              TEXT    NOT NULL,             -- exact rust_decimal string, never a float
    estimated         INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    created_at        TEXT    NOT NULL
);
-- Covering index for /1/usages and /1/me/usages: the window scan never touches the table.
-- (A second per-user index would cost every insert more than it saves the rare report.)
CREATE INDEX usage_window ON usage(created_at, user_id, total_tokens, cost);
