-- Key health: why a key is out of rotation (NULL = in rotation), since when, and for a key the
-- upstream refused, when it is next probed and the wait that led there (doubled after each
-- failed probe). A key an admin disabled has no probe time: it is never probed.
ALTER TABLE keys ADD COLUMN disabled_reason TEXT;
ALTER TABLE keys ADD COLUMN disabled_at TEXT;
ALTER TABLE keys ADD COLUMN probe_at TEXT;
ALTER TABLE keys ADD COLUMN probe_interval_secs INTEGER;
