//! Throughput of GenerateDataKey and Decrypt over loopback HTTP with keep-alive, at 1, 8 and 64
//! concurrent clients, for our server (trail durable: every answer waits for its fsync'd record)
//! and, side by side in the same run, moto's server.
//!
//!   cargo bench -p keyward-kms-server
//!
//! The load generator is lean on purpose: one keep-alive TCP connection per client, each request
//! signed with the SDK's SigV4 signer (`aws-sigv4`) and written with one syscall (`tests/wire/raw.rs`), so the client
//! costs little of the machine's CPU next to the server. moto is started from the Python venv
//! (`moto_server` on PATH, or `$KEYWARD_VENV/bin/moto_server`). Environment: `BENCH_SECONDS` (per
//! measurement, default 3).

#[path = "../tests/wire/raw.rs"]
mod raw;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raw::{signed_headers, Creds, RawClient};

const CONCURRENCY: [usize; 3] = [1, 8, 64];

struct Target {
    name: &'static str,
    endpoint: String,
    creds: Creds,
    key_id: String,
    ciphertext: String,
}

async fn call(
    client: &mut RawClient,
    creds: &Creds,
    action: &str,
    body: &str,
) -> std::io::Result<raw::RawResponse> {
    let host = client.host().to_owned();
    let headers = signed_headers(
        creds,
        &host,
        "kms",
        &format!("TrentService.{action}"),
        body.as_bytes(),
        time::OffsetDateTime::now_utc(),
    );
    client.send("POST", "/", &headers, body.as_bytes()).await
}

async fn prepare(name: &'static str, endpoint: String, creds: Creds) -> Target {
    let mut client = RawClient::connect(&endpoint).await;
    let created = call(&mut client, &creds, "CreateKey", "{}")
        .await
        .expect("CreateKey");
    assert_eq!(
        created.status,
        200,
        "{name} CreateKey: {}",
        String::from_utf8_lossy(&created.body)
    );
    let key_id = created.json()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = format!(r#"{{"KeyId":"{key_id}","KeySpec":"AES_256"}}"#);
    let data_key = call(&mut client, &creds, "GenerateDataKey", &body)
        .await
        .expect("GenerateDataKey");
    assert_eq!(
        data_key.status,
        200,
        "{name} GenerateDataKey: {}",
        String::from_utf8_lossy(&data_key.body)
    );
    let ciphertext = data_key.json()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    Target {
        name,
        endpoint,
        creds,
        key_id,
        ciphertext,
    }
}

/// Requests per second for `concurrency` keep-alive clients sending `action` for `seconds`.
async fn measure(target: &Target, action: &'static str, concurrency: usize, seconds: f64) -> f64 {
    let body: Arc<str> = match action {
        "GenerateDataKey" => {
            format!(r#"{{"KeyId":"{}","KeySpec":"AES_256"}}"#, target.key_id).into()
        }
        _ => format!(r#"{{"CiphertextBlob":"{}"}}"#, target.ciphertext).into(),
    };
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let mut client = RawClient::connect(&target.endpoint).await;
        let (creds, body, done, stop) = (
            target.creds.clone(),
            body.clone(),
            done.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = call(&mut client, &creds, action, &body)
                    .await
                    .expect("answer");
                assert_eq!(
                    answer.status,
                    200,
                    "{action}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up briefly, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let counted = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    counted as f64 / elapsed
}

fn moto_binary() -> String {
    if let Ok(venv) = std::env::var("KEYWARD_VENV") {
        let path = format!("{venv}/bin/moto_server");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.join("moto_server").is_file() {
            return dir.join("moto_server").display().to_string();
        }
    }
    panic!("moto_server not found: run scripts/test once (it installs .venv), then export PATH=$PWD/.venv/bin:$PATH");
}

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (moto, endpoint);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not listen on {port} within 30 s");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);

    // The server gets its own runtime (two workers, one per core), the load generator another, as if
    // they were two processes; moto is a real separate process.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kms-server")
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = server_runtime
        .block_on(async { keyward_kms_server::DevServer::start(&dir.path().join("kms")) });

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-generator")
        .enable_all()
        .build()
        .unwrap();
    client_runtime.block_on(async {
        let ours = prepare(
            "keyward",
            server.endpoint().to_owned(),
            Creds {
                access_key_id: server.access_key_id().to_owned(),
                secret: server.secret_access_key().to_owned(),
                region: server.region().to_owned(),
            },
        )
        .await;
        let (moto_process, moto_endpoint) = start_moto().await;
        let moto = prepare(
            "moto",
            moto_endpoint,
            Creds {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                region: "us-east-1".into(),
            },
        )
        .await;

        println!(
            "KMS throughput over loopback HTTP/1.1 keep-alive, {seconds} s per cell, requests/s"
        );
        println!(
            "{:<16} {:>7} {:>12} {:>12} {:>8}",
            "operation", "clients", ours.name, moto.name, "ratio"
        );
        for action in ["GenerateDataKey", "Decrypt"] {
            for concurrency in CONCURRENCY {
                let ours_rate = measure(&ours, action, concurrency, seconds).await;
                let moto_rate = measure(&moto, action, concurrency, seconds).await;
                println!(
                    "{:<16} {:>7} {:>12.0} {:>12.0} {:>7.1}x",
                    action,
                    concurrency,
                    ours_rate,
                    moto_rate,
                    ours_rate / moto_rate
                );
            }
        }
        drop(moto_process);
    });
    drop(server);
    server_runtime.shutdown_timeout(Duration::from_secs(5));
}
