//! The webhook secrets' KMS calls as the operator: finding or making the platform's
//! notification key, wrapping a destination's secret at creation and unwrapping it for the
//! delivery worker. The key's alias, policy and encryption context (and why they are so) are in
//! `notify/secrets.rs`.

use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use keyward_envelope::{KmsErrorCode, KmsFailure};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::notify::secrets::{context, policy, NotificationKey, NOTIFICATION_KEY_ALIAS};
use crate::notify::signature::WebhookSecret;
use crate::shared::Shared;

fn kms_error<E>(what: &str, error: &aws_sdk_kms::error::SdkError<E>) -> Error
where
    E: std::error::Error + 'static,
{
    Error::Internal(format!(
        "KMS {what} (notification key): {}",
        aws_sdk_kms::error::DisplayErrorContext(error)
    ))
}

impl NotificationKey {
    /// The key's ARN: the alias's target, or a new key given the alias. Two replicas racing both
    /// make a key; the one whose `CreateAlias` loses schedules its own for deletion and uses the
    /// winner's.
    async fn arn(&self, shared: &Shared) -> Result<String> {
        self.arn
            .get_or_try_init(|| find_or_make(shared))
            .await
            .cloned()
    }

    /// `secret` wrapped for the destination, base64.
    pub(crate) async fn wrap(
        &self,
        shared: &Shared,
        org_id: &str,
        destination_id: &str,
        secret: &WebhookSecret,
    ) -> Result<String> {
        let arn = self.arn(shared).await?;
        let out = shared
            .operator_kms(None)
            .encrypt()
            .key_id(arn)
            .plaintext(Blob::new(secret.expose().as_bytes()))
            .set_encryption_context(Some(context(org_id, destination_id)))
            .send()
            .await
            .map_err(|e| kms_error("Encrypt", &e))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| Error::internal("KMS Encrypt answered without a ciphertext"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
    }

    /// The destination's secret from its wrapped form.
    pub(crate) async fn unwrap(
        &self,
        shared: &Shared,
        org_id: &str,
        destination_id: &str,
        wrapped: &str,
    ) -> Result<WebhookSecret> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| Error::internal("a stored webhook secret is not base64"))?;
        let arn = self.arn(shared).await?;
        let out = shared
            .operator_kms(None)
            .decrypt()
            .key_id(arn)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(context(org_id, destination_id)))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", &e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| Error::internal("KMS Decrypt answered without a plaintext"))?,
        );
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| Error::internal("a webhook secret is not text"))?;
        Ok(WebhookSecret::from_string(text.to_owned()))
    }
}

/// The alias's key, or a new one given the alias.
async fn find_or_make(shared: &Shared) -> Result<String> {
    let kms = shared.operator_kms(None);
    if let Some(arn) = describe(&kms).await? {
        return Ok(arn);
    }
    let operator = shared.operator_arn().await?;
    let made = kms
        .create_key()
        .description("keyward: wraps the signing secrets of webhook destinations")
        .policy(policy(&operator))
        .send()
        .await
        .map_err(|e| kms_error("CreateKey", &e))?;
    let arn = made
        .key_metadata()
        .and_then(|m| m.arn())
        .map(str::to_owned)
        .ok_or_else(|| Error::internal("KMS CreateKey answered without a key ARN"))?;
    // Rotation is the KMS's: old material stays able to decrypt.
    let _ = kms.enable_key_rotation().key_id(&arn).send().await;
    match kms
        .create_alias()
        .alias_name(NOTIFICATION_KEY_ALIAS)
        .target_key_id(&arn)
        .send()
        .await
    {
        Ok(_) => Ok(arn),
        Err(error) if KmsFailure::from_sdk(&error).is(&KmsErrorCode::AlreadyExistsException) => {
            let _ = kms
                .schedule_key_deletion()
                .key_id(&arn)
                .pending_window_in_days(7)
                .send()
                .await;
            describe(&kms)
                .await?
                .ok_or_else(|| Error::internal("the notification key's alias vanished"))
        }
        Err(error) => Err(kms_error("CreateAlias", &error)),
    }
}

/// The alias's key, if the alias exists.
async fn describe(kms: &aws_sdk_kms::Client) -> Result<Option<String>> {
    match kms
        .describe_key()
        .key_id(NOTIFICATION_KEY_ALIAS)
        .send()
        .await
    {
        Ok(out) => Ok(out.key_metadata().and_then(|m| m.arn()).map(str::to_owned)),
        Err(error) if KmsFailure::from_sdk(&error).is(&KmsErrorCode::NotFoundException) => Ok(None),
        Err(error) => Err(kms_error("DescribeKey", &error)),
    }
}
