//! The AWS wire protocols in front of the keyward KMS engine.
//!
//! What it does: serves AWS JSON 1.1 on `POST /` — `X-Amz-Target: TrentService.<Action>` to
//! [`keyward_kms::Engine::call_kms`] and CloudTrail's `LookupEvents` to
//! [`keyward_kms::Engine::call_cloudtrail`] — after verifying the request's SigV4 signature
//! ([`sigv4`]); answers in the shape the AWS SDKs parse, errors as `{"__type", "message"}` with AWS's
//! HTTP status (mapped in [`error::http_status`]) and `x-amzn-RequestId` on every answer. On the
//! same listener it serves IAM's role verbs and STS (`AssumeRole`, `GetCallerIdentity`) in the AWS
//! query protocol (form-encoded `Action=`, XML answers), recognised by the SigV4 credential scope's
//! service (`iam`, `sts`) when no `X-Amz-Target` is sent, so the aws CLI and the SDKs use one
//! endpoint URL for all three. Temporary (STS) credentials must carry their session token and are
//! refused once expired on the KMS clock (`ExpiredTokenException` / `ExpiredToken`). A dev engine
//! may also serve `POST /_keyward/clock` and `POST /_keyward/reset`, each only when
//! [`ServeOptions`] asks for it and only to an account root or the admin token ([`admin`]).
//! [`serve`] runs the engine's due work (rotations, deletions) every second.
//!
//! What it does not do: parse or validate KMS request bodies, authorize, or keep any state — the
//! engine does all of that and writes the trail. It knows nothing of clusters. No TLS: it listens
//! on loopback by default; put a TLS terminator in front of it to expose it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
mod query;
pub mod sigv4;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::serve::ListenerExt;
use keyward_kms::Engine;

pub use admin::AdminToken;
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

/// A dev-mode engine and server on `127.0.0.1:0`, for other crates' tests.
///
/// The root key lives in `<data_dir>/dev-root.key` (created 0600 on first use), the account is
/// [`DEFAULT_DEV_ACCOUNT`] with one root access key. It serves the test clock and reset routes
/// (to account roots only). The server stops when the value is dropped.
pub struct DevServer {
    engine: Engine,
    endpoint: String,
    account_id: String,
    access_key_id: String,
    secret_access_key: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl DevServer {
    /// Starts the server inside the current tokio runtime. Panics (it is a test helper) when the
    /// engine cannot open `data_dir` or no port can be bound.
    pub fn start(data_dir: &Path) -> DevServer {
        match Self::try_start(data_dir, DEFAULT_DEV_ACCOUNT) {
            Ok(server) => server,
            Err(error) => panic!(
                "cannot start the dev KMS server in {}: {error}",
                data_dir.display()
            ),
        }
    }

    /// Like [`DevServer::start`], with a chosen account id, returning errors.
    pub fn try_start(data_dir: &Path, account_id: &str) -> Result<DevServer> {
        Self::try_start_with(data_dir, keyward_kms::IdentityConfig::dev(account_id))
    }

    /// Like [`DevServer::try_start`], with the accounts, users and access keys of `identities`
    /// (for tests that need several accounts or IAM users). The first access key listed is the
    /// server's own credentials ([`DevServer::access_key_id`], [`DevServer::sdk_config`]); reach
    /// the others with [`DevServer::sdk_config_as`].
    pub fn try_start_with(
        data_dir: &Path,
        identities: keyward_kms::IdentityConfig,
    ) -> Result<DevServer> {
        std::fs::create_dir_all(data_dir)?;
        let root_key = keyward_kms::RootKey::load_or_create_dev(&data_dir.join("dev-root.key"))
            .map_err(|e| Error::Engine(e.to_string()))?;
        let (access_key_id, key) = identities
            .access_keys()
            .into_iter()
            .next()
            .ok_or_else(|| Error::Engine("the identity config has no access key".into()))?;
        let account_id = key.identity.account_id.clone();
        let secret_access_key = String::from_utf8_lossy(key.secret()).into_owned();
        let engine = Engine::open(keyward_kms::EngineConfig {
            data_dir: data_dir.to_path_buf(),
            root_key,
            identities,
            dev: true,
        })
        .map_err(|e| Error::Engine(e.to_string()))?;
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let address = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = engine.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let options = ServeOptions {
                test_clock: true,
                reset: true,
                admin_token: None,
            };
            if let Err(error) = serve_with(listener, served, options, shutdown).await {
                tracing::error!(%error, "dev KMS server stopped");
            }
        });
        Ok(DevServer {
            engine,
            endpoint: format!("http://{address}"),
            account_id,
            access_key_id,
            secret_access_key,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    pub fn account_id(&self) -> &str {
        &self.account_id
    }
    pub fn region(&self) -> &str {
        DEFAULT_REGION
    }
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
    /// The engine behind the server (for trail exports and clock moves in tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// An SDK config that talks to this server with its dev credentials.
    #[cfg(feature = "test-support")]
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_as(&self.access_key_id, &self.secret_access_key)
            .await
    }

    /// An SDK config that talks to this server with another access key of its identities.
    #[cfg(feature = "test-support")]
    pub async fn sdk_config_as(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> aws_config::SdkConfig {
        let credentials = aws_credential_types::Credentials::from_keys(
            access_key_id.to_owned(),
            secret_access_key.to_owned(),
            None,
        );
        self.sdk_config_for_session(&credentials).await
    }

    /// An SDK config that talks to this server (KMS, IAM and STS alike) with any credentials,
    /// e.g. the temporary ones of an STS session (`AssumeRole`), session token included.
    #[cfg(feature = "test-support")]
    pub async fn sdk_config_for_session(
        &self,
        credentials: &aws_credential_types::Credentials,
    ) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(DEFAULT_REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials.clone())
            .load()
            .await
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
