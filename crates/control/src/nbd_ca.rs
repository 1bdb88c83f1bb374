//! Each cluster's NBD certificate authority, kept across restarts.
//!
//! The CA certificate is stored plainly; its private key only as an ESDK message under the
//! cluster's own key (context: the cluster and [`NBD_CA_PURPOSE`]), so the key that guards the
//! disks guards who may reach them: with the key inaccessible the CA cannot be loaded, as the
//! disks cannot be attached. Files: `<data_dir>/nbd-ca/<cluster>/ca-cert.pem` and
//! `ca-key.pem.esdk`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use keyward_envelope::{Client as Esdk, DecryptOptions, EncryptionContext, KmsKeyring};
use keyward_storage::vocab::{CLUSTER_CONTEXT_KEY, NBD_CA_PURPOSE, PURPOSE_CONTEXT_KEY};
use keyward_storage::ClusterCa;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const CERT_FILE: &str = "ca-cert.pem";
const KEY_FILE: &str = "ca-key.pem.esdk";

fn context(cluster_id: &str) -> EncryptionContext {
    EncryptionContext::from([
        (CLUSTER_CONTEXT_KEY.to_owned(), cluster_id.to_owned()),
        (PURPOSE_CONTEXT_KEY.to_owned(), NBD_CA_PURPOSE.to_owned()),
    ])
}

/// The cluster's CA from `dir`, or a new one stored there (its key wrapped by `esdk`).
pub(crate) async fn load_or_make(
    dir: &Path,
    cluster_id: &str,
    esdk: &Esdk<KmsKeyring>,
) -> Result<ClusterCa> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path)
            .map_err(|e| Error::Internal(format!("NBD CA certificate of {cluster_id}: {e}")))?;
        let mut key = Zeroizing::new(
            std::fs::read(&key_path)
                .map_err(|e| Error::Internal(format!("NBD CA key of {cluster_id}: {e}")))?,
        );
        let context = context(cluster_id);
        let options = DecryptOptions {
            required_keys: context.keys().cloned().collect(),
            context,
        };
        esdk.decrypt_in_place(&mut key, &options)
            .await
            .map_err(|e| Error::Internal(format!("NBD CA key of {cluster_id}: {e}")))?;
        let key = std::str::from_utf8(&key)
            .map_err(|_| Error::Internal(format!("NBD CA key of {cluster_id}: not PEM")))?;
        return ClusterCa::from_pem(cluster_id, &cert, key).map_err(Error::internal);
    }
    let ca = ClusterCa::generate(cluster_id).map_err(Error::internal)?;
    store(dir, &ca, esdk).await?;
    Ok(ca)
}

/// Stores `ca` in `dir`, its key wrapped under the key `esdk` writes under (after a key
/// change, the new key: the old one may go).
pub(crate) async fn store(dir: &Path, ca: &ClusterCa, esdk: &Esdk<KmsKeyring>) -> Result<()> {
    let cluster_id = ca.cluster_id();
    let wrapped = esdk
        .encrypt_to_vec(ca.key_pem().as_bytes(), &context(cluster_id))
        .await
        .map_err(|e| Error::Internal(format!("wrapping the NBD CA key of {cluster_id}: {e}")))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("NBD CA directory of {cluster_id}: {e}")))?;
    // The certificate first: a key file is the mark of a complete CA.
    write(&dir.join(CERT_FILE), ca.cert_pem().as_bytes())?;
    write(&dir.join(KEY_FILE), &wrapped)
}

/// Writes through a temporary file renamed over `path`.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let error = |e: std::io::Error| Error::Internal(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}
