//! Documents stream through `keyward up` end to end: `keyward doc put` from standard input and
//! `keyward doc get` to standard output move a document far larger than any buffer while the
//! server's peak resident memory (VmHWM of the `keyward up` process) stays within a stated
//! bound above what it was before.
//!
//! The document is 1 GiB (about five seconds each way on two cores; `KEYWARD_TEST_DOCUMENT_MIB`
//! sets another size). An upload over `--max-document-size` is refused by the server and
//! reported by the CLI as the 413 it is, and nothing is stored. A download under way when the
//! key is disabled is cut short: the CLI exits non-zero, having got only what was in flight.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::keyward;
use crate::up::Up;

const MIB: u64 = 1 << 20;
/// The most the server's peak resident memory may grow while a document moves through it.
const RSS_GROWTH_BOUND: u64 = 64 * MIB;

/// The peak resident memory of process `pid` so far, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Chunk `index` (1 MiB) of the test document: reproducible, not compressible.
fn chunk(index: u64, out: &mut [u8]) {
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    for word in out.chunks_exact_mut(8) {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
}

/// `keyward <args>` as the platform, with its standard streams piped.
fn piped(up: &Up, args: &[&str]) -> std::process::Child {
    keyward()
        .args(args)
        .arg("--data-dir")
        .arg(&up.data_dir)
        .env_remove("KEYWARD_API_URL")
        .env_remove("KEYWARD_TOKEN")
        .env("KEYWARD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut std::process::Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// `keyward doc put <id> <name> --json` of `mib` MiB generated on the fly into its standard input
/// (no file of that size anywhere): what it printed.
fn put_generated(up: &Up, id: &str, name: &str, mib: u64) -> String {
    let mut put = piped(up, &["doc", "put", id, name, "--json"]);
    let mut stdin = put.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut buffer = vec![0u8; MIB as usize];
        for index in 0..mib {
            chunk(index, &mut buffer);
            stdin.write_all(&buffer).unwrap();
        }
    });
    let mut answer = String::new();
    put.stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    let put_err = stderr_of(&mut put);
    assert!(put.wait().unwrap().success(), "doc put: {put_err}");
    feeder.join().unwrap();
    answer
}

/// A new cluster with internal encryption (a platform key), once ready: its id.
fn ready_internal_cluster(up: &Up) -> String {
    let cluster = up.keyward_json(&["cluster", "create", "big", "--encryption", "internal"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while up.keyward_json(&["cluster", "show", &id])["state"] != "ready" {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    id
}

fn streams_in_bounded_memory(mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("keyward-data"), &[]);
    let pid = up.pid();
    let id = ready_internal_cluster(&up);
    // One small round trip first, so the baseline has every code path of a transfer in it.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![7u8; MIB as usize]).unwrap();
    let (ok, _, err) = up.keyward(&[
        "doc",
        "put",
        &id,
        "small.bin",
        "--file",
        small.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = up.keyward(&["doc", "get", &id, "small.bin"]);
    assert!(ok && out.len() == MIB as usize, "{err}");
    let baseline = peak_rss(pid);

    // Upload from standard input, generated on the fly (no file of that size anywhere).
    let started = Instant::now();
    let answer = put_generated(&up, &id, "large.bin", mib);
    let upload = started.elapsed();
    let info: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(info["size"].as_u64().unwrap() > mib * MIB, "{info}");
    let after_upload = peak_rss(pid);

    // Download to standard output, compared chunk by chunk as it arrives.
    let started = Instant::now();
    let mut get = piped(&up, &["doc", "get", &id, "large.bin"]);
    let mut stdout = get.stdout.take().unwrap();
    let (mut expected, mut got) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    for index in 0..mib {
        chunk(index, &mut expected);
        stdout.read_exact(&mut got).unwrap_or_else(|e| {
            panic!("download short at MiB {index}: {e}");
        });
        assert!(got == expected, "the download differs in MiB {index}");
    }
    assert_eq!(stdout.read(&mut got).unwrap(), 0, "the download is longer");
    let get_err = stderr_of(&mut get);
    assert!(get.wait().unwrap().success(), "doc get: {get_err}");
    let download = started.elapsed();
    let peak = peak_rss(pid);

    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "documents: {mib} MiB through `keyward up`: upload {upload:?} ({:.0} MiB/s), download \
         {download:?} ({:.0} MiB/s); server VmHWM {:.1} MiB before, {:.1} MiB after the upload, \
         {:.1} MiB after the download: +{:.1} MiB (bound {} MiB)",
        mib as f64 / upload.as_secs_f64(),
        mib as f64 / download.as_secs_f64(),
        baseline as f64 / MIB as f64,
        after_upload as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        growth as f64 / MIB as f64,
        RSS_GROWTH_BOUND / MIB,
    );
    assert!(
        growth < RSS_GROWTH_BOUND,
        "the server's peak RSS grew by {growth} bytes moving a {mib} MiB document"
    );
}

#[test]
fn a_1_gib_document_streams_through_keyward_up_in_bounded_memory() {
    let mib = std::env::var("KEYWARD_TEST_DOCUMENT_MIB")
        .ok()
        .map(|v| {
            v.parse()
                .expect("KEYWARD_TEST_DOCUMENT_MIB: a number of MiB")
        })
        .unwrap_or(1024);
    streams_in_bounded_memory(mib);
}

#[test]
fn an_upload_over_the_largest_document_size_is_413_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(
        &dir.path().join("keyward-data"),
        &["--max-document-size", "1M"],
    );
    let id = ready_internal_cluster(&up);
    // From a file (its length sent first: refused before the body is read), a little and far
    // over the limit.
    for mib in [2, 48] {
        let big = dir.path().join("big.bin");
        std::fs::write(&big, vec![9u8; (mib * MIB) as usize]).unwrap();
        let (ok, _, err) = up.keyward(&[
            "doc",
            "put",
            &id,
            "big.bin",
            "--file",
            big.to_str().unwrap(),
        ]);
        assert!(!ok, "a {mib} MiB document was stored past a 1 MiB limit");
        assert!(err.contains("payload_too_large (413)"), "{mib} MiB: {err}");
    }
    // From standard input (no length: cut at the limit).
    let mut put = piped(&up, &["doc", "put", &id, "piped.bin"]);
    let mut stdin = put.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // The server may stop reading once the limit is passed.
        let _ = stdin.write_all(&vec![9u8; 2 * MIB as usize]);
    });
    let err = stderr_of(&mut put);
    assert!(!put.wait().unwrap().success(), "stored past the limit");
    feeder.join().unwrap();
    assert!(err.contains("payload_too_large (413)"), "{err}");

    let listed = up.keyward_json(&["doc", "list", &id]);
    assert_eq!(listed["documents"], serde_json::json!([]), "{listed}");
    let documents = up
        .data_dir
        .join("control/objects")
        .join(&id)
        .join("documents");
    let left: Vec<_> = std::fs::read_dir(&documents)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|name| name == ".keyward"),
        "files left among the documents: {left:?}"
    );
}

/// A download under way when the customer disables the key: once `keyward up` sees the key
/// inaccessible it sends no more of the document and aborts the response, so `keyward doc get`
/// gets a cut-short body and exits non-zero saying so — never a whole-looking document.
#[test]
fn a_download_is_cut_short_when_the_key_is_disabled_mid_way() {
    crate::support::require_tool("aws");
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("keyward-data"), &[]);
    let (id, key_arn) = up.associated_cluster(dir.path(), "cut");
    let started = Instant::now();
    while up.keyward_json(&["cluster", "show", &id])["state"] != "ready" {
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A document far larger than every buffer on the way (socket buffers, pipes).
    let mib = 256;
    put_generated(&up, &id, "large.bin", mib);

    // The first MiB arrives; then the key is disabled and the cluster checked at once.
    let mut get = piped(&up, &["doc", "get", &id, "large.bin"]);
    let mut stdout = get.stdout.take().unwrap();
    let (mut expected, mut got) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    chunk(0, &mut expected);
    stdout.read_exact(&mut got).unwrap();
    assert!(got == expected);
    up.aws(&["kms", "disable-key", "--key-id", &key_arn]);
    let health = up.keyward_json(&["cluster", "health", &id, "--now"]);
    assert_eq!(health["status"], "key-inaccessible", "{health:#}");

    // What was already on its way may still arrive; the rest never does.
    let mut received = MIB;
    loop {
        let n = stdout.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let err = stderr_of(&mut get);
    let status = get.wait().unwrap();
    eprintln!(
        "documents: {received} of {} bytes arrived before the cut",
        mib * MIB
    );
    // In flight when the gate closed: socket buffers and pipes, a few MiB on loopback.
    assert!(
        received < 32 * MIB,
        "{received} bytes arrived: more than was in flight when the key was disabled"
    );
    assert!(!status.success(), "a cut-short download exited 0");
    assert!(err.contains("broke off"), "{err}");
}
