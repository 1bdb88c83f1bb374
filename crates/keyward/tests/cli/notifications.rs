//! Alarm notifications through the real `keyward up`: the keyward CLI makes a webhook
//! destination (the receiver is this test, on loopback, so `--allow-private-webhooks`), the aws
//! CLI as the customer disables and re-enables the key, schedules and cancels its deletion, and
//! edits its policy to leave the cluster's role out and back, and the receiver gets each
//! transition signed as the README documents it — checked here with an independent HMAC (python3's
//! `hmac`), not keyward's own code. Then `keyward alarms test`, the delivery log, and deleting the
//! destination.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{require_tool, run_with_deadline};
use crate::up::{Up, DEADLINE};

pub(crate) struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A webhook receiver on loopback answering 200 to everything: the requests it got.
pub(crate) fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let record = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers["content-length"].parse().unwrap();
            while buf.len() < head_end + length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end..(head_end + length).min(buf.len())].to_vec();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            record.lock().unwrap().push(Received { headers, body });
        }
    });
    (url, got)
}

/// A webhook destination for `cluster`, made with the keyward CLI, whose receiver is this test.
pub(crate) struct Hook {
    pub(crate) got: Arc<Mutex<Vec<Received>>>,
    pub(crate) secret: String,
    pub(crate) id: String,
}

pub(crate) fn hook(up: &Up, cluster: &str) -> Hook {
    let (url, got) = receiver();
    let created = up.keyward_json(&[
        "alarms",
        "destinations",
        "create",
        "--url",
        &url,
        "--cluster",
        cluster,
        "--description",
        "test receiver",
    ]);
    Hook {
        got,
        secret: created["secret"].as_str().unwrap().to_owned(),
        id: created["destination"]["id"].as_str().unwrap().to_owned(),
    }
}

/// The signature recomputed by python3's `hmac`, as the README's recipe does.
fn python_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let python = require_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, body).unwrap();
    let script = "import hashlib, hmac, sys; \
        body = open(sys.argv[3], 'rb').read(); \
        print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode() + b'.' + body, hashlib.sha256).hexdigest())";
    let mut command = Command::new(python);
    command
        .args(["-c", script, secret, timestamp])
        .arg(&body_path);
    let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(status.success(), "python3: {err}");
    out.trim().to_owned()
}

/// Waits for a request whose JSON body matches `pick`.
pub(crate) fn wait(
    got: &Arc<Mutex<Vec<Received>>>,
    what: &str,
    limit: Duration,
    pick: impl Fn(&Value) -> bool,
) -> (HashMap<String, String>, Vec<u8>) {
    let started = Instant::now();
    loop {
        if let Some(r) = got
            .lock()
            .unwrap()
            .iter()
            .find(|r| serde_json::from_slice(&r.body).is_ok_and(|b: Value| pick(&b)))
        {
            return (r.headers.clone(), r.body.clone());
        }
        assert!(
            started.elapsed() < limit,
            "no notification {what} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks a request's signature independently, and that it is fresh.
pub(crate) fn check_signed(secret: &str, headers: &HashMap<String, String>, body: &[u8]) {
    let header = &headers["keyward-signature"];
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("Keyward-Signature {header:?}"));
    assert_eq!(python_signature(secret, t, body), v1, "the signature");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t.parse::<i64>().unwrap()).abs() < 60);
    assert!(headers["keyward-delivery-id"].starts_with("d-"));
}

#[test]
fn the_customers_aws_cli_events_reach_a_webhook_made_with_the_keyward_cli_signed() {
    require_tool("aws");
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(
        &dir.path().join("keyward-data"),
        &[
            "--probe-interval",
            "1s",
            "--disk-size",
            "1M",
            "--allow-private-webhooks",
        ],
    );
    let customer = up.info["customer"]["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cluster = up.keyward_json(&["cluster", "create", "hooks", "--encryption", "external"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    let policy = up.keyward_json(&["cluster", "key-policy", &id, "--full-policy-for", &customer]);
    let policy_path = dir.path().join("policy.json");
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let key = up.aws(&[
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", policy_path.display()),
    ])["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        up.keyward_json(&["cluster", "associate", &id, &key])["applied"],
        true
    );

    let Hook {
        got,
        secret,
        id: destination,
    } = hook(&up, &id);
    let first_got = got.clone();
    // A bad URL is refused with its rule.
    let (ok, _, err) = up.keyward(&["alarms", "destinations", "create", "--url", "ftp://x/"]);
    assert!(!ok);
    assert!(
        err.contains("invalid_request (400): invalid request: url has the scheme \"ftp\""),
        "{err}"
    );
    let listed = up.keyward_json(&["alarms", "destinations", "list"]);
    assert_eq!(listed["destinations"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));

    // A test notification.
    let queued = up.keyward_json(&["alarms", "test", &id]);
    assert_eq!(
        queued["deliveries"][0]["destination_id"],
        destination.as_str()
    );
    let (headers, body) = wait(&got, "test", Duration::from_secs(10), |b| {
        b["type"] == "test"
    });
    check_signed(&secret, &headers, &body);

    // Wait for the cluster to be ready and its alarms evaluated.
    let started = Instant::now();
    while up.keyward_json(&["alarms", &id])["alarms"]
        .as_array()
        .is_none_or(|a| a.iter().any(|a| a["state"] != "OK"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "alarms never all OK"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The customer disables the key with the aws CLI: the alarm reaches the webhook, signed.
    let disabled = Instant::now();
    up.aws(&["kms", "disable-key", "--key-id", &key]);
    let (headers, body) = wait(&got, "key-disabled ALARM", Duration::from_secs(10), |b| {
        b["alarm"] == "key-disabled" && b["to"] == "ALARM"
    });
    eprintln!(
        "aws kms disable-key -> signed webhook in {:?}",
        disabled.elapsed()
    );
    check_signed(&secret, &headers, &body);
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["cluster"]["id"], id.as_str());
    assert_eq!(event["key_arn"], key.as_str());
    // And its end, when the customer enables it again.
    up.aws(&["kms", "enable-key", "--key-id", &key]);
    let (headers, body) = wait(&got, "key-disabled OK", Duration::from_secs(10), |b| {
        b["alarm"] == "key-disabled" && b["to"] == "OK"
    });
    check_signed(&secret, &headers, &body);

    // The delivery log through the CLI: each delivered at its first attempt.
    let log = up.keyward_json(&["alarms", "deliveries", &id, "--alarm", "key-disabled"]);
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log:#}");
    for d in deliveries {
        assert_eq!(d["state"], "delivered", "{d:#}");
        assert_eq!(d["attempts"][0]["status"], 200, "{d:#}");
    }
    let (ok, text, _) = up.keyward(&["alarms", "destinations", "deliveries", &destination]);
    assert!(ok && text.contains("delivered"), "{text}");

    // Each phase below gets a destination of its own, so that the rate limit of one (10 at once,
    // then one every 6 s) cannot hold back what the phase waits for.
    let fresh = || {
        let hook = hook(&up, &id);
        (hook.got, hook.secret)
    };

    // The customer schedules the key's deletion: the alarm carries the date to cancel by.
    let (got, secret) = fresh();
    up.aws(&[
        "kms",
        "schedule-key-deletion",
        "--key-id",
        &key,
        "--pending-window-in-days",
        "7",
    ]);
    let (headers, body) = wait(
        &got,
        "key-deletion-scheduled ALARM",
        Duration::from_secs(10),
        |b| b["alarm"] == "key-deletion-scheduled" && b["to"] == "ALARM",
    );
    check_signed(&secret, &headers, &body);
    // Cancelled, the key is left disabled (as AWS leaves it); enabled, all is clear again.
    up.aws(&["kms", "cancel-key-deletion", "--key-id", &key]);
    up.aws(&["kms", "enable-key", "--key-id", &key]);
    for kind in ["key-deletion-scheduled", "cluster-key-inaccessible"] {
        let (headers, body) = wait(&got, &format!("{kind} OK"), Duration::from_secs(10), |b| {
            b["alarm"] == kind && b["to"] == "OK"
        });
        check_signed(&secret, &headers, &body);
    }

    // A policy edit that leaves the cluster's role out: its calls are denied, and said so.
    let (got, secret) = fresh();
    let role = cluster["role_arn"].as_str().unwrap();
    let full: Value = policy;
    let mut without_role = full.clone();
    without_role["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| !s.to_string().contains(role));
    assert_ne!(without_role, full, "the policy names the role");
    let put_policy = |policy: &Value| {
        std::fs::write(&policy_path, policy.to_string()).unwrap();
        up.aws(&[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            &format!("file://{}", policy_path.display()),
        ]);
    };
    put_policy(&without_role);
    let (headers, body) = wait(&got, "access-denied ALARM", Duration::from_secs(10), |b| {
        b["alarm"] == "access-denied" && b["to"] == "ALARM"
    });
    check_signed(&secret, &headers, &body);
    // Restored: the cluster reaches its data again (access-denied itself stays raised for its
    // window, the refusals being recent).
    put_policy(&full);
    let (headers, body) = wait(
        &got,
        "cluster-key-inaccessible OK",
        Duration::from_secs(10),
        |b| b["alarm"] == "cluster-key-inaccessible" && b["to"] == "OK",
    );
    check_signed(&secret, &headers, &body);

    // The first destination, deleted: nothing more arrives there.
    let got = first_got;
    up.keyward_json(&["alarms", "destinations", "delete", &destination]);
    let before = got.lock().unwrap().len();
    up.aws(&["kms", "disable-key", "--key-id", &key]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(got.lock().unwrap().len(), before);
}
