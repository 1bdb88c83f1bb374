-- Backups outlive their cluster for a retention period, and a cluster can fail for good.
--
-- A deleted cluster that had backups keeps a row here until its retention ends (or its last
-- backup is deleted): what reading its backups needs (its role, which is kept meanwhile, its key
-- and region) and until when. Its platform key, when internal, is not deleted before.
CREATE TABLE retained_clusters (
    cluster_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    encryption TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    key_arn TEXT NOT NULL,
    deleted_at_ms BIGINT NOT NULL,
    retain_until_ms BIGINT NOT NULL
);

CREATE INDEX retained_clusters_by_org ON retained_clusters (org_id);

-- The complete backups of a retained cluster (their objects stay in its backups store).
CREATE TABLE retained_backups (
    cluster_id TEXT NOT NULL,
    backup_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, backup_id)
);

-- Why a cluster is `failed` (a restore whose backup is gone): set once, never retried.
ALTER TABLE clusters ADD COLUMN failure TEXT;
