-- The request ledger: one row per request.
CREATE TABLE IF NOT EXISTS requests (
    id                 INTEGER PRIMARY KEY,
    unix_ms            INTEGER NOT NULL,
    request_id         TEXT    NOT NULL,
    key_name           TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    upstream_model     TEXT    NOT NULL,
    status             INTEGER NOT NULL,
    error_kind         TEXT,
    latency_ms         REAL    NOT NULL,
    ttft_ms            REAL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd           REAL
);
CREATE INDEX IF NOT EXISTS requests_unix_ms ON requests (unix_ms);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
