-- Notifications of alarm transitions (see notify/): an organization's webhook destinations, the
-- durable queue of deliveries, and every attempt of each (the delivery log).
CREATE TABLE notification_destinations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    -- NULL: every cluster of the organization.
    cluster_id TEXT,
    url TEXT NOT NULL,
    -- keyward | slack
    format TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The signing secret, only as a KMS ciphertext (base64) under the platform's notification
    -- key, its encryption context naming the destination.
    wrapped_secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX notification_destinations_by_org ON notification_destinations (org_id);

CREATE TABLE notification_deliveries (
    -- Also the Keyward-Delivery-Id header.
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    -- alarm | test | suppressed-summary
    kind TEXT NOT NULL,
    -- The alarm's kind for kind = alarm, else NULL.
    alarm TEXT,
    -- The event, JSON: rendered into the destination's format at each attempt.
    event TEXT NOT NULL,
    -- pending | delivered | failed | suppressed
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    -- A worker that claimed the delivery holds it until then (several control-plane replicas).
    leased_until_ms BIGINT NOT NULL,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    -- For a suppressed delivery: the summary delivery that reported it.
    summary_id TEXT
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_attempt_ms);
CREATE INDEX notification_deliveries_by_cluster ON notification_deliveries (cluster_id, created_at_ms);
CREATE INDEX notification_deliveries_by_destination ON notification_deliveries (destination_id, state);

CREATE TABLE notification_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    -- The HTTP status answered, NULL when none (unreachable, timed out).
    status BIGINT,
    error TEXT,
    -- The backoff's ceiling for the retry after this attempt, and the delay drawn under it
    -- (full jitter); NULL after the last attempt.
    backoff_ceiling_ms BIGINT,
    retry_in_ms BIGINT,
    PRIMARY KEY (delivery_id, attempt)
);
