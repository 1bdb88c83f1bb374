//! The authenticated export: each cluster's exports reachable only with that
//! cluster's TLS credentials, by the stock clients (nbdinfo, qemu-io, nbdcopy) and
//! their documented TLS options; and the bounds a misbehaving client meets (memory
//! of pipelined READs it never reads, thousands of idle connections, accept errors).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_storage::{ClusterCa, Limits, NbdConfig, NbdHandle, NbdServer, Volume};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::common::*;

const MIB: u64 = 1 << 20;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;

/// One cluster's server: its volumes, its CA and client credentials, its listener.
struct Cluster {
    tls: TlsCluster,
    volumes: Vec<(String, Arc<Volume>, PathBuf)>,
    port: u16,
    handle: Option<NbdHandle>,
}

impl Cluster {
    fn start(
        runtime: &tokio::runtime::Runtime,
        dir: &Path,
        id: &str,
        disks: &[&str],
        limits: Limits,
    ) -> Cluster {
        let tls = TlsCluster::new(dir, id);
        let volumes = disks
            .iter()
            .map(|disk| {
                let path = dir.join(format!("{disk}.img"));
                create_raw_volume(&path, 8 * MIB);
                (disk.to_string(), Arc::new(open_raw_volume(&path)), path)
            })
            .collect();
        let mut cluster = Cluster {
            tls,
            volumes,
            port: 0,
            handle: None,
        };
        let config = cluster.tls.config().with_limits(limits);
        cluster.listen(runtime, config, 0);
        cluster
    }

    fn listen(&mut self, runtime: &tokio::runtime::Runtime, config: NbdConfig, port: u16) {
        let server = NbdServer::new(
            self.volumes
                .iter()
                .map(|(name, volume, _)| (name.clone(), volume.clone())),
            config,
        );
        let (port, handle) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            (
                listener.local_addr().unwrap().port(),
                server.spawn_tcp(listener),
            )
        });
        self.port = port;
        self.handle = Some(handle);
    }

    fn list_uri(&self, creds: &Path) -> String {
        format!(
            "nbds://127.0.0.1:{}/?tls-certificates={}",
            self.port,
            creds.display()
        )
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn only_a_clusters_own_credentials_list_read_and_write_its_disks() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let mut a = Cluster::start(
        &runtime,
        dir.path(),
        "c-a",
        &["vol-a1", "vol-a2"],
        Limits::default(),
    );
    let b = Cluster::start(&runtime, dir.path(), "c-b", &["vol-b1"], Limits::default());

    // A's credentials: A's two disks, and nothing of B's.
    let list = run_ok("nbdinfo", &["--list", "--json", &a.list_uri(&a.tls.creds)]);
    assert!(
        list.contains("\"export-name\": \"vol-a1\"")
            && list.contains("\"export-name\": \"vol-a2\""),
        "{list}"
    );
    assert!(!list.contains("vol-b1"), "{list}");
    let list = run_ok("nbdinfo", &["--list", "--json", &b.list_uri(&b.tls.creds)]);
    assert!(list.contains("\"export-name\": \"vol-b1\""), "{list}");
    assert!(!list.contains("vol-a"), "{list}");

    let a1 = qemu_tls_args(a.port, "vol-a1", &a.tls.creds);
    qemu_io_ok(&a1, &["write -P 0xa1 4096 100000", "flush"]);
    let out = qemu_io_ok(&a1, &["read -P 0xa1 4096 100000"]);
    assert!(out.contains("read 100000/100000 bytes"), "{out}");

    // Without credentials, with B's, over plain TCP: nothing listed, nothing read.
    let no_creds_dir = dir.path().join("empty");
    std::fs::create_dir(&no_creds_dir).unwrap();
    let base = |scheme: &str| format!("{scheme}://127.0.0.1:{}/", a.port);
    let with = |creds: &Path| format!("?tls-certificates={}", creds.display());
    let attempts = [
        ("B's credentials", base("nbds"), with(&b.tls.creds)),
        ("no credentials", base("nbds"), with(&no_creds_dir)),
        ("the system's CAs", base("nbds"), String::new()),
        ("plain TCP", base("nbd"), String::new()),
    ];
    for (what, base, query) in &attempts {
        let out = run("nbdinfo", &["--list", "--json", &format!("{base}{query}")]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{what}: listed\n{text}");
        assert!(!text.contains("vol-a"), "{what}: a name leaked\n{text}");
        let out = run("nbdinfo", &["--size", &format!("{base}vol-a1{query}")]);
        assert!(!out.status.success(), "{what}: {}", output_text(&out));
    }
    for (what, target) in [
        (
            "B's credentials",
            qemu_tls_args(a.port, "vol-a1", &b.tls.creds),
        ),
        (
            "plain TCP",
            vec![
                "-f".into(),
                "raw".into(),
                format!("nbd://127.0.0.1:{}/vol-a1", a.port),
            ],
        ),
    ] {
        let out = qemu_io(&target, &["read -P 0xa1 4096 100000"]);
        let text = output_text(&out);
        assert!(
            !out.status.success() && !text.contains("bytes at offset"),
            "{what}: qemu-io read A's disk\n{text}"
        );
        let out = qemu_io(&target, &["write -P 0xee 4096 4096"]);
        assert!(
            !out.status.success(),
            "{what}: qemu-io wrote\n{}",
            output_text(&out)
        );
    }
    // Nothing was written by the refused writes.
    qemu_io_ok(&a1, &["read -P 0xa1 4096 100000"]);

    // nbdcopy through TLS: the whole disk in, the whole disk out, equal.
    let plaintext: Vec<u8> = (0..8 * MIB as usize)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect();
    let source = dir.path().join("source.raw");
    std::fs::write(&source, &plaintext).unwrap();
    let a2 = nbds_uri(a.port, "vol-a2", &a.tls.creds);
    run_ok("nbdcopy", &[&source.display().to_string(), &a2]);
    let copy = dir.path().join("copy.raw");
    run_ok("nbdcopy", &[&a2, &copy.display().to_string()]);
    assert!(
        std::fs::read(&copy).unwrap() == plaintext,
        "nbdcopy's copy differs"
    );
    // And the volume file holds ciphertext, not that plaintext.
    let file = std::fs::read(&a.volumes[1].2).unwrap();
    assert!(file[4096..4096 + 65536] != plaintext[..65536]);

    // A restart: a new server certificate from the CA read back from its PEM, on the
    // same port; the credentials issued before still work.
    let port = a.port;
    let mut stopped = a.handle.take().unwrap();
    assert!(stopped.is_running());
    stopped.stop();
    // The owner learns that the loop ended, and why.
    assert_eq!(runtime.block_on(stopped.stopped()), "stopped");
    assert!(!stopped.is_running());
    let reloaded = ClusterCa::from_pem("c-a", a.tls.ca.cert_pem(), &a.tls.ca.key_pem()).unwrap();
    let identity = reloaded.issue_server(&[]).unwrap();
    let config = NbdConfig::tls(reloaded.server_tls(&identity).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    a.listen(&runtime, config, port);
    assert_eq!(a.port, port);
    qemu_io_ok(&a1, &["read -P 0xa1 4096 100000"]);
    let out = run("nbdinfo", &["--list", &a.list_uri(&b.tls.creds)]);
    assert!(!out.status.success(), "B still refused after A's restart");
}

/// The protocol before TLS, as the spec's forced-TLS mode has it.
#[test]
fn before_starttls_every_option_but_abort_is_refused_with_tls_reqd() {
    let served = serve_raw_volume(MIB);
    let mut s = plain_connect(served.port);
    for option in [3u32, 6, 7, 8, 42] {
        // LIST, INFO, GO, STRUCTURED_REPLY, unknown
        send_option(&mut s, option, &[]);
        let (_, kind, _) = option_reply(&mut s);
        assert_eq!(kind, (1 << 31) | 5, "option {option}");
    }
    send_option(&mut s, 5, b"junk"); // STARTTLS with data
    assert_eq!(option_reply(&mut s).1, (1 << 31) | 3);
    send_option(&mut s, 2, &[]); // ABORT
    assert_eq!(option_reply(&mut s).1, 1);
    // EXPORT_NAME has no error reply: the server hangs up.
    let mut s = plain_connect(served.port);
    send_option(&mut s, 1, EXPORT.as_bytes());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "EXPORT_NAME before TLS got {rest:?}");
}

fn plain_connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s
}

fn send_option(s: &mut impl Write, option: u32, data: &[u8]) {
    let mut msg = IHAVEOPT.to_be_bytes().to_vec();
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    s.write_all(&msg).unwrap();
    s.flush().unwrap();
}

/// (option, reply type, data)
fn option_reply(s: &mut impl Read) -> (u32, u32, Vec<u8>) {
    let mut head = [0u8; 20];
    s.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes(head[16..20].try_into().unwrap()) as usize;
    let mut data = vec![0u8; len];
    s.read_exact(&mut data).unwrap();
    (
        u32::from_be_bytes(head[8..12].try_into().unwrap()),
        u32::from_be_bytes(head[12..16].try_into().unwrap()),
        data,
    )
}

/// A client written here from the spec: STARTTLS, the TLS handshake with the
/// credentials in `creds` (rustls), then GO.
fn tls_connect(
    port: u16,
    creds: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut s = plain_connect(port);
    send_option(&mut s, 5, &[]);
    assert_eq!(option_reply(&mut s).1, 1, "STARTTLS acknowledged");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(creds.join("ca-cert.pem")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(creds.join("client-cert.pem")).unwrap()],
            PrivateKeyDer::from_pem_file(creds.join("client-key.pem")).unwrap(),
        )
        .unwrap();
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, s);
    let mut go = (EXPORT.len() as u32).to_be_bytes().to_vec();
    go.extend_from_slice(EXPORT.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    send_option(&mut tls, 7, &go);
    loop {
        let (_, kind, _) = option_reply(&mut tls);
        match kind {
            1 => return tls,
            3 => continue,
            other => panic!("GO refused: {other:#x}"),
        }
    }
}

/// Not a test by itself: the NBD server process that the tests below start
/// (`KEYWARD_NBD_CHILD=DIR`), so that what they measure (memory, file descriptors)
/// is a process that runs nothing else. It serves a 64 MiB raw-key volume as
/// [`EXPORT`] over TLS, prints `NBD-PORT <port>`, and stops when stdin closes.
#[test]
#[ignore = "started as a child process by the tests of this module"]
fn nbd_server_child() {
    let Some(dir) = std::env::var_os("KEYWARD_NBD_CHILD") else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("keyward_storage=debug")
        .init();
    let dir = PathBuf::from(dir);
    let path = dir.join("vol.img");
    create_raw_volume(&path, 64 * MIB);
    let volume = Arc::new(open_raw_volume(&path));
    let tls = TlsCluster::new(&dir, "c-child");
    let limits = Limits {
        max_connections: 32,
        handshake_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let server = NbdServer::new(
        [(EXPORT.to_string(), volume)],
        tls.config().with_limits(limits),
    );
    let runtime = runtime();
    let (port, _handle) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (
            listener.local_addr().unwrap().port(),
            server.spawn_tcp(listener),
        )
    });
    println!("NBD-PORT {port}");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

struct ServerChild {
    child: Child,
    port: u16,
    creds: PathBuf,
    dir: tempfile::TempDir,
}

impl ServerChild {
    /// Starts [`nbd_server_child`], under `prlimit --nofile=N` when given.
    fn start(nofile: Option<u32>) -> ServerChild {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let stderr = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = command
            .args([
                "nbd_tls::nbd_server_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("KEYWARD_NBD_CHILD", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the test binary (and prlimit, from util-linux) can be started");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server child printed its port")
                .unwrap();
            if let Some(port) = line.strip_prefix("NBD-PORT ") {
                break port.trim().parse().unwrap();
            }
        };
        ServerChild {
            child,
            port,
            creds: dir.path().join("creds-c-child"),
            dir,
        }
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn list_works(&self) -> bool {
        let uri = format!(
            "nbds://127.0.0.1:{}/?tls-certificates={}",
            self.port,
            self.creds.display()
        );
        let out = run("nbdinfo", &["--list", &uri]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(EXPORT)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 200 pipelined 32 MiB READs (6.25 GiB asked for) over TLS, and the client never
/// reads a byte of the replies: the server process's peak resident memory stays
/// under 256 MiB, because a READ holds its share of the connection's 64 MiB budget
/// until its reply is written to the socket, and the reader asks for no more.
#[test]
fn a_client_that_never_reads_its_replies_cannot_grow_the_server_past_its_budget() {
    let server = ServerChild::start(None);
    assert!(server.list_works());
    let before = server.status_kib("VmHWM:");
    let mut hog = tls_connect(server.port, &server.creds);
    let mut requests = Vec::new();
    for cookie in 0..200u64 {
        requests.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        requests.extend_from_slice(&0u16.to_be_bytes()); // flags
        requests.extend_from_slice(&0u16.to_be_bytes()); // READ
        requests.extend_from_slice(&cookie.to_be_bytes());
        requests.extend_from_slice(&(cookie % 2 * 32 * MIB).to_be_bytes());
        requests.extend_from_slice(&(32 * MIB as u32).to_be_bytes());
    }
    hog.write_all(&requests).unwrap();
    hog.flush().unwrap();
    // Let the server read, decrypt and write all it will.
    std::thread::sleep(Duration::from_secs(4));
    // Other clients are still served meanwhile.
    assert!(server.list_works(), "{}", server.log());
    let peak = server.status_kib("VmHWM:");
    eprintln!(
        "server VmHWM: {} MiB before, {} MiB with 200 outstanding 32 MiB READs",
        before / 1024,
        peak / 1024
    );
    assert!(
        peak < 256 * 1024,
        "the server's resident memory peaked at {} MiB",
        peak / 1024
    );
    assert!(
        peak >= before + 32 * 1024,
        "the READs were not even served ({} -> {} KiB)",
        before,
        peak
    );
    drop(hog);
    assert!(server.list_works(), "{}", server.log());
}

fn ensure_open_files(wanted: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft < wanted {
        let pid = std::process::id().to_string();
        run_ok(
            "prlimit",
            &["--pid", &pid, &format!("--nofile={wanted}:{wanted}")],
        );
    }
}

/// 2,000 idle TCP connections to one cluster's server (capped at 256): the excess
/// is closed at once, the server stays up, another cluster's server in the same
/// process serves throughout, and the idle ones are dropped at the handshake
/// timeout so the cluster's own clients get in again.
#[test]
fn two_thousand_idle_connections_stop_neither_the_server_nor_another_clusters() {
    ensure_open_files(8192);
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let handshake_timeout = Duration::from_secs(30);
    let a = Cluster::start(
        &runtime,
        dir.path(),
        "c-a",
        &["vol-a1"],
        Limits {
            max_connections: 256,
            handshake_timeout,
            ..Limits::default()
        },
    );
    let b = Cluster::start(&runtime, dir.path(), "c-b", &["vol-b1"], Limits::default());
    let b1 = qemu_tls_args(b.port, "vol-b1", &b.tls.creds);
    qemu_io_ok(&b1, &["write -P 0xb1 0 65536"]);

    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(("127.0.0.1", a.port)).unwrap())
        .collect();
    let (mut greeted, mut refused) = (0, 0);
    for s in &idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 18];
        match (&*s).read(&mut greeting) {
            Ok(18) => greeted += 1,
            Ok(0) => refused += 1,
            Ok(n) => panic!("a partial greeting of {n} bytes"),
            Err(e) => panic!("no greeting and no close: {e}"),
        }
    }
    assert!(
        opened.elapsed() < handshake_timeout,
        "opening and reading 2,000 connections took {:?}: the count below would be wrong",
        opened.elapsed()
    );
    assert_eq!((greeted, refused), (256, 1744));
    // The other cluster's export serves, and A's server is up (its slots are full).
    let out = qemu_io_ok(&b1, &["read -P 0xb1 0 65536"]);
    assert!(out.contains("read 65536/65536"), "{out}");
    assert!(a.handle.as_ref().unwrap().is_running());
    assert!(!run("nbdinfo", &["--list", &a.list_uri(&a.tls.creds)])
        .status
        .success());
    // Past the handshake timeout the idle connections are gone (still open on our
    // side) and A's own client gets in.
    std::thread::sleep(handshake_timeout.saturating_sub(opened.elapsed()) + Duration::from_secs(1));
    run_ok("nbdinfo", &["--list", &a.list_uri(&a.tls.creds)]);
    qemu_io_ok(&b1, &["read -P 0xb1 0 65536"]);
    drop(idle);
    assert!(a.handle.as_ref().unwrap().is_running());
}

/// A server out of file descriptors (`prlimit --nofile=32`) meets EMFILE on
/// accept(): it logs it, backs off, and serves again once descriptors are free.
#[test]
fn accept_errors_are_logged_and_retried_not_fatal() {
    let server = ServerChild::start(Some(32));
    assert!(server.list_works());
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        server.log().contains("NBD accept failed"),
        "no accept error was met: {}",
        server.log()
    );
    drop(flood);
    // The handshake timeout (5 s) frees the descriptors held by accepted connections.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.list_works() {
        assert!(
            Instant::now() < deadline,
            "the server did not recover: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
