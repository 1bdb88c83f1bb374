//! Integration tests of encrypted volumes: the NBD export driven by real
//! third-party clients (qemu-io, nbdinfo, nbdcopy, fio), an independent
//! decryption in Python, the KMS attach/detach through the real server, and the
//! verification scan of a cluster's volumes and object directories, the object
//! stores on the local filesystem and on a real S3 server, and backups.
//! The tools come from scripts/test; a missing tool fails the test.

mod backups;
mod common;
mod headers;
mod kms_attach;
mod nbd_clients;
mod nbd_protocol;
mod nbd_tls;
mod objects;
mod s3;
mod verify;
