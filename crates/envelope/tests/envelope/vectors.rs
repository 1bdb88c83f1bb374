//! Test vectors checked in forever under tests/vectors (see its README.md):
//! messages we wrote, messages the official Python ESDK wrote (with the raw
//! AES test key, so no KMS is needed to open them), and negative vectors for
//! every tamper case.

use std::{collections::BTreeMap, fs};

use keyward_envelope::{Client, Config, DecryptOptions, EncryptionContext, Error, RawAesKeyring};
use serde_json::{json, Value};

use crate::common::{client, esdk_raw, keyring, pattern, split, suite, vectors_dir};

const CASES: &[(&str, u32, usize)] = &[
    ("empty", 128, 0),
    ("one-byte", 128, 1),
    ("exact-multiple", 128, 256),
    ("several-frames", 128, 1000),
    ("non-ascii-context", 256, 300),
    ("frame-4096", 4096, 5000),
];

fn case_context(name: &str) -> EncryptionContext {
    let mut ctx = BTreeMap::from([("cluster".to_string(), "c-vectors".to_string())]);
    if name == "non-ascii-context" {
        ctx.insert("clé".into(), "välue".into());
        ctx.insert("集群".into(), "グループ".into());
    }
    ctx
}

fn manifest() -> Vec<Value> {
    let text = fs::read_to_string(vectors_dir().join("manifest.json"))
        .expect("tests/vectors/manifest.json");
    serde_json::from_str::<Value>(&text).unwrap()["vectors"]
        .as_array()
        .unwrap()
        .clone()
}

fn ctx_of(value: &Value) -> EncryptionContext {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn reader() -> Client<RawAesKeyring> {
    Client::new(keyring(), Config::default()).unwrap()
}

#[tokio::test]
async fn every_checked_in_vector_gives_its_recorded_result() {
    let vectors = manifest();
    assert!(
        vectors.len() >= 50,
        "the manifest lists {} vectors",
        vectors.len()
    );
    let client = reader();
    for v in vectors {
        let file = v["file"].as_str().unwrap();
        let message = fs::read(vectors_dir().join(file)).unwrap();
        let options = DecryptOptions {
            context: ctx_of(&v["decrypt_context"]),
            ..Default::default()
        };
        let result = client.decrypt_to_vec(&message, &options).await;
        match v["result"].as_str().unwrap() {
            "ok" => {
                let (plain, ctx) = result.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(
                    plain,
                    pattern(v["plaintext_len"].as_u64().unwrap() as usize),
                    "{file}"
                );
                for (k, val) in ctx_of(&v["context"]) {
                    assert_eq!(ctx.get(&k), Some(&val), "{file}");
                }
            }
            "decrypt-error" => assert!(
                matches!(result, Err(Error::Decrypt)),
                "{file}: {:?}",
                result.err()
            ),
            other => panic!("{file}: unknown result {other}"),
        }
    }
}

#[test]
fn the_official_esdk_decrypts_our_checked_in_vectors() {
    for v in manifest() {
        let file = v["file"].as_str().unwrap();
        if !file.starts_with("ours/") {
            continue;
        }
        let message = fs::read(vectors_dir().join(file)).unwrap();
        let plain = esdk_raw("decrypt", "0478", 4096, &ctx_of(&v["context"]), &message)
            .unwrap_or_else(|e| panic!("{file}: the official ESDK refused it: {e}"));
        assert_eq!(
            plain,
            pattern(v["plaintext_len"].as_u64().unwrap() as usize),
            "{file}"
        );
    }
}

/// Writes the vectors. Run once, by hand, and commit the result; never again
/// over existing files (they are kept forever):
/// `cargo nextest run -p keyward-envelope --run-ignored only write_vectors`
#[tokio::test]
#[ignore]
async fn write_vectors() {
    let dir = vectors_dir();
    assert!(
        !dir.join("manifest.json").exists(),
        "vectors exist already; they are kept forever"
    );
    for sub in ["ours", "official", "negative"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut out = Vec::new();
    let mut write = |file: String, bytes: &[u8], entry: Value| {
        fs::write(dir.join(&file), bytes).unwrap();
        let mut entry = entry;
        entry["file"] = json!(file);
        out.push(entry);
    };
    for suite_id in ["0478", "0578"] {
        for &(name, frame, len) in CASES {
            let ctx = case_context(name);
            let entry = json!({"suite": suite_id, "frame_length": frame, "plaintext_len": len, "context": ctx, "result": "ok"});
            let ours = client(suite(suite_id), frame)
                .encrypt_to_vec(&pattern(len), &ctx)
                .await
                .unwrap();
            let mut e = entry.clone();
            e["producer"] = json!("keyward-envelope");
            write(format!("ours/{suite_id}-{name}.msg"), &ours, e);
            let theirs = esdk_raw("encrypt", suite_id, frame, &ctx, &pattern(len)).unwrap();
            let mut e = entry.clone();
            e["producer"] = json!("aws-encryption-sdk (Python) 3.3.1, raw AES keyring");
            write(format!("official/{suite_id}-{name}.msg"), &theirs, e);
        }
        // Negative vectors, each from a fresh message of four frames.
        let signed = suite_id == "0578";
        let ctx = case_context("several-frames");
        let c = client(suite(suite_id), 128);
        let m = c.encrypt_to_vec(&pattern(400), &ctx).await.unwrap();
        let (header, frames, footer) = split(&m, signed);
        let (h, f0) = (header.len(), header.len() + frames[0].len());
        let join = |order: &[usize], footer: &[u8]| {
            let mut x = header.clone();
            for &i in order {
                x.extend_from_slice(&frames[i]);
            }
            x.extend_from_slice(footer);
            x
        };
        let flip = |at: usize| {
            let mut x = m.clone();
            x[at] ^= 0x01;
            x
        };
        let final_at = m.len() - footer.len() - frames[3].len();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("flipped-suite-id", flip(2)),
            ("flipped-message-id", flip(10)),
            ("flipped-context", flip(40)),
            ("flipped-edk", flip(h - 16 - 37 - 5)),
            ("flipped-frame-length", flip(h - 16 - 33)),
            ("flipped-commitment", flip(h - 20)),
            ("flipped-header-tag", flip(h - 3)),
            ("flipped-sequence-number", flip(h + 3)),
            ("flipped-iv", flip(h + 6)),
            ("flipped-ciphertext", flip(h + 40)),
            ("flipped-frame-tag", flip(f0 - 2)),
            ("flipped-final-frame-length", flip(final_at + 23)),
            ("flipped-final-frame", flip(final_at + 26)),
            ("truncated-header", m[..h - 1].to_vec()),
            ("truncated-mid-frame", m[..h + 70].to_vec()),
            ("missing-final-frame", join(&[0, 1, 2], &footer)),
            ("reordered-frames", join(&[1, 0, 2, 3], &footer)),
            ("dropped-frame", join(&[0, 2, 3], &footer)),
            ("duplicated-frame", join(&[0, 0, 1, 2, 3], &footer)),
            ("trailing-byte", [&m[..], &[0]].concat()),
            ("empty-input", Vec::new()),
        ];
        if signed {
            cases.push(("flipped-signature", flip(m.len() - 5)));
            cases.push(("missing-footer", join(&[0, 1, 2, 3], &[])));
        }
        let base = json!({"suite": suite_id, "frame_length": 128, "plaintext_len": 400, "context": ctx,
                          "result": "decrypt-error", "producer": "keyward-envelope"});
        for (name, bytes) in cases {
            let mut e = base.clone();
            e["case"] = json!(name);
            write(format!("negative/{suite_id}-{name}.msg"), &bytes, e);
        }
        let mut e = base.clone();
        e["case"] = json!("wrong-context");
        e["decrypt_context"] = json!({"cluster": "c-other"});
        write(format!("negative/{suite_id}-wrong-context.msg"), &m, e);
        let other = RawAesKeyring::new("keyward-vectors", "vector-key-1", &[0xAA; 32]).unwrap();
        let other = Client::new(
            other,
            Config {
                suite: suite(suite_id),
                frame_length: 128,
                ..Config::default()
            },
        )
        .unwrap();
        let wrong_key = other.encrypt_to_vec(&pattern(400), &ctx).await.unwrap();
        let mut e = base.clone();
        e["case"] = json!("wrong-key");
        write(format!("negative/{suite_id}-wrong-key.msg"), &wrong_key, e);
    }
    let manifest = json!({
        "about": "keyward-envelope test vectors; see README.md. Plaintext byte i = (31*i + 7) mod 256.",
        "wrapping_key": {"namespace": "keyward-vectors", "name": "vector-key-1", "key_hex": hex_key()},
        "vectors": out,
    });
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
}

fn hex_key() -> String {
    crate::common::VECTOR_KEY
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
