//! `DevServer`: a dev-mode engine and server on loopback for tests and benchmarks (feature
//! `test-support`). The binary never uses it: `keyward kms serve` and `keyward up` open their
//! engine and call [`crate::serve_with`] themselves.

use std::path::Path;

use keyward_kms::Engine;

use crate::{serve_with, Error, Result, ServeOptions, DEFAULT_DEV_ACCOUNT, DEFAULT_REGION};

/// A dev-mode engine and server on `127.0.0.1:0`, for tests and benchmarks (feature
/// `test-support`; the binary serves through [`serve_with`] and never uses it).
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
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_as(&self.access_key_id, &self.secret_access_key)
            .await
    }

    /// An SDK config that talks to this server with another access key of its identities.
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
