//! KMS keys in memory: metadata (persisted as JSON) and material versions (persisted wrapped).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::clock::epoch_seconds;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// One rotation of the key material, for ListKeyRotations.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Rotation {
    pub date_ms: i64,
    /// `AUTOMATIC` or `ON_DEMAND`.
    pub kind: String,
}

/// Everything about a key except its material. Holds no secret.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct KeyMeta {
    pub id: String,
    pub account: String,
    pub region: String,
    pub arn: String,
    pub created_ms: i64,
    pub description: String,
    pub state: KeyState,
    pub deletion_ms: Option<i64>,
    pub pending_window_days: Option<i64>,
    pub policy: String,
    /// The IAM users and roles the key policy names, bound to their unique ids when the policy
    /// was saved (ARN, id): a principal deleted and re-created later no longer matches.
    #[serde(default)]
    pub policy_principal_ids: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub rotation_enabled: bool,
    pub rotation_period_days: i64,
    pub next_rotation_ms: Option<i64>,
    pub on_demand_rotations: u32,
    pub on_demand_start_ms: Option<i64>,
    pub rotations: Vec<Rotation>,
}

/// One version of a key's material: 32 secret bytes, zeroized on drop.
pub(crate) struct Material {
    pub version: u32,
    pub bytes: Zeroizing<[u8; 32]>,
}

pub(crate) struct KeyRecord {
    pub meta: KeyMeta,
    /// `meta.policy`, compiled and bound to `meta.policy_principal_ids`: authorization evaluates
    /// it without parsing.
    pub policy: crate::policy::Policy,
    pub uuid: uuid::Uuid,
    /// Ordered by version; the last one encrypts.
    pub materials: Vec<Material>,
}

impl KeyRecord {
    pub(crate) fn current(&self) -> &Material {
        self.materials.last().expect("a key always has material")
    }

    pub(crate) fn material(&self, version: u32) -> Option<&Material> {
        self.materials
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.materials[i])
    }

    /// The public id of one version of the key's material, as AWS names a key material
    /// (`CurrentKeyMaterialId`, 64 hex digits): a digest of the key's id and the version, so it
    /// says nothing of the material's bytes and changes with each rotation.
    pub(crate) fn material_id(&self, version: u32) -> String {
        let mut input = Vec::with_capacity(36);
        input.extend_from_slice(self.uuid.as_bytes());
        input.extend_from_slice(&version.to_be_bytes());
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &input,
        ))
    }

    /// DescribeKey's `KeyMetadata`, as AWS returns it.
    pub(crate) fn metadata(&self) -> Value {
        let m = &self.meta;
        let mut v = json!({
            "AWSAccountId": m.account,
            "KeyId": m.id,
            "Arn": m.arn,
            "CreationDate": epoch_seconds(m.created_ms),
            "Enabled": m.state == KeyState::Enabled,
            "Description": m.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": m.state.as_str(),
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": false,
            "CurrentKeyMaterialId": self.material_id(self.current().version),
        });
        if let Some(d) = m.deletion_ms {
            v["DeletionDate"] = epoch_seconds(d);
        }
        if let Some(w) = m.pending_window_days {
            v["PendingDeletionWindowInDays"] = json!(w);
        }
        v
    }

    pub(crate) fn tags_map(&self) -> BTreeMap<&str, &str> {
        self.meta
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// The key policy AWS attaches when CreateKey is given none, as GetKeyPolicy returns it.
pub(crate) fn default_policy(account: &str) -> String {
    crate::policy::default_key_policy(account)
}

/// Compiles a stored key policy with its saved principal ids (at load time).
pub(crate) fn compile_saved_policy(meta: &KeyMeta) -> Result<crate::policy::Policy, String> {
    let mut policy = crate::policy::Policy::parse(&meta.policy).map_err(|e| e.to_string())?;
    policy
        .resolve_principals(|arn| {
            meta.policy_principal_ids
                .iter()
                .find(|(a, _)| a == arn)
                .map(|(_, id)| id.clone())
        })
        .map_err(|e| format!("{e} ({})", meta.id))?;
    Ok(policy)
}

/// The AAD that binds a wrapped material blob to its key and version.
pub(crate) fn material_aad(key_id: &str, version: u32) -> Vec<u8> {
    format!("keyward-kms material v1 {key_id} {version}").into_bytes()
}

pub(crate) fn new_material(version: u32) -> Material {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut()).expect("random generator");
    Material { version, bytes }
}
