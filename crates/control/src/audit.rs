//! The per-cluster KMS audit: every KMS request keyward makes as a cluster's role — data paths,
//! disks, key changes, health probes, association checks — recorded with its operation, key,
//! encryption context, principal, result, AWS error code, request id, latency and time, durably
//! in the control plane's database for the retention period, queryable by cluster, time, operation and result, and
//! exportable as CloudTrail-format records.
//!
//! Why the platform keeps its own: calls that the customer's key policy *denies* are logged by
//! AWS in the caller's account (the platform's), never in the customer's trail, and against real
//! AWS the platform cannot read the customer's trail at all. What keyward itself observed is the
//! one record that holds both the allowed and the denied calls.
//!
//! How: one SDK interceptor ([`AuditInterceptor`]) on every cluster-role KMS client (they are all
//! made by [`crate::roles::cluster_kms`]); it reads the request before each attempt and the
//! response after it, so a retried request is two records, as AWS counts (and bills) them. The
//! interceptor never blocks a KMS call: records go to a bounded queue ([`AUDIT_QUEUE`]) that one
//! writer task drains into the database in batches. A full queue drops the record and counts it
//! ([`AuditLog::dropped`]) rather than holding the data path or growing without bound.
//!
//! **Bounded growth.** Records older than the retention (90 days by default, as CloudTrail) are
//! deleted. Before that, compaction ([`AuditLog::compact`]) folds the successful probe requests
//! older than the compaction age (a day by default) into one count per cluster, hour, operation,
//! key and principal (`kms_audit_hourly`): a healthy cluster probed every 10 s makes 8,640 records
//! a day, which become at most 24 rows. Every denied call, every error and every data-path call
//! stays one record until retention. A query says what was compacted in its range
//! ([`AuditLog::compacted`]); usage counts both.
//!
//! Not here: alarms and notifications on what the audit shows, cost (`usage.rs`, which reads the
//! counts of [`AuditLog::usage_counts`]), and the
//! operator's own calls (platform keys), which are not a cluster role's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_kms::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use keyward_storage::vocab::{now_ms, PROBE_CONTEXT_KEY, PROBE_GRANT_NAME};
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, Value};
use crate::error::{Error, Result};

/// Records waiting for the writer at most; past it new records are dropped and counted.
pub const AUDIT_QUEUE: usize = 65_536;
/// Records written in one transaction at most.
const BATCH: usize = 512;
/// Records one query returns at most.
pub const MAX_AUDIT_PAGE: usize = 1_000;

/// What became of one KMS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditResult {
    /// KMS answered 2xx.
    Success,
    /// KMS answered with an AWS error (its code is recorded).
    Error,
    /// No answer: connection refused, timeout, ...
    Unreachable,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Error => "error",
            AuditResult::Unreachable => "unreachable",
        }
    }

    pub fn parse(value: &str) -> Option<AuditResult> {
        match value {
            "success" => Some(AuditResult::Success),
            "error" => Some(AuditResult::Error),
            "unreachable" => Some(AuditResult::Unreachable),
            _ => None,
        }
    }
}

/// One KMS request made as a cluster's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unique, random: CloudTrail's `eventID`.
    pub event_id: String,
    pub cluster_id: String,
    /// When the request was sent, unix milliseconds.
    pub time_ms: i64,
    /// The KMS operation, as AWS names it (`Decrypt`, `GenerateDataKey`, ...).
    pub operation: String,
    /// The key the request named (or, answered, the ARN KMS gave back).
    pub key_arn: Option<String>,
    /// The request's encryption context, as JSON (never key material).
    pub encryption_context: Option<Json>,
    /// The role session the request was signed as.
    pub principal: String,
    pub result: AuditResult,
    /// The AWS error code (`AccessDeniedException`, `DisabledException`, ...).
    pub error_code: Option<String>,
    /// KMS's `x-amzn-RequestId`.
    pub request_id: Option<String>,
    pub latency_ms: i64,
    /// A key-health or association probe rather than a data path.
    pub probe: bool,
}

impl AuditRecord {
    /// The record as a CloudTrail event (`eventVersion` 1.08), as AWS would log it in the
    /// caller's account. Request parameters carry only what keyward recorded: the key and the
    /// encryption context.
    pub fn to_cloudtrail(&self, region: &str) -> Json {
        let account = self.principal.split(':').nth(4).unwrap_or_default();
        let time = keyward_storage::vocab::iso8601(self.time_ms);
        let mut parameters = serde_json::Map::new();
        if let Some(key) = &self.key_arn {
            parameters.insert("keyId".into(), key.clone().into());
        }
        if let Some(context) = &self.encryption_context {
            parameters.insert("encryptionContext".into(), context.clone());
        }
        let mut event = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "AssumedRole",
                "arn": self.principal,
                "accountId": account,
            },
            "eventTime": time,
            "eventSource": "kms.amazonaws.com",
            "eventName": self.operation,
            "awsRegion": region,
            "requestParameters": parameters,
            "responseElements": null,
            "requestID": self.request_id,
            "eventID": self.event_id,
            "readOnly": matches!(self.operation.as_str(), "DescribeKey" | "GetKeyPolicy" | "ListGrants"),
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management",
        });
        if let Some(key) = &self.key_arn {
            event["resources"] = serde_json::json!([{
                "accountId": key.split(':').nth(4).unwrap_or_default(),
                "type": "AWS::KMS::Key",
                "ARN": key,
            }]);
        }
        if let Some(code) = &self.error_code {
            event["errorCode"] = code.clone().into();
        }
        event
    }
}

/// Which records a query wants. Times are unix milliseconds, `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub operation: Option<String>,
    pub result: Option<AuditResult>,
    /// At most this many, newest first; `None` or above [`MAX_AUDIT_PAGE`] is that maximum.
    pub limit: Option<usize>,
}

/// One group of audit records, counted by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageCount {
    pub(crate) cluster_id: String,
    /// UTC day, days since 1970-01-01.
    pub(crate) day: i64,
    pub(crate) operation: String,
    pub(crate) probe: bool,
    pub(crate) key_arn: Option<String>,
    pub(crate) result: AuditResult,
    pub(crate) requests: u64,
}

/// Successful probe requests of one cluster, hour, operation, key and principal, counted by
/// compaction instead of kept one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompactedCount {
    /// The hour's start, unix milliseconds.
    pub hour_ms: i64,
    pub operation: String,
    pub key_arn: Option<String>,
    pub principal: String,
    pub probe: bool,
    /// All successful.
    pub requests: u64,
    pub mean_latency_ms: u64,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The audit's queue and its writer.
#[derive(Clone)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    db: Db,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task over `db` (whose migrations made `kms_audit`).
    pub(crate) fn start(db: Db) -> AuditLog {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        tokio::spawn(write_loop(db.clone(), rx));
        AuditLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            db,
        }
    }

    fn record(&self, record: AuditRecord) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the queue was full (or the writer gone).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is in the database.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The interceptor for the KMS client of `cluster_id`'s role session `principal`; each
    /// attempt it records is also told to `observer` (the operational counters), so one
    /// interceptor times and classifies every attempt once. With `record` false (the audit
    /// switched off in the configuration) it only tells the observer.
    pub(crate) fn interceptor(
        &self,
        cluster_id: &str,
        principal: String,
        observer: Arc<dyn KmsObserver>,
        record: bool,
    ) -> AuditInterceptor {
        AuditInterceptor {
            cluster_id: cluster_id.to_owned(),
            principal,
            log: record.then(|| self.clone()),
            observer,
        }
    }

    /// How many of the cluster's requests since `from_ms` KMS refused for want of permission
    /// (of `operations` only, when given), leaving out the association's CreateGrant dry runs
    /// (one of which is refused by design). Reads what is written: call [`AuditLog::flush`]
    /// first to include what is queued.
    pub(crate) async fn count_denied(
        &self,
        cluster_id: &str,
        from_ms: i64,
        operations: Option<&[String]>,
    ) -> Result<usize> {
        let mut params: Vec<Value> = vec![cluster_id.into(), from_ms.into()];
        let mut sql = String::from(
            "SELECT COUNT(*) AS n FROM kms_audit WHERE cluster_id = $1 AND time_ms >= $2 \
             AND error_code = 'AccessDeniedException' \
             AND NOT (probe = 1 AND operation = 'CreateGrant')",
        );
        if let Some(operations) = operations {
            let mut list = Vec::with_capacity(operations.len());
            for operation in operations {
                params.push(operation.into());
                list.push(format!("${}", params.len()));
            }
            sql.push_str(&format!(" AND operation IN ({})", list.join(", ")));
        }
        let row = self.db.query_one(&sql, &params).await?;
        Ok(usize::try_from(row.int("n")?).unwrap_or(0))
    }

    /// The cluster's records matching `query`, newest first; what is queued is written first.
    pub(crate) async fn query(
        &self,
        cluster_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>> {
        self.flush().await;
        let mut sql = String::from(
            "SELECT event_id, cluster_id, time_ms, operation, key_arn, encryption_context, principal, \
             result, error_code, request_id, latency_ms, probe FROM kms_audit WHERE cluster_id = $1",
        );
        let mut params: Vec<Value> = vec![cluster_id.into()];
        let mut bind = |clause: &str, value: Value, sql: &mut String| {
            params.push(value);
            sql.push_str(&format!(" AND {clause} ${}", params.len()));
        };
        if let Some(from) = query.from_ms {
            bind("time_ms >=", from.into(), &mut sql);
        }
        if let Some(to) = query.to_ms {
            bind("time_ms <", to.into(), &mut sql);
        }
        if let Some(operation) = &query.operation {
            bind("operation =", operation.into(), &mut sql);
        }
        if let Some(result) = query.result {
            bind("result =", result.as_str().into(), &mut sql);
        }
        let limit = query
            .limit
            .unwrap_or(MAX_AUDIT_PAGE)
            .clamp(1, MAX_AUDIT_PAGE);
        sql.push_str(&format!(
            " ORDER BY time_ms DESC, event_id DESC LIMIT {limit}"
        ));
        let rows = self.db.query(&sql, &params).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    event_id: row.text("event_id")?,
                    cluster_id: row.text("cluster_id")?,
                    time_ms: row.int("time_ms")?,
                    operation: row.text("operation")?,
                    key_arn: row.opt_text("key_arn")?,
                    encryption_context: row
                        .opt_text("encryption_context")?
                        .and_then(|text| serde_json::from_str(&text).ok()),
                    principal: row.text("principal")?,
                    result: stored_result(row)?,
                    error_code: row.opt_text("error_code")?,
                    request_id: row.opt_text("request_id")?,
                    latency_ms: row.int("latency_ms")?,
                    probe: row.int("probe")? != 0,
                })
            })
            .collect()
    }

    /// The counts compaction left in place of the cluster's records that match `query` (whose
    /// hour starts in its range), oldest first; none for a query of failed results only.
    pub(crate) async fn compacted(
        &self,
        cluster_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<CompactedCount>> {
        if query.result.is_some_and(|r| r != AuditResult::Success) {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "SELECT hour_ms, operation, key_arn, principal, probe, requests, latency_ms_total \
             FROM kms_audit_hourly WHERE cluster_id = $1",
        );
        let mut params: Vec<Value> = vec![cluster_id.into()];
        for (clause, value) in [
            ("hour_ms >=", query.from_ms.map(Value::from)),
            ("hour_ms <", query.to_ms.map(Value::from)),
            ("operation =", query.operation.as_ref().map(Value::from)),
        ] {
            if let Some(value) = value {
                params.push(value);
                sql.push_str(&format!(" AND {clause} ${}", params.len()));
            }
        }
        sql.push_str(" ORDER BY hour_ms, operation, key_arn, principal LIMIT 10000");
        let rows = self.db.query(&sql, &params).await?;
        rows.iter()
            .map(|row| {
                let requests = u64::try_from(row.int("requests")?).unwrap_or(0);
                let total = u64::try_from(row.int("latency_ms_total")?).unwrap_or(0);
                Ok(CompactedCount {
                    hour_ms: row.int("hour_ms")?,
                    operation: row.text("operation")?,
                    key_arn: Some(row.text("key_arn")?).filter(|k| !k.is_empty()),
                    principal: row.text("principal")?,
                    probe: row.int("probe")? != 0,
                    requests,
                    mean_latency_ms: total.checked_div(requests).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Folds the successful probe requests made before `before_ms` into hourly counts, in one
    /// transaction (a count is never both a row and a record). Returns how many records went.
    pub(crate) async fn compact(&self, before_ms: i64) -> Result<u64> {
        self.flush().await;
        const ROUTINE: &str = "time_ms < $1 AND result = 'success' AND probe = 1";
        let changed = self
            .db
            .transaction(vec![
                (
                    format!(
                        "INSERT INTO kms_audit_hourly (cluster_id, hour_ms, operation, key_arn, \
                         principal, probe, requests, latency_ms_total) \
                         SELECT cluster_id, (time_ms / 3600000) * 3600000, operation, \
                         COALESCE(key_arn, ''), principal, probe, COUNT(*), SUM(latency_ms) \
                         FROM kms_audit WHERE {ROUTINE} \
                         GROUP BY cluster_id, (time_ms / 3600000) * 3600000, operation, \
                         COALESCE(key_arn, ''), principal, probe \
                         ON CONFLICT (cluster_id, hour_ms, operation, key_arn, principal, probe) \
                         DO UPDATE SET requests = kms_audit_hourly.requests + excluded.requests, \
                         latency_ms_total = kms_audit_hourly.latency_ms_total + \
                         excluded.latency_ms_total"
                    ),
                    vec![before_ms.into()],
                ),
                (
                    format!("DELETE FROM kms_audit WHERE {ROUTINE}"),
                    vec![before_ms.into()],
                ),
            ])
            .await?;
        Ok(changed.get(1).copied().unwrap_or(0))
    }

    /// The records of `cluster_ids` from `from_ms` (inclusive) to `to_ms` (exclusive), counted
    /// per cluster, UTC day, operation, probe or not, key and result; what is queued is written
    /// first. One row per group, so the answer is small however many records there are. The
    /// compacted counts are included (each at its hour's start).
    pub(crate) async fn usage_counts(
        &self,
        cluster_ids: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageCount>> {
        self.flush().await;
        if cluster_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params: Vec<Value> = vec![from_ms.into(), to_ms.into()];
        let mut list = Vec::with_capacity(cluster_ids.len());
        for id in cluster_ids {
            params.push(id.into());
            list.push(format!("${}", params.len()));
        }
        // `time_ms / 86400000` is BIGINT integer division in both SQLite and PostgreSQL.
        let sql = format!(
            "SELECT cluster_id, time_ms / 86400000 AS day, operation, probe, key_arn, result, \
             CAST(SUM(n) AS BIGINT) AS requests FROM (\
               SELECT cluster_id, time_ms, operation, probe, key_arn, result, 1 AS n \
               FROM kms_audit WHERE time_ms >= $1 AND time_ms < $2 AND cluster_id IN ({list}) \
               UNION ALL \
               SELECT cluster_id, hour_ms AS time_ms, operation, probe, \
               NULLIF(key_arn, '') AS key_arn, 'success' AS result, requests AS n \
               FROM kms_audit_hourly WHERE hour_ms >= $1 AND hour_ms < $2 \
               AND cluster_id IN ({list})) AS counted \
             GROUP BY cluster_id, time_ms / 86400000, operation, probe, key_arn, result",
            list = list.join(", ")
        );
        let rows = self.db.query(&sql, &params).await?;
        rows.iter()
            .map(|row| {
                Ok(UsageCount {
                    cluster_id: row.text("cluster_id")?,
                    day: row.int("day")?,
                    operation: row.text("operation")?,
                    probe: row.int("probe")? != 0,
                    key_arn: row.opt_text("key_arn")?,
                    result: stored_result(row)?,
                    requests: u64::try_from(row.int("requests")?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Deletes the records and compacted counts older than `before_ms` (retention). Returns how
    /// many records.
    pub(crate) async fn expire(&self, before_ms: i64) -> Result<u64> {
        let changed = self
            .db
            .transaction(vec![
                (
                    "DELETE FROM kms_audit WHERE time_ms < $1".to_owned(),
                    vec![before_ms.into()],
                ),
                (
                    // An hour is kept while any of it is inside the retention.
                    "DELETE FROM kms_audit_hourly WHERE hour_ms + 3600000 <= $1".to_owned(),
                    vec![before_ms.into()],
                ),
            ])
            .await?;
        Ok(changed.first().copied().unwrap_or(0))
    }
}

/// The `result` column of a stored record.
fn stored_result(row: &crate::db::Row) -> Result<AuditResult> {
    let result = row.text("result")?;
    AuditResult::parse(&result)
        .ok_or_else(|| Error::Internal(format!("kms_audit holds an unknown result {result:?}")))
}

const INSERT: &str = "INSERT INTO kms_audit (event_id, cluster_id, time_ms, operation, key_arn, \
     encryption_context, principal, result, error_code, request_id, latency_ms, probe) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

async fn write_loop(db: Db, mut rx: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut messages, BATCH).await > 0 {
        let mut statements = Vec::new();
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(record) => {
                    let r = *record;
                    statements.push((
                        INSERT.to_owned(),
                        vec![
                            r.event_id.into(),
                            r.cluster_id.into(),
                            r.time_ms.into(),
                            r.operation.into(),
                            r.key_arn.into(),
                            r.encryption_context.map(|c| c.to_string()).into(),
                            r.principal.into(),
                            r.result.as_str().into(),
                            r.error_code.into(),
                            r.request_id.into(),
                            r.latency_ms.into(),
                            r.probe.into(),
                        ],
                    ))
                }
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !statements.is_empty() {
            let count = statements.len();
            if let Err(error) = db.transaction(statements).await {
                tracing::warn!(records = count, %error, "KMS audit records not written");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The audit's writer alone, for the benchmark (feature `test-support`): `records` records of
/// one cluster queued as the interceptor queues them, then flushed into a database at `url`
/// (migrated). Returns the time from the first record queued to all written, and the records
/// dropped (a queue overflow).
#[cfg(feature = "test-support")]
pub async fn write_records_for_bench(
    url: &str,
    records: usize,
) -> Result<(std::time::Duration, u64)> {
    let db = Db::open(url, crate::migrations::MIGRATIONS).await?;
    let log = AuditLog::start(db);
    let start = Instant::now();
    for i in 0..records {
        log.record(AuditRecord {
            event_id: event_id(),
            cluster_id: "c-0123456789abcdef".into(),
            time_ms: now_ms(),
            operation: if i % 2 == 0 { "Decrypt" } else { "GenerateDataKey" }.into(),
            key_arn: Some("arn:aws:kms:us-east-1:444455556666:key/00000000-0000-0000-0000-000000000000".into()),
            encryption_context: Some(serde_json::json!({"keyward:cluster": "c-0123456789abcdef", "keyward:class": "documents"})),
            principal: "arn:aws:sts::111122223333:assumed-role/keyward-cluster-c-0123456789abcdef/keyward".into(),
            result: AuditResult::Success,
            error_code: None,
            request_id: Some(format!("req-{i}")),
            latency_ms: 2,
            probe: false,
        });
        // Waits for the writer every 8,192 records, well inside the queue: what is measured is
        // the writer's rate, not the queue's overflow.
        if i % 8192 == 8191 {
            log.flush().await;
        }
    }
    log.flush().await;
    Ok((start.elapsed(), log.dropped()))
}

/// The start of one attempt, kept in the request's config bag until its end.
#[derive(Debug, Clone)]
struct Attempt {
    started: Instant,
    time_ms: i64,
    operation: String,
    key_arn: Option<String>,
    encryption_context: Option<Json>,
    probe: bool,
}

impl Storable for Attempt {
    type Storer = StoreReplace<Attempt>;
}

/// The members of a KMS request the audit keeps.
#[derive(Default, serde::Deserialize)]
struct RequestMembers {
    #[serde(rename = "KeyId")]
    key_id: Option<String>,
    #[serde(rename = "SourceKeyId")]
    source_key_id: Option<String>,
    #[serde(rename = "EncryptionContext")]
    encryption_context: Option<Json>,
    #[serde(rename = "SourceEncryptionContext")]
    source_encryption_context: Option<Json>,
    /// A grant's name: the association's dry runs carry [`PROBE_GRANT_NAME`].
    #[serde(rename = "Name")]
    name: Option<String>,
}

/// The members of a KMS answer the audit reads.
#[derive(Default, serde::Deserialize)]
struct ResponseMembers {
    #[serde(rename = "KeyId")]
    key_id: Option<String>,
    #[serde(rename = "KeyMetadata")]
    key_metadata: Option<KeyMetadataArn>,
    #[serde(rename = "__type")]
    error_type: Option<String>,
}

#[derive(serde::Deserialize)]
struct KeyMetadataArn {
    #[serde(rename = "Arn")]
    arn: Option<String>,
}

/// Records each attempt of each KMS request of one cluster's role client.
#[derive(Debug)]
pub(crate) struct AuditInterceptor {
    cluster_id: String,
    principal: String,
    /// `None`: the audit is switched off; only the observer is told.
    log: Option<AuditLog>,
    observer: Arc<dyn KmsObserver>,
}

/// What else wants to know of each KMS attempt a cluster's role makes (the Prometheus counters):
/// its operation, result and latency, as the audit classified them.
pub(crate) trait KmsObserver: Send + Sync + std::fmt::Debug {
    fn kms_request(&self, operation: &str, result: AuditResult, latency: std::time::Duration);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Intercept for AuditInterceptor {
    fn name(&self) -> &'static str {
        "KeywardKmsAudit"
    }

    fn read_before_attempt(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = operation_of(request.headers().get("x-amz-target"));
        // KMS's JSON protocol: the body is the request's parameters, in memory. Only the named
        // members are read; any other (an `Encrypt`'s `Plaintext`) is skipped, never copied.
        let body: RequestMembers = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        cfg.interceptor_state().store_put(Attempt {
            started: Instant::now(),
            time_ms: now_ms(),
            // A cluster's role calls DescribeKey only to check the key (health, association,
            // the rotation alarm's material check), never on a data path.
            probe: operation == "DescribeKey"
                || body.name.as_deref() == Some(PROBE_GRANT_NAME)
                || [&body.encryption_context, &body.source_encryption_context]
                    .iter()
                    .any(|c| {
                        c.as_ref()
                            .is_some_and(|c| c.get(PROBE_CONTEXT_KEY).is_some())
                    }),
            key_arn: body.key_id.or(body.source_key_id),
            encryption_context: body.encryption_context.or(body.source_encryption_context),
            operation,
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(attempt) = cfg.load::<Attempt>().cloned() else {
            return Ok(());
        };
        let latency = attempt.started.elapsed();
        let latency_ms = i64::try_from(latency.as_millis()).unwrap_or(i64::MAX);
        let mut key_arn = attempt.key_arn;
        let (result, error_code, request_id) = match context.response() {
            None => (AuditResult::Unreachable, None, None),
            Some(response) => {
                let request_id = response
                    .headers()
                    .get("x-amzn-requestid")
                    .map(str::to_owned);
                // Only the named members are read: a GenerateDataKey's or Decrypt's `Plaintext`
                // is skipped, never copied.
                let body: ResponseMembers = response
                    .body()
                    .bytes()
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .unwrap_or_default();
                if response.status().is_success() {
                    // KMS answers with the key's full ARN: better than an id or alias asked for.
                    if let Some(arn) = body.key_id.or(body.key_metadata.and_then(|m| m.arn)) {
                        key_arn = Some(arn);
                    }
                    (AuditResult::Success, None, request_id)
                } else {
                    let code = response
                        .headers()
                        .get("x-amzn-errortype")
                        .map(str::to_owned)
                        .or(body.error_type)
                        .map(|raw| error_code_of(&raw));
                    (AuditResult::Error, code, request_id)
                }
            }
        };
        let probe = attempt.probe;
        self.observer
            .kms_request(&attempt.operation, result, latency);
        let Some(log) = &self.log else {
            return Ok(());
        };
        log.record(AuditRecord {
            event_id: event_id(),
            cluster_id: self.cluster_id.clone(),
            time_ms: attempt.time_ms,
            operation: attempt.operation,
            key_arn,
            encryption_context: attempt.encryption_context,
            principal: self.principal.clone(),
            result,
            error_code,
            request_id,
            latency_ms,
            probe,
        });
        Ok(())
    }
}

/// `AccessDeniedException` from `com.amazonaws.kms#AccessDeniedException` or
/// `AccessDeniedException:http://...` (both forms AWS uses).
fn error_code_of(raw: &str) -> String {
    let code = raw.rsplit('#').next().unwrap_or(raw);
    code.split(':').next().unwrap_or(code).to_owned()
}

/// A random event id in the UUID form CloudTrail uses.
fn event_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The KMS operation of a request's `X-Amz-Target` header (`TrentService.<Operation>` in KMS's
/// JSON protocol); `Unknown` without one.
fn operation_of(target: Option<&str>) -> String {
    target
        .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
        .unwrap_or_else(|| "Unknown".to_owned())
}

/// The ARN a role session signs as: `arn:<partition>:sts::<account>:assumed-role/<name>/<session>`.
pub(crate) fn session_arn(role_arn: &str, session_name: &str) -> String {
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", partition, "iam", "", account, resource] => {
            let name = resource.rsplit('/').next().unwrap_or(resource);
            format!("arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}")
        }
        _ => role_arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_in_both_of_awss_forms() {
        assert_eq!(
            error_code_of("com.amazonaws.kms#AccessDeniedException"),
            "AccessDeniedException"
        );
        assert_eq!(
            error_code_of("DisabledException:http://internal.amazon.com/coral/"),
            "DisabledException"
        );
        assert_eq!(error_code_of("NotFoundException"), "NotFoundException");
    }

    #[test]
    fn a_session_arn_drops_the_roles_path() {
        assert_eq!(
            session_arn(
                "arn:aws:iam::111122223333:role/keyward/keyward-cluster-c-1",
                "keyward-operator"
            ),
            "arn:aws:sts::111122223333:assumed-role/keyward-cluster-c-1/keyward-operator"
        );
    }

    #[test]
    fn event_ids_are_uuid_shaped_and_distinct() {
        let (a, b) = (event_id(), event_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn a_record_exports_as_a_cloudtrail_event() {
        let record = AuditRecord {
            event_id: event_id(),
            cluster_id: "c-1".into(),
            time_ms: 1_700_000_000_123,
            operation: "Decrypt".into(),
            key_arn: Some("arn:aws:kms:us-east-1:444455556666:key/k".into()),
            encryption_context: Some(serde_json::json!({"keyward:cluster": "c-1"})),
            principal: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            result: AuditResult::Error,
            error_code: Some("AccessDeniedException".into()),
            request_id: Some("req-1".into()),
            latency_ms: 3,
            probe: false,
        };
        let event = record.to_cloudtrail("us-east-1");
        assert_eq!(event["eventName"], "Decrypt");
        assert_eq!(event["eventSource"], "kms.amazonaws.com");
        assert_eq!(event["errorCode"], "AccessDeniedException");
        assert_eq!(event["userIdentity"]["accountId"], "111122223333");
        assert_eq!(event["recipientAccountId"], "111122223333");
        assert_eq!(event["resources"][0]["accountId"], "444455556666");
        assert_eq!(
            event["requestParameters"]["encryptionContext"]["keyward:cluster"],
            "c-1"
        );
        assert_eq!(event["eventTime"], "2023-11-14T22:13:20Z");
    }
}
