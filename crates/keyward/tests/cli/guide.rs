//! The guide, end to end: `keyward up` as a child, the **aws CLI as the customer** and the
//! **keyward CLI as the platform**. Create an external cluster and read its role ARN; create a key
//! whose policy has the generated statements; associate it; the four storage classes are
//! provisioned and verified under it; a document round-trips and a disk serves data over NBD; then
//! backups, and the failure scenarios — disabled key, revoked Decrypt, a second key, deletion — each seen by the
//! periodic probe within two probe intervals, with the data paths refusing while the key is out
//! and serving again when it is back.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{require_tool, run_with_deadline};
use crate::up::{Up, DEADLINE};

/// Short, so the test is quick; every failure must be seen within two of these.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_INTERVAL_FLAG: &str = "2s";
/// The guide's bound: a change of the key is seen by the probe within two probe intervals,
/// checked against the time of the probe that saw it (`health.checked_at_ms`), with 500 ms for
/// the probe's own KMS round trips.
const WITHIN: Duration = Duration::from_millis(2 * PROBE_INTERVAL.as_millis() as u64 + 500);
/// How long the test polls for a change: the bound plus room for spawning the CLI on a loaded
/// machine (the bound itself is checked on the server's timestamps).
const WAIT: Duration = Duration::from_millis(WITHIN.as_millis() as u64 + 5000);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Guide {
    up: Up,
    cluster: String,
    dir: tempfile::TempDir,
}

impl Guide {
    fn show(&self) -> Value {
        self.up.keyward_json(&["cluster", "show", &self.cluster])
    }

    /// Polls the cluster until `done` holds, or panics after `limit` with the last state seen.
    /// Answers how long it took.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let cluster = self.show();
            if done(&cluster) {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                panic!("{what}: not within {limit:?}; the cluster is {cluster:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the health to be `status` (and `reason`), and checks that the probe that saw it
    /// ran within two probe intervals of `since_ms` (when the key changed). Answers that delay.
    fn wait_health(&self, status: &str, reason: Option<&str>, since_ms: i64) -> Duration {
        self.wait_for(&format!("health {status} ({reason:?})"), WAIT, |c| {
            c["health"]["status"] == status && reason.is_none_or(|r| c["health"]["reason"] == r)
        });
        let seen_ms = self.show()["health"]["checked_at_ms"].as_i64().unwrap();
        let delay = Duration::from_millis((seen_ms - since_ms).max(0) as u64);
        eprintln!("guide: health {status} {reason:?} seen by the probe {delay:?} after the change");
        assert!(
            delay <= WITHIN,
            "health {status} seen {delay:?} after the change, more than two probe intervals"
        );
        delay
    }

    fn put_policy(&self, key_arn: &str, policy: &Value) {
        let path = self.dir.path().join("policy.json");
        std::fs::write(&path, policy.to_string()).unwrap();
        self.up.aws(&[
            "kms",
            "put-key-policy",
            "--key-id",
            key_arn,
            "--policy-name",
            "default",
            "--policy",
            &format!("file://{}", path.display()),
        ]);
    }

    /// A symmetric key of the customer whose policy is `policy`.
    fn create_key(&self, policy: &Value, description: &str) -> String {
        let path = self.dir.path().join("new-key-policy.json");
        std::fs::write(&path, policy.to_string()).unwrap();
        let key = self.up.aws(&[
            "kms",
            "create-key",
            "--description",
            description,
            "--policy",
            &format!("file://{}", path.display()),
        ]);
        key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
    }

    fn document_round_trip(&self, name: &str, body: &[u8]) {
        let input = self.dir.path().join("doc.in");
        let output = self.dir.path().join("doc.out");
        std::fs::write(&input, body).unwrap();
        let info = self.up.keyward_json(&[
            "doc",
            "put",
            &self.cluster,
            name,
            "--file",
            input.to_str().unwrap(),
        ]);
        assert_eq!(info["name"], name);
        let (ok, _, err) = self.up.keyward(&[
            "doc",
            "get",
            &self.cluster,
            name,
            "-o",
            output.to_str().unwrap(),
        ]);
        assert!(ok, "doc get: {err}");
        assert_eq!(
            std::fs::read(&output).unwrap(),
            body,
            "the document round-trips"
        );
    }

    /// Recovery is complete when the data paths serve again: polls `keyward doc get` until it
    /// works (the health may turn healthy a moment before the data is unlocked).
    fn wait_serving(&self, name: &str) {
        let started = Instant::now();
        loop {
            let (ok, _, err) = self.up.keyward(&["doc", "get", &self.cluster, name]);
            if ok {
                eprintln!("guide: documents serve again after {:?}", started.elapsed());
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "documents still refused {WAIT:?} after the key recovered: {err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `keyward alarms` until the alarm `kind` is in `state`.
    fn wait_alarm(&self, kind: &str, state: &str) {
        let started = Instant::now();
        loop {
            let alarms = self.up.keyward_json(&["alarms", &self.cluster]);
            let now = alarms["alarms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["kind"] == kind)
                .map(|a| a["state"].clone());
            if now.as_ref().is_some_and(|s| s == state) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "alarm {kind} never reached {state}: {alarms:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `keyward doc get` must fail with this error code.
    fn document_refused(&self, name: &str, code: &str) {
        let (ok, _, err) = self.up.keyward(&["doc", "get", &self.cluster, name]);
        assert!(!ok, "doc get must be refused ({code})");
        assert!(err.contains(code), "expected {code}: {err}");
    }

    fn disks(&self) -> Vec<Value> {
        let answer = self.up.keyward_json(&["disk", "list", &self.cluster]);
        answer["disks"].as_array().unwrap().clone()
    }

    /// The credentials directory `keyward disk credentials` writes.
    fn creds(&self) -> std::path::PathBuf {
        self.dir.path().join("nbd-credentials")
    }

    /// qemu-io against an `nbds://host:port/export` URI with qemu's TLS client object over
    /// [`Guide::creds`]: (ok, output).
    fn qemu_io(&self, uri: &str, commands: &[&str]) -> (bool, String) {
        let (server, export) = uri
            .strip_prefix("nbds://")
            .and_then(|rest| rest.split_once('/'))
            .expect("nbds://host:port/export");
        let (host, port) = server.rsplit_once(':').unwrap();
        let mut command = Command::new(require_tool("qemu-io"));
        command.args([
            "--object",
            &format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                self.creds().display()
            ),
            "--image-opts",
            &format!(
                "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0"
            ),
        ]);
        for c in commands {
            command.args(["-c", c]);
        }
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        let all = format!("{out}{err}");
        // qemu-io reports a failed command on stdout with exit status 0: look at the text too.
        let ok = status.success() && !all.contains("error") && !all.contains("Failed");
        (ok, all)
    }
}

#[test]
fn the_guide_end_to_end_with_the_aws_cli_as_the_customer_and_keyward_as_the_platform() {
    require_tool("aws");
    require_tool("qemu-io");
    require_tool("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("keyward-data"), &up_flags());
    let customer = up.info["customer"]["account_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Step 1: a cluster with external encryption; its role ARN.
    let cluster = up.keyward_json(&["cluster", "create", "guide", "--encryption", "external"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    let role_arn = cluster["role_arn"].as_str().unwrap().to_owned();
    assert_eq!(
        role_arn,
        format!("arn:aws:iam::111122223333:role/keyward/keyward-cluster-{id}")
    );
    assert_eq!(cluster["state"], "awaiting-key");
    let guide = Guide {
        up,
        cluster: id.clone(),
        dir,
    };

    // Step 2: the customer creates a symmetric key whose policy has the generated statements
    // (and the account root's administrator statement).
    let policy =
        guide
            .up
            .keyward_json(&["cluster", "key-policy", &id, "--full-policy-for", &customer]);
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{policy:#}");
    for statement in &statements[1..] {
        assert_eq!(statement["Principal"]["AWS"], role_arn.as_str());
    }
    let key1 = guide.create_key(&policy, "guide key 1");

    // Step 3: associate; the operator provisions the four storage classes under it.
    let association = guide.up.keyward_json(&["cluster", "associate", &id, &key1]);
    assert_eq!(association["applied"], true, "{association:#}");
    guide.wait_for("the cluster is ready", Duration::from_secs(60), |c| {
        c["state"] == "ready" && c["key_arn"] == key1.as_str()
    });

    // Step 4: verify — every class encrypted under the key.
    guide.document_round_trip("reports/q1.txt", b"quarterly numbers, encrypted at rest");
    let verification = guide.up.keyward_json(&["cluster", "verify", &id]);
    assert_eq!(verification["all_encrypted"], true, "{verification:#}");
    assert_eq!(verification["key_arn"], key1.as_str());
    // A plaintext file among the documents: verify names it and exits non-zero (scripts rely on
    // the status), with --json too; gone again, verify passes.
    let stray = guide
        .up
        .data_dir
        .join("control/objects")
        .join(&id)
        .join("documents/stray.txt");
    std::fs::write(&stray, b"left here in plaintext").unwrap();
    let (ok, out, err) = guide.up.keyward(&["cluster", "verify", &id]);
    assert!(!ok, "verify passed with a plaintext file: {out}");
    assert!(out.contains("stray.txt"), "{out}");
    assert!(err.contains("not every storage class"), "{err}");
    let (ok, out, _) = guide.up.keyward(&["cluster", "verify", &id, "--json"]);
    assert!(!ok, "verify --json passed with a plaintext file: {out}");
    let failed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(failed["all_encrypted"], false, "{failed:#}");
    std::fs::remove_file(&stray).unwrap();
    assert_eq!(
        guide.up.keyward_json(&["cluster", "verify", &id])["all_encrypted"],
        true
    );
    let classes: Vec<&str> = verification["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        ["documents", "backups", "engine-disk", "search-disk"]
    );
    for class in verification["classes"].as_array().unwrap() {
        assert_eq!(class["encrypted"], true, "{class:#}");
        assert_eq!(class["key_arn"], key1.as_str(), "{class:#}");
        assert!(class["count"].as_u64().unwrap() >= 1, "{class:#}");
        assert_eq!(class["offenders"], json!([]), "{class:#}");
    }

    // A disk serves data over NBD, with client credentials of the cluster's own CA.
    let creds = guide.creds();
    let (ok, out, err) =
        guide
            .up
            .keyward(&["disk", "credentials", &id, "--dir", creds.to_str().unwrap()]);
    assert!(ok, "keyward disk credentials: {err}");
    assert!(
        out.contains("nbdinfo") && out.contains("qemu-io") && out.contains("tls-creds-x509"),
        "the client command lines: {out}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(creds.clone()), 0o700);
        assert_eq!(mode(creds.join("client-key.pem")), 0o600);
        assert!(creds.join("ca-cert.pem").is_file() && creds.join("client-cert.pem").is_file());
    }
    let (ok, listed, err) =
        guide
            .up
            .keyward(&["disk", "list", &id, "--dir", creds.to_str().unwrap()]);
    assert!(ok, "keyward disk list: {err}");
    assert!(
        listed.contains(&format!("?tls-certificates={}", creds.display()))
            && listed.contains("nbds://"),
        "{listed}"
    );
    let disks = guide.disks();
    assert_eq!(
        disks.len(),
        6,
        "three engine and three search disks: {disks:#?}"
    );
    let uri = disks[0]["nbd_uri"]
        .as_str()
        .expect("an attached disk")
        .to_owned();
    let mut nbdinfo = Command::new(require_tool("nbdinfo"));
    nbdinfo.arg(format!("{uri}?tls-certificates={}", creds.display()));
    let (status, out, err) = run_with_deadline(&mut nbdinfo, DEADLINE);
    assert!(status.success(), "nbdinfo {uri}: {err}");
    assert!(
        out.contains("4194304"),
        "nbdinfo shows the 4 MiB disk: {out}"
    );
    let (ok, out) = guide.qemu_io(
        &uri,
        &["write -P 0x5a 4096 65536", "read -P 0x5a 4096 65536"],
    );
    assert!(ok, "qemu-io over {uri}: {out}");

    // A backup of the documents and disks, complete, and restored into a new cluster of the
    // same organization and key, whose copy of the document reads back.
    let backup = guide.up.keyward_json(&["backup", "create", &id]);
    assert_eq!(backup["complete"], true, "{backup:#}");
    let backup_id = backup["id"].as_str().unwrap().to_owned();
    let backups = guide.up.keyward_json(&["backup", "list", &id]);
    assert!(
        backups["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == backup_id.as_str()),
        "{backups:#}"
    );
    let restored = guide
        .up
        .keyward_json(&["backup", "restore", &id, &backup_id]);
    let restored_id = restored["id"].as_str().unwrap().to_owned();
    assert_ne!(restored_id, id);
    // The new cluster has its own role: the customer adds that cluster's statements to the key
    // policy too (each role may create grants only for itself, so the first cluster's statements
    // cannot serve the second), and the platform associates the key, as for any new cluster; the
    // backup is restored before anything else.
    let restored_role = restored["role_arn"].as_str().unwrap().to_owned();
    let theirs = guide
        .up
        .keyward_json(&["cluster", "key-policy", &restored_id]);
    let mut both = policy.clone();
    for statement in theirs["Statement"].as_array().unwrap() {
        let mut statement = statement.clone();
        assert_eq!(statement["Principal"]["AWS"], restored_role.as_str());
        let sid = format!("{} ({restored_id})", statement["Sid"].as_str().unwrap());
        statement["Sid"] = json!(sid);
        both["Statement"].as_array_mut().unwrap().push(statement);
    }
    guide.put_policy(&key1, &both);
    let association = guide
        .up
        .keyward_json(&["cluster", "associate", &restored_id, &key1]);
    assert_eq!(association["applied"], true, "{association:#}");
    let started = Instant::now();
    let copy = guide.dir.path().join("restored.out");
    loop {
        let (ok, _, err) = guide.up.keyward(&[
            "doc",
            "get",
            &restored_id,
            "reports/q1.txt",
            "-o",
            copy.to_str().unwrap(),
        ]);
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restored cluster does not serve the document: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        b"quarterly numbers, encrypted at rest"
    );
    let (ok, _, err) = guide.up.keyward(&["cluster", "delete", &restored_id]);
    assert!(ok, "cluster delete: {err}");
    let (ok, _, err) = guide.up.keyward(&["cluster", "show", &restored_id]);
    assert!(!ok && err.contains("not_found (404)"), "{err}");
    guide.put_policy(&key1, &policy);

    // The key is disabled: within two probe intervals the cluster is key-inaccessible, and
    // documents and disks refuse.
    let since = now_ms();
    guide.up.aws(&["kms", "disable-key", "--key-id", &key1]);
    guide.wait_health("key-inaccessible", Some("disabled"), since);
    let shown = guide.show();
    assert!(
        shown["health"]["message"].as_str().unwrap().contains(&key1),
        "the message names the key: {shown:#}"
    );
    guide.document_refused("reports/q1.txt", "key_inaccessible (423)");
    let (ok, out) = guide.qemu_io(&uri, &["read -P 0x5a 4096 65536"]);
    assert!(!ok, "the disk must refuse while the key is disabled: {out}");
    // The key-disabled alarm fires within an evaluation interval, its cause recorded.
    guide.wait_alarm("key-disabled", "ALARM");
    let (ok, history, err) = guide.up.keyward(&["alarms", &id, "--history"]);
    assert!(
        ok && history.contains("key-disabled") && history.contains("OK -> ALARM"),
        "{history}{err}"
    );

    // Enabled again: recovered by itself, the same data served.
    let since = now_ms();
    guide.up.aws(&["kms", "enable-key", "--key-id", &key1]);
    guide.wait_health("healthy", None, since);
    guide.wait_alarm("key-disabled", "OK");
    guide.wait_serving("reports/q1.txt");
    guide.document_round_trip("reports/q1.txt", b"quarterly numbers, encrypted at rest");
    let uri = wait_attached(&guide, 0);
    let (ok, out) = guide.qemu_io(&uri, &["read -P 0x5a 4096 65536"]);
    assert!(ok, "the disk serves its data again: {out}");

    // Decrypt removed from the key policy: key-inaccessible, access denied. Restored: healthy.
    let mut no_decrypt = policy.clone();
    for statement in no_decrypt["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != "kms:Decrypt");
        }
    }
    assert_ne!(no_decrypt, policy, "the basic statement lists kms:Decrypt");
    let since = now_ms();
    guide.put_policy(&key1, &no_decrypt);
    guide.wait_health("key-inaccessible", Some("access-denied"), since);
    guide.document_refused("reports/q1.txt", "key_inaccessible (423)");
    // Step 4's review: the denied Decrypt is in the cluster's audit, although the customer's
    // own trail never holds it (AWS logs a denied cross-account call only in the caller's).
    let denied = guide.up.keyward_json(&[
        "audit",
        &id,
        "--operation",
        "Decrypt",
        "--result",
        "error",
        "--since",
        "1h",
    ]);
    let record = &denied["records"][0];
    assert_eq!(record["error_code"], "AccessDeniedException", "{denied:#}");
    assert_eq!(record["key_arn"], key1.as_str());
    let request_id = record["request_id"].as_str().unwrap().to_owned();
    let customer_trail = guide.up.aws(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=Decrypt",
    ]);
    assert!(
        !customer_trail["Events"].as_array().unwrap().is_empty(),
        "the customer sees the platform's allowed Decrypts"
    );
    assert!(!customer_trail.to_string().contains(&request_id));
    let (ok, lines, err) = guide
        .up
        .keyward(&["audit", &id, "--cloudtrail", "--limit", "5"]);
    assert!(ok, "{err}");
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e["eventSource"] == "kms.amazonaws.com"));
    // What those requests cost: per day and operation, probes apart, and the probe per month.
    let (ok, table, err) = guide.up.keyward(&["usage", &id]);
    assert!(ok, "{err}");
    assert!(
        table.contains("Decrypt") && table.contains("requests per 30-day month"),
        "{table}"
    );
    let usage = guide.up.keyward_json(&["usage", &id]);
    assert!(usage["total"]["probe"].as_u64().unwrap() > 0, "{usage:#}");
    assert!(usage["total"]["data"].as_u64().unwrap() > 0, "{usage:#}");
    assert_eq!(
        usage["charges"]["periods"][0]["account"],
        key1.split(':').nth(4).unwrap()
    );
    let since = now_ms();
    guide.put_policy(&key1, &policy);
    guide.wait_health("healthy", None, since);
    guide.wait_serving("reports/q1.txt");
    guide.document_round_trip("reports/q1.txt", b"quarterly numbers, encrypted at rest");

    // A second key: every data key re-wrapped under it; the old key disabled changes nothing.
    let key2 = guide.create_key(&policy, "guide key 2");
    let association = guide.up.keyward_json(&["cluster", "associate", &id, &key2]);
    assert_eq!(association["applied"], true, "{association:#}");
    guide.wait_for(
        "re-wrapped under the second key",
        Duration::from_secs(60),
        |c| c["state"] == "ready" && c["key_arn"] == key2.as_str() && c["rewrap"].is_null(),
    );
    let verification = guide.up.keyward_json(&["cluster", "verify", &id]);
    assert_eq!(verification["all_encrypted"], true, "{verification:#}");
    for class in verification["classes"].as_array().unwrap() {
        assert_eq!(
            class["key_arns"],
            json!([key2]),
            "no reference to the old key: {class:#}"
        );
    }
    guide.up.aws(&["kms", "disable-key", "--key-id", &key1]);
    std::thread::sleep(WITHIN);
    assert_eq!(guide.show()["health"]["status"], "healthy");
    guide.document_round_trip("reports/q1.txt", b"quarterly numbers, encrypted at rest");
    let uri = wait_attached(&guide, 0);
    let (ok, out) = guide.qemu_io(&uri, &["read -P 0x5a 4096 65536"]);
    assert!(ok, "the disk's data survived the key change: {out}");

    let current = key2;

    // The current key scheduled for deletion: inaccessible at once; deleted when the window
    // passes (the KMS's test clock moves 8 days on).
    let since = now_ms();
    guide.up.aws(&[
        "kms",
        "schedule-key-deletion",
        "--key-id",
        &current,
        "--pending-window-in-days",
        "7",
    ]);
    guide.wait_health("key-inaccessible", Some("pending-deletion"), since);
    guide.document_refused("reports/q1.txt", "key_inaccessible (423)");
    // The jump of the KMS's clock also expires the role sessions the control plane holds; their
    // SDK credential cache goes by the wall clock, so the control plane must notice the refusal
    // (ExpiredToken) and assume the role afresh rather than read it as access denied.
    let since = now_ms();
    advance_kms_clock(
        guide.up.kms_endpoint(),
        guide.up.info["admin_token"].as_str().unwrap(),
        8 * 24 * 3600,
    );
    guide.wait_health("key-deleted", None, since);
    guide.document_refused("reports/q1.txt", "key_deleted (410)");
}

/// `keyward up`'s flags: [`PROBE_INTERVAL`], and small disks.
fn up_flags() -> [&'static str; 5] {
    [
        "--probe-interval",
        PROBE_INTERVAL_FLAG,
        "--disk-size",
        "4M",
        "--test-clock",
    ]
}

/// The NBD URI of disk `index` once it is attached again.
fn wait_attached(guide: &Guide, index: usize) -> String {
    let started = Instant::now();
    loop {
        if let Some(uri) = guide.disks()[index]["nbd_uri"].as_str() {
            return uri.to_owned();
        }
        assert!(
            started.elapsed() < WAIT,
            "disk {index} not re-attached within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `POST <kms>/_keyward/clock` with the admin token: the test clock `keyward up --test-clock` serves.
fn advance_kms_clock(endpoint: &str, admin_token: &str, seconds: u64) {
    let python = require_tool("python3");
    let script = format!(
        "import urllib.request; r = urllib.request.urlopen(urllib.request.Request('{endpoint}/_keyward/clock', data=b'{{\"advance_seconds\": {seconds}}}', headers={{'Authorization': 'Bearer {admin_token}'}}, method='POST')); print(r.status)"
    );
    let mut command = Command::new(python);
    command.args(["-c", &script]);
    let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(
        status.success() && out.trim() == "200",
        "advance the KMS clock: {out}{err}"
    );
}
