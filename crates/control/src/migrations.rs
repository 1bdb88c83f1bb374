//! The control plane's schema changes, in order. Each file is applied once, in one transaction,
//! on SQLite and PostgreSQL alike (see [`crate::db`]). Never edit a released migration: add one.

use crate::db::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "control_plane",
        sql: include_str!("../migrations/0001_control_plane.sql"),
    },
    Migration {
        version: 2,
        name: "token_ids",
        sql: include_str!("../migrations/0002_token_ids.sql"),
    },
    Migration {
        version: 3,
        name: "backup_retention",
        sql: include_str!("../migrations/0003_backup_retention.sql"),
    },
    Migration {
        version: 4,
        name: "kms_audit",
        sql: include_str!("../migrations/0004_kms_audit.sql"),
    },
    Migration {
        version: 5,
        name: "alarms",
        sql: include_str!("../migrations/0005_alarms.sql"),
    },
    Migration {
        version: 6,
        name: "notifications",
        sql: include_str!("../migrations/0006_notifications.sql"),
    },
    Migration {
        version: 7,
        name: "alarm_rules",
        sql: include_str!("../migrations/0007_alarm_rules.sql"),
    },
    Migration {
        version: 8,
        name: "replicas",
        sql: include_str!("../migrations/0008_replicas.sql"),
    },
];
