-- Key health: why a key is out of rotation (NULL = in rotation), since when, and for a key the
-- upstream refused, when it is next probed and the wait that led there (doubled after each
-- failed probe). A key an admin disabled has no probe time: it is never probed. Changes bump
-- `catgate_changes` through the existing trigger, so other replicas reload them.
ALTER TABLE keys ADD COLUMN disabled_reason TEXT;
ALTER TABLE keys ADD COLUMN disabled_at TEXT COLLATE "C";
ALTER TABLE keys ADD COLUMN probe_at TEXT COLLATE "C";
ALTER TABLE keys ADD COLUMN probe_interval_secs BIGINT;
