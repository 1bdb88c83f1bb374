//! Where `keyward up` keeps the embedded KMS's root key: never inside the data directory, so a copy
//! of the data directory (a backup, a stray `cp -r`) holds only wrapped key material.
//!
//! In order of precedence: `--root-key-file FILE`; the hex in `KEYWARD_KMS_ROOT_KEY`; the default
//! `<config-dir>/root-keys/<store-id>.key`, where `<store-id>` is a random name kept in
//! `<data-dir>/kms/store-id` so that several data directories each find their own key. A root key
//! is created only for a KMS store that does not exist yet; for an existing store a missing key is
//! an error that says where the key was expected and what losing it means.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keyward_kms::RootKey;

/// The root key as 64 hex characters, for deployments that hand secrets over in the environment.
pub const ROOT_KEY_ENV: &str = "KEYWARD_KMS_ROOT_KEY";
/// Overrides the config directory (tests, several users of one account).
pub const CONFIG_DIR_ENV: &str = "KEYWARD_CONFIG_DIR";
/// The file in the KMS directory that names the store's root key file.
const STORE_ID_FILE: &str = "store-id";
/// Where an earlier version of `keyward up` kept the root key, inside the data directory.
const LEGACY_ROOT_KEY_FILE: &str = "dev-root.key";
/// The KMS store's database; its presence means the store already exists.
const KMS_STORE_FILE: &str = "kms.sqlite3";

/// keyward's per-user configuration directory.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("keyward"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("keyward")),
        None => bail!(
            "cannot tell where to keep the KMS root key: set {CONFIG_DIR_ENV} (or HOME), or pass \
             --root-key-file FILE"
        ),
    }
}

/// The root key of the KMS store in `kms_dir`, from outside `data_dir`.
pub fn resolve(data_dir: &Path, kms_dir: &Path, file: Option<&Path>) -> anyhow::Result<RootKey> {
    let store_exists = kms_dir.join(KMS_STORE_FILE).exists();
    if let Some(path) = file {
        refuse_inside(data_dir, path)?;
        return load_or_create(path, store_exists, data_dir);
    }
    if let Ok(hex) = std::env::var(ROOT_KEY_ENV) {
        return RootKey::from_hex(hex.trim())
            .with_context(|| format!("{ROOT_KEY_ENV} must hold 64 hex characters (32 bytes)"));
    }
    let store_id = store_id(kms_dir)?;
    let path = config_dir()?
        .join("root-keys")
        .join(format!("{store_id}.key"));
    refuse_inside(data_dir, &path)?;
    move_legacy_key(kms_dir, &path)?;
    load_or_create(&path, store_exists, data_dir)
}

fn load_or_create(path: &Path, store_exists: bool, data_dir: &Path) -> anyhow::Result<RootKey> {
    if path.exists() {
        return RootKey::from_file(path).with_context(|| {
            format!(
                "cannot read the KMS root key {}; it must hold 32 raw bytes or 64 hex characters",
                path.display()
            )
        });
    }
    if store_exists {
        bail!(
            "the KMS root key of {data} is missing: it is kept outside the data directory, at {key}, \
             and that file does not exist.\n\
             Copying a data directory does not copy its root key, by design: without it nothing in \
             {data} can be decrypted.\n\
             Pass --root-key-file FILE (or set {ROOT_KEY_ENV}) with the root key this data was \
             created with, or copy that key file to {key}. If the key is lost, so is every KMS key \
             in this store: start afresh with a new --data-dir.",
            data = data_dir.display(),
            key = path.display(),
        );
    }
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    RootKey::load_or_create_dev(path)
        .with_context(|| format!("cannot create the KMS root key {}", path.display()))
}

/// The store's id: read, or made for a new store (or one made before the id existed).
fn store_id(kms_dir: &Path) -> anyhow::Result<String> {
    let path = kms_dir.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if uuid::Uuid::parse_str(id).is_err() {
                bail!(
                    "{} does not hold a store id (a UUID); restore it from a copy of the data \
                     directory or pass --root-key-file FILE",
                    path.display()
                );
            }
            Ok(id.to_owned())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A data directory made before the root key moved out: move its key to `to` and say so.
fn move_legacy_key(kms_dir: &Path, to: &Path) -> anyhow::Result<()> {
    let legacy = kms_dir.join(LEGACY_ROOT_KEY_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    if !to.exists() {
        if let Some(parent) = to.parent() {
            create_private_dir(parent)?;
        }
        let key = RootKey::from_file(&legacy)
            .with_context(|| format!("cannot read the KMS root key {}", legacy.display()))?;
        drop(key);
        // Copy (the config directory may be on another file system), sync, then remove the old.
        std::fs::copy(&legacy, to).with_context(|| {
            format!(
                "cannot move the KMS root key from {} to {}",
                legacy.display(),
                to.display()
            )
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))?;
        std::fs::File::open(to)?.sync_all()?;
    }
    std::fs::remove_file(&legacy).with_context(|| format!("cannot remove {}", legacy.display()))?;
    eprintln!(
        "keyward: moved the KMS root key out of the data directory to {}",
        to.display()
    );
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// A root key inside the data directory would defeat the point: refuse it.
fn refuse_inside(data_dir: &Path, key: &Path) -> anyhow::Result<()> {
    let absolute = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Resolve what exists (symlinks included) so `data/../data/x` is caught too.
        let mut existing = p.as_path();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => break,
            }
        }
        let mut resolved = existing
            .canonicalize()
            .unwrap_or_else(|_| existing.to_path_buf());
        for name in rest.into_iter().rev() {
            resolved.push(name);
        }
        resolved
    };
    if absolute(key).starts_with(absolute(data_dir)) {
        bail!(
            "the KMS root key {} is inside the data directory {}: keep it elsewhere, so that a \
             copy of the data directory alone decrypts nothing",
            key.display(),
            data_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_inside_the_data_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("kms")).unwrap();
        assert!(refuse_inside(&data, &data.join("kms/root.key")).is_err());
        assert!(refuse_inside(&data, &data.join("../data/root.key")).is_err());
        assert!(refuse_inside(&data, &dir.path().join("root.key")).is_ok());
        assert!(refuse_inside(&data, &dir.path().join("data-keys/root.key")).is_ok());
    }

    #[test]
    fn an_existing_store_never_gets_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let key = dir.path().join("keys/root.key");
        let error = load_or_create(&key, true, &data).err().unwrap().to_string();
        assert!(
            error.contains("missing") && error.contains("--root-key-file"),
            "{error}"
        );
        assert!(!key.exists());
        load_or_create(&key, false, &data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
