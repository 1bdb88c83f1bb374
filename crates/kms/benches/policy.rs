//! Cost of policy evaluation on the hot path: a realistic 10-statement key policy (the guide's
//! two statements, key administrators, denies and conditions on the encryption context) against
//! AWS's one-statement default policy, for the same `Decrypt` request.
//!
//! Run: `cargo bench -p keyward-kms --bench policy`. Prints ns per evaluation (median of rounds)
//! and the ratio to the default-policy baseline measured in the same run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::aead;

use keyward_kms::policy::{
    default_key_policy, evaluate, Policy, Principal, PrincipalKind, RequestContext,
};

const A: &str = "111122223333";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE: &str = "arn:aws:iam::111122223333:role/keyward/cluster-7";
const ADMIN: &str = "arn:aws:iam::111122223333:role/KeyAdmin";

const TEN_STATEMENTS: &str = r#"{
  "Version": "2012-10-17",
  "Id": "keyward-cluster-7",
  "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "Allow access for Key Administrators", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
     "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
     "Resource": "*"},
    {"Sid": "Allow keyward cluster role basic key access", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/keyward/cluster-7"},
     "Action": ["kms:DescribeKey", "kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:cluster": "c-7"}}},
    {"Sid": "Allow keyward cluster role to create grants for encrypted disks", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/keyward/cluster-7"},
     "Action": ["kms:CreateGrant"], "Resource": "*"},
    {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
     "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
    {"Sid": "Only admins may delete", "Effect": "Deny",
     "NotPrincipal": {"AWS": ["arn:aws:iam::111122223333:role/KeyAdmin", "arn:aws:iam::111122223333:root"]},
     "Action": ["kms:ScheduleKeyDeletion", "kms:DisableKey"], "Resource": "*"},
    {"Sid": "Known accounts only", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
     "Condition": {"StringNotEquals": {"kms:CallerAccount": ["111122223333", "444455556666"]}}},
    {"Sid": "Partner decrypt", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
     "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*",
     "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["cluster", "class"]}}},
    {"Sid": "Via S3 only", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
     "Action": ["kms:Encrypt", "kms:ReEncrypt*"], "Resource": "*",
     "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}},
    {"Sid": "No decrypt without context", "Effect": "Deny", "Principal": "*",
     "Action": "kms:Decrypt", "Resource": "*",
     "Condition": {"Null": {"kms:EncryptionContextKeys": "true"}}}
  ]
}"#;

fn ids(arn: &str) -> Option<String> {
    match arn {
        ROLE => Some("AROACLUSTERSEVEN0001".into()),
        ADMIN => Some("AROAKEYADMIN00000001".into()),
        "arn:aws:iam::111122223333:user/alice" => Some("AIDAALICEEXAMPLE0001".into()),
        _ => None,
    }
}

/// ns per call of `f` for one round of `iters` calls.
fn round(iters: u32, f: &mut impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

/// (minimum, median) ns per call of `f` and of `g`, over `rounds` rounds that alternate between
/// them so both see the same background load on a shared machine. The minimum is the figure to
/// compare: other load only ever adds time.
fn measure_pair(
    rounds: usize,
    iters: u32,
    mut f: impl FnMut() -> bool,
    mut g: impl FnMut() -> bool,
) -> ((f64, f64), (f64, f64)) {
    round(iters, &mut f);
    round(iters, &mut g);
    let (mut fs, mut gs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        fs.push(round(iters, &mut f));
        gs.push(round(iters, &mut g));
    }
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    (stats(fs), stats(gs))
}

fn main() {
    let mut ten = Policy::parse(TEN_STATEMENTS).expect("the benchmark policy parses");
    ten.resolve_principals(ids).expect("principals resolve");
    let default = Policy::parse(&default_key_policy(A)).expect("the default policy parses");
    let identity = Policy::parse_identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*"}]}"#,
    )
    .expect("the identity policy parses");
    let identity = [identity];

    let session = Principal {
        kind: PrincipalKind::AssumedRole,
        arn: "arn:aws:sts::111122223333:assumed-role/cluster-7/node-1",
        account: A,
        principal_id: "AROACLUSTERSEVEN0001:node-1",
        role_arn: Some(ROLE),
        issuer_deleted: false,
    };
    let ec: BTreeMap<String, String> = [
        ("cluster".to_string(), "c-7".to_string()),
        ("class".to_string(), "documents".to_string()),
    ]
    .into();
    let mut ctx = RequestContext::new(session, "Decrypt", KEY, A);
    ctx.encryption_context = Some(&ec);
    ctx.encryption_algorithm = Some("SYMMETRIC_DEFAULT");

    // Both must allow, or the comparison means nothing.
    assert!(evaluate(&ctx, &ten, &[]).is_allowed());
    assert!(evaluate(&ctx, &default, &identity).is_allowed());

    let (rounds, iters) = (41, 100_000);
    let (base, ten_ns) = measure_pair(
        rounds,
        iters,
        || evaluate(black_box(&ctx), black_box(&default), black_box(&identity)).is_allowed(),
        || evaluate(black_box(&ctx), black_box(&ten), black_box(&[])).is_allowed(),
    );
    // A yardstick from the same run: the AES-256-GCM open of a 32-byte data key that every
    // Decrypt performs anyway (the request also pays SigV4, JSON, storage and the trail).
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &[7u8; 32]).expect("a 32-byte key"),
    );
    let nonce = [9u8; 12];
    let mut sealed = vec![5u8; 32];
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(KEY.as_bytes()),
        &mut sealed,
    )
    .expect("seal");
    let (gcm, _) = measure_pair(
        rounds,
        iters / 10,
        || {
            let mut buf = black_box(sealed.clone());
            key.open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(KEY.as_bytes()),
                &mut buf,
            )
            .is_ok()
        },
        || true,
    );
    let (parse_ns, _) = measure_pair(
        11,
        1_000,
        || Policy::parse(black_box(TEN_STATEMENTS)).is_ok(),
        || true,
    );

    println!("policy evaluation, Decrypt by a role session with a 2-pair encryption context");
    println!("(ns per call: minimum / median of {rounds} rounds of {iters})");
    println!(
        "  default policy + identity policy : {:7.1} / {:7.1} ns/evaluation (baseline)",
        base.0, base.1
    );
    println!(
        "  10-statement policy              : {:7.1} / {:7.1} ns/evaluation ({:.2}x / {:.2}x)",
        ten_ns.0,
        ten_ns.1,
        ten_ns.0 / base.0,
        ten_ns.1 / base.1
    );
    println!(
        "  AES-256-GCM open of a data key   : {:7.1} / {:7.1} ns (yardstick: 10-statement policy = {:.0}% of it)",
        gcm.0,
        gcm.1,
        100.0 * ten_ns.0 / gcm.0
    );
    println!(
        "  parse of the 10-statement policy : {:7.1} / {:7.1} ns/parse (once per save or load)",
        parse_ns.0, parse_ns.1
    );
}
