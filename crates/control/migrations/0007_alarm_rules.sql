-- Alarm rules per organization and per cluster (see alarm_rules.rs): each a JSON object of the
-- fields its owner set; what it leaves out falls through to the organization's rule, then to
-- the defaults.
CREATE TABLE alarm_rules (
    -- organization | cluster
    scope TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    rules TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, owner_id)
);

-- The key material KMS last reported current for each cluster's key (DescribeKey's
-- CurrentKeyMaterialId), for the key-rotated alarm.
CREATE TABLE key_materials (
    cluster_id TEXT PRIMARY KEY,
    key_arn TEXT NOT NULL,
    material_id TEXT NOT NULL,
    -- when a different material was first seen; NULL before any rotation was seen
    rotated_at_ms BIGINT,
    checked_at_ms BIGINT NOT NULL
);

-- The audit's compacted rows: successful probes older than the compaction age, counted per
-- cluster, hour, operation, key and principal (see audit.rs). Denied calls and errors stay in
-- kms_audit one by one until retention.
CREATE TABLE kms_audit_hourly (
    cluster_id TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    operation TEXT NOT NULL,
    key_arn TEXT NOT NULL,
    principal TEXT NOT NULL,
    probe BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    latency_ms_total BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, hour_ms, operation, key_arn, principal, probe)
);

CREATE INDEX kms_audit_hourly_by_time ON kms_audit_hourly (hour_ms);
