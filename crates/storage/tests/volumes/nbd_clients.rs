//! The export as real NBD clients see it, over TLS with the cluster's credentials
//! (and over the 0600 unix socket without TLS).

use std::io::BufReader;
use std::process::{Child, ChildStdout};

use crate::common::*;

const MIB: u64 = 1 << 20;

#[test]
fn nbdinfo_sees_the_export_size_and_name_over_tls_and_unix_socket() {
    let served = serve_raw_volume(64 * MIB);
    let out = run_ok("nbdinfo", &["--json", &served.uri()]);
    assert!(
        out.contains(&format!("\"export-size\": {}", 64 * MIB)),
        "{out}"
    );
    assert!(
        out.contains(&format!("\"export-name\": \"{EXPORT}\"")),
        "{out}"
    );
    assert!(
        out.contains("\"can_flush\": true") && out.contains("\"can_fua\": true"),
        "{out}"
    );
    // The unix socket, served without TLS, is its owner's only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&served.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let unix = format!("nbd+unix:///{EXPORT}?socket={}", served.socket.display());
    let size = run_ok("nbdinfo", &["--size", &unix]);
    assert_eq!(size.trim(), (64 * MIB).to_string());
    let list = run_ok(
        "nbdinfo",
        &[
            "--list",
            "--json",
            &format!(
                "nbds://127.0.0.1:{}/?tls-certificates={}",
                served.port,
                served.creds.display()
            ),
        ],
    );
    assert!(
        list.contains(&format!("\"export-name\": \"{EXPORT}\"")),
        "{list}"
    );
}

#[test]
fn qemu_io_writes_and_reads_patterns_at_unaligned_offsets() {
    let served = serve_raw_volume(16 * MIB);
    let target = served.qemu_args();
    qemu_io_ok(
        &target,
        &[
            "write -z 0 64k",
            "write -P 0xab 1000 5000",
            "write -P 0xcd 6000 100",
            "write -P 0x11 8191 2",
            "write -P 0x5a 12345 40000",
            "write -f -P 0x77 100000 3000",
            "discard 1M 64k",
            "flush",
        ],
    );
    // Fresh connection: nothing cached on the client side.
    let out = qemu_io_ok(
        &target,
        &[
            "read -P 0 0 1000",
            "read -P 0xab 1000 5000",
            "read -P 0xcd 6000 100",
            "read -P 0 6100 2091",
            "read -P 0x11 8191 2",
            "read -P 0x5a 12345 40000",
            "read -P 0x77 100000 3000",
        ],
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let bad = qemu_io(&target, &["read -P 0xab 1000 5001"]);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("Pattern verification failed"),
        "a wrong pattern is noticed: {text}"
    );
}

#[test]
fn nbdcopy_of_the_export_equals_an_independent_python_xts_decryption() {
    let served = serve_raw_volume(8 * MIB);
    let uri = served.uri();
    qemu_io_ok(
        &served.qemu_args(),
        &["write -P 0x42 4096 1M", "write -P 0x17 3M 77777"],
    );
    let copy = served.dir.path().join("copy.raw");
    run_ok("nbdcopy", &[&uri, &copy.display().to_string()]);
    let copied = std::fs::read(&copy).unwrap();
    assert_eq!(copied.len() as u64, 8 * MIB);
    assert!(copied[4096..4096 + MIB as usize].iter().all(|&b| b == 0x42));
    let key_hex: String = raw_key().iter().map(|b| format!("{b:02x}")).collect();
    let python = run_ok(
        "python",
        &[
            &python_script("xts_decrypt.py"),
            &served.path.display().to_string(),
            &key_hex,
        ],
    );
    assert_eq!(python.trim(), sha256_hex(&copied));
    // And the file on disk holds no plaintext run of the pattern.
    let file = std::fs::read(&served.path).unwrap();
    assert!(!file.windows(64).any(|w| w.iter().all(|&b| b == 0x42)));
}

#[test]
fn fio_with_crc32c_verification_passes() {
    let served = serve_raw_volume(64 * MIB);
    // fio's libnbd refuses `tls-certificates=` in a URI (a local file) and, run as
    // root, reads certificates only from /etc/pki/libnbd: fio goes through the
    // cluster's 0600 unix socket, the same server without TLS.
    let uri = format!("nbd+unix:///{EXPORT}?socket={}", served.socket.display());
    let out = run_ok(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--bsrange=512-64k",
            "--size=32m",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--output-format=terse",
        ],
    );
    // Terse v3: field 5 is the error code.
    let fields: Vec<&str> = out.trim().lines().last().unwrap().split(';').collect();
    assert_eq!(fields[4], "0", "fio reported an error: {out}");
}

#[test]
fn detach_fails_requests_on_open_connections_and_refuses_new_ones() {
    let served = serve_raw_volume(4 * MIB);
    let uri = served.uri();
    let target = served.qemu_args();
    qemu_io_ok(&target, &["write -P 0x66 0 64k"]);
    // A client connected before the detach: first read works, the one after fails.
    // `stdbuf -oL` makes qemu-io print each result as it happens, so the detach
    // comes right after the first read (no guessing at timings).
    let (child, mut stdout, mut text) = qemu_io_until(
        &target,
        &["read -P 0x66 0 64k", "sleep 1000", "read -P 0x66 0 64k"],
        "read 65536/65536 bytes at offset 0",
    );
    served.volume.detach();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let output = child.wait_with_output().unwrap();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        text.contains("Input/output error"),
        "the read after detach fails with EIO: {text}"
    );
    assert_eq!(text.matches("read 65536/65536").count(), 1, "{text}");
    // New connections are refused.
    let refused = run("nbdinfo", &[&uri]);
    assert!(!refused.status.success());
    let refused = qemu_io(&target, &["read 0 4k"]);
    assert!(
        !refused.status.success() || String::from_utf8_lossy(&refused.stdout).contains("error")
    );
}

/// This process's descriptors open on `path`.
fn descriptors_on(path: &std::path::Path) -> usize {
    let target = std::fs::canonicalize(path).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == target))
        .count()
}

/// Waits (up to 10 s) until the process holds `n` descriptors on `path`.
fn wait_descriptors(path: &std::path::Path, n: usize, what: &str) {
    let start = std::time::Instant::now();
    while descriptors_on(path) != n {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{what}: {} descriptors on the volume file, not {n}",
            descriptors_on(path)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_attached_volume_holds_its_file_open_only_while_a_client_is_connected() {
    let served = serve_raw_volume(4 * MIB);
    let target = served.qemu_args();
    assert!(served.volume.is_attached());
    assert_eq!(
        descriptors_on(&served.path),
        0,
        "attached and exported, no client: the file is closed"
    );
    // Two clients at once, each writing then waiting: one descriptor for both.
    let client = |pattern: &str, offset: &str| {
        qemu_io_until(
            &target,
            &[
                &format!("write -P {pattern} {offset} 64k"),
                "sleep 1500",
                &format!("read -P {pattern} {offset} 64k"),
            ],
            "wrote 65536/65536",
        )
    };
    let first = client("0x5a", "0");
    let second = client("0x6b", "1M");
    assert_eq!(
        descriptors_on(&served.path),
        1,
        "two connected clients share one open file"
    );
    for (child, mut stdout, mut text) in [first, second] {
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success() && text.contains("read 65536/65536") && !text.contains("fail"),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    wait_descriptors(&served.path, 0, "after the last client left");
    // A client after the file was closed opens it again and reads what was written.
    qemu_io_ok(&target, &["read -P 0x5a 0 64k", "read -P 0x6b 1M 64k"]);
    wait_descriptors(&served.path, 0, "after the reader left");
    // Fail closed as before: detached, the export refuses at once.
    served.volume.detach();
    let refused = qemu_io(&target, &["read 0 4k"]);
    assert!(
        !refused.status.success() || String::from_utf8_lossy(&refused.stdout).contains("error")
    );
    assert_eq!(descriptors_on(&served.path), 0);
}

/// qemu-io on `target` running `commands`, its output read (line-buffered by `stdbuf`)
/// until it has printed `marker`: the child, the rest of its output, and what was read.
fn qemu_io_until(
    target: &[String],
    commands: &[&str],
    marker: &str,
) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = std::process::Command::new("stdbuf")
        .args(["-oL", "qemu-io"])
        .args(target)
        .args(commands.iter().flat_map(|c| ["-c", c]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stdbuf (coreutils) and qemu-io are on PATH");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains(marker) {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            panic!("qemu-io ended before printing {marker:?}: {text}");
        }
        text.push_str(&line);
    }
    (child, stdout, text)
}
