//! The backup manifest: its JSON shape and the consistency checks a restore
//! runs before it creates anything. The format is described in the module
//! doc of [`super`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{BackupError, BackupResult};
use crate::objects::check_key;

/// The `format` field of every manifest.
pub const MANIFEST_FORMAT: &str = "keyward-backup";
/// The manifest version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// The largest part a manifest may declare (plaintext bytes).
pub const MAX_PART_SIZE: u64 = 1 << 30;

/// A backup's manifest. See the module doc of [`super`] for the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    pub backup_id: String,
    /// The cluster whose backup store holds it.
    pub cluster: String,
    pub created_at_ms: u64,
    pub completed_at_ms: u64,
    /// The largest part, in plaintext bytes.
    pub part_size: u64,
    /// Plaintext bytes of the whole stream (every item, every part).
    pub total_bytes: u64,
    /// The items, in stream order.
    pub items: Vec<Item>,
    /// The parts, in stream order.
    pub parts: Vec<Part>,
}

/// One disk or document: a contiguous range of the backup stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Item {
    /// A volume's whole plaintext, sector 0 first.
    Volume {
        /// The source volume's id.
        volume_id: String,
        /// The caller's name for the disk (e.g. `engine-0`).
        name: String,
        /// Its storage class (e.g. `engine-disk`).
        class: String,
        offset: u64,
        size: u64,
    },
    /// A document's plaintext.
    Document {
        /// The object key in the documents store.
        key: String,
        offset: u64,
        size: u64,
    },
}

impl Item {
    pub fn offset(&self) -> u64 {
        match self {
            Item::Volume { offset, .. } | Item::Document { offset, .. } => *offset,
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Item::Volume { size, .. } | Item::Document { size, .. } => *size,
        }
    }
}

/// One part: an ESDK message in the backup store holding a range of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The object key, `<backup id>/part-<index, 6 digits>`.
    pub name: String,
    pub offset: u64,
    /// Plaintext bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
}

/// The object key of part `index` of a backup.
pub fn part_name(backup_id: &str, index: usize) -> String {
    format!("{backup_id}/part-{index:06}")
}

/// The object key of a backup's manifest.
pub fn manifest_name(backup_id: &str) -> String {
    format!("{backup_id}/manifest")
}

/// `bk-` + 13 decimal digits (creation time, unix ms) + `-` + 8 hex digits.
pub fn valid_backup_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("bk-") else {
        return false;
    };
    let Some((ms, random)) = rest.split_once('-') else {
        return false;
    };
    ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The creation time encoded in a valid backup id.
pub fn created_at_ms(id: &str) -> u64 {
    id.get(3..16).and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

fn valid_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Manifest {
    /// Everything a manifest must say about itself to be restored: the format
    /// and version, that it names this backup and cluster, that the parts are
    /// this backup's, in order, of bounded size and tile the stream exactly,
    /// and that the items tile the same stream. Says what is wrong, first thing first.
    pub fn check(&self, backup_id: &str, cluster: &str) -> BackupResult<()> {
        let lie = |reason: String| {
            Err(BackupError::InconsistentManifest {
                backup_id: backup_id.to_owned(),
                reason,
            })
        };
        if self.format != MANIFEST_FORMAT {
            return lie(format!(
                "format is {:?}, not {MANIFEST_FORMAT:?}",
                self.format
            ));
        }
        if self.version != MANIFEST_VERSION {
            return Err(BackupError::UnsupportedVersion {
                backup_id: backup_id.to_owned(),
                version: self.version,
            });
        }
        if self.backup_id != backup_id {
            return lie(format!("it names backup {:?}", self.backup_id));
        }
        if self.cluster != cluster {
            return lie(format!("it names cluster {:?}", self.cluster));
        }
        if self.part_size == 0 || self.part_size > MAX_PART_SIZE {
            return lie(format!(
                "part size {} is outside 1..={MAX_PART_SIZE}",
                self.part_size
            ));
        }
        let mut at = 0u64;
        for (index, part) in self.parts.iter().enumerate() {
            let expected = part_name(backup_id, index);
            if part.name != expected {
                return match part.name.split_once('/') {
                    Some((owner, _)) if owner != backup_id => lie(format!(
                        "part {index} is {:?}, a part of another backup",
                        part.name
                    )),
                    _ => lie(format!(
                        "part {index} is {:?}; expected {expected:?}",
                        part.name
                    )),
                };
            }
            if part.offset != at {
                return lie(format!(
                    "part {:?} starts at {}; the previous parts end at {at}",
                    part.name, part.offset
                ));
            }
            if part.size == 0 || part.size > self.part_size {
                return lie(format!(
                    "part {:?} has {} bytes; parts have 1..={}",
                    part.name, part.size, self.part_size
                ));
            }
            if part.sha256.len() != 64
                || !part
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return lie(format!("part {:?} has no SHA-256", part.name));
            }
            at += part.size;
        }
        if at != self.total_bytes {
            return lie(format!(
                "the parts hold {at} bytes; total_bytes says {}",
                self.total_bytes
            ));
        }
        let mut at = 0u64;
        let mut volumes = BTreeSet::new();
        let mut documents = BTreeSet::new();
        for item in &self.items {
            if item.offset() != at {
                return lie(format!(
                    "an item starts at {}; the previous items end at {at}",
                    item.offset()
                ));
            }
            match item {
                Item::Volume {
                    volume_id,
                    name,
                    class,
                    size,
                    ..
                } => {
                    if *size == 0 || !size.is_multiple_of(4096) {
                        return lie(format!(
                            "volume {volume_id:?} has size {size}, not a positive multiple of 4096"
                        ));
                    }
                    if !valid_plain_name(volume_id) || !valid_plain_name(class) || name.is_empty() {
                        return lie(format!(
                            "volume {volume_id:?} ({name:?}, class {class:?}) is not a valid name"
                        ));
                    }
                    if !volumes.insert(volume_id.as_str()) {
                        return lie(format!("volume {volume_id:?} is listed twice"));
                    }
                }
                Item::Document { key, .. } => {
                    if check_key(key).is_err() {
                        return lie(format!("document {key:?} is not a valid object key"));
                    }
                    if !documents.insert(key.as_str()) {
                        return lie(format!("document {key:?} is listed twice"));
                    }
                }
            }
            at = at.saturating_add(item.size());
        }
        if at != self.total_bytes {
            return lie(format!(
                "the items hold {at} bytes; the parts hold {}",
                self.total_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let id = "bk-1764400000000-0a1b2c3d";
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: 1,
            backup_id: id.into(),
            cluster: "c-1".into(),
            created_at_ms: 1,
            completed_at_ms: 2,
            part_size: 8192,
            total_bytes: 12288,
            items: vec![
                Item::Volume {
                    volume_id: "vol-1".into(),
                    name: "engine-0".into(),
                    class: "engine-disk".into(),
                    offset: 0,
                    size: 8192,
                },
                Item::Document {
                    key: "a/b.txt".into(),
                    offset: 8192,
                    size: 4096,
                },
            ],
            parts: vec![
                Part {
                    name: part_name(id, 0),
                    offset: 0,
                    size: 8192,
                    sha256: "0".repeat(64),
                },
                Part {
                    name: part_name(id, 1),
                    offset: 8192,
                    size: 4096,
                    sha256: "1".repeat(64),
                },
            ],
        }
    }

    fn reason(m: &Manifest) -> String {
        match m.check("bk-1764400000000-0a1b2c3d", "c-1") {
            Err(BackupError::InconsistentManifest { reason, .. }) => reason,
            other => panic!("expected an inconsistent manifest, got {other:?}"),
        }
    }

    #[test]
    fn a_consistent_manifest_passes_and_round_trips() {
        let m = manifest();
        m.check("bk-1764400000000-0a1b2c3d", "c-1").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert!(json.contains(r#""kind":"volume""#));
        assert!(valid_backup_id(&m.backup_id));
        assert_eq!(created_at_ms(&m.backup_id), 1_764_400_000_000);
    }

    #[test]
    fn every_kind_of_lie_is_named() {
        let mut m = manifest();
        m.parts[1].size = 4000;
        assert!(reason(&m).contains("the parts hold 12192 bytes"));
        let mut m = manifest();
        m.parts.pop();
        assert!(reason(&m).contains("the parts hold 8192 bytes"));
        let mut m = manifest();
        m.parts[1].name = part_name("bk-1764400000001-0a1b2c3d", 1);
        assert!(reason(&m).contains("another backup"));
        let mut m = manifest();
        m.parts.swap(0, 1);
        assert!(reason(&m).contains("expected"));
        let mut m = manifest();
        m.items[1] = Item::Document {
            key: "../x".into(),
            offset: 8192,
            size: 4096,
        };
        assert!(reason(&m).contains("not a valid object key"));
        let mut m = manifest();
        if let Item::Volume { size, .. } = &mut m.items[0] {
            *size = 100;
        }
        assert!(reason(&m).contains("multiple of 4096"));
        let mut m = manifest();
        m.backup_id = "bk-1764400000001-0a1b2c3d".into();
        assert!(reason(&m).contains("names backup"));
        let mut m = manifest();
        m.version = 2;
        assert!(matches!(
            m.check("bk-1764400000000-0a1b2c3d", "c-1"),
            Err(BackupError::UnsupportedVersion { version: 2, .. })
        ));
    }
}
