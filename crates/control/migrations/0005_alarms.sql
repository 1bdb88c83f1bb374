-- The clusters' alarms (see alarms.rs): the current state of each, and every transition with
-- its cause.
CREATE TABLE alarms (
    cluster_id TEXT NOT NULL,
    -- key-disabled | key-deletion-scheduled | key-deleted | access-denied | cluster-key-inaccessible
    kind TEXT NOT NULL,
    -- OK | ALARM | INSUFFICIENT_DATA
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, kind)
);

CREATE TABLE alarm_transitions (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

CREATE INDEX alarm_transitions_by_cluster ON alarm_transitions (cluster_id, at_ms);
