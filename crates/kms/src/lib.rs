//! The embedded KMS engine of keyward: an AWS-KMS-compatible key service that keeps its state durably.
//!
//! What it does: symmetric KMS keys per account and region (`CreateKey`, `DescribeKey`, `ListKeys`,
//! enable/disable, scheduled deletion), aliases, tags, key policies (validated and enforced),
//! the cryptographic calls (`Encrypt`, `Decrypt`, `ReEncrypt`, `GenerateDataKey*`,
//! `GenerateRandom`) with the encryption context bound to the ciphertext, rotation (automatic on
//! the KMS clock and on demand; old material keeps decrypting), grants, and a CloudTrail-format
//! trail of every request with CloudTrail's `LookupEvents` over it. Requests arrive as the action
//! name and the raw JSON body ([`Engine::call_kms`]); answers are the JSON body or an [`ApiError`]
//! carrying AWS's exception name and message.
//!
//! Durability: SQLite (WAL, `synchronous=FULL`) under the data directory, written by one thread
//! that commits in groups; a call answers only once its changes and its trail record are on disk.
//! Key material is stored only wrapped by the [`RootKey`]; a check value refuses a wrong root key at
//! open. Keys and unwrapped material stay in memory (zeroized on drop), so crypto calls never read
//! SQLite.
//!
//! What it does not do: HTTP, SigV4 or any wire format (the `keyward-kms-server` crate does that),
//! asymmetric or HMAC keys, imported material, custom key stores, multi-Region keys.
//!
//! Authorization (`authz`) evaluates, on every request, the key policy (compiled when saved or
//! loaded, its IAM user principals bound to their unique ids at save time) and the caller's inline
//! identity policies from the identity config ([`IdentityConfig`]), then grants when the policies
//! do not allow; an explicit deny wins; a caller from another account needs both the key policy and
//! its identity policies. Denials answer `AccessDeniedException` with AWS's message and are in the
//! trail of the caller's account and, when the request reached the key, the key owner's.
//!
//! IAM roles and STS sessions ([`Engine::call_iam`], [`Engine::call_sts`]): roles are created
//! through the IAM query API and persisted in the store; `AssumeRole` honours the role's trust
//! policy (principals, `sts:ExternalId`, cross-account identity policies) and issues temporary
//! credentials that expire on the KMS clock. A session's identity is
//! `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`; a key-policy principal naming the role ARN
//! matches every session of it, by the role's unique id as of when the policy was saved; the
//! role's inline policies are the session's identity policies.
//!
//! Differences from AWS: an IAM user with no identity policy in the config may still
//! call the actions on no key (`CreateKey`, `ListKeys`, `ListAliases`, `GenerateRandom`,
//! `ListRetirableGrants`), for identity files written before identity policies; accounts named in a
//! policy are not checked for existence; `kms:ViaService` is never set (no AWS service calls this
//! KMS on a principal's behalf) and `kms:GrantIsForAWSResource` is always false for the same
//! reason. `aws:SecureTransport` is what the listener says ([`Caller::secure_transport`]).
//!
//! Grants follow "Grants in AWS KMS": a grant allows its grantee (an account grantee delegates
//! to the account's IAM policies) the operations it lists under its encryption-context
//! constraint; a grant that includes `CreateGrant` lets its grantee create only grants no broader
//! than itself (operations a subset, constraints at least as strict); a grant is retired by its
//! retiring principal, by its grantee when it includes `RetireGrant`, or by the key's account
//! (its root, or principals its IAM policies delegate `kms:RetireGrant` to), and revoked by whoever
//! the policies give `kms:RevokeGrant`. `ListRetirableGrants` lists only for a retiring principal
//! of the caller's account. `LookupEvents` needs `cloudtrail:LookupEvents` in the caller's IAM
//! policies (root always) and shows only the caller's account. A session whose role has been
//! deleted keeps authenticating but matches no principal that named the role.
#![forbid(unsafe_code)]

mod authz;
mod ciphertext;
mod clock;
mod engine;
mod error;
mod grants;
mod iam;
mod identity;
mod keys;
mod ops;
pub mod policy;
mod root_key;
mod store;
mod trail;

pub use clock::iso8601;
pub use engine::{Engine, EngineConfig, MAX_CLOCK_OFFSET};
pub use error::{ApiError, Code, Error};
pub use iam::{AssumedRole, IamAnswer, IamRequest, RoleInfo, StsAnswer, StsRequest};
pub use identity::{AccessKey, Caller, Identity, IdentityConfig, IdentityKind};
pub use root_key::RootKey;

/// AWS's limit on a key policy document, in bytes.
pub const MAX_POLICY_BYTES: usize = ops::keys::MAX_POLICY_BYTES;
