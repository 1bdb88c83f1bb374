//! Structured logs: `keyward up --log-format json` (or `KEYWARD_LOG_FORMAT=json`) writes each
//! log line on stderr as one JSON object.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::up::{config_dir_of, up_command};

/// The lines `keyward up <extra>` writes on stderr up to the one that says it is serving (the
/// child is killed after).
fn log_lines_until_serving(extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut command = up_command(&data_dir, &config_dir_of(&data_dir));
    command
        .args(extra)
        .env("KEYWARD_LOG", "info")
        .env_remove("KEYWARD_LOG_FORMAT");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward up");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut serving = false;
    while !serving {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                serving = line.contains("serving") && line.contains("127.0.0.1");
                lines.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving, "keyward up logged only {lines:?}");
    lines
}

#[test]
fn up_with_log_format_json_writes_json_log_lines() {
    for (extra, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("KEYWARD_LOG_FORMAT", "json")][..]),
    ] {
        let lines = log_lines_until_serving(extra, env);
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect();
        let line = parsed.last().unwrap();
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["fields"]["message"], "serving", "{line}");
        assert!(
            line["fields"]["api"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"),
            "{line}"
        );
        assert!(line["timestamp"].is_string(), "{line}");
    }
    // Without either, the line is text.
    let lines = log_lines_until_serving(&[], &[]);
    let last = lines.last().unwrap();
    assert!(serde_json::from_str::<Value>(last).is_err(), "{last}");
}
