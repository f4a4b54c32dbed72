-- Per-user preference weights learned from feedback (seed: "Personalization").
-- Portable SQL: runs as-is on SQLite (the default) and PostgreSQL (production).

-- Every applied feedback event, by event_id: a redelivered event finds its row and changes
-- nothing. Written in the same transaction as the weight updates.
CREATE TABLE IF NOT EXISTS feedback_events (
    event_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    signal     TEXT NOT NULL,
    garments   BIGINT NOT NULL,   -- garments found and applied
    ts         TEXT NOT NULL,     -- the event's time (RFC 3339)
    applied_at TEXT NOT NULL
);

-- kind: category | color | style; weight: sum of signal weight × 0.1 over the user's events.
CREATE TABLE IF NOT EXISTS preference_weights (
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    weight  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, kind, name)
);

-- Feedback events applied per user (personalisation starts at [outfits.personalization] min_feedback).
CREATE TABLE IF NOT EXISTS user_feedback (
    user_id        TEXT PRIMARY KEY,
    feedback_count BIGINT NOT NULL
);
