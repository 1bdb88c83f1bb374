//! How a notification is signed, and how a receiver verifies it.
//!
//! Every request keyward sends to a webhook carries two headers:
//!
//! ```text
//! Keyward-Delivery-Id: d-0123456789abcdef
//! Keyward-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//! ```
//!
//! `t` is the unix time (seconds) the request was signed at, `v1` the lowercase hex
//! HMAC-SHA256, keyed with the destination's secret exactly as it was shown at creation (the whole
//! `kwwhsec_...` string, as UTF-8 bytes), of the ASCII bytes `"<t>."` followed by the raw request
//! body. Stripe's scheme, so existing verification code carries over.
//!
//! A receiver verifies ([`verify`]): it recomputes the MAC over the body it received and compares
//! in constant time, refuses a `t` more than [`TOLERANCE`] away from its clock (a captured request
//! replayed later), and refuses a delivery id it has seen before (a replay within the tolerance).
//! Retries of one delivery carry the same delivery id and a new `t`: a receiver that answered 2xx
//! once can drop the retry by its id.

use std::collections::HashSet;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Keyward-Signature";
/// The header that carries the delivery's id (the same on every retry of one delivery).
pub const DELIVERY_ID_HEADER: &str = "Keyward-Delivery-Id";
/// The prefix of every webhook secret, so a leaked one is recognisable (secret scanners).
pub const SECRET_PREFIX: &str = "kwwhsec_";
/// How far a signature's timestamp may be from the verifier's clock: five minutes.
pub const TOLERANCE_SECONDS: i64 = 300;
/// [`TOLERANCE_SECONDS`] as a duration.
pub const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// A destination's signing secret: `kwwhsec_` and 32 random bytes in unpadded base64url. Not
/// `Debug`, not `Clone`, not `Serialize`; wiped on drop.
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// A new random secret.
    pub(crate) fn generate() -> crate::Result<WebhookSecret> {
        use base64::Engine as _;
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..])
            .map_err(|_| crate::Error::internal("the random generator failed"))?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]);
        Ok(WebhookSecret(Zeroizing::new(format!(
            "{SECRET_PREFIX}{encoded}"
        ))))
    }

    /// A secret as its owner holds it (a receiver verifying with [`verify`]).
    pub fn from_string(secret: String) -> WebhookSecret {
        WebhookSecret(Zeroizing::new(secret))
    }

    /// The secret, to show its owner once at creation or to wrap. The one way to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.as_bytes())
    }
}

/// The MAC of `body` signed at `timestamp`.
fn mac(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(&secret.key());
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// The value of the [`SIGNATURE_HEADER`] for `body` signed at `timestamp` (unix seconds).
pub fn sign(secret: &WebhookSecret, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).as_ref())
    )
}

/// Why a notification failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("the Keyward-Signature header is not t=<unix seconds>,v1=<hex HMAC-SHA256>")]
    Malformed,
    /// The signature was made too long before (or after) now.
    #[error("the signature's timestamp is {skew_seconds} s away from now, more than the 300 s tolerance")]
    OutsideTolerance { skew_seconds: i64 },
    /// No `v1` matches: another secret, or a body changed on the way.
    #[error("no signature matches the body with this secret")]
    Mismatch,
    /// The delivery id was verified before: a replay.
    #[error("the delivery id was seen before: a replayed notification")]
    Replayed,
}

/// Verifies a notification: `header` is its [`SIGNATURE_HEADER`], `body` the raw body as
/// received, `now` the receiver's unix time in seconds. With `seen` (the delivery ids already
/// accepted) and the request's [`DELIVERY_ID_HEADER`] in `delivery_id`, a delivery id seen
/// before is refused and an accepted one is added. Several `v1=` entries are allowed (a secret
/// being rolled): one matching is enough. The MAC is compared in constant time.
pub fn verify(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now: i64,
    seen: Option<(&mut HashSet<String>, &str)>,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(value.parse::<i64>().map_err(|_| VerifyError::Malformed)?);
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| VerifyError::Malformed)?);
            }
            // Other schemes a later version may add are ignored, as Stripe's are.
            Some(_) => {}
            None => return Err(VerifyError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let skew = now.saturating_sub(timestamp);
    if skew.unsigned_abs() > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(VerifyError::OutsideTolerance { skew_seconds: skew });
    }
    let key = secret.key();
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    // hmac::verify compares in constant time.
    if !signatures
        .iter()
        .any(|tag| hmac::verify(&key, &message, tag).is_ok())
    {
        return Err(VerifyError::Mismatch);
    }
    if let Some((seen, delivery_id)) = seen {
        if !seen.insert(delivery_id.to_owned()) {
            return Err(VerifyError::Replayed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::from_string("kwwhsec_test-vector-secret".into())
    }

    #[test]
    fn a_fixed_vector_signs_as_documented() {
        // HMAC-SHA256("kwwhsec_test-vector-secret", "1767225600.{\"a\":1}"), computed
        // independently with `openssl dgst -sha256 -hmac`.
        let header = sign(&secret(), 1_767_225_600, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1767225600,v1=39a8bf8be80c7fbc91de689b2bdfdf523ec759119b3d6142d24b4ff3ae66a633"
        );
        verify(&secret(), &header, br#"{"a":1}"#, 1_767_225_600, None).unwrap();
    }

    #[test]
    fn tampered_wrong_secret_old_and_replayed_are_refused() {
        let body = br#"{"alarm":"key-disabled"}"#;
        let now = 1_767_225_600;
        let header = sign(&secret(), now, body);
        verify(&secret(), &header, body, now + 10, None).unwrap();
        assert_eq!(
            verify(
                &secret(),
                &header,
                br#"{"alarm":"key-enabled!"}"#,
                now,
                None
            ),
            Err(VerifyError::Mismatch)
        );
        let other = WebhookSecret::from_string("kwwhsec_another".into());
        assert_eq!(
            verify(&other, &header, body, now, None),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&secret(), &header, body, now + 301, None),
            Err(VerifyError::OutsideTolerance { skew_seconds: 301 })
        );
        assert!(verify(&secret(), &header, body, now - 301, None).is_err());
        let mut seen = HashSet::new();
        verify(&secret(), &header, body, now, Some((&mut seen, "d-1"))).unwrap();
        assert_eq!(
            verify(&secret(), &header, body, now, Some((&mut seen, "d-1"))),
            Err(VerifyError::Replayed)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(&secret(), bad, body, now, None),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
    }
}
