//! Alarm rules and the alarms they drive, with the real `keyward up`, the `keyward` CLI and the
//! customer's `aws` CLI: a bad rule refused by name with nothing stored; `aws kms
//! rotate-key-on-demand` raising key-rotated for the rule's window; the customer's own use of
//! the key raising unexpected-principal once the customer lends a trail-reader role, and
//! clearing when the rule allows that principal. Each of those transitions also reaches a
//! webhook destination made with the keyward CLI, signed (checked independently).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::notifications::{check_signed, hook, wait, Hook};
use crate::up::Up;

struct Cluster<'a> {
    up: &'a Up,
    id: String,
}

impl Cluster<'_> {
    fn alarm(&self, kind: &str) -> Value {
        let alarms = self.up.keyward_json(&["alarms", &self.id]);
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == kind)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn wait_alarm(&self, kind: &str, state: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let alarm = self.alarm(kind);
            if alarm["state"] == state {
                return alarm;
            }
            assert!(
                started.elapsed() < limit,
                "alarm {kind} never reached {state} within {limit:?}: {alarm:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn rules_from_the_cli_drive_the_rotation_and_principal_alarms_from_real_events() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(
        &dir.path().join("keyward-data"),
        &[
            "--probe-interval",
            "1s",
            "--key-material-check-interval",
            "1s",
            "--disk-size",
            "4M",
            "--allow-private-webhooks",
        ],
    );
    let org_id = up.info["organization"]["id"].as_str().unwrap().to_owned();
    let (id, key) = up.associated_cluster(dir.path(), "alarmed");
    let cluster = Cluster {
        up: &up,
        id: id.clone(),
    };
    let Hook { got, secret, .. } = hook(&up, &id);
    let notified = |kind: &str, to: &str| {
        let (headers, body) = wait(
            &got,
            &format!("{kind} {to}"),
            Duration::from_secs(10),
            |b| b["alarm"] == kind && b["to"] == to,
        );
        check_signed(&secret, &headers, &body);
    };

    // A bad rule: refused by the API with the field named, the CLI exits non-zero, nothing stored.
    let before = up.keyward_json(&["alarms", "rules", "get", "--cluster", &id]);
    let (ok, _, err) = up.keyward(&[
        "alarms",
        "rules",
        "set",
        "--cluster",
        &id,
        "--access-denied-threshold",
        "0",
    ]);
    assert!(!ok, "a threshold of 0 was accepted");
    assert!(
        err.contains("access_denied_threshold") && err.contains("invalid_request"),
        "{err}"
    );
    let (ok, _, err) = up.keyward(&["alarms", "rules", "set", "--allow-principal", "bob"]);
    assert!(!ok && err.contains("allowed_principals[0]"), "{err}");
    assert_eq!(
        up.keyward_json(&["alarms", "rules", "get", "--cluster", &id]),
        before
    );
    // A good one: the cluster's window, the organization's threshold, both in the effective rule.
    up.keyward_json(&["alarms", "rules", "set", "--access-denied-threshold", "3"]);
    let view = up.keyward_json(&[
        "alarms",
        "rules",
        "set",
        "--cluster",
        &id,
        "--rotation-window",
        "4",
    ]);
    assert_eq!(view["effective"]["rotation_window_seconds"], 4, "{view:#}");
    assert_eq!(view["effective"]["access_denied_threshold"], 3, "{view:#}");
    assert_eq!(view["cluster"], json!({"rotation_window_seconds": 4}));

    // The customer rotates the key's material: key-rotated ALARM, data still read, then OK.
    cluster.wait_alarm("key-rotated", "OK", Duration::from_secs(60));
    up.aws(&["kms", "rotate-key-on-demand", "--key-id", &key]);
    let raised = cluster.wait_alarm("key-rotated", "ALARM", Duration::from_secs(5));
    assert!(
        raised["reason"].as_str().unwrap().contains("rotated"),
        "{raised:#}"
    );
    assert_eq!(cluster.alarm("cluster-key-inaccessible")["state"], "OK");
    notified("key-rotated", "ALARM");
    cluster.wait_alarm("key-rotated", "OK", Duration::from_secs(10));
    notified("key-rotated", "OK");

    // Another principal (the customer's admin) uses the key: seen once the customer lends the
    // platform a role that may read its account's trail.
    let blind = cluster.alarm("unexpected-principal");
    assert_eq!(blind["state"], "INSUFFICIENT_DATA", "{blind:#}");
    assert!(
        blind["reason"]
            .as_str()
            .unwrap()
            .contains("trail_reader_role_arn"),
        "{blind:#}"
    );
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:user/keyward-operator"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": org_id}}
    }]});
    let reader = up.aws(&[
        "iam",
        "create-role",
        "--role-name",
        "keyward-trail-reader",
        "--assume-role-policy-document",
        &trust.to_string(),
    ])["Role"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    up.aws(&[
        "iam",
        "put-role-policy",
        "--role-name",
        "keyward-trail-reader",
        "--policy-name",
        "lookup",
        "--policy-document",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "cloudtrail:LookupEvents", "Resource": "*"}]})
        .to_string(),
    ]);
    up.keyward_json(&[
        "alarms",
        "rules",
        "set",
        "--cluster",
        &id,
        "--trail-reader-role",
        &reader,
    ]);
    cluster.wait_alarm("unexpected-principal", "OK", Duration::from_secs(5));
    up.aws(&[
        "kms",
        "generate-data-key",
        "--key-id",
        &key,
        "--number-of-bytes",
        "32",
    ]);
    let raised = cluster.wait_alarm("unexpected-principal", "ALARM", Duration::from_secs(5));
    let admin = up.aws(&["sts", "get-caller-identity"])["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        raised["reason"].as_str().unwrap().contains(&admin),
        "{raised:#}"
    );
    notified("unexpected-principal", "ALARM");
    up.keyward_json(&[
        "alarms",
        "rules",
        "set",
        "--cluster",
        &id,
        "--allow-principal",
        &admin,
    ]);
    cluster.wait_alarm("unexpected-principal", "OK", Duration::from_secs(5));
    notified("unexpected-principal", "OK");
    let (ok, history, err) = up.keyward(&["alarms", &id, "--history"]);
    assert!(
        ok && history.contains("unexpected-principal") && history.contains("OK -> ALARM"),
        "{history}{err}"
    );
}
