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
//!   exports attached volumes on loopback TCP or a unix socket to user-space
//!   clients (qemu, libnbd's tools, fio). A detached volume fails every request
//!   with `EIO` and takes no new connections.
//! - [`verify`]: the scan behind the console's encryption status: per storage
//!   class, whether every volume and object is encrypted under the cluster's key
//!   and bound to the cluster and class, the counts, and every offender by name.
//! - [`objects`]: the documents and backups stores on `object_store` (the local
//!   filesystem; S3 by configuration): every object an ESDK v2 message bound
//!   to its cluster, class and key, published atomically.
//!
//! What it does not do: talk to KMS by any way but `aws-sdk-kms`; store a
//! plaintext key anywhere but in memory; discard (punch holes in) volume data —
//! like dm-crypt's default, TRIM is accepted and ignored, because holes would
//! reveal which sectors are in use; the backup format (manifest and parts) is
//! not built yet.

#![forbid(unsafe_code)]

pub mod error;
pub mod nbd;
pub mod objects;
pub mod verify;
pub mod volume;

pub use error::{Error, Result};
pub use nbd::NbdServer;
pub use objects::{EncryptedStore, ObjectClass, ObjectError};
pub use verify::{scan, ClassReport, Offender, Reason, ScanReport, ScanRequest, StorageClass};
pub use volume::header::VolumeHeader;
pub use volume::kms::{attach_volume, create_volume, Attachment, AwsKms, KeyService, NewVolume};
pub use volume::xts::{DataKey, XtsCipher};
pub use volume::{Volume, VolumeFile};
