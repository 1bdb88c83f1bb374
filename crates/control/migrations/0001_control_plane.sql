-- The control plane's state: organizations and their API tokens, clusters, and what the operator
-- has provisioned for each cluster. Shared dialect (SQLite and PostgreSQL): TEXT and BIGINT only,
-- timestamps in unix milliseconds.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Only the SHA-256 of a token is kept (hex): a copy of the database does not give access.
CREATE TABLE api_tokens (
    token_sha256 TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    encryption TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    -- The applied key; NULL while the cluster awaits its key.
    key_arn TEXT,
    -- awaiting-key | provisioning | ready | rewrapping | deleting
    state TEXT NOT NULL,
    health_status TEXT NOT NULL,
    health_reason TEXT,
    health_message TEXT NOT NULL,
    health_checked_at_ms BIGINT NOT NULL,
    -- A key change in progress: every data key moves from key_arn to rewrap_to.
    rewrap_to TEXT,
    rewrap_done BIGINT NOT NULL DEFAULT 0,
    rewrap_total BIGINT NOT NULL DEFAULT 0,
    -- A cluster made by restoring a backup: "<cluster id>/<backup id>", done at provisioning.
    restore_from TEXT,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE INDEX clusters_by_org ON clusters (org_id);

-- What the operator has made for a cluster. A row is written in state `creating` before the
-- thing is made and turned `ready` after, so a restart finds and redoes anything half made.
CREATE TABLE cluster_resources (
    cluster_id TEXT NOT NULL,
    -- documents | backups | engine-disk | search-disk
    class TEXT NOT NULL,
    -- "store" for an object store; "engine-0", "search-2", ... for a disk
    name TEXT NOT NULL,
    -- The volume id of a disk.
    disk_id TEXT,
    state TEXT NOT NULL,
    key_arn TEXT,
    size_bytes BIGINT NOT NULL,
    -- The grant of a disk's current attachment, retired when it is replaced.
    grant_id TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, class, name)
);
