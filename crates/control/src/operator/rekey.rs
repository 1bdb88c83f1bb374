//! Changing a running cluster's key: every data key of every storage class re-wrapped under the
//! new key, online, with progress.
//!
//! When the facade applies a second key, the cluster goes to `rewrapping` with `rewrap_to` = the
//! new key, and the operator runs [`run`]:
//! 1. new data keys come from the new key at once, and objects under either key open (the
//!    cluster's ESDK client is rebuilt with the new key as generator and the old one for
//!    decryption only);
//! 2. every object of the documents and backups stores, then every disk header, is re-wrapped
//!    (`keyward_storage::rewrap::{rewrap_object, rewrap_volume}`: KMS `ReEncrypt` from the old key
//!    to the new one, under two short-lived grants the role gives itself when the key policies
//!    do not allow `ReEncrypt`, retired at the end); `rewrap_done` / `rewrap_total` record the
//!    progress;
//! 3. the disks are attached again through grants on the new key (their NBD export restarts on
//!    the same port: connected clients reconnect), so nothing keeps using the old key;
//! 4. the cluster's key becomes the new one, the client forgets the old key, the health monitor
//!    watches the new key, and the state returns to `ready`: verification then shows no
//!    reference to the old key, which the customer may disable without effect.
//!
//! A crash at any point resumes: the state is still `rewrapping`, and an item already under the
//! new key is answered "already re-wrapped" without a KMS call. A document written meanwhile is
//! never lost to a re-wrap of its older version: puts and deletes wait while their object is
//! being re-wrapped.

use keyward_envelope::rewrap::Rewrapper;
use keyward_envelope::EncryptionContext;
use keyward_storage::rewrap::{rewrap_object, rewrap_volume};
use keyward_storage::vocab::CLUSTER_CONTEXT_KEY;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::runtime::ClusterRuntime;
use crate::shared::Shared;

pub(super) async fn run(
    shared: &Shared,
    cluster: &Cluster,
    runtime: &ClusterRuntime,
) -> Result<()> {
    let Some(progress) = &cluster.rewrap else {
        return Ok(());
    };
    let (old, new) = (progress.from_key_arn.clone(), progress.to_key_arn.clone());
    let repo = &shared.repo;

    // 1. Write under the new key, read under both.
    if runtime.write_key_arn() != new {
        runtime.use_keys(shared, &new, Some(&old)).await?;
    }

    // 2. Everything there is to re-wrap.
    let documents = runtime.documents();
    let backups = runtime.backups();
    let mut objects = Vec::new();
    for store in [&documents, &backups] {
        let listed = store.list("").await.map_err(Error::internal)?;
        objects.extend(listed.into_iter().map(|e| (store.clone(), e.key)));
    }
    let volumes: Vec<std::path::PathBuf> = runtime
        .disks()
        .await
        .list
        .iter()
        .map(|d| d.path.clone())
        .collect();
    repo.rewrap_total(&cluster.id, (objects.len() + volumes.len()) as u64)
        .await?;

    let context = EncryptionContext::from([(CLUSTER_CONTEXT_KEY.to_owned(), cluster.id.clone())]);
    let rewrapper = Rewrapper::new(runtime.kms(shared).await, &old, &new)
        .with_grants(&runtime.role_arn, &context);
    let outcome = async {
        let mut done = 0u64;
        for (store, key) in &objects {
            // Writers of this object wait until its new version is published.
            let _exclusive = runtime.rewrapping().await;
            match rewrap_object(store, key, &rewrapper).await {
                Ok(_) => {}
                // Deleted meanwhile: nothing left to re-wrap.
                Err(keyward_storage::ObjectError::NotFound { .. }) => {}
                Err(error) => {
                    return Err(Error::Internal(format!(
                        "re-wrapping object {key}: {error}"
                    )))
                }
            }
            done += 1;
            repo.rewrap_done(&cluster.id, done).await?;
        }
        for path in &volumes {
            rewrap_volume(path, &rewrapper).await.map_err(|error| {
                Error::Internal(format!("re-wrapping disk {}: {error}", path.display()))
            })?;
            done += 1;
            repo.rewrap_done(&cluster.id, done).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = rewrapper.finish().await {
        tracing::warn!(cluster = %cluster.id, %error, "re-wrap grants not retired");
    }
    outcome?;

    // 3. The disks attached again under the new key.
    runtime.reattach_disks(shared).await?;

    // 4. The new key is the cluster's.
    repo.finish_rewrap(&cluster.id, &new).await?;
    runtime.switch_key(shared, &new).await?;
    runtime.check_now(shared).await;
    tracing::info!(cluster = %cluster.id, from = %old, to = %new, "key changed");
    Ok(())
}
