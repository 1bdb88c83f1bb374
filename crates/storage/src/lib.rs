//! keyward-storage: the storage classes under the customer's key.
//!
//! What it does today:
//! - [`volume`]: encrypted block volumes (the engine's and the search engine's
//!   persistent disks). One file per volume: a 4 KiB authenticated header, then
//!   AES-256-XTS sectors in dm-crypt's `aes-xts-plain64` layout, so a Linux host
//!   with the unwrapped key opens a volume with `cryptsetup open --type plain`.
//!   The data key is generated and unwrapped by KMS the way EBS does it
//!   (`GenerateDataKeyWithoutPlaintext`, then a grant per attachment and
//!   `Decrypt` under it), and lives in memory only while attached.
//! - [`nbd`]: an NBD server (fixed-newstyle, several requests in flight) that
//!   exports attached volumes to user-space clients (qemu, libnbd's tools, fio):
//!   on TCP only after `NBD_OPT_STARTTLS` with a client certificate from the
//!   cluster's CA ([`ClusterCa`]), or on a 0600 unix socket; every resource a
//!   client can hold is bounded ([`Limits`]). A detached volume fails every
//!   request with `EIO` and takes no new connections.
//! - [`verify`]: the scan behind the console's encryption status: per storage
//!   class, whether every volume and object is encrypted under the cluster's key
//!   and bound to the cluster and class, the counts, and every offender by name.
//! - [`objects`]: the documents and backups stores on `object_store` — the
//!   local filesystem, or Amazon S3 / any S3-compatible endpoint
//!   ([`objects::S3Config`]): every object an ESDK v2 message bound to its
//!   cluster, class and key, published atomically (a rename; on S3 the single
//!   PUT or the multipart completion).
//! - [`backup`]: backups of a cluster's disks and documents into its backup
//!   store — parts (ESDK messages, SHA-256 of each in the manifest) and a
//!   manifest written last — listed only when complete, and restored into new
//!   volumes (new ids, new data keys) and a new documents store or prefix after
//!   checking the manifest against the parts. A disk blocks writes while its
//!   copy is taken; memory stays bounded whatever the size.
//!
//! What it does not do: talk to KMS by any way but `aws-sdk-kms`; store a
//! plaintext key anywhere but in memory; discard (punch holes in) volume data —
//! like dm-crypt's default, TRIM is accepted and ignored, because holes would
//! reveal which sectors are in use; make incremental backups (each backup is
//! a full copy), snapshot several disks at one instant (each disk is frozen in
//! turn), or expire old backups (the caller deletes them); remove the
//! unfinished multipart uploads a crash leaves on S3 (a bucket lifecycle rule
//! does that).

#![forbid(unsafe_code)]

pub mod backup;
pub mod error;
pub mod nbd;
pub mod objects;
pub mod rewrap;
pub mod verify;
pub mod vocab;
pub mod volume;

pub use error::{Error, Result};
pub use nbd::{
    ClientCredentials, ClusterCa, Limits, NbdConfig, NbdHandle, NbdServer, NbdTls, Transport,
};
pub use objects::{EncryptedStore, ObjectError};
pub use verify::{scan, ClassReport, Offender, Reason, ScanReport, ScanRequest};
pub use vocab::{ObjectClass, StorageClass};
pub use volume::header::VolumeHeader;
pub use volume::kms::{attach_volume, create_volume, Attachment, AwsKms, KeyService, NewVolume};
pub use volume::xts::{DataKey, XtsCipher};
pub use volume::{Volume, VolumeFile};
