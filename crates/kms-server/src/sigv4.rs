//! AWS Signature Version 4: verification of incoming requests. With the `test-support` feature, also
//! `Signer`, a signer that shares the verifier's canonical forms (tests check it against the
//! `aws-sigv4` crate; the wire tests sign with `aws-sigv4` itself, so the verifier is checked
//! against an independent signer).
//!
//! Follows <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>:
//!
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//! StringToSign     = "AWS4-HMAC-SHA256" \n X-Amz-Date \n date/region/service/aws4_request \n hex(SHA256(CanonicalRequest))
//! SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
//! Signature        = hex(HMAC(SigningKey, StringToSign))
//! ```
//!
//! The payload hash is always computed from the body we received, never taken from
//! `x-amz-content-sha256`: a client that signed a different body than it sent fails here.
//! The derived signing key is cached per credential scope (access key id, date, region, service)
//! together with a fingerprint of the secret, so a steady client costs one HMAC per request instead of five.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;

use aws_lc_rs::{digest, hmac};
use axum::http::{self, HeaderMap};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::Error;

/// The only algorithm AWS defines for SigV4 with symmetric keys.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far `X-Amz-Date` may be from our clock, either way (AWS: 15 minutes).
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (uppercase hex), as SigV4 asks.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (for the canonical URI).
const SIGV4_ENCODE_PATH: &AsciiSet = &SIGV4_ENCODE.remove(b'/');

/// What the verifier needs from an access key: its secret and, for temporary credentials, the
/// session token the request must carry.
pub trait SigningSecret {
    fn secret(&self) -> &[u8];
    fn session_token(&self) -> Option<&str>;
}

/// The parsed `Authorization` header.
struct Authorization<'a> {
    /// The whole credential, `AKID/20260101/us-east-1/kms/aws4_request`: also the cache key.
    credential: &'a str,
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// A request whose signature checked out.
pub struct Verified<K> {
    pub key: K,
    pub access_key_id: String,
    pub region: String,
}

struct CachedKey {
    secret_fingerprint: [u8; 32],
    key: hmac::Key,
}

/// Verifies SigV4 signatures, caching derived signing keys.
pub struct Verifier {
    cache: RwLock<HashMap<String, CachedKey>>,
}

/// More scopes than this (access keys × days × regions × services) and the cache starts afresh.
const CACHE_LIMIT: usize = 4096;

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Verifier {
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Verifies the request's signature for `service` and returns the access key it was made with.
    ///
    /// Checks, in order: an `Authorization` header exists (MissingAuthenticationTokenException), it is
    /// well formed and signs `host` and `x-amz-date` (IncompleteSignatureException), the credential scope
    /// names `service` (InvalidSignatureException), the access key is known and any session token matches
    /// (UnrecognizedClientException), the date is within 15 minutes (InvalidSignatureException "Signature
    /// expired" / "not yet current"), and the signature (InvalidSignatureException).
    #[allow(clippy::too_many_arguments)] // the parts of one HTTP request, kept apart to avoid copying the body
    pub fn verify<K: SigningSecret>(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
        service: &str,
        now: OffsetDateTime,
        lookup: impl FnOnce(&str) -> Option<K>,
    ) -> Result<Verified<K>, Error> {
        let Some(auth_value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Error::MissingAuthenticationToken);
        };
        let auth_value = auth_value.to_str().map_err(|_| {
            Error::IncompleteSignature("Authorization header is not valid ASCII.".into())
        })?;
        let auth = parse_authorization(auth_value)?;

        let amz_date = header_str(headers, "x-amz-date").ok_or_else(|| {
            Error::IncompleteSignature(format!(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={auth_value}"
            ))
        })?;
        let request_time = parse_amz_date(amz_date).ok_or_else(|| {
            Error::IncompleteSignature(format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })?;
        if !signed_header_listed(auth.signed_headers, "host") {
            return Err(Error::IncompleteSignature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        if !signed_header_listed(auth.signed_headers, "x-amz-date") {
            return Err(Error::IncompleteSignature(
                "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        if auth.service != service {
            return Err(Error::InvalidSignature(format!(
                "Credential should be scoped to correct service: '{service}'. "
            )));
        }
        if auth.region.is_empty() {
            return Err(Error::InvalidSignature(
                "Credential should be scoped to a valid region. ".into(),
            ));
        }
        if auth.date != &amz_date[..8] {
            return Err(Error::InvalidSignature(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            )));
        }

        let key = lookup(auth.access_key_id).ok_or(Error::UnrecognizedClient)?;
        let presented_token = header_str(headers, "x-amz-security-token");
        let token_ok = match (key.session_token(), presented_token) {
            (None, None) => true,
            (Some(expected), Some(presented)) => {
                bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
            }
            _ => false,
        };
        if !token_ok {
            return Err(Error::UnrecognizedClient);
        }

        if request_time < now - MAX_SKEW {
            return Err(Error::InvalidSignature(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
                format_amz_date(now - MAX_SKEW),
                format_amz_date(now)
            )));
        }
        if request_time > now + MAX_SKEW {
            return Err(Error::InvalidSignature(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
                format_amz_date(now + MAX_SKEW),
                format_amz_date(now)
            )));
        }

        let mut canonical = String::with_capacity(512);
        canonical_request(
            &mut canonical,
            method,
            path,
            query,
            auth.signed_headers,
            |name, out| {
                let mut values = headers.get_all(name).iter();
                let Some(first) = values.next() else {
                    return false;
                };
                push_header_value(out, first.as_bytes());
                for value in values {
                    out.push(',');
                    push_header_value(out, value.as_bytes());
                }
                true
            },
            body,
        )?;
        let scope = &auth.credential[auth.access_key_id.len() + 1..];
        let string_to_sign = string_to_sign(amz_date, scope, &canonical);

        let expected = self.sign_with_cached_key(&auth, key.secret(), &string_to_sign);
        let mut presented = [0u8; 32];
        let signature_ok = hex::decode_to_slice(auth.signature, &mut presented).is_ok()
            && bool::from(expected.as_ref().ct_eq(&presented[..]));
        if !signature_ok {
            return Err(Error::InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
            ));
        }
        Ok(Verified {
            key,
            access_key_id: auth.access_key_id.to_owned(),
            region: auth.region.to_owned(),
        })
    }

    fn sign_with_cached_key(
        &self,
        auth: &Authorization<'_>,
        secret: &[u8],
        string_to_sign: &str,
    ) -> hmac::Tag {
        let fingerprint = sha256(secret);
        {
            let cache = self
                .cache
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(cached) = cache.get(auth.credential) {
                if bool::from(cached.secret_fingerprint.ct_eq(&fingerprint)) {
                    return hmac::sign(&cached.key, string_to_sign.as_bytes());
                }
            }
        }
        let key = signing_key(secret, auth.date, auth.region, auth.service);
        let tag = hmac::sign(&key, string_to_sign.as_bytes());
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(
            auth.credential.to_owned(),
            CachedKey {
                secret_fingerprint: fingerprint,
                key,
            },
        );
        tag
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn signed_header_listed(signed_headers: &str, name: &str) -> bool {
    signed_headers.split(';').any(|header| header == name)
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Error> {
    let incomplete =
        |detail: &str| Error::IncompleteSignature(format!("{detail} Authorization={value}"));
    let Some((algorithm, rest)) = value.split_once(' ') else {
        return Err(incomplete("Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter."));
    };
    if algorithm != ALGORITHM {
        return Err(Error::IncompleteSignature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            let _ = write!(
                missing,
                "Authorization header requires '{name}' parameter. "
            );
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing.trim_end()));
    };
    let mut parts = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Error::IncompleteSignature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if terminator != "aws4_request" {
        return Err(Error::InvalidSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    if access_key_id.is_empty() {
        return Err(Error::UnrecognizedClient);
    }
    if date.len() != 8 {
        return Err(Error::InvalidSignature(format!(
            "Credential should be scoped to a valid date, not '{date}'. "
        )));
    }
    Ok(Authorization {
        credential,
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

/// Formats `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Appends a header value trimmed, with runs of spaces collapsed to one (SigV4's canonical form).
fn push_header_value(out: &mut String, value: &[u8]) {
    let value = String::from_utf8_lossy(value);
    let mut previous_space = false;
    for c in value.trim().chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
}

/// Builds the canonical request into `out`. `header` appends the canonical value of one (lowercase)
/// header and says whether it exists.
fn canonical_request(
    out: &mut String,
    method: &str,
    path: &str,
    query: &str,
    signed_headers: &str,
    mut header: impl FnMut(&str, &mut String) -> bool,
    body: &[u8],
) -> Result<(), Error> {
    out.push_str(method);
    out.push('\n');
    // Non-S3 services double-encode: the path as sent is already encoded once.
    let path = if path.is_empty() { "/" } else { path };
    for piece in utf8_percent_encode(path, SIGV4_ENCODE_PATH) {
        out.push_str(piece);
    }
    out.push('\n');
    canonical_query(out, query);
    out.push('\n');
    for name in signed_headers.split(';') {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::IncompleteSignature(format!(
                "Signed headers must be lowercase and non-empty: '{signed_headers}'."
            )));
        }
        out.push_str(name);
        out.push(':');
        if !header(name, out) {
            // A header named in SignedHeaders but absent cannot have been signed as sent.
            return Err(Error::InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
            ));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(&hex::encode(sha256(body)));
    Ok(())
}

fn canonical_query(out: &mut String, query: &str) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let reencode = |s: &str| {
                let decoded = percent_decode_str(s).decode_utf8_lossy();
                utf8_percent_encode(&decoded, SIGV4_ENCODE).to_string()
            };
            (reencode(name), reencode(value))
        })
        .collect();
    pairs.sort();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let mut s = String::with_capacity(160);
    s.push_str(ALGORITHM);
    s.push('\n');
    s.push_str(amz_date);
    s.push('\n');
    s.push_str(scope);
    s.push('\n');
    s.push_str(&hex::encode(sha256(canonical_request.as_bytes())));
    s
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> hmac::Key {
    // "AWS4" + secret, held only for the first HMAC; zeroized right after.
    let mut k_secret = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &k_secret),
        date.as_bytes(),
    );
    let k_region = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_date.as_ref()),
        region.as_bytes(),
    );
    let k_service = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_region.as_ref()),
        service.as_bytes(),
    );
    let k_signing = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, k_service.as_ref()),
        b"aws4_request",
    );
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// Signs a request the way the AWS SDKs do, for tests (feature `test-support`): a server never
/// signs, so this is no part of a normal build.
///
/// `headers` must hold every header to be signed (lowercase names), including `host` and `x-amz-date`;
/// they are signed in sorted order. Returns the `Authorization` header value.
#[cfg(any(test, feature = "test-support"))]
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
}

#[cfg(any(test, feature = "test-support"))]
impl Signer<'_> {
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let mut sorted: Vec<(String, &str)> = headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), *value))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let signed_headers = sorted
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let amz_date = sorted
            .iter()
            .find(|(name, _)| name == "x-amz-date")
            .map(|(_, value)| *value)
            .unwrap_or_default();
        let date = amz_date.get(..8).unwrap_or_default();
        let mut canonical = String::with_capacity(512);
        canonical_request(
            &mut canonical,
            method,
            path,
            query,
            &signed_headers,
            |name, out| {
                let mut found = false;
                for (_, value) in sorted.iter().filter(|(n, _)| n == name) {
                    if found {
                        out.push(',');
                    }
                    push_header_value(out, value.as_bytes());
                    found = true;
                }
                found
            },
            body,
        )
        .expect("headers given to the signer are lowercase and present");
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = string_to_sign(amz_date, &scope, &canonical);
        let key = signing_key(self.secret, date, self.region, self.service);
        let signature = hex::encode(hmac::sign(&key, to_sign.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Key(&'static [u8], Option<&'static str>);
    impl SigningSecret for Key {
        fn secret(&self) -> &[u8] {
            self.0
        }
        fn session_token(&self) -> Option<&str> {
            self.1
        }
    }

    /// The worked example of the AWS documentation (IAM ListUsers, GET with a query string):
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
    /// (also the aws-sig-v4-test-suite's "get-vanilla-query" family).
    #[test]
    fn matches_the_aws_documentation_example() {
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret: b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "iam",
        };
        let auth = signer.authorization(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("host", "iam.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ],
            b"",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    fn request(auth: &str, date: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", "kms.local".parse().unwrap());
        headers.insert("x-amz-date", date.parse().unwrap());
        headers.insert("authorization", auth.parse().unwrap());
        let _ = body;
        headers
    }

    fn signed(date: &str, body: &[u8], secret: &[u8]) -> HeaderMap {
        let signer = Signer {
            access_key_id: "AKIATEST",
            secret,
            region: "eu-west-1",
            service: "kms",
        };
        let auth = signer.authorization(
            "POST",
            "/",
            "",
            &[("host", "kms.local"), ("x-amz-date", date)],
            body,
        );
        request(&auth, date, body)
    }

    fn now() -> OffsetDateTime {
        parse_amz_date("20260101T120000Z").unwrap()
    }

    fn verify(headers: &HeaderMap, body: &[u8]) -> Result<Verified<Key>, Error> {
        Verifier::new().verify("POST", "/", "", headers, body, "kms", now(), |id| {
            (id == "AKIATEST").then_some(Key(b"secret", None))
        })
    }

    #[test]
    fn accepts_own_signature_and_reports_scope() {
        let headers = signed("20260101T120500Z", b"{}", b"secret");
        let verified = verify(&headers, b"{}").unwrap();
        assert_eq!(verified.region, "eu-west-1");
        assert_eq!(verified.access_key_id, "AKIATEST");
    }

    #[test]
    fn cached_key_is_not_reused_for_another_secret() {
        let verifier = Verifier::new();
        let headers = signed("20260101T120000Z", b"{}", b"secret");
        let ok = verifier.verify("POST", "/", "", &headers, b"{}", "kms", now(), |_| {
            Some(Key(b"secret", None))
        });
        assert!(ok.is_ok());
        let again = verifier.verify("POST", "/", "", &headers, b"{}", "kms", now(), |_| {
            Some(Key(b"other", None))
        });
        assert!(matches!(again, Err(Error::InvalidSignature(_))));
    }

    #[test]
    fn rejects_tampering_wrong_secret_skew_and_unknown_keys() {
        let headers = signed("20260101T120000Z", b"{}", b"secret");
        assert!(matches!(
            verify(&headers, b"{ }"),
            Err(Error::InvalidSignature(_))
        ));
        let wrong = signed("20260101T120000Z", b"{}", b"not the secret");
        assert!(matches!(
            verify(&wrong, b"{}"),
            Err(Error::InvalidSignature(_))
        ));
        let stale = signed("20260101T114459Z", b"{}", b"secret");
        match verify(&stale, b"{}") {
            Err(Error::InvalidSignature(message)) => assert_eq!(
                message,
                "Signature expired: 20260101T114459Z is now earlier than 20260101T114500Z (20260101T120000Z - 15 min.)"
            ),
            _ => panic!("stale date accepted"),
        }
        let future = signed("20260101T121501Z", b"{}", b"secret");
        assert!(
            matches!(verify(&future, b"{}"), Err(Error::InvalidSignature(m)) if m.starts_with("Signature not yet current"))
        );
        let mut unknown = signed("20260101T120000Z", b"{}", b"secret");
        let auth = unknown["authorization"]
            .to_str()
            .unwrap()
            .replace("AKIATEST", "AKIAOTHER");
        unknown.insert("authorization", auth.parse().unwrap());
        assert!(matches!(
            verify(&unknown, b"{}"),
            Err(Error::UnrecognizedClient)
        ));
        assert!(matches!(
            verify(&HeaderMap::new(), b"{}"),
            Err(Error::MissingAuthenticationToken)
        ));
    }

    #[test]
    fn session_token_must_match() {
        let headers = signed("20260101T120000Z", b"{}", b"secret");
        let result = Verifier::new().verify("POST", "/", "", &headers, b"{}", "kms", now(), |_| {
            Some(Key(b"secret", Some("token")))
        });
        assert!(matches!(result, Err(Error::UnrecognizedClient)));
    }

    proptest::proptest! {
        /// Arbitrary Authorization headers, dates and signed-header lists never panic the verifier,
        /// and only a correct signature passes.
        #[test]
        fn arbitrary_authorization_headers_are_refused_without_panic(
            auth in "AWS4-HMAC-SHA256 [ -~]{0,120}|[ -~]{0,80}",
            date in "[0-9TZ]{14,17}|20260101T1200[0-9]{2}Z",
            signed in "[a-z;-]{0,30}",
        ) {
            let mut headers = HeaderMap::new();
            headers.insert("host", "kms.local".parse().unwrap());
            if let Ok(value) = date.parse() {
                headers.insert("x-amz-date", value);
            }
            let full = format!("{auth}, SignedHeaders={signed}, Signature=00");
            if let Ok(value) = full.parse() {
                headers.insert("authorization", value);
            }
            let result = verify(&headers, b"{}");
            proptest::prop_assert!(result.is_err());
        }
    }

    #[test]
    fn wrong_service_scope_is_refused() {
        let headers = signed("20260101T120000Z", b"{}", b"secret");
        let result = Verifier::new().verify(
            "POST",
            "/",
            "",
            &headers,
            b"{}",
            "cloudtrail",
            now(),
            |_| Some(Key(b"secret", None)),
        );
        assert!(matches!(result, Err(Error::InvalidSignature(m)) if m.contains("'cloudtrail'")));
    }
}
