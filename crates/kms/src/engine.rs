//! The engine: in-memory state behind one lock, the store behind one writer thread, the clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::clock::{Clock, DAY_MS};
use crate::error::{ApiError, Code, Error};
use crate::grants::Grant;
use crate::identity::{AccessKey, Caller, IdentityConfig};
use crate::keys::{material_aad, KeyMeta, KeyRecord, KeyState, Material};
use crate::ops::{self, Cx, Kind, Req};

/// How far ahead of the wall clock a dev engine's clock may be moved, in all: 100 years.
pub const MAX_CLOCK_OFFSET: std::time::Duration =
    std::time::Duration::from_secs(100 * 365 * 86_400);
use crate::root_key::RootKey;
use crate::store::{durable, Op, Store};
use crate::trail;

/// How to open an engine.
pub struct EngineConfig {
    /// Where the SQLite store lives (created when missing).
    pub data_dir: std::path::PathBuf,
    pub root_key: RootKey,
    pub identities: IdentityConfig,
    /// Dev mode: enables [`Engine::reset`] and [`Engine::advance_clock`].
    pub dev: bool,
}

/// The embedded KMS. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

pub(crate) struct Inner {
    pub state: RwLock<State>,
    pub store: Store,
    pub clock: Clock,
    pub root: RootKey,
    pub identities: RwLock<IdentityConfig>,
    pub dev: bool,
    /// The earliest KMS-clock time at which a rotation or deletion is due.
    pub next_due: AtomicI64,
}

pub(crate) struct Alias {
    pub key_id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Default)]
pub(crate) struct State {
    /// By key id (lowercase UUID).
    pub keys: HashMap<String, KeyRecord>,
    /// By (account, region, alias name).
    pub aliases: BTreeMap<(String, String, String), Alias>,
    /// By (key id, grant id), so a key's grants are one range: authorizing a grantee scans only
    /// the grants of the key it uses.
    pub grants: BTreeMap<(String, String), Grant>,
}

impl State {
    pub(crate) fn grants_of<'a>(&'a self, key_id: &'a str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants
            .range((key_id.to_string(), String::new())..)
            .take_while(move |((k, _), _)| k == key_id)
            .map(|(_, g)| g)
    }

    fn next_due(&self) -> i64 {
        self.keys
            .values()
            .filter_map(|k| match k.meta.state {
                KeyState::PendingDeletion => k.meta.deletion_ms,
                KeyState::Enabled if k.meta.rotation_enabled => k.meta.next_rotation_ms,
                _ => None,
            })
            .min()
            .unwrap_or(i64::MAX)
    }
}

const ROOT_CHECK_AAD: &[u8] = b"keyward-kms root key check v1";
const ROOT_CHECK_PLAINTEXT: &[u8] = b"keyward-kms";

impl Engine {
    /// Opens or creates the store under `config.data_dir` and loads every key into memory. Fails
    /// with [`Error::WrongRootKey`] when the root key is not the one the data was created with.
    pub fn open(config: EngineConfig) -> Result<Engine, Error> {
        let root = config.root_key;
        let check = root.wrap(ROOT_CHECK_PLAINTEXT, ROOT_CHECK_AAD);
        let (store, loaded) = Store::open(&config.data_dir, check)?;
        let meta: HashMap<String, Vec<u8>> = loaded.meta.into_iter().collect();
        let stored_check = meta
            .get("root_check")
            .ok_or_else(|| Error::Corrupt("the root-key check value is missing".into()))?;
        if root
            .unwrap(stored_check, ROOT_CHECK_AAD)
            .as_deref()
            .map(|v| v.as_slice())
            != Some(ROOT_CHECK_PLAINTEXT)
        {
            return Err(Error::WrongRootKey {
                data_dir: config.data_dir.display().to_string(),
            });
        }
        let offset = meta
            .get("clock_offset_ms")
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0)
            // A store written before the bound existed may hold any offset; keep it in range.
            .clamp(0, MAX_CLOCK_OFFSET.as_millis() as i64);

        let mut state = State::default();
        for doc in loaded.keys {
            let meta: KeyMeta = serde_json::from_str(&doc)
                .map_err(|e| Error::Corrupt(format!("key record: {e}")))?;
            let uuid = uuid::Uuid::parse_str(&meta.id)
                .map_err(|_| Error::Corrupt(format!("key id {}", meta.id)))?;
            let policy = crate::keys::compile_saved_policy(&meta)
                .map_err(|e| Error::Corrupt(format!("key policy: {e}")))?;
            state.keys.insert(
                meta.id.clone(),
                KeyRecord {
                    meta,
                    policy,
                    uuid,
                    materials: Vec::new(),
                },
            );
        }
        for (key_id, version, wrapped) in loaded.materials {
            let bytes = root
                .unwrap(&wrapped, &material_aad(&key_id, version))
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "material {version} of key {key_id} does not verify under the root key"
                    ))
                })?;
            let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                Error::Corrupt(format!(
                    "material {version} of key {key_id} has the wrong length"
                ))
            })?;
            let material = Material {
                version,
                bytes: zeroize::Zeroizing::new(bytes),
            };
            match state.keys.get_mut(&key_id) {
                Some(k) => k.materials.push(material),
                None => return Err(Error::Corrupt(format!("material for unknown key {key_id}"))),
            }
        }
        if let Some(k) = state.keys.values().find(|k| k.materials.is_empty()) {
            return Err(Error::Corrupt(format!("key {} has no material", k.meta.id)));
        }
        for (account, region, name, key_id, created_ms, updated_ms) in loaded.aliases {
            state.aliases.insert(
                (account, region, name),
                Alias {
                    key_id,
                    created_ms,
                    updated_ms,
                },
            );
        }
        for doc in loaded.grants {
            let g: Grant = serde_json::from_str(&doc)
                .map_err(|e| Error::Corrupt(format!("grant record: {e}")))?;
            state.grants.insert((g.key_id.clone(), g.id.clone()), g);
        }
        let mut identities = config.identities;
        for doc in loaded.roles {
            let doc: crate::iam::RoleDoc = serde_json::from_str(&doc)
                .map_err(|e| Error::Corrupt(format!("role record: {e}")))?;
            let role = crate::iam::Role::load(doc)
                .map_err(|e| Error::Corrupt(format!("role policy: {e}")))?;
            identities.roles.insert(role.doc.arn.clone(), role);
        }
        for (doc, wrapped) in loaded.sessions {
            let doc: crate::iam::SessionDoc = serde_json::from_str(&doc)
                .map_err(|e| Error::Corrupt(format!("session record: {e}")))?;
            let id = doc.access_key_id.clone();
            let session = crate::iam::Session::load(doc, &wrapped, &root).ok_or_else(|| {
                Error::Corrupt(format!(
                    "the secret of session {id} does not verify under the root key"
                ))
            })?;
            identities.sessions.insert(id, session);
        }
        let next_due = state.next_due();
        Ok(Engine {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                store,
                clock: Clock::new(offset),
                root,
                identities: RwLock::new(identities),
                dev: config.dev,
                next_due: AtomicI64::new(next_due),
            }),
        })
    }

    /// For SigV4: who an access key id stands for, and its secret; `None` when unknown. A
    /// temporary key is returned also once expired: check [`Engine::is_expired`] after the
    /// signature, so the caller learns its token expired rather than that it is unknown.
    pub fn access_key(&self, access_key_id: &str) -> Option<AccessKey> {
        let ids = self
            .inner
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner());
        ids.get(access_key_id)
    }

    /// One KMS action (`action` is the part after `TrentService.`), `body` the raw JSON request.
    /// Answers only once the request's trail record (and any change) is durable.
    pub async fn call_kms(
        &self,
        caller: &Caller,
        action: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let inner = &*self.inner;
        if inner.clock.now_ms() >= inner.next_due.load(Ordering::Relaxed) {
            if let Err(e) = self.run_due_work().await {
                tracing::error!(error = %e, "scheduled KMS work failed");
            }
        }
        let now = inner.clock.now_ms();
        let (result, rx) = self.execute(caller, action, body, now);
        match durable(rx).await {
            Ok(()) => result,
            Err(e) => {
                tracing::error!(error = %e, action, "could not make a KMS request durable");
                Err(ApiError::internal())
            }
        }
    }

    fn execute(
        &self,
        caller: &Caller,
        action: &str,
        body: &[u8],
        now: i64,
    ) -> (
        Result<Value, ApiError>,
        tokio::sync::oneshot::Receiver<Result<(), String>>,
    ) {
        let inner = &*self.inner;
        let mut cx = Cx::new(caller, inner, now);
        let Some(kind) = ops::kind(action) else {
            let err = ApiError::new(Code::UnknownOperationException, String::new());
            let rx = self.finish(cx, action, Value::Null, &Err(err.clone()));
            return (Err(err), rx);
        };
        let req = match Req::parse(body) {
            Ok(r) => r,
            Err(e) => {
                let rx = self.finish(cx, action, Value::Null, &Err(e.clone()));
                return (Err(e), rx);
            }
        };
        let params = trail::request_parameters(&req);
        match kind {
            Kind::Read => {
                let st = inner.state.read().unwrap_or_else(|e| e.into_inner());
                let result = ops::run_read(&mut cx, &st, action, &req);
                let rx = self.finish(cx, action, params, &result);
                drop(st);
                (result, rx)
            }
            Kind::Write => {
                let mut st = inner.state.write().unwrap_or_else(|e| e.into_inner());
                let result = ops::run_write(&mut cx, &mut st, action, &req);
                if result.is_err() {
                    // A refused request changes nothing; handlers only queue ops once they succeed.
                    debug_assert!(cx.ops.is_empty(), "{action} queued changes and then failed");
                    cx.ops.clear();
                }
                inner.next_due.store(st.next_due(), Ordering::Relaxed);
                let rx = self.finish(cx, action, params, &result);
                drop(st);
                (result, rx)
            }
        }
    }

    /// Adds the trail records to the request's changes and queues them as one job.
    fn finish(
        &self,
        mut cx: Cx<'_>,
        action: &str,
        params: Value,
        result: &Result<Value, ApiError>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let rows = trail::api_records(&cx, action, params, result);
        cx.ops.extend(rows.into_iter().map(Op::Trail));
        self.inner.store.submit(cx.ops)
    }

    /// CloudTrail's `LookupEvents` over the caller's account and region, for a caller whose IAM
    /// policies allow `cloudtrail:LookupEvents` (root always). Not itself written to the trail.
    pub async fn call_cloudtrail(
        &self,
        caller: &Caller,
        action: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        if action != "LookupEvents" {
            return Err(ApiError::new(
                Code::UnknownOperationException,
                String::new(),
            ));
        }
        let req = Req::parse(body)?;
        let cx = Cx::new(caller, &self.inner, self.inner.clock.now_ms());
        crate::authz::authorize_lookup_events(&cx)?;
        trail::lookup_events(&self.inner.store, caller, &req)
    }

    /// The trail as JSON lines, oldest first.
    pub fn export_trail(&self, out: &mut dyn std::io::Write) -> Result<(), Error> {
        trail::export(&self.inner.store, out)
    }

    /// Dev mode only: clears all keys, aliases, grants and the trail, and resets the clock.
    pub async fn reset(&self) -> Result<(), Error> {
        if !self.inner.dev {
            return Err(Error::NotDev);
        }
        let rx = {
            let mut st = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            *st = State::default();
            self.inner.clock.set_offset_ms(0);
            self.inner.next_due.store(i64::MAX, Ordering::Relaxed);
            self.inner.store.submit(vec![Op::ClearAll])
        };
        durable(rx).await
    }

    /// Dev mode only: moves the KMS clock forward by `by`, then runs what became due.
    ///
    /// The clock may run at most [`MAX_CLOCK_OFFSET`] ahead of the wall clock in all: past that,
    /// epoch arithmetic anywhere (dates in answers, the trail) could overflow, and nothing a test
    /// watches (a 30-day deletion window, a 2,560-day rotation period) needs more. A move that would
    /// go past it is refused with [`Error::ClockOutOfRange`] and changes nothing.
    pub async fn advance_clock(&self, by: std::time::Duration) -> Result<(), Error> {
        if !self.inner.dev {
            return Err(Error::NotDev);
        }
        let limit_ms = MAX_CLOCK_OFFSET.as_millis() as i64;
        let rx = {
            let _st = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            let offset = i64::try_from(by.as_millis())
                .ok()
                .and_then(|by| self.inner.clock.offset_ms().checked_add(by))
                .filter(|offset| *offset <= limit_ms)
                .ok_or(Error::ClockOutOfRange {
                    limit_days: MAX_CLOCK_OFFSET.as_secs() / 86_400,
                })?;
            self.inner.clock.set_offset_ms(offset);
            self.inner.store.submit(vec![Op::SetMeta {
                name: "clock_offset_ms",
                value: offset.to_be_bytes().to_vec(),
            }])
        };
        durable(rx).await?;
        self.run_due_work().await
    }

    /// Runs scheduled work due now on the KMS clock: completes scheduled deletions and rotates keys
    /// whose rotation date has passed (enabled keys only: a disabled key rotates when re-enabled, a
    /// key pending deletion never).
    pub async fn run_due_work(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        // The common case (nothing due) takes no lock, so a periodic tick never stalls requests.
        if inner.clock.now_ms() < inner.next_due.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rx = {
            let mut st = inner.state.write().unwrap_or_else(|e| e.into_inner());
            let now = inner.clock.now_ms();
            let mut ops = Vec::new();
            let due_deletions: Vec<String> = st
                .keys
                .values()
                .filter(|k| {
                    k.meta.state == KeyState::PendingDeletion
                        && k.meta.deletion_ms.is_some_and(|d| d <= now)
                })
                .map(|k| k.meta.id.clone())
                .collect();
            for id in due_deletions {
                let key = st.keys.remove(&id).expect("listed above");
                st.aliases.retain(|_, a| a.key_id != id);
                st.grants.retain(|(k, _), _| *k != id);
                ops.push(Op::DeleteKey { id: id.clone() });
                ops.push(Op::Trail(trail::service_record(
                    "DeleteKey",
                    &key.meta,
                    now,
                )));
            }
            let due_rotations: Vec<String> = st
                .keys
                .values()
                .filter(|k| {
                    k.meta.state == KeyState::Enabled
                        && k.meta.rotation_enabled
                        && k.meta.next_rotation_ms.is_some_and(|d| d <= now)
                })
                .map(|k| k.meta.id.clone())
                .collect();
            for id in due_rotations {
                let key = st.keys.get_mut(&id).expect("listed above");
                ops.extend(rotate(inner, key, now, "AUTOMATIC"));
                key.meta.next_rotation_ms = Some(now + key.meta.rotation_period_days * DAY_MS);
                ops.push(save_op(key));
                ops.push(Op::Trail(trail::service_record(
                    "RotateKey",
                    &key.meta,
                    now,
                )));
            }
            inner.next_due.store(st.next_due(), Ordering::Relaxed);
            if ops.is_empty() {
                None
            } else {
                Some(inner.store.submit(ops))
            }
        };
        match rx {
            Some(rx) => durable(rx).await,
            None => Ok(()),
        }
    }

    pub fn is_dev(&self) -> bool {
        self.inner.dev
    }
}

fn save_op(key: &KeyRecord) -> Op {
    Op::PutKey {
        id: key.meta.id.clone(),
        account: key.meta.account.clone(),
        region: key.meta.region.clone(),
        doc: serde_json::to_string(&key.meta).expect("key metadata serializes"),
    }
}

/// Adds a new material version to `key` (it encrypts from now on) and returns the store op that
/// keeps it, wrapped. The caller saves the key's metadata.
pub(crate) fn rotate(inner: &Inner, key: &mut KeyRecord, now: i64, kind: &str) -> Vec<Op> {
    let version = key.current().version + 1;
    let material = crate::keys::new_material(version);
    let wrapped = inner.root.wrap(
        material.bytes.as_ref(),
        &material_aad(&key.meta.id, version),
    );
    key.materials.push(material);
    key.meta.rotations.push(crate::keys::Rotation {
        date_ms: now,
        kind: kind.to_string(),
    });
    vec![Op::PutMaterial {
        key_id: key.meta.id.clone(),
        version,
        wrapped,
    }]
}
