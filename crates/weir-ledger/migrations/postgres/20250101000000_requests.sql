-- The request ledger: one row per request.
CREATE TABLE IF NOT EXISTS requests (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unix_ms            BIGINT           NOT NULL,
    request_id         TEXT             NOT NULL,
    key_name           TEXT             NOT NULL,
    model              TEXT             NOT NULL,
    provider           TEXT             NOT NULL,
    upstream_model     TEXT             NOT NULL,
    status             INTEGER          NOT NULL,
    error_kind         TEXT,
    latency_ms         DOUBLE PRECISION NOT NULL,
    ttft_ms            DOUBLE PRECISION,
    input_tokens       BIGINT           NOT NULL,
    output_tokens      BIGINT           NOT NULL,
    cache_read_tokens  BIGINT           NOT NULL,
    cache_write_tokens BIGINT           NOT NULL,
    cost_usd           DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS requests_unix_ms ON requests (unix_ms);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
