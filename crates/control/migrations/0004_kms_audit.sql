-- The per-cluster KMS audit: one row per KMS request made as a cluster's role (see audit.rs).
-- Kept for the retention period, then deleted by the operator; a deleted cluster's rows go with
-- it.
CREATE TABLE kms_audit (
    event_id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    operation TEXT NOT NULL,
    key_arn TEXT,
    -- JSON object, as sent
    encryption_context TEXT,
    principal TEXT NOT NULL,
    -- success | error | unreachable
    result TEXT NOT NULL,
    error_code TEXT,
    request_id TEXT,
    latency_ms BIGINT NOT NULL,
    -- 1 for a key-health or association probe
    probe BIGINT NOT NULL
);

CREATE INDEX kms_audit_by_cluster_time ON kms_audit (cluster_id, time_ms);
CREATE INDEX kms_audit_by_time ON kms_audit (time_ms);
