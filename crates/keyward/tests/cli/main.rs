//! The one integration-test binary of the `keyward` crate: the binary's verbs driven as a user (or a
//! script) would, against real child processes and real clients.

mod support;

mod alarms;
mod backups;
mod console;
mod crypt;
mod documents;
mod guide;
mod kms;
mod logs;
mod notifications;
mod replicas;
mod up;
mod volume;
