-- Several control-plane replicas on one database. Every replica serves the API; the work on
-- each cluster (reconciling, probing its key, its alarms) is done by the one replica that holds
-- the cluster's lease. Times are the database's own clock (Unix milliseconds), so replicas
-- whose clocks disagree still agree on when a lease ends.

-- Each replica that ever ran: its identity, where it serves, and when it last said it lives.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    -- Where its API listens and its NBD exports are served (as it was started with).
    api_url TEXT NOT NULL,
    nbd_host TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    -- 1 once it shut down gracefully (its leases handed over); 0 while it runs.
    stopped BIGINT NOT NULL DEFAULT 0
);

-- Who does each cluster's work. A lease is held while expires_ms is ahead of the database's
-- clock; token grows by one at every acquisition (a fencing token: a write of the operator
-- checks it in the same transaction, so a replica that lost the lease cannot write).
CREATE TABLE cluster_leases (
    cluster_id TEXT PRIMARY KEY,
    -- NULL once released.
    holder TEXT,
    token BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL
);

CREATE INDEX cluster_leases_by_holder ON cluster_leases (holder);

-- The replica whose node holds the cluster's disk files (disks stay where their files are, as
-- an EBS volume stays in its availability zone); NULL until its disks are made.
ALTER TABLE clusters ADD COLUMN disk_node TEXT;
