//! Where the clusters' documents and backups live ([`crate::ObjectsConfig`]): under the data
//! directory, or in an S3 bucket that several replicas share. The one owner of that choice: every
//! store is made here, and a cluster's objects are deleted here, so the code above runs the same on
//! both backends.
//!
//! Layout, the same on both: `<cluster>/documents/<key>` and `<cluster>/backups/<key>` (under
//! `<data_dir>/objects` locally, at the bucket's root on S3).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use keyward_envelope::{Client as Esdk, KmsKeyring};
use keyward_storage::objects::{s3_backend, ObjectClass};
use keyward_storage::EncryptedStore;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::config::{ControlConfig, ObjectsConfig};
use crate::error::{Error, Result};

/// How long the start-up check of a bucket may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) enum Objects {
    /// `<data_dir>/objects`.
    Local { dir: PathBuf },
    /// One backend (one connection pool) for every store of every cluster.
    S3 {
        backend: Arc<dyn ObjectStore>,
        /// Where the bucket is, for messages.
        place: String,
    },
}

impl Objects {
    /// The place the configuration names. Makes no request (see [`Objects::check`]).
    pub(crate) fn new(config: &ControlConfig) -> Result<Objects> {
        Ok(match &config.objects {
            ObjectsConfig::Local => Objects::Local {
                dir: config.data_dir.join("objects"),
            },
            ObjectsConfig::S3(s3) => Objects::S3 {
                backend: s3_backend(s3).map_err(|e| {
                    Error::InvalidRequest(format!("the S3 bucket {:?}: {e}", s3.bucket))
                })?,
                place: match &s3.endpoint {
                    Some(endpoint) => format!("bucket {:?} at {endpoint}", s3.bucket),
                    None => format!("bucket {:?} of Amazon S3 in {}", s3.bucket, s3.region),
                },
            },
        })
    }

    /// Checks that the bucket answers (it exists and the credentials may list it), so a replica
    /// pointed at a wrong one refuses to start instead of failing every cluster later.
    pub(crate) async fn check(&self) -> Result<()> {
        let Objects::S3 { backend, place } = self else {
            return Ok(());
        };
        let probe = Path::from("keyward-start-check");
        match tokio::time::timeout(CHECK_TIMEOUT, backend.list_with_delimiter(Some(&probe))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::InvalidRequest(format!(
                "the S3 {place} cannot be listed: {e}; create the bucket or correct its name, \
                 endpoint, region or credentials"
            ))),
            Err(_) => Err(Error::InvalidRequest(format!(
                "the S3 {place} did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The cluster's store of `class`, encrypting with `esdk`.
    pub(crate) fn store(
        &self,
        cluster_id: &str,
        class: ObjectClass,
        esdk: &Arc<Esdk<KmsKeyring>>,
    ) -> Result<Arc<EncryptedStore>> {
        match self {
            Objects::Local { dir } => EncryptedStore::local(dir, cluster_id, class, esdk.clone()),
            Objects::S3 { backend, .. } => {
                EncryptedStore::new(backend.clone(), cluster_id, class, esdk.clone())
            }
        }
        .map(Arc::new)
        .map_err(Error::internal)
    }

    /// Deletes every object of the cluster's `class`, or of every class with `None`. Objects
    /// already gone are not an error, so a deletion resumed after a crash finishes.
    pub(crate) async fn delete(&self, cluster_id: &str, class: Option<ObjectClass>) -> Result<()> {
        let prefix = match class {
            Some(class) => format!("{cluster_id}/{}", class.as_str()),
            None => cluster_id.to_owned(),
        };
        match self {
            Objects::Local { dir } => remove_dir(&dir.join(prefix)).await,
            Objects::S3 { backend, place } => {
                let failed = |e: object_store::Error| {
                    Error::Internal(format!("deleting {prefix}/ in the {place}: {e}"))
                };
                let prefix_path = Path::parse(&prefix).map_err(|e| failed(e.into()))?;
                let listed = backend
                    .list(Some(&prefix_path))
                    .map_ok(|meta| meta.location)
                    .boxed();
                let mut deleted = backend.delete_stream(listed);
                while let Some(outcome) = deleted.next().await {
                    match outcome {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(other) => return Err(failed(other)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether the objects are in a bucket other replicas share.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Objects::S3 { .. })
    }

    /// The directory of the cluster's `class` when objects are local files (what verification
    /// walks); `None` on S3.
    pub(crate) fn local_dir(&self, cluster_id: &str, class: ObjectClass) -> Option<PathBuf> {
        match self {
            Objects::Local { dir } => Some(dir.join(cluster_id).join(class.as_str())),
            Objects::S3 { .. } => None,
        }
    }
}

/// A directory removed with everything in it; one already gone is not an error.
pub(crate) async fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Internal(format!(
            "cannot delete {}: {e}",
            dir.display()
        ))),
    }
}
