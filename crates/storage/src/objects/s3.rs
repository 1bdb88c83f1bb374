//! The S3 backend of the object stores: Amazon S3 or any S3-compatible
//! endpoint, through `object_store`'s `AmazonS3`.
//!
//! [`EncryptedStore`](super::EncryptedStore) runs on it unchanged: it only uses
//! the backend trait. What differs from the local backend is how a write is
//! published. A small object is one `PutObject`, which S3 makes visible whole or
//! not at all; a large one is a multipart upload, invisible until
//! `CompleteMultipartUpload`, the last request of the put. A writer that dies
//! mid-way leaves only an unfinished upload (not an object: it is never listed
//! nor read), which the bucket's `AbortIncompleteMultipartUpload` lifecycle
//! rule removes; a failed put aborts its upload itself.
//!
//! Addressing: with an `endpoint` (a loopback test server, MinIO, another
//! provider) requests are path-style (`<endpoint>/<bucket>/<key>`), which works
//! for any host name including `127.0.0.1`; without one, Amazon S3's
//! virtual-hosted style in the configured region. Plain `http://` is allowed
//! only when the endpoint says so.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use zeroize::Zeroizing;

use super::error::ObjectResult;

/// Static credentials for an S3 endpoint. No `Debug`; the secret is wiped on drop.
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// For temporary credentials (STS).
    pub session_token: Option<Zeroizing<String>>,
}

/// Where a bucket is and how to reach it.
pub struct S3Config {
    /// `None` for Amazon S3; otherwise the endpoint URL of an S3-compatible
    /// server, e.g. `http://127.0.0.1:9000` (path-style requests).
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// `None` takes the AWS environment's credentials (the `AWS_*` variables,
    /// web identity, instance metadata), as the AWS SDKs do.
    pub credentials: Option<S3Credentials>,
}

/// An `object_store` backend for the bucket. Makes no request: a wrong
/// endpoint or bucket shows on the first operation.
pub fn s3_backend(config: &S3Config) -> ObjectResult<Arc<dyn ObjectStore>> {
    let mut builder = match &config.credentials {
        Some(credentials) => {
            let mut builder = AmazonS3Builder::new()
                .with_access_key_id(&credentials.access_key_id)
                .with_secret_access_key(credentials.secret_access_key.as_str());
            if let Some(token) = &credentials.session_token {
                builder = builder.with_token(token.as_str());
            }
            builder
        }
        None => AmazonS3Builder::from_env(),
    }
    .with_region(&config.region)
    .with_bucket_name(&config.bucket);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(builder.build()?))
}
