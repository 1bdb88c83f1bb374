//! Fixtures: a raw-key volume served over NBD (TLS with a cluster's credentials, or
//! the plain mode tests may ask for) on loopback, and tool lookup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use keyward_storage::nbd::bind_unix;
use keyward_storage::{
    ClusterCa, DataKey, NbdConfig, NbdHandle, NbdServer, Volume, VolumeFile, VolumeHeader,
};

pub const EXPORT: &str = "vol-test";

/// A fixed test key (halves differ); raw volumes skip KMS, as `cryptsetup` would.
pub fn raw_key() -> Vec<u8> {
    (0..64u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(11))
        .collect()
}

pub fn header(size: u64) -> VolumeHeader {
    VolumeHeader {
        volume_id: EXPORT.into(),
        size,
        key_arn: "arn:aws:kms:us-east-1:111122223333:key/raw-test".into(),
        wrapped_key: b"not wrapped: raw-key test volume".to_vec(),
        encryption_context: BTreeMap::new(),
    }
}

pub fn create_raw_volume(path: &Path, size: u64) {
    let key = DataKey::from_slice(&mut raw_key()).unwrap();
    VolumeFile::create(path, header(size), &key).unwrap();
}

pub fn open_raw_volume(path: &Path) -> Volume {
    VolumeFile::open(path)
        .unwrap()
        .unlock(DataKey::from_slice(&mut raw_key()).unwrap())
        .unwrap()
}

/// A volume exported on 127.0.0.1 (and a unix socket) by a server on its own runtime.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub volume: Arc<Volume>,
    pub port: u16,
    pub socket: PathBuf,
    /// The client credentials of the volume's cluster (TLS servers only).
    pub creds: PathBuf,
    _handles: Vec<NbdHandle>,
    _runtime: tokio::runtime::Runtime,
}

impl Served {
    /// The URI libnbd's tools (nbdinfo, nbdcopy, fio) take: TLS with the cluster's
    /// credentials.
    pub fn uri(&self) -> String {
        nbds_uri(self.port, EXPORT, &self.creds)
    }

    /// qemu-io's arguments for the export over TLS, before the `-c` commands.
    pub fn qemu_args(&self) -> Vec<String> {
        qemu_tls_args(self.port, EXPORT, &self.creds)
    }
}

pub fn nbds_uri(port: u16, export: &str, creds: &Path) -> String {
    format!(
        "nbds://127.0.0.1:{port}/{export}?tls-certificates={}",
        creds.display()
    )
}

/// qemu's documented TLS client: an `tls-creds-x509` object reading `ca-cert.pem`,
/// `client-cert.pem` and `client-key.pem` from `creds`, named by the nbd driver.
pub fn qemu_tls_args(port: u16, export: &str, creds: &Path) -> Vec<String> {
    vec![
        "--object".into(),
        format!(
            "tls-creds-x509,id=tls0,endpoint=client,dir={}",
            creds.display()
        ),
        "--image-opts".into(),
        format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export={export},tls-creds=tls0"
        ),
    ]
}

/// Runs qemu-io on `target` (the arguments naming the image) with `-c` commands.
pub fn qemu_io(target: &[String], commands: &[&str]) -> Output {
    let mut args: Vec<&str> = target.iter().map(String::as_str).collect();
    for command in commands {
        args.extend(["-c", command]);
    }
    run("qemu-io", &args)
}

pub fn qemu_io_ok(target: &[String], commands: &[&str]) -> String {
    let output = qemu_io(target, commands);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && !stdout.contains("error") && !stdout.contains("failed"),
        "qemu-io {commands:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A cluster's CA, a server configuration from it, and client credentials in `dir`.
pub struct TlsCluster {
    pub ca: ClusterCa,
    pub creds: PathBuf,
}

impl TlsCluster {
    pub fn new(dir: &Path, cluster_id: &str) -> TlsCluster {
        let ca = ClusterCa::generate(cluster_id).unwrap();
        let creds = dir.join(format!("creds-{cluster_id}"));
        ca.issue_client("test client")
            .unwrap()
            .write_dir(&creds)
            .unwrap();
        TlsCluster { ca, creds }
    }

    pub fn config(&self) -> NbdConfig {
        let identity = self.ca.issue_server(&[]).unwrap();
        NbdConfig::tls(self.ca.server_tls(&identity).unwrap())
    }
}

/// A raw-key volume exported over TLS (and a 0600 unix socket).
pub fn serve_raw_volume(size: u64) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    create_raw_volume(&path, size);
    let volume = Arc::new(open_raw_volume(&path));
    serve(dir, path, volume)
}

/// The same, in the plain-TCP mode tests may ask for.
pub fn serve_raw_volume_plain(size: u64) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    create_raw_volume(&path, size);
    let volume = Arc::new(open_raw_volume(&path));
    serve_with(dir, path, volume, |_| NbdConfig::plain_for_tests())
}

pub fn serve(dir: tempfile::TempDir, path: PathBuf, volume: Arc<Volume>) -> Served {
    serve_with(dir, path, volume, |dir| {
        let cluster = TlsCluster::new(dir, "c-test");
        cluster.config()
    })
}

pub fn serve_with(
    dir: tempfile::TempDir,
    path: PathBuf,
    volume: Arc<Volume>,
    config: impl FnOnce(&Path) -> NbdConfig,
) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let socket = dir.path().join("nbd.sock");
    let server = NbdServer::new([(EXPORT.to_string(), volume.clone())], config(dir.path()));
    let creds = dir.path().join("creds-c-test");
    let (port, handles) = runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let unix = bind_unix(&socket).unwrap();
        (port, vec![server.spawn_tcp(tcp), server.spawn_unix(unix)])
    });
    Served {
        dir,
        path,
        volume,
        port,
        socket,
        creds,
        _handles: handles,
        _runtime: runtime,
    }
}

/// Runs a tool found on PATH; panics (fails the test) when it is missing.
pub fn run(tool: &str, args: &[&str]) -> Output {
    match Command::new(tool).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{tool}` is not on PATH: run scripts/test, which installs it (or put .venv/bin on PATH)")
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

/// Runs a tool and requires success; returns stdout.
pub fn run_ok(tool: &str, args: &[&str]) -> String {
    let output = run(tool, args);
    assert!(
        output.status.success(),
        "{tool} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn python_script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
        .display()
        .to_string()
}
