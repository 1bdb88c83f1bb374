//! Organizations, their API tokens, and the random ids of the control plane.
//!
//! A token is `kw_` followed by 32 random bytes in unpadded base64url (256 bits: not guessable,
//! so a fast hash is the right store — there is nothing to brute-force as with a password). Only
//! its SHA-256 is stored; authentication hashes the presented token, finds the row by that hash
//! and compares the two digests in constant time.

use aws_lc_rs::digest::{digest, SHA256};
use base64::Engine as _;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// An organization's id: `o-` and 16 lowercase hex digits.
pub type OrgId = String;

/// The prefix of every API token, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "kw_";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
}

/// What is shown of a stored token: never the secret nor its digest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// `t-` and 16 lowercase hex digits.
    pub id: String,
    pub created_at_ms: i64,
    /// The token's last four characters, to recognise it by (none for tokens made before ids).
    pub last4: Option<String>,
}

/// A token to store: its digest, id and last four characters (never the token itself).
pub(crate) struct NewTokenRow {
    pub(crate) digest: String,
    pub(crate) id: String,
    pub(crate) last4: String,
}

/// A new API token, shown once. Not `Debug`, not `Clone`, not `Serialize`; wiped on drop.
pub struct ApiToken(Zeroizing<String>);

impl ApiToken {
    pub(crate) fn generate() -> Result<ApiToken> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..])
            .map_err(|_| Error::internal("the random generator failed"))?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]);
        Ok(ApiToken(Zeroizing::new(format!("{TOKEN_PREFIX}{encoded}"))))
    }

    /// The token, to hand to its owner once. The one way to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The row to store: digest, a new id, the last four characters.
    pub(crate) fn row(&self) -> Result<NewTokenRow> {
        Ok(NewTokenRow {
            digest: token_digest(self.expose()),
            id: random_id("t-")?,
            last4: self.0[self.0.len() - 4..].to_owned(),
        })
    }
}

/// The stored form of a token: its SHA-256, in lowercase hex.
pub(crate) fn token_digest(token: &str) -> String {
    hex::encode(digest(&SHA256, token.as_bytes()))
}

/// Whether `presented` (a digest just computed) equals `stored`, in constant time.
pub(crate) fn digests_match(presented: &str, stored: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), stored.as_bytes())
        .is_ok()
}

/// Whether a bearer token has the shape of ours (checked before any database work).
pub(crate) fn token_shape_ok(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `prefix` and 16 random lowercase hex digits (64 bits).
pub(crate) fn random_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::internal("the random generator failed"))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Whether `id` is `prefix` and 16 lowercase hex digits.
pub(crate) fn id_shape_ok(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A name for an organization or a cluster: 1–64 characters, letters, digits, `-`, `_`, `.` and
/// spaces, not starting or ending with a space.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "the {what} name {name:?} must be 1-64 characters of letters, digits, '-', '_', '.' and inner spaces"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_our_shape_and_differ() {
        let a = ApiToken::generate().unwrap();
        let b = ApiToken::generate().unwrap();
        assert!(token_shape_ok(a.expose()), "{}", a.expose().len());
        assert_ne!(a.expose(), b.expose());
        assert!(!token_shape_ok("kw_short"));
        assert!(!token_shape_ok(&a.expose().replace("kw_", "xx_")));
    }

    #[test]
    fn digests_compare_in_full() {
        let d = token_digest("kw_x");
        assert_eq!(d.len(), 64);
        assert!(digests_match(&d, &token_digest("kw_x")));
        assert!(!digests_match(&d, &token_digest("kw_y")));
        assert!(!digests_match(&d, &d[..63]));
    }

    #[test]
    fn ids_and_names() {
        let id = random_id("c-").unwrap();
        assert!(id_shape_ok("c-", &id), "{id}");
        assert!(!id_shape_ok("c-", "c-0123"));
        assert!(!id_shape_ok("c-", "c-0123456789ABCDEF"));
        assert!(!id_shape_ok("o-", &id));
        check_name("cluster", "prod eu-1").unwrap();
        for bad in ["", " x", "x ", "a/b", &"n".repeat(65)] {
            assert!(check_name("cluster", bad).is_err(), "{bad:?}");
        }
    }
}
