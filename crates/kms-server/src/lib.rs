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
//! Connections are bounded ([`ConnectionLimits`]): a keep-alive connection that sends no new
//! request within the idle timeout is closed (as is one whose request headers take that long),
//! and past the maximum the listener stops accepting until one closes, so idle or stalled
//! clients cannot hold descriptors without end.
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
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use keyward_kms::Engine;
use tower::ServiceExt;

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

/// How many connections a listener serves at once and how long one may sit idle.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A connection with no new request (or unfinished request headers) for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 60 s idle, as AWS's endpoints close idle connections after about a minute (an SDK's
    /// pool drops its own sooner); 4,096 connections.
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
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
/// second. Connections are kept alive and `TCP_NODELAY` is set, so small JSON answers leave at once;
/// they are bounded by the default [`ConnectionLimits`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    engine: Engine,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with_limits(
        listener,
        engine,
        options,
        ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// [`serve_with`] with the given connection limits. On `shutdown` the listener closes, idle
/// connections are closed and requests in flight are answered first.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    engine: Engine,
    options: ServeOptions,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let ticker = tokio::spawn(run_due_work_every_second(engine.clone()));
    let app = router(engine, options);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "cannot accept a KMS connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without it a keep-alive client can wait on Nagle's algorithm for every answer.
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            limits.idle_timeout,
            stopping.clone(),
            slot,
        ));
        // Reap the connections that ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    ticker.abort();
    Ok(())
}

/// One HTTP/1.1 connection, until the client closes it, it idles past `idle_timeout`, or the
/// server stops (after the request in flight is answered). Holds its slot until it ends.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    idle_timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Runs from the end of one answer to the end of the next request's headers, so it is
        // also the keep-alive idle timeout.
        .header_read_timeout(idle_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    let mut connection = std::pin::pin!(connection);
    let mut asked_to_stop = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = stopping.wait_for(|stop| *stop), if !asked_to_stop => {
                asked_to_stop = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
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
