//! `keyward serve`: one control-plane replica. Several replicas share one PostgreSQL database and
//! one S3 bucket (documents and backups) and reach a KMS — AWS itself, or an embedded
//! `keyward kms serve` named by `--kms-endpoint`. Every replica serves the whole API.
//!
//! What stays on the node, under `--data-dir`: the disks' volume files and the clusters' NBD CAs
//! (disks belong to the node that holds their files), and `replica-id`, this replica's name among
//! the others (made once, kept across restarts).
//!
//! Secrets come from the environment or from files, never from the command line (where `ps`
//! shows them): the operator's AWS credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! also used for S3), and the admin token (`--admin-token-file` or `KEYWARD_ADMIN_TOKEN`).
//! Every flag is checked before anything listens: a SQLite URL, a bucket that does not answer or a
//! missing credential stops the replica at start with what to do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use keyward_api::AdminToken;
use keyward_control::{ControlConfig, ControlPlane, ObjectsConfig};
use keyward_storage::objects::S3Config;
use zeroize::Zeroizing;

use crate::up_cmd::{serve_plane, PlaneArgs};

/// The file under `--data-dir` that keeps this replica's id.
const REPLICA_ID_FILE: &str = "replica-id";
/// The environment variable that may hold the admin token.
const ADMIN_TOKEN_ENV: &str = "KEYWARD_ADMIN_TOKEN";

#[derive(Args)]
pub struct ServeArgs {
    /// The API's address. Loopback by default: it speaks plain HTTP (put a TLS terminator or a
    /// load balancer in front of the replicas).
    #[arg(long, default_value = "127.0.0.1:4600")]
    listen: SocketAddr,
    /// The PostgreSQL database every replica shares: `postgres://user:password@host:port/db`.
    /// Read from the environment variable when the flag is absent (a URL may hold a password).
    #[arg(long, env = "KEYWARD_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The S3 bucket of documents and backups, shared by every replica. It must exist.
    #[arg(long)]
    s3_bucket: String,
    /// An S3-compatible endpoint (e.g. `http://127.0.0.1:9000`); Amazon S3 when absent.
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The bucket's region (default: --region).
    #[arg(long)]
    s3_region: Option<String>,
    /// The KMS, IAM and STS endpoint of an embedded `keyward kms serve`; AWS itself when absent.
    #[arg(long, value_name = "URL")]
    kms_endpoint: Option<String>,
    /// The region of the operator's calls and of clusters created without one.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The platform's AWS account (12 digits): the account of the operator and of the clusters'
    /// roles.
    #[arg(long, default_value = "111122223333", value_name = "ID")]
    platform_account_id: String,
    /// This node's files: disks' volumes, NBD CAs, and the replica id.
    #[arg(long, default_value = "keyward-data")]
    data_dir: PathBuf,
    /// The address the NBD exports of this node's disks listen on (and their certificates name).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    nbd_host: IpAddr,
    /// This replica's name among the others (letters, digits, '-', '_', '.'). Default: the one
    /// kept in `<data-dir>/replica-id`, made at the first start.
    #[arg(long)]
    replica_id: Option<String>,
    /// The file holding the admin token (which creates organizations); otherwise the
    /// KEYWARD_ADMIN_TOKEN environment variable. Every replica takes the same token.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    plane: PlaneArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (mut config, admin) = config(&args)?;
    let replica = config.replica_id.clone();
    // Listening first: the replica list shows where this replica's API is.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the API (is another replica running there? pass --listen)",
                args.listen
            )
        })?;
    let api_url = format!("http://{}", listener.local_addr()?);
    config.replica_api_url = api_url.clone();
    let plane = ControlPlane::open(config)
        .await
        .context("cannot start the control plane")?;
    // Tests and scripts read this line: keep its shape.
    println!("keyward replica {replica} serving: API {api_url}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    tracing::info!(api = %api_url, replica = %replica, "serving");
    serve_plane(listener, &plane, admin, args.plane.limits()).await
}

/// The flags, checked and turned into the control plane's configuration and the admin token,
/// before anything listens.
fn config(args: &ServeArgs) -> anyhow::Result<(ControlConfig, AdminToken)> {
    if !args.database_url.starts_with("postgres://")
        && !args.database_url.starts_with("postgresql://")
    {
        let shown = if args.database_url.starts_with("sqlite:") {
            "a SQLite URL"
        } else {
            "not a PostgreSQL URL"
        };
        bail!(
            "--database-url is {shown}: replicas share one PostgreSQL database, so \
             `keyward serve` needs postgres://user:password@host:port/db (for one process on \
             SQLite, run `keyward up`)"
        );
    }
    let operator_id = env_secret("AWS_ACCESS_KEY_ID")?;
    let operator_secret = env_secret("AWS_SECRET_ACCESS_KEY")?;
    let admin = admin_token(args.admin_token_file.as_deref())?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let replica_id = match &args.replica_id {
        Some(id) => id.clone(),
        None => stored_replica_id(&args.data_dir)?,
    };
    keyward_control::check_replica_id(&replica_id)?;

    let mut config = ControlConfig::embedded(
        &args.data_dir,
        args.kms_endpoint.clone().unwrap_or_default(),
        operator_id.as_str(),
        operator_secret.as_str(),
    );
    config.aws_endpoint_url = args.kms_endpoint.clone();
    config.database_url = args.database_url.clone();
    config.default_region = args.region.clone();
    config.platform_account_id = args.platform_account_id.clone();
    config.nbd_host = args.nbd_host;
    config.replica_id = replica_id;
    // The S3 credentials are the environment's (`credentials: None`), as the AWS SDKs take them.
    config.objects = ObjectsConfig::S3(S3Config {
        endpoint: args.s3_endpoint.clone(),
        region: args
            .s3_region
            .clone()
            .unwrap_or_else(|| args.region.clone()),
        bucket: args.s3_bucket.clone(),
        credentials: None,
    });
    args.plane.apply(&mut config);
    Ok((config, admin))
}

fn env_secret(name: &str) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Zeroizing::new(value)),
        _ => bail!(
            "{name} is not set: the operator's AWS credentials come from AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (for an embedded KMS, the platform operator's access key)"
        ),
    }
}

/// The admin token from its file, else from the environment.
fn admin_token(file: Option<&Path>) -> anyhow::Result<AdminToken> {
    let (token, from) =
        match file {
            Some(path) => (
                Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the admin token file {}", path.display())
                })?),
                path.display().to_string(),
            ),
            None => match std::env::var(ADMIN_TOKEN_ENV) {
                Ok(token) => (Zeroizing::new(token), ADMIN_TOKEN_ENV.to_owned()),
                Err(_) => bail!(
                    "no admin token: pass --admin-token-file FILE or set {ADMIN_TOKEN_ENV}; every \
                 replica takes the same token (`kwadmin_` and 43 base64url characters, e.g. from \
                 the `admin_token` of a `keyward up`'s up.json)"
                ),
            },
        };
    AdminToken::from_string(token.trim().to_owned()).with_context(|| {
        format!("the admin token of {from} is not one (it starts with `kwadmin_`)")
    })
}

/// The id kept in `<data_dir>/replica-id`, made (`r-` and 8 random bytes in hex) and written
/// once.
fn stored_replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(REPLICA_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("r-{}", uuid::Uuid::new_v4().simple());
    crate::up_cmd::write_private_new(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}
