-- Version 1 of catgate's PostgreSQL schema; later versions append to MIGRATIONS in mod.rs.
-- Same tables and meaning as SQLite's. Text is COLLATE "C" so comparisons and report order are
-- byte order, as in SQLite: times are fixed-width RFC 3339 UTC strings compared as text.
CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    token       TEXT COLLATE "C" NOT NULL CONSTRAINT users_token_key UNIQUE,
    is_delete   BOOLEAN NOT NULL DEFAULT false,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX users_live_name ON users(name) WHERE NOT is_delete;

CREATE TABLE keys (
    id          BIGSERIAL PRIMARY KEY,
    key         TEXT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    api_type    TEXT NOT NULL,
    endpoint    TEXT NOT NULL DEFAULT '',
    is_delete   BOOLEAN NOT NULL DEFAULT false,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX keys_live_name ON keys(name) WHERE NOT is_delete;

CREATE TABLE usage (
    id                  BIGSERIAL PRIMARY KEY,
    request_id          TEXT COLLATE "C" NOT NULL CONSTRAINT usage_request_id_key UNIQUE,
    user_id             BIGINT NOT NULL REFERENCES users(id),
    key_id              BIGINT REFERENCES keys(id),
    model               TEXT COLLATE "C" NOT NULL,
    route               TEXT COLLATE "C" NOT NULL,
    prompt_tokens       BIGINT NOT NULL,
    cached_tokens       BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens  BIGINT NOT NULL DEFAULT 0,
    audio_input_tokens  BIGINT NOT NULL DEFAULT 0,
    completion_tokens   BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL DEFAULT 0,
    audio_output_tokens BIGINT NOT NULL DEFAULT 0,
    total_tokens        BIGINT NOT NULL,
    service_tier        TEXT COLLATE "C",
    usage_source        TEXT NOT NULL,
    cost                NUMERIC,                    -- exact; NULL = unpriced
    stream              BOOLEAN NOT NULL,
    status              INTEGER NOT NULL,
    latency_ms          BIGINT NOT NULL,
    attempts            INTEGER NOT NULL,
    created_at          TEXT COLLATE "C" NOT NULL
);
CREATE INDEX usage_window ON usage(created_at, user_id);

-- Bumped by every change to users or keys: replicas poll this one row (every 100 ms) to know
-- when to reload their caches.
CREATE TABLE catgate_changes (id INTEGER PRIMARY KEY, version BIGINT NOT NULL);
INSERT INTO catgate_changes VALUES (1, 0);
CREATE FUNCTION catgate_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catgate_changes SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION catgate_bump();
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys
    FOR EACH STATEMENT EXECUTE FUNCTION catgate_bump();
