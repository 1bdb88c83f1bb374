//! Fixtures: a raw-key volume served over NBD on loopback, and tool lookup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use keyward_storage::{DataKey, NbdServer, Volume, VolumeFile, VolumeHeader};

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
    _runtime: tokio::runtime::Runtime,
}

impl Served {
    pub fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/{EXPORT}", self.port)
    }
}

pub fn serve_raw_volume(size: u64) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    create_raw_volume(&path, size);
    let volume = Arc::new(open_raw_volume(&path));
    serve(dir, path, volume)
}

pub fn serve(dir: tempfile::TempDir, path: PathBuf, volume: Arc<Volume>) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let socket = dir.path().join("nbd.sock");
    let server = NbdServer::new([(EXPORT.to_string(), volume.clone())]);
    let port = runtime.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let unix = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(server.clone().serve_tcp(tcp));
        tokio::spawn(server.serve_unix(unix));
        port
    });
    Served {
        dir,
        path,
        volume,
        port,
        socket,
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
