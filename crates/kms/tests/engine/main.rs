//! Drives the engine through its public API: the same calls the wire makes, without HTTP.

mod crypto;
mod durability;
mod errors;
mod fuzz;
mod grants;
mod lifecycle;
mod policy;
mod policy_cases;
mod policy_table;
mod rotation;
mod trail;

use std::path::Path;

use keyward_kms::{ApiError, Caller, Engine, EngineConfig, Identity, IdentityConfig, RootKey};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";
pub const REGION: &str = "us-east-1";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: Engine,
    pub root: [u8; 32],
}

pub fn root_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8 * 7 + 1;
    }
    b
}

pub fn open_at(dir: &Path, root: [u8; 32]) -> Result<Engine, keyward_kms::Error> {
    Engine::open(EngineConfig {
        data_dir: dir.to_path_buf(),
        root_key: RootKey::from_bytes(root),
        identities: IdentityConfig::empty(),
        dev: true,
    })
}

impl Default for Fixture {
    fn default() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_at(dir.path(), root_bytes()).unwrap();
        Fixture {
            dir,
            engine,
            root: root_bytes(),
        }
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::default()
    }

    /// An engine whose identity config knows IAM users and their identity policies.
    pub fn with_identities(identities: IdentityConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig {
            data_dir: dir.path().to_path_buf(),
            root_key: RootKey::from_bytes(root_bytes()),
            identities,
            dev: true,
        })
        .unwrap();
        Fixture {
            dir,
            engine,
            root: root_bytes(),
        }
    }

    /// Every trail record, oldest first.
    pub fn trail(&self) -> Vec<Value> {
        let mut out = Vec::new();
        self.engine.export_trail(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Closes and reopens the engine on the same data.
    pub fn reopen(&mut self) {
        let engine = open_at(self.dir.path(), self.root).unwrap();
        self.engine = engine;
    }

    pub async fn call(&self, action: &str, body: Value) -> Result<Value, ApiError> {
        self.call_as(&root_caller(ACCOUNT), action, body).await
    }

    pub async fn call_as(
        &self,
        caller: &Caller,
        action: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.engine
            .call_kms(caller, action, body.to_string().as_bytes())
            .await
    }

    pub async fn ok(&self, action: &str, body: Value) -> Value {
        match self.call(action, body).await {
            Ok(v) => v,
            Err(e) => panic!("{action} failed: {e}"),
        }
    }

    pub async fn err(&self, action: &str, body: Value) -> ApiError {
        match self.call(action, body).await {
            Ok(v) => panic!("{action} succeeded unexpectedly: {v}"),
            Err(e) => e,
        }
    }

    pub async fn create_key(&self) -> (String, String) {
        let v = self.ok("CreateKey", json!({})).await;
        (
            v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string(),
            v["KeyMetadata"]["Arn"].as_str().unwrap().to_string(),
        )
    }

    pub async fn describe(&self, key: &str) -> Value {
        self.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone()
    }

    /// A snapshot of everything observable about the caller's account, to show a refused request
    /// changed nothing (the trail aside).
    pub async fn snapshot(&self) -> Value {
        let keys = self.ok("ListKeys", json!({})).await;
        let mut described = Vec::new();
        for k in keys["Keys"].as_array().unwrap() {
            let id = k["KeyId"].as_str().unwrap();
            let meta = self.describe(id).await;
            let tags = self.ok("ListResourceTags", json!({"KeyId": id})).await;
            let policy = self.ok("GetKeyPolicy", json!({"KeyId": id})).await;
            let rot = self.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
            let rots = self.ok("ListKeyRotations", json!({"KeyId": id})).await;
            let grants = self.ok("ListGrants", json!({"KeyId": id})).await;
            described.push(json!([meta, tags, policy, rot, rots, grants]));
        }
        let aliases = self.ok("ListAliases", json!({})).await;
        json!({"keys": described, "aliases": aliases})
    }
}

pub fn root_caller(account: &str) -> Caller {
    Caller {
        identity: Identity::root(account),
        access_key_id: "AKIAROOTTESTKEY00001".into(),
        region: REGION.into(),
        source_ip: "127.0.0.1".into(),
        secure_transport: false,
        user_agent: "keyward-tests".into(),
        request_id: uuid_like(),
    }
}

pub fn user_caller(account: &str, name: &str) -> Caller {
    Caller {
        identity: Identity::iam_user(account, name),
        access_key_id: "AKIAUSERTESTKEY00001".into(),
        ..root_caller(account)
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(v: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}
