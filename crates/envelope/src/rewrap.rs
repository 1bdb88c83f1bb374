//! Re-wrapping: moving a message's data key from one KMS key to another, online, without
//! re-encrypting the data and without the plaintext data key leaving memory.
//!
//! What changes in a message (see [`crate::header`] for the layout):
//!
//! ```text
//! header body:  version | suite | message id | AAD | EDKs | content type | frame len | commitment
//!                                                    ^^^^ the `aws-kms` EDK of the old key is replaced:
//!                                                         provider info = new key ARN,
//!                                                         ciphertext = KMS ReEncrypt of the old one
//! header auth:  16-byte tag, recomputed (it covers the header body)
//! frames, footer: copied byte for byte
//! ```
//!
//! Why this is enough: the frames are sealed under a key derived from the data key and the
//! message id, neither of which changes; the commitment key too. Only the header tag covers
//! the EDK list, so it is recomputed — which needs the derived key, so the data key is
//! `Decrypt`ed once (kept in a zeroizing buffer, never written anywhere). The old header is
//! authenticated first (commitment and tag), so a re-wrap never blesses a tampered header.
//! Signed messages (suite `0x0578`) are refused: the footer signature covers the header and
//! its private key is not kept anywhere.
//!
//! The new EDK comes from KMS `ReEncrypt` (source = old key, destination = new key, the same
//! encryption context on both sides): KMS moves the data key between its keys, and the
//! trail shows one `ReEncrypt` per object. The cluster's role is given by the guide's key
//! policy only `DescribeKey`, `GenerateDataKey*`, `Decrypt` and `CreateGrant`, not
//! `ReEncrypt*`. Rather than asking the customer for another statement, [`Rewrapper`] tries
//! `ReEncrypt` once as is and, when KMS answers `AccessDeniedException`, uses the role's
//! `CreateGrant` right to give itself two short-lived grants — `ReEncryptFrom` on the old key
//! and `ReEncryptTo` on the new key, both constrained to the cluster's encryption context and
//! retirable by the role itself — passes their grant tokens (usable at once, before the grants
//! are eventually consistent) and retires both in [`Rewrapper::finish`]. The role's own
//! identity policy must allow `kms:ReEncrypt*`, `kms:CreateGrant` and `kms:RetireGrant`.
//!
//! Signatures:
//! - [`Rewrapper::new`], [`Rewrapper::with_grants`], [`Rewrapper::reencrypt`],
//!   [`Rewrapper::decrypt`], [`Rewrapper::finish`]: the KMS side, also used for volume
//!   headers by the storage crate;
//! - [`rewrap_message`]: one message, streamed from an async reader to an async writer.

use std::collections::HashMap;

use aws_lc_rs::aead;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::keyring::{invalid_answer, kms_error, to_map};
use crate::kms_failure::KmsErrorCode;
use crate::{context, keys::DataKey, suite, EncryptionContext, Error, Result};

/// The provider id of the KMS keyring's EDKs (its provider info is the key ARN).
const KMS_PROVIDER_ID: &str = "aws-kms";

/// The name of the temporary grants, as `ListGrants` shows them.
pub const REWRAP_GRANT_NAME: &str = "keyward-rewrap";

/// The KMS side of re-wrapping data keys from `old_key_arn` to `new_key_arn`, as one principal
/// (the cluster's role). Create one per key change, use it for every object and volume, then
/// call [`Rewrapper::finish`].
pub struct Rewrapper {
    kms: aws_sdk_kms::Client,
    old_key_arn: String,
    new_key_arn: String,
    grants: Option<GrantPlan>,
    created: tokio::sync::Mutex<Option<Vec<CreatedGrant>>>,
}

struct GrantPlan {
    grantee: String,
    context_subset: HashMap<String, String>,
}

struct CreatedGrant {
    key_arn: String,
    grant_id: String,
    token: String,
}

/// What happened to one message or volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapOutcome {
    /// The data key is now wrapped by the new key.
    Rewrapped,
    /// It already was (a re-wrap resumed after an interruption): nothing changed.
    AlreadyRewrapped,
}

impl Rewrapper {
    /// Re-wraps with `kms`'s credentials, which must be allowed `Decrypt` on the old key and
    /// `ReEncryptFrom` / `ReEncryptTo` (see [`Rewrapper::with_grants`] when they are not).
    pub fn new(
        kms: aws_sdk_kms::Client,
        old_key_arn: impl Into<String>,
        new_key_arn: impl Into<String>,
    ) -> Rewrapper {
        Rewrapper {
            kms,
            old_key_arn: old_key_arn.into(),
            new_key_arn: new_key_arn.into(),
            grants: None,
            created: tokio::sync::Mutex::new(None),
        }
    }

    /// When the key policies do not allow `ReEncrypt`, give `grantee` (the principal of `kms`'s
    /// credentials: the cluster's role ARN) the two grants it needs, constrained to encryption
    /// contexts that contain `context_subset` (e.g. `{"keyward:cluster": id}`), retirable by
    /// `grantee`. They are created on the first refusal only.
    pub fn with_grants(
        mut self,
        grantee: impl Into<String>,
        context_subset: &EncryptionContext,
    ) -> Rewrapper {
        self.grants = Some(GrantPlan {
            grantee: grantee.into(),
            context_subset: context_subset
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        self
    }

    pub fn old_key_arn(&self) -> &str {
        &self.old_key_arn
    }

    pub fn new_key_arn(&self) -> &str {
        &self.new_key_arn
    }

    /// `Decrypt` of a data key wrapped by the old key. The plaintext is zeroized on drop.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let out = self
            .kms
            .decrypt()
            .key_id(&self.old_key_arn)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(to_map(context))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", &self.old_key_arn, e))?;
        let plaintext = out
            .plaintext
            .ok_or_else(|| invalid_answer("Decrypt", &self.old_key_arn, "Plaintext"))?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }

    /// `ReEncrypt` of a blob wrapped by the old key into one wrapped by the new key, under the
    /// same encryption context. Returns the new key's ARN (as KMS names it) and the new blob.
    pub async fn reencrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>)> {
        let tokens = self.created.lock().await.as_ref().map(|g| tokens(g));
        match self.reencrypt_with(blob, context, tokens).await {
            Err(Error::Kms { failure, .. })
                if failure.is(&KmsErrorCode::AccessDeniedException) && self.grants.is_some() =>
            {
                let tokens = self.ensure_grants().await?;
                self.reencrypt_with(blob, context, Some(tokens)).await
            }
            other => other,
        }
    }

    async fn reencrypt_with(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        grant_tokens: Option<Vec<String>>,
    ) -> Result<(String, Vec<u8>)> {
        let out = self
            .kms
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .source_key_id(&self.old_key_arn)
            .set_source_encryption_context(to_map(context))
            .destination_key_id(&self.new_key_arn)
            .set_destination_encryption_context(to_map(context))
            .set_grant_tokens(grant_tokens)
            .send()
            .await
            .map_err(|e| kms_error("ReEncrypt", &self.old_key_arn, e))?;
        let missing = |field: &str| invalid_answer("ReEncrypt", &self.old_key_arn, field);
        let key_arn = out.key_id.ok_or_else(|| missing("KeyId"))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| missing("CiphertextBlob"))?
            .into_inner();
        Ok((key_arn, blob))
    }

    /// Creates the two grants once; returns their tokens.
    async fn ensure_grants(&self) -> Result<Vec<String>> {
        let mut created = self.created.lock().await;
        if let Some(grants) = created.as_ref() {
            return Ok(tokens(grants));
        }
        let plan = self.grants.as_ref().expect("checked by the caller");
        let mut grants = Vec::with_capacity(2);
        for (key_arn, operation) in [
            (&self.old_key_arn, GrantOperation::ReEncryptFrom),
            (&self.new_key_arn, GrantOperation::ReEncryptTo),
        ] {
            let constraints = (!plan.context_subset.is_empty()).then(|| {
                GrantConstraints::builder()
                    .set_encryption_context_subset(Some(plan.context_subset.clone()))
                    .build()
            });
            let out = self
                .kms
                .create_grant()
                .key_id(key_arn)
                .grantee_principal(&plan.grantee)
                .retiring_principal(&plan.grantee)
                .operations(operation)
                .set_constraints(constraints)
                .name(REWRAP_GRANT_NAME)
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    // Do not leave the first grant behind when the second fails.
                    retire(&self.kms, &grants).await;
                    return Err(kms_error("CreateGrant", key_arn, e));
                }
            };
            match (out.grant_id, out.grant_token) {
                (Some(grant_id), Some(token)) => grants.push(CreatedGrant {
                    key_arn: key_arn.clone(),
                    grant_id,
                    token,
                }),
                _ => {
                    retire(&self.kms, &grants).await;
                    return Err(invalid_answer(
                        "CreateGrant",
                        key_arn,
                        "GrantId or GrantToken",
                    ));
                }
            }
        }
        let tokens = tokens(&grants);
        *created = Some(grants);
        Ok(tokens)
    }

    /// Whether grants were created (and so will be retired by [`Rewrapper::finish`]).
    pub async fn used_grants(&self) -> bool {
        self.created.lock().await.is_some()
    }

    /// Retires the grants this re-wrap created, if any. Call it when the re-wrap is over,
    /// whether it succeeded or not.
    pub async fn finish(self) -> Result<()> {
        let created = self.created.into_inner();
        let Some(grants) = created else {
            return Ok(());
        };
        for grant in &grants {
            self.kms
                .retire_grant()
                .key_id(&grant.key_arn)
                .grant_id(&grant.grant_id)
                .send()
                .await
                .map_err(|e| kms_error("RetireGrant", &grant.key_arn, e))?;
        }
        Ok(())
    }
}

fn tokens(grants: &[CreatedGrant]) -> Vec<String> {
    grants.iter().map(|g| g.token.clone()).collect()
}

async fn retire(kms: &aws_sdk_kms::Client, grants: &[CreatedGrant]) {
    for grant in grants {
        if let Err(error) = kms
            .retire_grant()
            .key_id(&grant.key_arn)
            .grant_id(&grant.grant_id)
            .send()
            .await
        {
            tracing::warn!(grant = %grant.grant_id, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "re-wrap grant not retired");
        }
    }
}

/// Re-wraps one message read from `input` into `output`: the header with the old key's EDK
/// replaced by the new key's and its tag recomputed, then the rest of the message copied
/// unchanged. Memory is the header plus a copy buffer, whatever the message's size.
///
/// `required_context` is the part of the encryption context the writer left out of the header
/// (the required-encryption-context CMM); empty for messages that store their whole context,
/// as keyward's object stores do.
///
/// A message already under the new key is copied unchanged ([`RewrapOutcome::AlreadyRewrapped`]).
/// A message with no EDK of the old key is refused ([`Error::Config`]); an unauthentic header is
/// [`Error::Decrypt`]. On any error the output holds a partial message: write it somewhere
/// that is published only on success.
pub async fn rewrap_message<R, W>(
    rewrapper: &Rewrapper,
    input: &mut R,
    output: &mut W,
    required_context: &EncryptionContext,
) -> Result<RewrapOutcome>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let (mut header, body, tag) = crate::stream::read_header_async(input, MAX_EDKS).await?;
    let outcome = if header.suite.is_signed() {
        return Err(Error::Config(
            "a signed message (suite 0x0578) cannot be re-wrapped: its signature covers the \
             header and the signing key is not kept"
                .into(),
        ));
    } else if let Some(i) = header.encrypted_data_keys.iter().position(|edk| {
        edk.provider_id == KMS_PROVIDER_ID && edk.provider_info == rewrapper.old_key_arn.as_bytes()
    }) {
        // The whole context KMS bound the data key to: stored ∪ required.
        let mut full = header.context.clone();
        full.extend(required_context.clone());
        let required = context::serialize(required_context)?;
        // Authenticate the header as it is before writing anything new.
        if header.serialize_body()? != body {
            return Err(Error::Decrypt);
        }
        let plaintext = rewrapper
            .decrypt(&header.encrypted_data_keys[i].ciphertext, &full)
            .await?;
        let data_key = DataKey::from_slice(&plaintext).ok_or(Error::Decrypt)?;
        drop(plaintext);
        let derived = suite::derive(header.suite, &data_key, &header.message_id)?;
        drop(data_key);
        if !bool::from(derived.commitment[..].ct_eq(&header.commitment[..])) {
            return Err(Error::Decrypt);
        }
        let old_tag = header_tag(&derived.key, &body, &required)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(old_tag.as_ref(), &tag)
            .map_err(|_| Error::Decrypt)?;

        let (new_arn, new_blob) = rewrapper
            .reencrypt(&header.encrypted_data_keys[i].ciphertext, &full)
            .await?;
        let edk = &mut header.encrypted_data_keys[i];
        edk.provider_info = new_arn.into_bytes();
        edk.ciphertext = new_blob;
        let new_body = header.serialize_body()?;
        let new_tag = header_tag(&derived.key, &new_body, &required)?;
        output.write_all(&new_body).await?;
        output.write_all(new_tag.as_ref()).await?;
        RewrapOutcome::Rewrapped
    } else if header.encrypted_data_keys.iter().any(|edk| {
        edk.provider_id == KMS_PROVIDER_ID && edk.provider_info == rewrapper.new_key_arn.as_bytes()
    }) {
        output.write_all(&body).await?;
        output.write_all(&tag).await?;
        RewrapOutcome::AlreadyRewrapped
    } else {
        return Err(Error::Config(format!(
            "the message has no data key wrapped by {}",
            rewrapper.old_key_arn
        )));
    };
    tokio::io::copy(input, output).await?;
    output.flush().await?;
    Ok(outcome)
}

/// The most EDKs a message to re-wrap may carry (the client's default limit).
const MAX_EDKS: usize = 16;

/// Header auth tag (message-header.md, "Header Authentication"): AES-256-GCM under the derived
/// key, IV = 12 zero bytes, empty plaintext, AAD = header body ‖ serialized required context.
fn header_tag(key: &aead::LessSafeKey, body: &[u8], required: &[u8]) -> Result<aead::Tag> {
    let mut aad = Vec::with_capacity(body.len() + required.len());
    aad.extend_from_slice(body);
    aad.extend_from_slice(required);
    key.seal_in_place_separate_tag(
        aead::Nonce::assume_unique_for_key([0u8; 12]),
        aead::Aad::from(&aad[..]),
        &mut [],
    )
    .map_err(|_| Error::Crypto)
}
