//! The KMS side of a volume's life, modelled on how EBS uses KMS.
//!
//! - **create**: `GenerateDataKeyWithoutPlaintext` (64 bytes) under the volume's
//!   encryption context `{"keyward:volume-id": id, …caller's pairs}`; the wrapped
//!   key goes into the header. The header MAC needs the key once, so the creator
//!   `Decrypt`s it, seals the header and wipes it at once: no plaintext key is ever
//!   stored.
//! - **attach**: the operator `CreateGrant`s the attaching node's principal the
//!   `Decrypt` operation, constrained by `EncryptionContextSubset
//!   {"keyward:volume-id": id}` (so the grant opens this volume's key and no other);
//!   the node then `Decrypt`s under the grant token. The key lives only in memory.
//! - **detach**: the key is wiped, then the node retires the grant (`RetireGrant`).
//!
//! The calls go through the small [`KeyService`] trait so this module can be unit
//! tested; [`AwsKms`] is the one real implementation, over `aws-sdk-kms`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};
use keyward_envelope::{KmsErrorCode, KmsFailure};

use super::header::{valid_volume_id, VolumeHeader};
use super::xts::{DataKey, XTS_KEY_LEN};
use super::{Volume, VolumeFile};
use crate::error::{Error, Result};

pub use crate::vocab::VOLUME_ID_CONTEXT_KEY;

/// A data key as `GenerateDataKeyWithoutPlaintext` returns it.
pub struct WrappedKey {
    /// The ARN of the KMS key that wrapped it (KMS answers with the ARN even when
    /// called with an alias or key id).
    pub key_arn: String,
    pub blob: Vec<u8>,
}

/// A grant as `CreateGrant` returns it. The token is usable at once (before the
/// grant is eventually consistent), so it is passed to `Decrypt`.
pub struct Grant {
    pub grant_id: String,
    pub grant_token: String,
}

/// What `CreateGrant` is asked for.
pub struct GrantRequest<'a> {
    pub key_arn: &'a str,
    pub grantee_principal: &'a str,
    pub retiring_principal: &'a str,
    pub encryption_context_subset: &'a BTreeMap<String, String>,
    pub name: &'a str,
}

/// The four KMS calls a volume needs.
pub trait KeyService: Send + Sync {
    fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<WrappedKey>> + Send;

    fn decrypt(
        &self,
        key_arn: &str,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        grant_token: Option<&str>,
    ) -> impl Future<Output = Result<DataKey>> + Send;

    fn create_grant(&self, request: GrantRequest<'_>)
        -> impl Future<Output = Result<Grant>> + Send;

    fn retire_grant(
        &self,
        key_arn: &str,
        grant_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// [`KeyService`] over the official AWS SDK: real AWS KMS or the embedded server.
#[derive(Clone)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
}

impl AwsKms {
    pub fn new(client: aws_sdk_kms::Client) -> AwsKms {
        AwsKms { client }
    }
}

fn sdk_error<E, R>(operation: &'static str, error: aws_sdk_kms::error::SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::Kms {
        operation,
        failure: KmsFailure::from_sdk(&error),
    }
}

/// KMS answered `operation` without a valid `field`.
fn invalid_answer(operation: &'static str, field: &str) -> Error {
    Error::Kms {
        operation,
        failure: KmsFailure::InvalidAnswer {
            detail: field.to_owned(),
        },
    }
}

fn to_hash_map(context: &BTreeMap<String, String>) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl KeyService for AwsKms {
    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<WrappedKey> {
        let out = self
            .client
            .generate_data_key_without_plaintext()
            .key_id(key_id)
            .number_of_bytes(XTS_KEY_LEN as i32)
            .set_encryption_context(Some(to_hash_map(context)))
            .send()
            .await
            .map_err(|e| sdk_error("GenerateDataKeyWithoutPlaintext", e))?;
        let missing = |field: &str| invalid_answer("GenerateDataKeyWithoutPlaintext", field);
        Ok(WrappedKey {
            key_arn: out.key_id.ok_or_else(|| missing("KeyId"))?,
            blob: out
                .ciphertext_blob
                .ok_or_else(|| missing("CiphertextBlob"))?
                .into_inner(),
        })
    }

    async fn decrypt(
        &self,
        key_arn: &str,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        grant_token: Option<&str>,
    ) -> Result<DataKey> {
        let mut out = self
            .client
            .decrypt()
            .key_id(key_arn)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(to_hash_map(context)))
            .set_grant_tokens(grant_token.map(|t| vec![t.to_owned()]))
            .send()
            .await
            .map_err(|e| sdk_error("Decrypt", e))?;
        let mut plaintext = out
            .plaintext
            .take()
            .ok_or_else(|| invalid_answer("Decrypt", "Plaintext"))?
            .into_inner();
        // from_slice wipes `plaintext`, whatever it decides.
        DataKey::from_slice(&mut plaintext)
    }

    async fn create_grant(&self, request: GrantRequest<'_>) -> Result<Grant> {
        let constraints = GrantConstraints::builder()
            .set_encryption_context_subset(Some(to_hash_map(request.encryption_context_subset)))
            .build();
        let out = self
            .client
            .create_grant()
            .key_id(request.key_arn)
            .grantee_principal(request.grantee_principal)
            .retiring_principal(request.retiring_principal)
            .operations(GrantOperation::Decrypt)
            .constraints(constraints)
            .name(request.name)
            .send()
            .await
            .map_err(|e| sdk_error("CreateGrant", e))?;
        let missing = |field: &str| invalid_answer("CreateGrant", field);
        Ok(Grant {
            grant_id: out.grant_id.ok_or_else(|| missing("GrantId"))?,
            grant_token: out.grant_token.ok_or_else(|| missing("GrantToken"))?,
        })
    }

    async fn retire_grant(&self, key_arn: &str, grant_id: &str) -> Result<()> {
        self.client
            .retire_grant()
            .key_id(key_arn)
            .grant_id(grant_id)
            .send()
            .await
            .map_err(|e| sdk_error("RetireGrant", e))?;
        Ok(())
    }
}

/// What a new volume is made of.
pub struct NewVolume {
    /// `None` picks `vol-` and 17 random hex digits, as EBS does.
    pub volume_id: Option<String>,
    /// Bytes, a positive multiple of 4096.
    pub size: u64,
    /// Key id, key ARN, alias name or alias ARN of the KMS key.
    pub key_id: String,
    /// Extra encryption context (cluster, storage class, …). Must not set
    /// `keyward:volume-id`, which is the volume's own.
    pub encryption_context: BTreeMap<String, String>,
}

/// A new volume id like EBS's: `vol-` and 17 hex digits.
pub fn new_volume_id() -> Result<String> {
    let mut bytes = [0u8; 9];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::InvalidParameter("random generator failed".into()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("vol-{}", &hex[..17]))
}

/// Creates the volume file at `path` under a new data key from KMS.
pub async fn create_volume<K: KeyService>(
    kms: &K,
    path: &Path,
    spec: NewVolume,
) -> Result<VolumeHeader> {
    let volume_id = match spec.volume_id {
        Some(id) => id,
        None => new_volume_id()?,
    };
    if !valid_volume_id(&volume_id) {
        return Err(Error::InvalidParameter(format!(
            "volume id {volume_id:?} must be 1-128 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    if spec.encryption_context.contains_key(VOLUME_ID_CONTEXT_KEY) {
        return Err(Error::InvalidParameter(format!(
            "the encryption context key {VOLUME_ID_CONTEXT_KEY} is set by keyward to the volume id"
        )));
    }
    if spec.size == 0 || !spec.size.is_multiple_of(4096) {
        return Err(Error::InvalidParameter(format!(
            "volume size {} must be a positive multiple of 4096",
            spec.size
        )));
    }
    if path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let mut context = spec.encryption_context;
    context.insert(VOLUME_ID_CONTEXT_KEY.to_owned(), volume_id.clone());
    let wrapped = kms
        .generate_data_key_without_plaintext(&spec.key_id, &context)
        .await?;
    let key = kms
        .decrypt(&wrapped.key_arn, &wrapped.blob, &context, None)
        .await?;
    let header = VolumeHeader {
        volume_id,
        size: spec.size,
        key_arn: wrapped.key_arn,
        wrapped_key: wrapped.blob,
        encryption_context: context,
    };
    let path: PathBuf = path.to_owned();
    let sealed = header.clone();
    blocking(move || VolumeFile::create(&path, sealed, &key).map(drop)).await?;
    Ok(header)
}

/// An attached volume and the grant that opened its key.
pub struct Attachment {
    volume: Arc<Volume>,
    key_arn: String,
    grant: Grant,
    header: VolumeHeader,
    node_principal: String,
}

impl Attachment {
    pub fn volume(&self) -> &Arc<Volume> {
        &self.volume
    }

    pub fn header(&self) -> &VolumeHeader {
        &self.header
    }

    pub fn grant_id(&self) -> &str {
        &self.grant.grant_id
    }

    /// Asks KMS again whether this node may still open the key (a `Decrypt` under
    /// the grant, result wiped). Any refusal — key disabled or pending deletion,
    /// grant revoked, access denied, KMS unreachable — detaches the volume at once:
    /// no KMS answer, no plaintext.
    pub async fn recheck<K: KeyService>(&self, node: &K) -> Result<()> {
        let result = node
            .decrypt(
                &self.key_arn,
                &self.header.wrapped_key,
                &self.header.encryption_context,
                Some(&self.grant.grant_token),
            )
            .await;
        match result {
            Ok(key) => {
                drop(key);
                Ok(())
            }
            Err(error) => {
                self.volume.detach();
                tracing::warn!(volume = %self.header.volume_id, %error, "key no longer available; volume detached");
                Err(error)
            }
        }
    }

    /// After a detach by [`Attachment::recheck`], opens the key again if KMS now
    /// allows it: `Decrypt` under the attachment's grant or, when that grant is
    /// gone (revoked), under a fresh one from `operator` (the old one is then
    /// retired). The header MAC is checked again before any I/O resumes.
    pub async fn reopen<K: KeyService>(&mut self, operator: &K, node: &K) -> Result<()> {
        if self.volume.is_attached() {
            return Ok(());
        }
        let header = &self.header;
        let first = node
            .decrypt(
                &self.key_arn,
                &header.wrapped_key,
                &header.encryption_context,
                Some(&self.grant.grant_token),
            )
            .await;
        let key = match first {
            Ok(key) => key,
            Err(Error::Kms { failure, .. })
                if failure.is(&KmsErrorCode::AccessDeniedException)
                    || failure.is(&KmsErrorCode::InvalidGrantTokenException) =>
            {
                let grant = grant_for(operator, header, &self.node_principal).await?;
                let decrypted = node
                    .decrypt(
                        &self.key_arn,
                        &header.wrapped_key,
                        &header.encryption_context,
                        Some(&grant.grant_token),
                    )
                    .await;
                match decrypted {
                    Ok(key) => {
                        let old = std::mem::replace(&mut self.grant, grant);
                        // A revoked grant is already gone; anything else is only logged.
                        if let Err(error) = node.retire_grant(&self.key_arn, &old.grant_id).await {
                            tracing::debug!(%error, "old attach grant not retired");
                        }
                        key
                    }
                    Err(error) => {
                        let _ = node.retire_grant(&self.key_arn, &grant.grant_id).await;
                        return Err(error);
                    }
                }
            }
            Err(error) => return Err(error),
        };
        let volume = self.volume.clone();
        blocking(move || volume.reattach(key)).await?;
        tracing::info!(volume = %self.header.volume_id, "key available again; volume re-attached");
        Ok(())
    }

    /// Wipes the key (every export of the volume fails from now on), then retires the grant.
    pub async fn detach<K: KeyService>(self, node: &K) -> Result<()> {
        self.volume.detach();
        node.retire_grant(&self.key_arn, &self.grant.grant_id).await
    }
}

/// Attaches the volume at `path` to the node `node_principal`, as EBS does:
/// `operator` grants the node `Decrypt` on this volume's context; `node` decrypts
/// the key under that grant. If anything after the grant fails, the grant is retired.
pub async fn attach_volume<K: KeyService>(
    operator: &K,
    node: &K,
    path: &Path,
    node_principal: &str,
) -> Result<Attachment> {
    let owned = path.to_owned();
    let file = blocking(move || VolumeFile::open(&owned)).await?;
    let header = file.header().clone();
    let volume_id = header.volume_id.clone();
    if header.encryption_context.get(VOLUME_ID_CONTEXT_KEY) != Some(&volume_id) {
        return Err(Error::CorruptHeader {
            path: path.to_owned(),
            reason: format!(
                "the encryption context does not name the volume under {VOLUME_ID_CONTEXT_KEY}"
            ),
        });
    }
    let grant = grant_for(operator, &header, node_principal).await?;
    let opened = async {
        let key = node
            .decrypt(
                &header.key_arn,
                &header.wrapped_key,
                &header.encryption_context,
                Some(&grant.grant_token),
            )
            .await?;
        blocking(move || file.unlock(key)).await
    }
    .await;
    match opened {
        Ok(volume) => Ok(Attachment {
            volume: Arc::new(volume),
            key_arn: header.key_arn.clone(),
            grant,
            header,
            node_principal: node_principal.to_owned(),
        }),
        Err(error) => {
            if let Err(retire) = node.retire_grant(&header.key_arn, &grant.grant_id).await {
                tracing::warn!(volume = %volume_id, error = %retire, "could not retire the grant of a failed attach");
            }
            Err(error)
        }
    }
}

/// The attach grant: `Decrypt` for the node, only under this volume's id.
async fn grant_for<K: KeyService>(
    operator: &K,
    header: &VolumeHeader,
    node_principal: &str,
) -> Result<Grant> {
    let volume_id = &header.volume_id;
    let subset: BTreeMap<String, String> =
        [(VOLUME_ID_CONTEXT_KEY.to_owned(), volume_id.clone())].into();
    operator
        .create_grant(GrantRequest {
            key_arn: &header.key_arn,
            grantee_principal: node_principal,
            retiring_principal: node_principal,
            encryption_context_subset: &subset,
            name: &format!("keyward-attach-{volume_id}"),
        })
        .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("blocking task", std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    //! A stand-in KMS inside this module's unit tests only: it wraps with AES-GCM
    //! under a fixed key, binds the context as AAD and records every call, so the
    //! order and the arguments of the calls can be checked. Integration tests use
    //! the real server.
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use std::sync::Mutex;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/test";

    #[derive(Default)]
    struct RecordingKms {
        calls: Mutex<Vec<String>>,
        revoked: Mutex<bool>,
    }

    impl RecordingKms {
        fn seal(&self) -> LessSafeKey {
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).unwrap())
        }
        fn aad(context: &BTreeMap<String, String>) -> Vec<u8> {
            format!("{context:?}").into_bytes()
        }
        fn log(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl KeyService for RecordingKms {
        async fn generate_data_key_without_plaintext(
            &self,
            key_id: &str,
            context: &BTreeMap<String, String>,
        ) -> Result<WrappedKey> {
            self.log(format!(
                "GenerateDataKeyWithoutPlaintext {key_id} {context:?}"
            ));
            let mut buf = DataKey::generate()?.expose_secret().to_vec();
            self.seal()
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::from(Self::aad(context)),
                    &mut buf,
                )
                .unwrap();
            Ok(WrappedKey {
                key_arn: ARN.into(),
                blob: buf,
            })
        }
        async fn decrypt(
            &self,
            key_arn: &str,
            blob: &[u8],
            context: &BTreeMap<String, String>,
            grant_token: Option<&str>,
        ) -> Result<DataKey> {
            self.log(format!("Decrypt {key_arn} token={grant_token:?}"));
            if *self.revoked.lock().unwrap() {
                return Err(Error::Kms {
                    operation: "Decrypt",
                    failure: KmsFailure::refused(KmsErrorCode::DisabledException, "x"),
                });
            }
            let mut buf = blob.to_vec();
            let plain = self
                .seal()
                .open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::from(Self::aad(context)),
                    &mut buf,
                )
                .map_err(|_| Error::Kms {
                    operation: "Decrypt",
                    failure: KmsFailure::refused(KmsErrorCode::InvalidCiphertextException, ""),
                })?;
            DataKey::from_slice(plain)
        }
        async fn create_grant(&self, r: GrantRequest<'_>) -> Result<Grant> {
            self.log(format!(
                "CreateGrant {} grantee={} retiring={} subset={:?}",
                r.key_arn, r.grantee_principal, r.retiring_principal, r.encryption_context_subset
            ));
            Ok(Grant {
                grant_id: "g-1".into(),
                grant_token: "tok-1".into(),
            })
        }
        async fn retire_grant(&self, key_arn: &str, grant_id: &str) -> Result<()> {
            self.log(format!("RetireGrant {key_arn} {grant_id}"));
            Ok(())
        }
    }

    #[tokio::test]
    async fn create_attach_recheck_detach_make_the_ebs_calls_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.img");
        let kms = RecordingKms::default();
        let header = create_volume(
            &kms,
            &path,
            NewVolume {
                volume_id: Some("vol-1".into()),
                size: 1 << 20,
                key_id: "alias/cluster".into(),
                encryption_context: [("keyward:cluster".to_string(), "c-7".to_string())].into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(header.key_arn, ARN);
        assert_eq!(
            header
                .encryption_context
                .get(VOLUME_ID_CONTEXT_KEY)
                .unwrap(),
            "vol-1"
        );
        let node = "arn:aws:iam::111122223333:role/node-a";
        let attachment = attach_volume(&kms, &kms, &path, node).await.unwrap();
        attachment.volume().write_at(10, b"hello", false).unwrap();
        attachment.recheck(&kms).await.unwrap();
        let volume = attachment.volume().clone();
        attachment.detach(&kms).await.unwrap();
        assert!(!volume.is_attached());
        let calls = kms.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                "GenerateDataKeyWithoutPlaintext alias/cluster {\"keyward:cluster\": \"c-7\", \"keyward:volume-id\": \"vol-1\"}".to_string(),
                format!("Decrypt {ARN} token=None"),
                format!("CreateGrant {ARN} grantee={node} retiring={node} subset={{\"keyward:volume-id\": \"vol-1\"}}"),
                format!("Decrypt {ARN} token=Some(\"tok-1\")"),
                format!("Decrypt {ARN} token=Some(\"tok-1\")"),
                format!("RetireGrant {ARN} g-1"),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_recheck_detaches_and_a_failed_attach_retires_its_grant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.img");
        let kms = RecordingKms::default();
        let spec = || NewVolume {
            volume_id: None,
            size: 1 << 20,
            key_id: ARN.into(),
            encryption_context: BTreeMap::new(),
        };
        let header = create_volume(&kms, &path, spec()).await.unwrap();
        assert!(header.volume_id.starts_with("vol-") && header.volume_id.len() == 21);
        assert!(matches!(
            create_volume(&kms, &path, spec()).await,
            Err(Error::AlreadyExists { .. })
        ));
        let attachment = attach_volume(&kms, &kms, &path, "node").await.unwrap();
        *kms.revoked.lock().unwrap() = true;
        assert!(attachment.recheck(&kms).await.is_err());
        assert!(!attachment.volume().is_attached());
        kms.calls.lock().unwrap().clear();
        assert!(attach_volume(&kms, &kms, &path, "node").await.is_err());
        let calls = kms.calls.lock().unwrap().clone();
        assert_eq!(calls.last().unwrap(), &format!("RetireGrant {ARN} g-1"));
    }

    #[tokio::test]
    async fn the_volume_id_context_key_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let kms = RecordingKms::default();
        let result = create_volume(
            &kms,
            &dir.path().join("v.img"),
            NewVolume {
                volume_id: None,
                size: 4096,
                key_id: ARN.into(),
                encryption_context: [(VOLUME_ID_CONTEXT_KEY.to_string(), "other".to_string())]
                    .into(),
            },
        )
        .await;
        assert!(matches!(result, Err(Error::InvalidParameter(_))));
        assert!(kms.calls.lock().unwrap().is_empty(), "nothing asked of KMS");
    }
}
