//! Volume benchmarks, each against a baseline in the same run:
//!
//! 1. XTS on the CPU: the batched cipher against a one-block-at-a-time loop over
//!    the same `aes` crate, and `openssl speed -evp aes-256-xts` at 4 KiB.
//! 2. The NBD export under fio (`--ioengine=nbd`): sequential 1 MiB read/write and
//!    random 4 KiB read/write at queue depth 32, against `qemu-nbd` serving a raw
//!    file and `qemu-nbd` serving a LUKS1 aes-xts-plain64 image of the same size.
//!    All three over TLS with client certificates from one CA (`nbds://`; fio's
//!    libnbd finds the client credentials in its `$HOME/.pki/libnbd`, see
//!    [`FioHome`]; qemu-nbd gets `--tls-creds`), so the comparison is authenticated
//!    export against authenticated export.
//!
//! `cargo bench -p keyward-storage` runs everything; `-- xts` runs only part 1.
//! Environment: `KEYWARD_BENCH_SIZE_MIB` (default 1024), `KEYWARD_BENCH_SECONDS` (default 4),
//! `KEYWARD_BENCH_DIR` (where the images go; default the temporary directory).

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_storage::{
    ClusterCa, DataKey, NbdConfig, NbdServer, VolumeFile, VolumeHeader, XtsCipher,
};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let only = args.first().map(String::as_str);
    if only.is_none() || only == Some("xts") {
        xts();
    }
    if only.is_none() || only == Some("nbd") {
        nbd();
    }
}

fn throughput(mut f: impl FnMut(), bytes: usize, min: Duration) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < min {
        f();
        n += 1;
    }
    (n * bytes) as f64 / start.elapsed().as_secs_f64() / (1u64 << 30) as f64
}

fn xts() {
    let key = DataKey::generate().unwrap();
    let cipher = XtsCipher::new(&key);
    let mut buf = vec![0x5au8; 1 << 20];
    let len = buf.len();
    let min = Duration::from_secs(2);
    let batched = throughput(|| cipher.encrypt_sectors(7, &mut buf), len, min);
    let batched_dec = throughput(|| cipher.decrypt_sectors(7, &mut buf), len, min);
    let single = throughput(|| cipher.encrypt_sectors_unbatched(7, &mut buf), len, min);
    println!("XTS, one core, 1 MiB buffers of 4 KiB sectors:");
    println!("  batched encrypt           {batched:6.2} GiB/s");
    println!("  batched decrypt           {batched_dec:6.2} GiB/s");
    println!(
        "  one block at a time       {single:6.2} GiB/s   (batched is {:.1}x)",
        batched / single
    );
    match Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-xts",
            "-bytes",
            "4096",
            "-seconds",
            "2",
        ])
        .output()
    {
        Ok(out) if out.status.success() => {
            // The last line: "aes-256-xts   <bytes/s in 1000s>k"
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or_default();
            let kb: f64 = line
                .split_whitespace()
                .last()
                .and_then(|v| v.trim_end_matches('k').parse().ok())
                .unwrap_or(0.0);
            let gib = kb * 1000.0 / (1u64 << 30) as f64;
            println!(
                "  openssl speed (4 KiB)     {gib:6.2} GiB/s   (batched is {:.2}x)",
                batched / gib
            );
        }
        _ => println!("  openssl speed: not available"),
    }
}

struct Job {
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
    write: bool,
}

const JOBS: [Job; 4] = [
    Job {
        name: "seq write 1M",
        rw: "write",
        bs: "1m",
        write: true,
    },
    Job {
        name: "seq read 1M",
        rw: "read",
        bs: "1m",
        write: false,
    },
    Job {
        name: "rand write 4k",
        rw: "randwrite",
        bs: "4k",
        write: true,
    },
    Job {
        name: "rand read 4k",
        rw: "randread",
        bs: "4k",
        write: false,
    },
];

/// fio's libnbd takes no `tls-certificates=` in a URI (a local file, refused) and
/// reads its client certificates from `$HOME/.pki/libnbd`, or from /etc/pki/libnbd
/// when run as root. So the credentials are copied into a home of fio's own, and as
/// root fio runs as `nobody` (setpriv) to be pointed at it.
struct FioHome {
    home: tempfile::TempDir,
    as_nobody: bool,
}

const NOBODY: u32 = 65534;

impl FioHome {
    fn new(creds: &std::path::Path) -> FioHome {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let as_nobody = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        let pki = home.path().join(".pki/libnbd");
        std::fs::create_dir_all(&pki).unwrap();
        for file in ["ca-cert.pem", "client-cert.pem", "client-key.pem"] {
            std::fs::copy(creds.join(file), pki.join(file)).unwrap();
        }
        if as_nobody {
            std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for path in [
                home.path().join(".pki"),
                pki.clone(),
                pki.join("ca-cert.pem"),
                pki.join("client-cert.pem"),
                pki.join("client-key.pem"),
            ] {
                std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        FioHome { home, as_nobody }
    }

    fn command(&self) -> Command {
        let mut command = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "fio",
            ]);
            c
        } else {
            Command::new("fio")
        };
        command
            .env("HOME", self.home.path())
            .current_dir(self.home.path());
        command
    }
}

/// MiB/s of one fio job against `uri`.
fn fio(home: &FioHome, uri: &str, job: &Job, seconds: u64) -> f64 {
    let out = home
        .command()
        .args([
            "--name=bench",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={}", job.rw),
            &format!("--bs={}", job.bs),
            "--iodepth=32",
            "--time_based",
            &format!("--runtime={seconds}"),
            "--ramp_time=1",
            "--output-format=terse",
        ])
        .output()
        .expect("fio is on PATH (scripts/test installs it)");
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.trim().lines().last().unwrap().split(';').collect();
    let kib_s: f64 = fields[if job.write { 47 } else { 6 }].parse().unwrap();
    kib_s / 1024.0
}

/// Writes the whole export once so reads see real data, not holes.
fn fill(home: &FioHome, uri: &str) {
    let status = home
        .command()
        .args([
            "--name=fill",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=write",
            "--bs=1m",
            "--iodepth=8",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("fio is on PATH");
    assert!(status.success());
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu_nbd(port: u16, server_tls: &std::path::Path, args: &[&str]) -> Reaped {
    let child = Command::new("qemu-nbd")
        .arg(format!(
            "--object=tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,dir={}",
            server_tls.display()
        ))
        .args(["--tls-creds", "tls0"])
        .args([
            "-t",
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-x",
            "bench",
            "-e",
            "4",
        ])
        .args(args)
        .spawn()
        .expect("qemu-nbd is on PATH (scripts/test installs qemu-utils)");
    // Wait for the listener.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Reaped(child)
}

fn run_all(
    home: &FioHome,
    label: &str,
    uri: &str,
    seconds: u64,
    results: &mut BTreeMap<(&'static str, String), f64>,
) {
    fill(home, uri);
    for job in &JOBS {
        let mib = fio(home, uri, job, seconds);
        println!("  {label:<16} {:<14} {mib:9.1} MiB/s", job.name);
        results.insert((job.name, label.to_owned()), mib);
    }
}

fn nbd() {
    let size_mib: u64 = std::env::var("KEYWARD_BENCH_SIZE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let seconds: u64 = std::env::var("KEYWARD_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let size = size_mib << 20;
    let dir = tempfile::tempdir_in(
        std::env::var_os("KEYWARD_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    println!(
        "\nNBD export over TLS (client certificates), fio --ioengine=nbd, iodepth 32, {size_mib} MiB volume, {seconds} s per job:"
    );
    let mut results = BTreeMap::new();
    // One CA for the three servers: the same client credentials reach each.
    let ca = ClusterCa::generate("c-bench").unwrap();
    let creds = dir.path().join("client");
    ca.issue_client("bench").unwrap().write_dir(&creds).unwrap();
    let qemu_tls = dir.path().join("qemu-server");
    ca.issue_server(&[]).unwrap().write_dir(&qemu_tls).unwrap();
    let home = FioHome::new(&creds);
    let uri = |port: u16| format!("nbds://127.0.0.1:{port}/bench");

    // keyward: a raw-key volume (KMS plays no part in the data path).
    {
        let path = dir.path().join("keyward.img");
        let key = DataKey::generate().unwrap();
        let header = VolumeHeader {
            volume_id: "vol-bench".into(),
            size,
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/bench".into(),
            wrapped_key: b"bench".to_vec(),
            encryption_context: BTreeMap::new(),
        };
        VolumeFile::create(&path, header, &key).unwrap();
        let volume = Arc::new(VolumeFile::open(&path).unwrap().unlock(key).unwrap());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let port = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let identity = ca.issue_server(&[]).unwrap();
            let config = NbdConfig::tls(ca.server_tls(&identity).unwrap());
            tokio::spawn(
                NbdServer::new([("bench".to_string(), volume)], config).serve_tcp(listener),
            );
            port
        });
        run_all(&home, "keyward xts", &uri(port), seconds, &mut results);
        drop(runtime);
        std::fs::remove_file(&path).unwrap();
    }

    // qemu-nbd serving a raw file.
    {
        let path = dir.path().join("raw.img");
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let port = free_port();
        let _server = qemu_nbd(port, &qemu_tls, &["-f", "raw", &path.display().to_string()]);
        run_all(&home, "qemu-nbd raw", &uri(port), seconds, &mut results);
        drop(_server);
        std::fs::remove_file(&path).unwrap();
    }

    // qemu-nbd serving LUKS1 aes-256-xts-plain64 (what `qemu-img create -f luks` makes).
    {
        let path = dir.path().join("luks.img");
        let secret = "--object=secret,id=sec0,data=bench-passphrase";
        let status = Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "luks",
                secret,
                "-o",
                "key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=10",
                &path.display().to_string(),
                &format!("{size_mib}M"),
            ])
            .status()
            .expect("qemu-img is on PATH");
        assert!(status.success());
        let port = free_port();
        let image = format!(
            "driver=luks,key-secret=sec0,file.filename={}",
            path.display()
        );
        let _server = qemu_nbd(port, &qemu_tls, &[secret, "--image-opts", &image]);
        run_all(&home, "qemu-nbd luks", &uri(port), seconds, &mut results);
    }

    println!("\nRatios (keyward xts / peer):");
    for job in &JOBS {
        let ours = results[&(job.name, "keyward xts".to_string())];
        let raw = results[&(job.name, "qemu-nbd raw".to_string())];
        let luks = results[&(job.name, "qemu-nbd luks".to_string())];
        println!(
            "  {:<14} vs raw {:5.2}x   vs luks {:5.2}x",
            job.name,
            ours / raw,
            ours / luks
        );
    }
}
