//! Integration tests of the KMS wire server: the real server on 127.0.0.1 with an OS-chosen port,
//! driven by aws-sdk-kms and by raw signed HTTP for what the SDK would never send.

mod raw;
mod support;

mod admin;
mod authz;
mod bad_input;
mod concurrency;
mod connections;
mod fuzz;
mod guide_cli;
mod iam;
mod lifecycle;
mod policy;
mod sigv4;
mod trail;
