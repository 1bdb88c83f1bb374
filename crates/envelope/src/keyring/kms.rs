//! The AWS KMS keyring (`framework/aws-kms/aws-kms-keyring.md`) over the
//! official `aws-sdk-kms`: it works unchanged against the embedded KMS and AWS.

use std::collections::HashMap;

use aws_sdk_kms::{error::ProvideErrorMetadata, primitives::Blob};
use zeroize::Zeroize;

use super::Keyring;
use crate::kms_failure::{KmsErrorCode, KmsFailure};
use crate::{keys::DataKey, EncryptedDataKey, EncryptionContext, Error, Result, Suite};

/// Provider id of data keys wrapped by AWS KMS.
pub const PROVIDER_ID: &str = "aws-kms";

/// A keyring over one or more KMS keys, given by key ARN. The first key
/// generates data keys; decryption tries only the configured ARNs, and passes
/// the ARN as `KeyId` so a message cannot redirect us to another key.
pub struct KmsKeyring {
    client: aws_sdk_kms::Client,
    key_arns: Vec<String>,
}

impl KmsKeyring {
    /// A keyring that generates under `key_arn` and decrypts only with it.
    pub fn new(client: aws_sdk_kms::Client, key_arn: impl Into<String>) -> KmsKeyring {
        KmsKeyring {
            client,
            key_arns: vec![key_arn.into()],
        }
    }

    /// Adds a key ARN that decryption may also use (for example the previous
    /// key of a cluster whose key was changed).
    pub fn with_decrypt_key(mut self, key_arn: impl Into<String>) -> KmsKeyring {
        self.key_arns.push(key_arn.into());
        self
    }
}

/// An SDK error as this crate's error, typed by [`KmsFailure::from_sdk`]. The keyring and the
/// re-wrap report KMS failures the same way.
pub(crate) fn kms_error<E>(
    operation: &'static str,
    key_id: &str,
    error: aws_sdk_kms::error::SdkError<E>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    Error::Kms {
        operation,
        key_id: key_id.to_owned(),
        failure: KmsFailure::from_sdk(&error),
    }
}

/// KMS answered success without a valid `what`.
pub(crate) fn invalid_answer(operation: &'static str, key_id: &str, what: &str) -> Error {
    Error::Kms {
        operation,
        key_id: key_id.to_owned(),
        failure: KmsFailure::InvalidAnswer {
            detail: what.to_owned(),
        },
    }
}

/// The context as the SDK takes it: none when empty.
pub(crate) fn to_map(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    if context.is_empty() {
        None
    } else {
        Some(
            context
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

impl Keyring for KmsKeyring {
    fn key_ids(&self) -> Vec<String> {
        self.key_arns.clone()
    }

    async fn generate(
        &self,
        _suite: Suite,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>)> {
        let generator = &self.key_arns[0];
        let out = self
            .client
            .generate_data_key()
            .key_id(generator)
            .number_of_bytes(32)
            .set_encryption_context(to_map(context))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", generator, e))?;
        let bad = |what: &str| invalid_answer("GenerateDataKey", generator, what);
        let mut plaintext = out
            .plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| bad("Plaintext"))?;
        let data_key = DataKey::from_slice(&plaintext);
        plaintext.zeroize();
        let data_key = data_key.ok_or_else(|| bad("32-byte Plaintext"))?;
        let key_arn = out.key_id.ok_or_else(|| bad("KeyId"))?;
        let ciphertext = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| bad("CiphertextBlob"))?;
        let edk = EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: key_arn.into_bytes(),
            ciphertext,
        };
        Ok((data_key, vec![edk]))
    }

    async fn unwrap(
        &self,
        _suite: Suite,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<Option<DataKey>> {
        let mut last_error = None;
        for edk in edks {
            if edk.provider_id != PROVIDER_ID {
                continue;
            }
            let Some(arn) = self
                .key_arns
                .iter()
                .find(|arn| arn.as_bytes() == edk.provider_info.as_slice())
            else {
                continue;
            };
            let answer = self
                .client
                .decrypt()
                .key_id(arn)
                .ciphertext_blob(Blob::new(edk.ciphertext.clone()))
                .set_encryption_context(to_map(context))
                .send()
                .await;
            match answer {
                Ok(out) if out.key_id.as_deref() == Some(arn.as_str()) => {
                    let mut plaintext = out.plaintext.map(Blob::into_inner).unwrap_or_default();
                    let data_key = DataKey::from_slice(&plaintext);
                    plaintext.zeroize();
                    if data_key.is_some() {
                        return Ok(data_key);
                    }
                }
                Ok(_) => {}
                // Not this key's ciphertext, or the context differs: the message
                // is simply not openable by us, reported as the opaque error.
                Err(e) => match KmsFailure::from_sdk(&e) {
                    KmsFailure::Refused {
                        code:
                            KmsErrorCode::InvalidCiphertextException
                            | KmsErrorCode::IncorrectKeyException,
                        ..
                    } => {}
                    failure => {
                        last_error = Some(Error::Kms {
                            operation: "Decrypt",
                            key_id: arn.clone(),
                            failure,
                        })
                    }
                },
            }
        }
        match last_error {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }
}
