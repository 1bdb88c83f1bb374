//! Shared helpers: deterministic plaintexts, the test keyring and tool lookup.

use std::{path::PathBuf, process::Command};

use keyward_envelope::{Client, Config, EncryptionContext, RawAesKeyring, Suite};

/// The public test wrapping key of the vectors (bytes 0..32), see tests/vectors/README.md.
pub const VECTOR_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};
pub const VECTOR_NAMESPACE: &str = "keyward-vectors";
pub const VECTOR_KEY_NAME: &str = "vector-key-1";

/// Deterministic plaintext of `n` bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31).wrapping_add(7) % 256) as u8)
        .collect()
}

pub fn keyring() -> RawAesKeyring {
    RawAesKeyring::new(VECTOR_NAMESPACE, VECTOR_KEY_NAME, &VECTOR_KEY).unwrap()
}

pub fn suite(id: &str) -> Suite {
    match id {
        "0478" => Suite::Aes256GcmHkdfSha512Commit,
        "0578" => Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
        other => panic!("unknown suite {other}"),
    }
}

pub fn client(suite: Suite, frame_length: u32) -> Client<RawAesKeyring> {
    Client::new(
        keyring(),
        Config {
            suite,
            frame_length,
            ..Config::default()
        },
    )
    .unwrap()
}

pub fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// A tool from PATH (scripts/test puts the venv first). Missing tools fail the test.
pub fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Command::new(path),
        None => panic!("`{name}` is not on PATH: run scripts/test, or put the project venv's bin first on PATH"),
    }
}

/// Runs the official Python ESDK with the raw test key (tests/vectors/esdk_raw.py).
pub fn esdk_raw(
    mode: &str,
    suite: &str,
    frame: u32,
    ctx: &EncryptionContext,
    input: &[u8],
) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = tool("python")
        .arg(vectors_dir().join("esdk_raw.py"))
        .args([
            mode,
            "--suite",
            suite,
            "--frame",
            &frame.to_string(),
            "--context",
        ])
        .arg(serde_json::to_string(ctx).unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Splits a message into (header incl. tag, [frames], footer) using our parser.
pub fn split(message: &[u8], signed: bool) -> (Vec<u8>, Vec<Vec<u8>>, Vec<u8>) {
    let (header, len) = keyward_envelope::header::Header::parse(message, 16).unwrap();
    let header_len = len + 16;
    let frame = header.frame_length as usize;
    let mut at = header_len;
    let mut frames = Vec::new();
    loop {
        let marker = u32::from_be_bytes(message[at..at + 4].try_into().unwrap());
        if marker == u32::MAX {
            let len = u32::from_be_bytes(message[at + 20..at + 24].try_into().unwrap()) as usize;
            frames.push(message[at..at + 24 + len + 16].to_vec());
            at += 24 + len + 16;
            break;
        }
        frames.push(message[at..at + 16 + frame + 16].to_vec());
        at += 16 + frame + 16;
    }
    let footer = message[at..].to_vec();
    assert_eq!(signed, !footer.is_empty());
    (message[..header_len].to_vec(), frames, footer)
}
