//! The AWS wire protocols in front of the keyward KMS engine.
//!
//! What it does: serves AWS JSON 1.1 on `POST /` — `X-Amz-Target: TrentService.<Action>` to
//! [`keyward_kms::Engine::call_kms`] and CloudTrail's `LookupEvents` to
//! [`keyward_kms::Engine::call_cloudtrail`] — after verifying the request's SigV4 signature
//! ([`sigv4`]); answers in the shape the AWS SDKs parse, errors as `{"__type", "message"}` with AWS's
//! HTTP status (mapped in [`error::status_of`]) and `x-amzn-RequestId` on every answer. On the
//! same listener it serves IAM's role verbs and STS (`AssumeRole`, `GetCallerIdentity`) in the AWS
//! query protocol (form-encoded `Action=`, XML answers), recognised by the SigV4 credential scope's
//! service (`iam`, `sts`) when no `X-Amz-Target` is sent, so the aws CLI and the SDKs use one
//! endpoint URL for all three. Temporary (STS) credentials must carry their session token and are
//! refused once expired on the KMS clock (`ExpiredTokenException` / `ExpiredToken`). A dev engine
//! may also serve `POST /_keyward/clock` and `POST /_keyward/reset`, each only when
//! [`ServeOptions`] asks for it and only to an account root or the admin token ([`admin`]).
//! [`serve`] runs the engine's due work (rotations, deletions) every second.
//!
//! Feature `test-support` (tests and benchmarks only): `DevServer`, a dev engine and server on
//! loopback with SDK configs for it, and the SigV4 `Signer` for raw requests.
//!
//! What it does not do: parse or validate KMS request bodies, authorize, or keep any state — the
//! engine does all of that and writes the trail. It knows nothing of clusters. No TLS: it listens
//! on loopback by default; put a TLS terminator in front of it to expose it.
#![forbid(unsafe_code)]

pub mod admin;
#[cfg(feature = "test-support")]
mod dev;
pub mod error;
mod query;
pub mod sigv4;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use keyward_kms::Engine;

pub use admin::AdminToken;
#[cfg(feature = "test-support")]
pub use dev::DevServer;
pub use error::{Error, Result};
pub use wire::{router, Transport, MAX_BODY_BYTES};

/// The region `DevServer` clients sign for.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The account `DevServer` creates.
pub const DEFAULT_DEV_ACCOUNT: &str = "111122223333";

/// What a listener serves beyond the AWS protocols. Everything is off by default, and the admin
/// routes exist only on a dev engine whatever is asked here.
#[derive(Default)]
pub struct ServeOptions {
    /// Serve `POST /_keyward/clock` (move the KMS clock forward).
    pub test_clock: bool,
    /// Serve `POST /_keyward/reset` (delete every key, alias, grant and trail record).
    pub reset: bool,
    /// A bearer token the admin routes accept besides a SigV4 signature of an account root.
    pub admin_token: Option<AdminToken>,
}

/// Serves `engine` on `listener` until `shutdown` completes, with no admin route. See
/// [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, engine, ServeOptions::default(), shutdown).await
}

/// Serves `engine` on `listener` until `shutdown` completes, running the engine's due work every
/// second. Connections are kept alive and `TCP_NODELAY` is set, so small JSON answers leave at once.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    engine: Engine,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let ticker = tokio::spawn(run_due_work_every_second(engine.clone()));
    let app = router(engine, options);
    let listener = listener.tap_io(|tcp| {
        // Without it a keep-alive client can wait on Nagle's algorithm for every answer.
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    ticker.abort();
    result.map_err(Error::Io)
}

async fn run_due_work_every_second(engine: Engine) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = engine.run_due_work().await {
            tracing::warn!(%error, "scheduled KMS work failed; will retry");
        }
    }
}
