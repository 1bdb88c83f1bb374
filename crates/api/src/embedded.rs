//! The identities of the embedded setup (`keyward up` and the tests that stand it up): the
//! platform's account with the IAM user the control plane acts as, and one customer account.
//!
//! - Platform account [`PLATFORM_ACCOUNT`]: the IAM user [`OPERATOR_USER`] with an inline identity
//!   policy allowing `iam:*`, `sts:AssumeRole` and `kms:*` on `*` — the control plane creates each
//!   cluster's role with it and assumes the roles.
//! - Customer account [`CUSTOMER_ACCOUNT`]: the IAM user [`CUSTOMER_ADMIN_USER`] allowed `*` by its
//!   identity policy; a key's default policy (the account root) lets it manage the account's keys.
//!
//! The text is the KMS's identities TOML (`[[account]]`, `[[account.access_key]]`,
//! `[[account.user]]`); it holds secrets, so whoever writes it keeps it readable by its owner only.

use zeroize::Zeroizing;

pub const PLATFORM_ACCOUNT: &str = "111122223333";
pub const CUSTOMER_ACCOUNT: &str = "444455556666";
pub const OPERATOR_USER: &str = "keyward-operator";
pub const CUSTOMER_ADMIN_USER: &str = "admin";

/// The operator's inline identity policy.
pub const OPERATOR_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"KeywardOperator","Effect":"Allow","Action":["iam:*","sts:AssumeRole","kms:*"],"Resource":"*"}]}"#;
/// The customer administrator's inline identity policy.
pub const CUSTOMER_ADMIN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Administrator","Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// An access key pair. Not `Debug`; the secret is wiped on drop.
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

impl Credentials {
    /// A random pair shaped like AWS's: `AKIA` + 16 base32 characters, and 40 characters of secret.
    pub fn generate() -> Credentials {
        Credentials {
            access_key_id: format!(
                "AKIA{}",
                random_chars(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
            ),
            secret_access_key: Zeroizing::new(random_chars(
                40,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            )),
        }
    }
}

/// Both sides' credentials.
pub struct Identities {
    /// `arn:aws:iam::111122223333:user/keyward-operator`
    pub operator: Credentials,
    /// `arn:aws:iam::444455556666:user/admin`
    pub customer: Credentials,
}

impl Identities {
    pub fn generate() -> Identities {
        Identities {
            operator: Credentials::generate(),
            customer: Credentials::generate(),
        }
    }

    /// The KMS identities file of these credentials.
    pub fn to_toml(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# The identities of `keyward up` (created once, reused on restart). Secrets: keep 0600.\n\
             [[account]]\nid = \"{PLATFORM_ACCOUNT}\"\n\
             [[account.access_key]]\nid = \"{}\"\nsecret = \"{}\"\nprincipal = \"user/{OPERATOR_USER}\"\n\
             [[account.user]]\nname = \"{OPERATOR_USER}\"\npolicy = '{OPERATOR_POLICY}'\n\n\
             [[account]]\nid = \"{CUSTOMER_ACCOUNT}\"\n\
             [[account.access_key]]\nid = \"{}\"\nsecret = \"{}\"\nprincipal = \"user/{CUSTOMER_ADMIN_USER}\"\n\
             [[account.user]]\nname = \"{CUSTOMER_ADMIN_USER}\"\npolicy = '{CUSTOMER_ADMIN_POLICY}'\n",
            self.operator.access_key_id,
            self.operator.secret_access_key.as_str(),
            self.customer.access_key_id,
            self.customer.secret_access_key.as_str(),
        ))
    }
}

/// The operator's ARN, which each cluster role's trust policy names.
pub fn operator_arn() -> String {
    format!("arn:aws:iam::{PLATFORM_ACCOUNT}:user/{OPERATOR_USER}")
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut bytes).expect("the random generator");
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_have_aws_shapes_and_differ() {
        let ids = Identities::generate();
        assert!(ids.operator.access_key_id.starts_with("AKIA"));
        assert_eq!(ids.operator.access_key_id.len(), 20);
        assert_eq!(ids.operator.secret_access_key.len(), 40);
        assert_ne!(ids.operator.access_key_id, ids.customer.access_key_id);
        let text = ids.to_toml();
        assert!(text.contains(&format!("principal = \"user/{OPERATOR_USER}\"")));
        assert!(text.contains(PLATFORM_ACCOUNT) && text.contains(CUSTOMER_ACCOUNT));
    }
}
