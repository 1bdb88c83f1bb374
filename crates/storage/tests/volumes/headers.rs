//! Bad volume files are refused with clear errors and left untouched.

use keyward_storage::{DataKey, Error, VolumeFile};

use crate::common::*;

#[test]
fn corrupted_truncated_or_foreign_headers_are_refused_and_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.img");
    create_raw_volume(&path, 1 << 20);
    let good = std::fs::read(&path).unwrap();
    let key = || DataKey::from_slice(&mut raw_key()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated header",
            good[..1000].to_vec(),
            "header is truncated",
        ),
        (
            "truncated data",
            good[..4096 + 512].to_vec(),
            "the header says",
        ),
        (
            "version 9",
            {
                let mut b = good.clone();
                b[8] = 9;
                b
            },
            "format version 9 is not supported",
        ),
        ("garbage", vec![0x55; 8192], "not a keyward volume"),
        (
            "sector size",
            {
                let mut b = good.clone();
                b[13] ^= 1;
                b
            },
            "corrupted: sector size",
        ),
        (
            "size edited",
            {
                let mut b = good.clone();
                b[26] = 0x08;
                b
            },
            "authentication failed",
        ),
        (
            "mac edited",
            {
                let mut b = good.clone();
                b[4095] ^= 1;
                b
            },
            "authentication failed",
        ),
        (
            "arn edited",
            {
                let mut b = good.clone();
                b[60] ^= 1;
                b
            },
            "authentication failed",
        ),
    ];
    for (what, bytes, expected) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let error = match VolumeFile::open(&path) {
            Err(e) => e,
            Ok(file) => match file.unlock(key()) {
                Err(e) => e,
                Ok(_) => panic!("{what}: accepted"),
            },
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{what}: {message}");
        if expected == "authentication failed" {
            assert!(matches!(error, Error::HeaderMacMismatch));
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: the file was changed"
        );
    }
}
