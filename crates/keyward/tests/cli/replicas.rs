//! Several control-plane replicas (`keyward serve`) on one PostgreSQL database, one S3 bucket and
//! one KMS, as they run at scale: the embedded KMS (`keyward kms serve`, one process), moto's S3
//! server on loopback, and three replicas, each with its own data directory, API port and its own
//! cuttable TCP path to PostgreSQL ([`PgLink`]), so a test can partition one replica from the
//! database while it keeps running.
//!
//! PostgreSQL is the server of `KEYWARD_TEST_POSTGRES_URL` (scripts/test starts one); each test
//! makes a fresh database on it. The helpers ([`ReplicaSet`], [`Replica`], [`PgLink`]) are for
//! every multi-replica test: `kill9`, `start` again, `terminate`, and the link's `cut` and `restore`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward_api::embedded::{Identities, CUSTOMER_ACCOUNT};
use keyward_api::AdminToken;
use serde_json::Value;

use crate::support::{keyward, require_tool, run_with_deadline};
use crate::up::aws_command;

/// How long a child may take to start, a cluster to become ready, a command to finish.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// The replicas' probe interval.
pub const PROBE_INTERVAL: &str = "1s";
const BUCKET: &str = "keyward-replicas";

/// A child process killed (SIGKILL) and reaped on drop.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Spawns `command` with its stdout piped and waits (on a thread, so a silent child cannot hang
/// the test) for a line starting with `prefix`: the rest of that line.
fn spawn_until_line(command: &mut Command, prefix: &'static str) -> (ChildGuard, String) {
    let mut child = ChildGuard(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = sender.send(rest.trim().to_owned());
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    match receiver.recv_timeout(DEADLINE) {
        Ok(rest) => (child, rest),
        Err(_) => panic!("{command:?} printed no {prefix:?} line within {DEADLINE:?}"),
    }
}

/// A port the OS says is free now (for servers that take a port number, not `:0`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- PostgreSQL, and a link to it that can be cut ----

/// A fresh database on the server of `KEYWARD_TEST_POSTGRES_URL`: (its URL, the server's address).
async fn fresh_database() -> (url::Url, SocketAddr) {
    let base = std::env::var("KEYWARD_TEST_POSTGRES_URL").expect(
        "KEYWARD_TEST_POSTGRES_URL must name a PostgreSQL server: run the tests with scripts/test, \
         which starts one",
    );
    let server = keyward_control::db::Db::open(&base, &[])
        .await
        .expect("the PostgreSQL server of KEYWARD_TEST_POSTGRES_URL");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("kw_replicas_{}_{nanos}", std::process::id());
    server
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&format!("/{name}"));
    let host = url.host_str().unwrap().to_owned();
    let port = url.port().unwrap_or(5432);
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .unwrap();
    (url, address)
}

/// A TCP relay on loopback between one replica and PostgreSQL. [`PgLink::cut`] drops every
/// connection and refuses new ones (the listener closes); [`PgLink::restore`] listens again on
/// the same port. The replica keeps running throughout: a network partition, as it sees it.
pub struct PgLink {
    pub address: SocketAddr,
    upstream: SocketAddr,
    state: Arc<LinkState>,
}

#[derive(Default)]
struct LinkState {
    cut: AtomicBool,
    /// Both ends of every relayed connection, to shut down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl PgLink {
    pub fn start(upstream: SocketAddr) -> PgLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let link = PgLink {
            address,
            upstream,
            state: Arc::default(),
        };
        link.accept_on(listener);
        link
    }

    /// Drops every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // The accepting thread sees the flag within its poll and closes the listener.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Accepts connections again, on the same address.
    pub fn restore(&self) {
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.address) {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(started.elapsed() < DEADLINE, "rebind {}: {e}", self.address);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        self.state.cut.store(false, Ordering::SeqCst);
        self.accept_on(listener);
    }

    fn accept_on(&self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (state, upstream) = (self.state.clone(), self.upstream);
        std::thread::spawn(move || loop {
            if state.cut.load(Ordering::SeqCst) {
                return; // the listener closes: new connections are refused
            }
            match listener.accept() {
                Ok((client, _)) => relay(client, upstream, &state),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        });
    }
}

impl Drop for PgLink {
    fn drop(&mut self) {
        self.cut();
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, state: &LinkState) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut open = state.open.lock().unwrap();
    for (from, to) in [(&client, &server), (&server, &client)] {
        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
            return;
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
    open.push(client);
    open.push(server);
}

// ---- the KMS and S3 ----

/// `keyward kms serve` with the platform operator and the customer's admin as its identities
/// (the same files `keyward up` makes).
struct Kms {
    _child: ChildGuard,
    endpoint: String,
}

impl Kms {
    fn start(dir: &Path, identities: &Identities) -> Kms {
        let credentials = dir.join("kms-identities.toml");
        std::fs::write(&credentials, identities.to_toml().as_bytes()).unwrap();
        let mut command = keyward();
        command
            .args([
                "kms",
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.join("kms"))
            .arg("--credentials")
            .arg(&credentials)
            .env("KEYWARD_LOG", "warn")
            .env_remove("KEYWARD_KMS_ROOT_KEY");
        let (child, endpoint) = spawn_until_line(&mut command, "keyward KMS listening on ");
        Kms {
            _child: child,
            endpoint,
        }
    }
}

/// moto's S3 server on loopback, with one bucket.
struct S3 {
    _child: ChildGuard,
    endpoint: String,
}

impl S3 {
    fn start() -> S3 {
        let port = free_port();
        let mut child = ChildGuard(
            Command::new(require_tool("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn moto_server"),
        );
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(started.elapsed() < DEADLINE, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3 {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `aws s3api <args>` against this server (moto takes any credentials), parsed.
    fn s3api(&self, args: &[&str]) -> Value {
        let mut command = aws_command(&self.endpoint, "AKIAS3ANY", "any-secret");
        command.arg("s3api").args(args);
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        assert!(status.success(), "aws s3api {args:?}: {err}");
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }
}

// ---- the replicas ----

/// What every replica of a set shares: the KMS, the bucket, the database, the admin token.
pub struct ReplicaSet {
    kms: Kms,
    s3: S3,
    pub database_url: url::Url,
    postgres: SocketAddr,
    identities: Identities,
    admin_token: String,
    /// Last: removed once the children are gone.
    pub dir: tempfile::TempDir,
}

impl ReplicaSet {
    /// The KMS, moto with the bucket made, and a fresh database; no replica yet.
    pub async fn start() -> ReplicaSet {
        let dir = tempfile::tempdir().unwrap();
        let identities = Identities::generate();
        let kms = Kms::start(dir.path(), &identities);
        let s3 = S3::start();
        s3.s3api(&["create-bucket", "--bucket", BUCKET]);
        let (database_url, postgres) = fresh_database().await;
        ReplicaSet {
            kms,
            s3,
            database_url,
            postgres,
            identities,
            admin_token: AdminToken::generate().unwrap().expose().to_owned(),
            dir,
        }
    }

    /// `keyward serve` for replica `n` of the set (data directory `replica-<n>`), started through
    /// a link of its own to PostgreSQL.
    pub fn replica(&self, n: usize) -> Replica {
        let link = PgLink::start(self.postgres);
        let mut url = self.database_url.clone();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(link.address.port())).unwrap();
        let mut replica = Replica {
            data_dir: self.dir.path().join(format!("replica-{n}")),
            link,
            database_url: url.to_string(),
            kms_endpoint: self.kms.endpoint.clone(),
            s3_endpoint: self.s3.endpoint.clone(),
            operator: (
                self.identities.operator.access_key_id.clone(),
                self.identities
                    .operator
                    .secret_access_key
                    .as_str()
                    .to_owned(),
            ),
            admin_token: self.admin_token.clone(),
            child: None,
            api_url: String::new(),
            replica_id: String::new(),
        };
        replica.start();
        replica
    }

    /// A new organization, made through `replica`'s API with the admin token: its token.
    pub fn organization(&self, replica: &Replica, name: &str) -> String {
        let (status, answer) = http(
            &replica.api_url,
            "POST",
            "/v1/organizations",
            Some(&self.admin_token),
            &serde_json::json!({ "name": name }).to_string(),
        );
        assert_eq!(status, 201, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    /// `aws <args>` as the customer's admin against the KMS, parsed.
    pub fn customer_aws(&self, args: &[&str]) -> Value {
        let mut command = aws_command(
            &self.kms.endpoint,
            &self.identities.customer.access_key_id,
            self.identities.customer.secret_access_key.as_str(),
        );
        command.args(args);
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        assert!(status.success(), "aws {args:?}: {err}");
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    /// Steps 1 to 3 of the guide through `replica` (as [`crate::up::associate_with_clis`]): an
    /// external cluster, the customer's key made with the aws CLI under the full policy `keyward`
    /// prints, associated. (cluster id, key ARN)
    pub fn associated_cluster(
        &self,
        replica: &Replica,
        token: &str,
        name: &str,
    ) -> (String, String) {
        crate::up::associate_with_clis(
            self.dir.path(),
            name,
            CUSTOMER_ACCOUNT,
            &|args| replica.keyward_json(token, args),
            &|args| self.customer_aws(args),
        )
    }

    /// `aws s3api <args>` against the bucket's server.
    pub fn s3api(&self, args: &[&str]) -> Value {
        self.s3.s3api(args)
    }
}

/// One `keyward serve` child. Killed (SIGKILL) on drop, before its link to PostgreSQL is cut.
pub struct Replica {
    child: Option<ChildGuard>,
    pub data_dir: PathBuf,
    /// Its path to PostgreSQL: cut it to partition the replica.
    pub link: PgLink,
    database_url: String,
    kms_endpoint: String,
    s3_endpoint: String,
    operator: (String, String),
    admin_token: String,
    /// `http://127.0.0.1:<port>`: a new port after each (re)start.
    pub api_url: String,
    pub replica_id: String,
}

impl Replica {
    /// The flags of this replica, as an operator would pass them.
    pub fn flags(&self) -> Vec<(String, String)> {
        [
            ("--listen", "127.0.0.1:0"),
            ("--database-url", self.database_url.as_str()),
            ("--s3-bucket", BUCKET),
            ("--s3-endpoint", self.s3_endpoint.as_str()),
            ("--kms-endpoint", self.kms_endpoint.as_str()),
            ("--data-dir", self.data_dir.to_str().unwrap()),
            ("--probe-interval", PROBE_INTERVAL),
            ("--disk-size", "4M"),
        ]
        .into_iter()
        .map(|(flag, value)| (flag.to_owned(), value.to_owned()))
        .collect()
    }

    /// `keyward serve` with `flags`, the operator's credentials and the admin token in its
    /// environment (where secrets go: never on the command line).
    pub fn command_with(&self, flags: &[(String, String)]) -> Command {
        let mut command = keyward();
        command.arg("serve");
        for (flag, value) in flags {
            command.arg(flag).arg(value);
        }
        command
            .env("AWS_ACCESS_KEY_ID", &self.operator.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.operator.1)
            .env("KEYWARD_ADMIN_TOKEN", &self.admin_token)
            .env("KEYWARD_LOG", "warn")
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    /// Starts (or starts again) the process, waiting for its API.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "replica already running");
        let (child, line) =
            spawn_until_line(&mut self.command_with(&self.flags()), "keyward replica ");
        // `<id> serving: API <url>`
        let (id, url) = line
            .split_once(" serving: API ")
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
        self.replica_id = id.to_owned();
        self.api_url = url.to_owned();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no hand-over.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }

    /// SIGTERM, and waits for the process to end: (its exit status).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.0.id().to_string();
        let (status, _, err) =
            run_with_deadline(Command::new("kill").args(["-TERM", &pid]), DEADLINE);
        assert!(status.success(), "kill -TERM {pid}: {err}");
        let started = Instant::now();
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "replica did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `keyward <args>` against this replica's API with `token`: (ok, stdout, stderr).
    pub fn keyward(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let mut command = keyward();
        command
            .args(args)
            .env("KEYWARD_API_URL", &self.api_url)
            .env("KEYWARD_TOKEN", token)
            .env("KEYWARD_LOG", "warn");
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        (status.success(), out, err)
    }

    /// `keyward <args> --json` that must succeed, parsed.
    pub fn keyward_json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (ok, out, err) = self.keyward(token, &all);
        assert!(ok, "keyward {args:?} on {}: {err}", self.api_url);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("keyward {args:?}: {e}: {out}"))
    }

    /// `GET <path>` on this replica's API: (status, JSON body).
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http(&self.api_url, "GET", path, token, "")
    }

    /// Waits until the cluster is `ready` as this replica's API shows it.
    pub fn wait_ready(&self, token: &str, cluster_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let cluster = self.keyward_json(token, &["cluster", "show", cluster_id]);
            if cluster["state"] == "ready" {
                return cluster;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "cluster {cluster_id} not ready on {} within {DEADLINE:?}: {cluster:#}",
                self.api_url
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, JSON body or `null`).
fn http(base: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let address = base.strip_prefix("http://").expect("an http:// URL");
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_clusters_documents_and_the_bucket() {
    let set = ReplicaSet::start().await;
    let replicas: Vec<Replica> = (1..=3).map(|n| set.replica(n)).collect();
    let ids: std::collections::BTreeSet<_> =
        replicas.iter().map(|r| r.replica_id.clone()).collect();
    assert_eq!(ids.len(), 3, "each replica has an id of its own: {ids:?}");
    for replica in &replicas {
        assert_eq!(
            std::fs::read_to_string(replica.data_dir.join("replica-id"))
                .unwrap()
                .trim(),
            replica.replica_id
        );
        // Every door has a lock: no token, no clusters.
        let (status, _) = replica.get("/v1/clusters", None);
        assert_eq!(status, 401);
        assert_eq!(
            replica.get("/readyz", None),
            (200, serde_json::json!({"status": "ready"}))
        );
    }

    // The organization through replica 1; one cluster through each replica.
    let token = set.organization(&replicas[0], "acme");
    let clusters: Vec<(String, String)> = replicas
        .iter()
        .enumerate()
        .map(|(i, replica)| set.associated_cluster(replica, &token, &format!("c{i}")))
        .collect();

    // Every replica's API shows every cluster, ready, under its key.
    for replica in &replicas {
        for (id, key_arn) in &clusters {
            let cluster = replica.wait_ready(&token, id);
            assert_eq!(cluster["key_arn"], key_arn.as_str(), "{cluster:#}");
        }
        let listed = replica.keyward_json(&token, &["cluster", "list"]);
        let listed: std::collections::BTreeSet<String> = listed["clusters"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed:#}"))
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let expected: std::collections::BTreeSet<String> =
            clusters.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(listed, expected, "on {}", replica.api_url);
    }

    // A document put through replica 1 is read through replica 2.
    let (cluster_id, key_arn) = &clusters[0];
    let plaintext = b"quarterly numbers, for the customer's eyes only\n";
    let source = set.dir.path().join("q1.txt");
    std::fs::write(&source, plaintext).unwrap();
    let put = replicas[0].keyward_json(
        &token,
        &[
            "doc",
            "put",
            cluster_id,
            "reports/q1.txt",
            "--file",
            source.to_str().unwrap(),
        ],
    );
    assert_eq!(put["key_arn"], key_arn.as_str(), "{put:#}");
    let fetched = set.dir.path().join("q1.fetched");
    let (ok, _, err) = replicas[1].keyward(
        &token,
        &[
            "doc",
            "get",
            cluster_id,
            "reports/q1.txt",
            "-o",
            fetched.to_str().unwrap(),
        ],
    );
    assert!(ok, "doc get through replica 2: {err}");
    assert_eq!(std::fs::read(&fetched).unwrap(), plaintext);

    // In the bucket it is an ESDK message under the cluster's key, without the plaintext.
    let object_key = format!("{cluster_id}/documents/reports/q1.txt");
    let listed = set.s3api(&[
        "list-objects-v2",
        "--bucket",
        BUCKET,
        "--prefix",
        &format!("{cluster_id}/"),
    ]);
    let keys: Vec<&str> = listed["Contents"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed:#}"))
        .iter()
        .map(|o| o["Key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&object_key.as_str()), "{keys:?}");
    let raw = set.dir.path().join("q1.raw");
    set.s3api(&[
        "get-object",
        "--bucket",
        BUCKET,
        "--key",
        &object_key,
        raw.to_str().unwrap(),
    ]);
    let stored = std::fs::read(&raw).unwrap();
    assert_eq!(stored[0], 0x02, "ESDK message format version 2");
    assert!(
        matches!((stored[1], stored[2]), (0x04 | 0x05, 0x78)),
        "a committing suite"
    );
    assert!(!stored.windows(plaintext.len()).any(|w| w == plaintext));
    let arn_bytes = key_arn.as_bytes();
    assert!(
        stored.windows(arn_bytes.len()).any(|w| w == arn_bytes),
        "the data key is wrapped under the cluster's key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_bad_setups_at_start_with_what_to_do() {
    let set = ReplicaSet::start().await;
    let replica = set.replica(1);
    // `keyward serve` with one flag changed (or added) and the environment changed by `env`:
    // it must exit non-zero without serving; what it wrote on stderr.
    let refused = |flag: Option<(&str, &str)>, env: &dyn Fn(&mut Command)| {
        let mut flags = replica.flags();
        if let Some((flag, value)) = flag {
            flags.retain(|(f, _)| f != flag);
            flags.push((flag.to_owned(), value.to_owned()));
        }
        let mut command = replica.command_with(&flags);
        env(&mut command);
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        assert!(!status.success(), "started: {out}");
        assert!(!out.contains("serving"), "{out}");
        err
    };
    let same = |_: &mut Command| {};
    // SQLite: one process's database, not a replica set's.
    let err = refused(Some(("--database-url", "sqlite:control.db")), &same);
    assert!(
        err.contains("SQLite") && err.contains("postgres://"),
        "{err}"
    );
    // A bucket that does not exist.
    let err = refused(Some(("--s3-bucket", "no-such-bucket")), &same);
    assert!(
        err.contains("\"no-such-bucket\"") && err.contains("create the bucket"),
        "{err}"
    );
    // Neither the token nor a secret shows in what it printed.
    assert!(
        !err.contains(&replica.admin_token) && !err.contains(&replica.operator.1),
        "{err}"
    );
    // No admin token.
    let err = refused(None, &|c| {
        c.env_remove("KEYWARD_ADMIN_TOKEN");
    });
    assert!(
        err.contains("no admin token") && err.contains("--admin-token-file"),
        "{err}"
    );
    // No operator credentials.
    let err = refused(None, &|c| {
        c.env_remove("AWS_SECRET_ACCESS_KEY");
    });
    assert!(err.contains("AWS_SECRET_ACCESS_KEY is not set"), "{err}");
    // A replica id that is not a name.
    let err = refused(Some(("--replica-id", "no spaces")), &same);
    assert!(err.contains("replica id"), "{err}");

    // SIGTERM: the replica stops accepting, shuts down and exits 0.
    let mut replica = replica;
    assert_eq!(replica.get("/livez", None).0, 200);
    let status = replica.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_postgresql_is_not_ready_and_one_killed_restarts_as_itself() {
    let set = ReplicaSet::start().await;
    let mut replica = set.replica(1);
    assert_eq!(replica.get("/readyz", None).0, 200);

    // Partitioned from PostgreSQL: alive, not ready, naming the database.
    replica.link.cut();
    assert_eq!(
        replica.get("/readyz", None),
        (
            503,
            serde_json::json!({"status": "not_ready", "failed": "database"})
        )
    );
    assert_eq!(replica.get("/livez", None).0, 200);
    // Back: ready again once it reconnects.
    replica.link.restore();
    let started = Instant::now();
    while replica.get("/readyz", None).0 != 200 {
        assert!(
            started.elapsed() < DEADLINE,
            "not ready again after the link came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // kill -9, then a restart: the same replica id, its organization still there.
    let token = set.organization(&replica, "acme");
    let id = replica.replica_id.clone();
    replica.kill9();
    assert!(TcpStream::connect(replica.api_url.trim_start_matches("http://")).is_err());
    replica.start();
    assert_eq!(replica.replica_id, id);
    let (status, clusters) = replica.get("/v1/clusters", Some(&token));
    assert_eq!(status, 200, "{clusters}");
}

/// The cluster ids whose lease `replica` holds, as its `GET /v1/replicas` says.
fn leases_of(set: &ReplicaSet, replica: &Replica) -> BTreeSet<String> {
    let (status, answer) = replica.get("/v1/replicas", Some(&set.admin_token));
    assert_eq!(status, 200, "{answer}");
    answer["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer:#}"))
        .iter()
        .map(|l| l["cluster_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Every cluster held by exactly one of `running`, each of them holding its share.
fn settled(set: &ReplicaSet, running: &[&Replica], all: &BTreeSet<String>) -> bool {
    let held: Vec<BTreeSet<String>> = running.iter().map(|r| leases_of(set, r)).collect();
    let total: usize = held.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<String> = held.iter().flatten().cloned().collect();
    total == all.len() && &union == all
}

/// The disks of a cluster through `replica`: disk id -> node.
fn disks_of(replica: &Replica, token: &str, cluster_id: &str) -> BTreeMap<String, String> {
    let (status, answer) = replica.get(&format!("/v1/clusters/{cluster_id}/disks"), Some(token));
    assert_eq!(status, 200, "{answer}");
    answer["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The probe interval the replicas run with, as a duration.
fn probe_interval() -> Duration {
    Duration::from_secs(PROBE_INTERVAL.trim_end_matches('s').parse().unwrap())
}

/// Six clusters of one organization, spread over the replicas.
struct Spread {
    token: String,
    /// (cluster id, key ARN) each.
    clusters: Vec<(String, String)>,
    /// Every cluster id.
    all: BTreeSet<String>,
    /// Each replica's leases, in the replicas' order.
    held: Vec<BTreeSet<String>>,
}

/// An organization and six clusters, two made through each replica, ready, each with one
/// holder.
fn six_clusters_settled(set: &ReplicaSet, replicas: &[Replica]) -> Spread {
    let token = set.organization(&replicas[0], "acme");
    let clusters: Vec<(String, String)> = (0..6)
        .map(|i| set.associated_cluster(&replicas[i % 3], &token, &format!("c{i}")))
        .collect();
    for (id, _) in &clusters {
        replicas[0].wait_ready(&token, id);
    }
    let all: BTreeSet<String> = clusters.iter().map(|(id, _)| id.clone()).collect();
    wait_until("one holder per cluster", DEADLINE, || {
        settled(set, &replicas.iter().collect::<Vec<_>>(), &all)
    });
    let held = replicas.iter().map(|r| leases_of(set, r)).collect();
    Spread {
        token,
        clusters,
        all,
        held,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_clusters_are_watched_again_and_it_rejoins_without_conflicts() {
    let set = ReplicaSet::start().await;
    let mut replicas: Vec<Replica> = (1..=3).map(|n| set.replica(n)).collect();
    let Spread {
        token,
        clusters,
        all,
        held,
    } = six_clusters_settled(&set, &replicas);
    assert!(
        held.iter().filter(|h| !h.is_empty()).count() >= 2,
        "the clusters spread over the replicas: {held:?}"
    );
    // Each cluster's disks are on its holder's node.
    let disks_before: BTreeMap<String, BTreeMap<String, String>> = all
        .iter()
        .map(|id| (id.clone(), disks_of(&replicas[0], &token, id)))
        .collect();
    for (replica, clusters) in replicas.iter().zip(&held) {
        for id in clusters {
            assert!(disks_before[id]
                .values()
                .all(|node| *node == replica.replica_id));
        }
    }

    // kill -9 the replica holding the most; at once, the customer disables the key of one of
    // its clusters.
    let victim = (0..3).max_by_key(|&i| held[i].len()).unwrap();
    let orphaned = held[victim].clone();
    let (target, key) = clusters
        .iter()
        .find(|(id, _)| orphaned.contains(id))
        .cloned()
        .unwrap();
    replicas[victim].kill9();
    set.customer_aws(&["kms", "disable-key", "--key-id", &key]);
    let survivors: Vec<&Replica> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| &replicas[i])
        .collect();
    let seen = wait_until("a survivor to see the key disabled", DEADLINE, || {
        let cluster = survivors[0].keyward_json(&token, &["cluster", "show", &target]);
        cluster["health"]["status"] == "key-inaccessible"
    });
    eprintln!("disable-key seen by a survivor {seen:?} after it (killed replica, probe every {PROBE_INTERVAL})");
    assert!(
        seen <= probe_interval() * 2,
        "seen {seen:?} after disable-key; the bound is two probe intervals"
    );
    set.customer_aws(&["kms", "enable-key", "--key-id", &key]);
    // Every one of its clusters is watched again, by one survivor each.
    wait_until("the survivors to hold every cluster", DEADLINE, || {
        settled(&set, &survivors, &all)
    });
    // Nothing was made twice: the same disks on the same (killed) node.
    for id in &all {
        wait_until("the cluster to serve again", DEADLINE, || {
            survivors[1]
                .get(&format!("/v1/clusters/{id}/disks"), Some(&token))
                .0
                == 200
        });
        assert_eq!(disks_of(survivors[1], &token, id), disks_before[id], "{id}");
    }

    // Restarted with its id, it rejoins: it takes back the clusters whose disks it holds, and
    // serves them again.
    replicas[victim].start();
    wait_until(
        "the restarted replica to take its clusters back",
        DEADLINE,
        || {
            leases_of(&set, &replicas[victim]) == orphaned
                && settled(&set, &replicas.iter().collect::<Vec<_>>(), &all)
        },
    );
    for id in &orphaned {
        wait_until("its disks served again", DEADLINE, || {
            let (status, answer) =
                replicas[victim].get(&format!("/v1/clusters/{id}/disks"), Some(&token));
            status == 200
                && answer["disks"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["attached"] == true))
        });
        assert_eq!(disks_of(&replicas[victim], &token, id), disks_before[id]);
    }
    let (_, list) = replicas[0].get("/v1/replicas", Some(&set.admin_token));
    let live = list["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["live"] == true)
        .count();
    assert_eq!(live, 3, "{list:#}");

    // SIGTERM: a graceful stop hands its leases over at once, well inside one lease.
    let leaving = (victim + 1) % 3;
    let status = replicas[leaving].terminate();
    assert!(status.success(), "{status}");
    let stopped = Instant::now();
    let staying: Vec<&Replica> = (0..3)
        .filter(|&i| i != leaving)
        .map(|i| &replicas[i])
        .collect();
    wait_until("the others to hold every cluster", DEADLINE, || {
        settled(&set, &staying, &all)
    });
    let handed = stopped.elapsed();
    eprintln!("SIGTERM: every lease held by the others {handed:?} after the process ended");
    assert!(handed < probe_interval(), "handed over in {handed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_postgresql_stops_acting_before_another_takes_its_clusters() {
    let set = ReplicaSet::start().await;
    let replicas: Vec<Replica> = (1..=3).map(|n| set.replica(n)).collect();
    let Spread { all, held, .. } = six_clusters_settled(&set, &replicas);
    let victim = (0..3).max_by_key(|&i| held[i].len()).unwrap();
    let orphaned = held[victim].clone();
    let survivors: Vec<&Replica> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| &replicas[i])
        .collect();

    replicas[victim].link.cut();
    let cut = Instant::now();
    let (mut stopped, mut taken) = (None, None);
    while taken.is_none() {
        assert!(
            cut.elapsed() < DEADLINE,
            "nobody took the partitioned replica's clusters"
        );
        if stopped.is_none() && leases_of(&set, &replicas[victim]).is_empty() {
            stopped = Some(cut.elapsed());
        }
        if survivors
            .iter()
            .any(|s| !leases_of(&set, s).is_disjoint(&orphaned))
        {
            taken = Some(cut.elapsed());
        }
    }
    let stopped = stopped.expect("the partitioned replica stopped acting");
    let taken = taken.unwrap();
    eprintln!("cut off: stopped acting after {stopped:?}, its clusters taken after {taken:?}");
    assert!(stopped < taken, "stopped {stopped:?}, taken {taken:?}");
    wait_until("the survivors to hold every cluster", DEADLINE, || {
        settled(&set, &survivors, &all)
    });

    // The link back: it rejoins and takes back the clusters whose disks it holds.
    replicas[victim].link.restore();
    wait_until("it takes its clusters back", DEADLINE, || {
        leases_of(&set, &replicas[victim]) == orphaned
            && settled(&set, &replicas.iter().collect::<Vec<_>>(), &all)
    });
}
