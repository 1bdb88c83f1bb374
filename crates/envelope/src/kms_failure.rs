//! A failed KMS call as a type: the one place a KMS error becomes something code can decide on.
//!
//! Every crate above this one (storage, control) receives a [`KmsFailure`], never a string. A
//! failure is either no usable answer ([`KmsFailure::Unreachable`], [`KmsFailure::InvalidAnswer`])
//! or KMS's refusal with its AWS exception name ([`KmsFailure::Refused`] with a [`KmsErrorCode`]).
//!
//! [`KmsFailure::cause`] is the one table from a failure to what it says about the key
//! ([`KmsCause`]); the data-key cache, the key-health monitor and the association checks all
//! decide from it. The table is an exhaustive `match` over [`KmsErrorCode`]: a code added to the
//! enum does not compile until it is classified.
//!
//! What AWS documents and this table follows: `ThrottlingException`, `KeyUnavailableException`,
//! `KMSInternalException`, `DependencyTimeoutException` and a 503 are transient — the key is
//! not revoked, the request may be retried; `DisabledException`, `KMSInvalidStateException`,
//! `AccessDeniedException` and `NotFoundException` are about the key and stay until the customer
//! acts.

use std::fmt;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

macro_rules! codes {
    ($($name:ident),* $(,)?) => {
        /// The AWS exception names a KMS endpoint answers with (the JSON protocol's `__type`),
        /// each the exact spelling on the wire: those AWS KMS documents per operation, then the
        /// common errors of every AWS JSON service.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[allow(clippy::enum_variant_names)] // the names are AWS's
        pub enum KmsErrorCode {
            $($name,)*
            /// A name this version does not know (a newer AWS exception, or an endpoint that is
            /// not KMS). It is classified as not about the key: a probe cannot call a key healthy
            /// from it, and nothing is dropped or locked for it alone.
            Other(String),
        }

        impl KmsErrorCode {
            /// The code as KMS spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(KmsErrorCode::$name => stringify!($name),)*
                    KmsErrorCode::Other(other) => other,
                }
            }

            /// The code of a wire name; an unknown name is [`KmsErrorCode::Other`].
            pub fn parse(name: &str) -> KmsErrorCode {
                match name {
                    $(stringify!($name) => KmsErrorCode::$name,)*
                    other => KmsErrorCode::Other(other.to_owned()),
                }
            }
        }
    };
}

codes!(
    AccessDeniedException,
    AlreadyExistsException,
    CloudHsmClusterInUseException,
    CloudHsmClusterInvalidConfigurationException,
    CloudHsmClusterNotActiveException,
    CloudHsmClusterNotFoundException,
    CloudHsmClusterNotRelatedException,
    ConflictException,
    CustomKeyStoreHasCMKsException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
    DependencyTimeoutException,
    DisabledException,
    DryRunOperationException,
    ExpiredImportTokenException,
    IncorrectKeyException,
    IncorrectKeyMaterialException,
    IncorrectTrustAnchorException,
    InvalidAliasNameException,
    InvalidArnException,
    InvalidCiphertextException,
    InvalidGrantIdException,
    InvalidGrantTokenException,
    InvalidImportTokenException,
    InvalidKeyUsageException,
    InvalidMarkerException,
    KMSInternalException,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    KMSInvalidStateException,
    KeyUnavailableException,
    LimitExceededException,
    MalformedPolicyDocumentException,
    NotFoundException,
    TagException,
    UnsupportedOperationException,
    XksKeyAlreadyInUseException,
    XksKeyInvalidConfigurationException,
    XksKeyNotFoundException,
    XksProxyIncorrectAuthenticationCredentialException,
    XksProxyInvalidConfigurationException,
    XksProxyInvalidResponseException,
    XksProxyUriEndpointInUseException,
    XksProxyUriInUseException,
    XksProxyUriUnreachableException,
    XksProxyVpcEndpointServiceInUseException,
    XksProxyVpcEndpointServiceInvalidConfigurationException,
    XksProxyVpcEndpointServiceNotFoundException,
    // The common errors of AWS JSON services.
    ExpiredTokenException,
    IncompleteSignatureException,
    InternalFailure,
    InvalidClientTokenId,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    RequestEntityTooLargeException,
    SerializationException,
    ServiceUnavailableException,
    ThrottlingException,
    UnknownOperationException,
    UnrecognizedClientException,
    ValidationException,
);

impl fmt::Display for KmsErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a KMS call did not give what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsFailure {
    /// No KMS answer: the connection failed, the call timed out, or the response was not a KMS
    /// answer (a proxy's page, a cut connection, an error without an exception name).
    Unreachable { detail: String },
    /// KMS answered with an error.
    Refused { code: KmsErrorCode, message: String },
    /// KMS answered success without a field the operation must return (or with one of the
    /// wrong shape): the endpoint is not behaving as KMS.
    InvalidAnswer { detail: String },
}

/// What a [`KmsFailure`] says about the key: the one classification of KMS failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsCause {
    /// `DisabledException`: the key is disabled.
    Disabled,
    /// `KMSInvalidStateException` naming a pending deletion.
    PendingDeletion,
    /// `KMSInvalidStateException` for another state that refuses use (PendingImport,
    /// Unavailable, Creating, ...).
    Unusable,
    /// `AccessDeniedException`: the key policy, a grant or an SCP refuses the caller.
    AccessDenied,
    /// The caller's credentials themselves are refused (session expired, role deleted).
    CredentialsRefused,
    /// `NotFoundException`: no such key (or not visible to the caller).
    NotFound,
    /// No answer, or KMS unable to serve now (throttled, internal error, key material
    /// temporarily unavailable): not a revocation; retry.
    Transient,
    /// `InvalidKeyUsageException`: the key is not for encryption.
    InvalidKeyUsage,
    /// `InvalidArnException`: the key id is not an ARN KMS accepts.
    InvalidArn,
    /// About the request, not the key (a ciphertext of another key, a bad parameter, a dry run,
    /// an unknown code).
    NotAboutTheKey,
}

impl KmsCause {
    /// Whether data keys of the key must be forgotten at once (DESIGN invariant 2): the key is
    /// seen disabled, pending deletion, in an unusable state, refused to the caller, or gone.
    pub fn revokes_key(self) -> bool {
        match self {
            KmsCause::Disabled
            | KmsCause::PendingDeletion
            | KmsCause::Unusable
            | KmsCause::AccessDenied
            | KmsCause::NotFound => true,
            KmsCause::CredentialsRefused
            | KmsCause::Transient
            | KmsCause::InvalidKeyUsage
            | KmsCause::InvalidArn
            | KmsCause::NotAboutTheKey => false,
        }
    }
}

impl KmsErrorCode {
    /// What the code says about the key. `message` is read only to tell a pending deletion
    /// from another invalid state, which KMS gives the same code.
    pub fn cause(&self, message: &str) -> KmsCause {
        use KmsErrorCode as C;
        match self {
            C::DisabledException => KmsCause::Disabled,
            C::KMSInvalidStateException => {
                if message.to_ascii_lowercase().contains("pending deletion") {
                    KmsCause::PendingDeletion
                } else {
                    KmsCause::Unusable
                }
            }
            C::AccessDeniedException => KmsCause::AccessDenied,
            C::UnrecognizedClientException
            | C::InvalidSignatureException
            | C::ExpiredTokenException
            | C::InvalidClientTokenId
            | C::IncompleteSignatureException
            | C::MissingAuthenticationTokenException => KmsCause::CredentialsRefused,
            C::NotFoundException => KmsCause::NotFound,
            C::KMSInternalException
            | C::DependencyTimeoutException
            | C::KeyUnavailableException
            | C::ThrottlingException
            | C::ServiceUnavailableException
            | C::InternalFailure
            | C::CustomKeyStoreInvalidStateException
            | C::XksProxyUriUnreachableException
            | C::XksProxyInvalidResponseException
            | C::CloudHsmClusterNotActiveException => KmsCause::Transient,
            C::InvalidKeyUsageException => KmsCause::InvalidKeyUsage,
            C::InvalidArnException => KmsCause::InvalidArn,
            C::AlreadyExistsException
            | C::CloudHsmClusterInUseException
            | C::CloudHsmClusterInvalidConfigurationException
            | C::CloudHsmClusterNotFoundException
            | C::CloudHsmClusterNotRelatedException
            | C::ConflictException
            | C::CustomKeyStoreHasCMKsException
            | C::CustomKeyStoreNameInUseException
            | C::CustomKeyStoreNotFoundException
            | C::DryRunOperationException
            | C::ExpiredImportTokenException
            | C::IncorrectKeyException
            | C::IncorrectKeyMaterialException
            | C::IncorrectTrustAnchorException
            | C::InvalidAliasNameException
            | C::InvalidCiphertextException
            | C::InvalidGrantIdException
            | C::InvalidGrantTokenException
            | C::InvalidImportTokenException
            | C::InvalidMarkerException
            | C::KMSInvalidMacException
            | C::KMSInvalidSignatureException
            | C::LimitExceededException
            | C::MalformedPolicyDocumentException
            | C::TagException
            | C::UnsupportedOperationException
            | C::XksKeyAlreadyInUseException
            | C::XksKeyInvalidConfigurationException
            | C::XksKeyNotFoundException
            | C::XksProxyIncorrectAuthenticationCredentialException
            | C::XksProxyInvalidConfigurationException
            | C::XksProxyUriEndpointInUseException
            | C::XksProxyUriInUseException
            | C::XksProxyVpcEndpointServiceInUseException
            | C::XksProxyVpcEndpointServiceInvalidConfigurationException
            | C::XksProxyVpcEndpointServiceNotFoundException
            | C::RequestEntityTooLargeException
            | C::SerializationException
            | C::UnknownOperationException
            | C::ValidationException
            | C::Other(_) => KmsCause::NotAboutTheKey,
        }
    }
}

impl KmsFailure {
    /// The failure of an SDK call: KMS's exception name when it answered with one, else
    /// unreachable (with the SDK's description, which names no secret).
    pub fn from_sdk<E, R>(error: &SdkError<E, R>) -> KmsFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        match error.code() {
            Some(code) => KmsFailure::Refused {
                code: KmsErrorCode::parse(code),
                message: match error.message() {
                    Some(m) => m.to_owned(),
                    None => aws_sdk_kms::error::DisplayErrorContext(error).to_string(),
                },
            },
            None => KmsFailure::Unreachable {
                detail: aws_sdk_kms::error::DisplayErrorContext(error).to_string(),
            },
        }
    }

    /// A refusal with `code` (for tests and for keyrings that are not the SDK's).
    pub fn refused(code: KmsErrorCode, message: impl Into<String>) -> KmsFailure {
        KmsFailure::Refused {
            code,
            message: message.into(),
        }
    }

    /// KMS's exception name, when it refused.
    pub fn code(&self) -> Option<&KmsErrorCode> {
        match self {
            KmsFailure::Refused { code, .. } => Some(code),
            KmsFailure::Unreachable { .. } | KmsFailure::InvalidAnswer { .. } => None,
        }
    }

    /// Whether KMS refused with `code`.
    pub fn is(&self, code: &KmsErrorCode) -> bool {
        self.code() == Some(code)
    }

    /// What the failure says about the key.
    pub fn cause(&self) -> KmsCause {
        match self {
            KmsFailure::Refused { code, message } => code.cause(message),
            // No answer, or one that is not KMS's: the key cannot be shown to work, and nothing
            // says it was revoked.
            KmsFailure::Unreachable { .. } | KmsFailure::InvalidAnswer { .. } => {
                KmsCause::Transient
            }
        }
    }

    /// What was seen, for messages: `Code: message`, or what stood for an answer.
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for KmsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmsFailure::Unreachable { detail } => write!(f, "no answer from KMS: {detail}"),
            KmsFailure::Refused { code, message } => write!(f, "{code}: {message}"),
            KmsFailure::InvalidAnswer { detail } => {
                write!(f, "KMS answered without a valid {detail}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_their_wire_names() {
        for name in [
            "AccessDeniedException",
            "KMSInvalidStateException",
            "CustomKeyStoreHasCMKsException",
            "ThrottlingException",
            "InvalidClientTokenId",
        ] {
            assert_eq!(KmsErrorCode::parse(name).as_str(), name);
            assert!(!matches!(KmsErrorCode::parse(name), KmsErrorCode::Other(_)));
        }
        assert_eq!(
            KmsErrorCode::parse("SomethingNew"),
            KmsErrorCode::Other("SomethingNew".into())
        );
    }

    #[test]
    fn the_one_table() {
        use KmsCause::*;
        let cause = |code: &str, message: &str| KmsErrorCode::parse(code).cause(message);
        assert_eq!(cause("DisabledException", ""), Disabled);
        assert_eq!(
            cause(
                "KMSInvalidStateException",
                "arn:aws:kms:us-east-1:111122223333:key/k is pending deletion."
            ),
            PendingDeletion
        );
        assert_eq!(
            cause("KMSInvalidStateException", "k is pending import."),
            Unusable
        );
        assert_eq!(cause("AccessDeniedException", ""), AccessDenied);
        assert_eq!(cause("ExpiredTokenException", ""), CredentialsRefused);
        assert_eq!(cause("NotFoundException", ""), NotFound);
        // Transient per AWS: retry, not a revocation.
        assert_eq!(cause("ThrottlingException", ""), Transient);
        assert_eq!(cause("KeyUnavailableException", ""), Transient);
        assert_eq!(cause("KMSInternalException", ""), Transient);
        assert_eq!(cause("InvalidCiphertextException", ""), NotAboutTheKey);
        assert_eq!(cause("SomethingNew", ""), NotAboutTheKey);
        assert!(!Transient.revokes_key() && !CredentialsRefused.revokes_key());
        assert!(Disabled.revokes_key() && AccessDenied.revokes_key() && NotFound.revokes_key());
        let none = KmsFailure::Unreachable {
            detail: "connection refused".into(),
        };
        assert_eq!(none.cause(), Transient);
        assert_eq!(none.code(), None);
    }
}
