//! `keyward up`: everything on one machine — the embedded KMS (with IAM and STS), the control plane
//! and the REST API on loopback, all under one data directory.
//!
//! Layout of the data directory (stable across restarts: the same credentials and tokens):
//!
//! ```text
//! <data-dir>/
//!   kms/identities.toml   the platform's and the customer's access keys (0600)
//!   kms/store-id          names this store's root key file (not a secret)
//!   kms/...               the KMS store, its key material wrapped by the root key
//!   control/              the control plane's database, volumes and objects
//!   up.json               what `keyward up` printed: URLs, credentials, tokens (0600)
//! ```
//!
//! The KMS root key is never in the data directory: by default it is
//! `<config-dir>/root-keys/<store-id>.key` (0600; the config directory is `$KEYWARD_CONFIG_DIR`,
//! else `$XDG_CONFIG_HOME/keyward`, else `~/.config/keyward`), or the file `--root-key-file` names,
//! or the hex in `KEYWARD_KMS_ROOT_KEY`. A copy of the data directory alone decrypts nothing, and
//! losing the root key loses every key in the store, so every cluster's data with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use keyward_api::embedded::{
    self, Identities, CUSTOMER_ACCOUNT, CUSTOMER_ADMIN_USER, OPERATOR_USER, PLATFORM_ACCOUNT,
};
use keyward_api::{AdminToken, Limits};
use keyward_control::{ControlConfig, ControlPlane};
use keyward_kms::{Engine, EngineConfig, IdentityConfig};
use serde_json::json;
use zeroize::Zeroizing;

use crate::kms_cmd::shutdown_signal;

#[derive(Args)]
pub struct UpArgs {
    /// Where everything is kept.
    #[arg(long, default_value = "keyward-data")]
    data_dir: PathBuf,
    /// The API's address. Loopback by default: it speaks plain HTTP.
    #[arg(long, default_value = "127.0.0.1:4600")]
    listen: SocketAddr,
    /// The embedded KMS's address (also IAM and STS).
    #[arg(long, default_value = "127.0.0.1:4599")]
    kms_listen: SocketAddr,
    #[command(flatten)]
    plane: PlaneArgs,
    /// The KMS root key's file (32 raw bytes or 64 hex characters), outside the data directory.
    /// Created (0600) when the KMS store is new. Default: `<config-dir>/root-keys/<store-id>.key`.
    #[arg(long, value_name = "FILE", env = "KEYWARD_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// Serve the KMS's test clock (`POST /_keyward/clock`, for tests that watch a deletion window
    /// pass), obeyed only with the admin token as `Authorization: Bearer`. Off by default.
    #[arg(long)]
    test_clock: bool,
}

/// What runs the control plane and its API, the same for `keyward up` and `keyward serve`.
#[derive(Args)]
pub struct PlaneArgs {
    /// How often every cluster's key is probed, e.g. 10s, 2s, 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    probe_interval: Duration,
    /// How often the key-rotated alarm asks KMS which key material is current (one DescribeKey
    /// per cluster), e.g. 1h, 10s.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    key_material_check_interval: Duration,
    /// How long a deleted cluster's backups are kept (listed by `keyward backup retained`,
    /// restorable) before they are deleted, e.g. 30d, 12h.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    backup_retention: Duration,
    /// The size of each engine and search disk, e.g. 64M, 1G (a multiple of 4 KiB).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    disk_size: u64,
    /// The largest document the API stores, e.g. 64M, 5G. Documents stream through (encrypted
    /// as they arrive, decrypted as they are sent): this bounds what one document may take on
    /// disk, not memory. Larger uploads answer 413 and store nothing.
    #[arg(long, default_value = "5G", value_parser = parse_size)]
    max_document_size: u64,
    /// Let alarm webhooks reach loopback, private and link-local addresses. Off by default: on a
    /// shared host such a webhook is a door into the platform's own network (SSRF). For a
    /// single-tenant install or tests whose receiver listens on loopback.
    #[arg(long)]
    allow_private_webhooks: bool,
}

impl PlaneArgs {
    /// `config` with these flags applied.
    pub fn apply(&self, config: &mut ControlConfig) {
        config.probe_interval = self.probe_interval;
        config.key_material_check_interval = self.key_material_check_interval;
        config.disk_size_bytes = self.disk_size;
        config.backup_retention = self.backup_retention;
        config.notifications.allow_private_destinations = self.allow_private_webhooks;
    }

    /// The API's bounds.
    pub fn limits(&self) -> Limits {
        Limits {
            max_document_bytes: self.max_document_size,
            ..Limits::default()
        }
    }
}

/// Serves the API of `plane` on `listener` until SIGTERM or Ctrl-C; then stops accepting, lets the
/// requests in flight end, and shuts the control plane down (operator stopped, disks detached).
pub async fn serve_plane(
    listener: tokio::net::TcpListener,
    plane: &ControlPlane,
    admin: AdminToken,
    limits: Limits,
) -> anyhow::Result<()> {
    let router = keyward_api::router(plane.clone(), admin, limits);
    let served = keyward_api::serve(listener, router, shutdown_signal()).await;
    tracing::info!("stopped accepting; shutting the control plane down");
    plane.shutdown().await;
    served.context("the API server stopped")
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let kms_dir = args.data_dir.join("kms");
    let control_dir = args.data_dir.join("control");
    for dir in [&args.data_dir, &kms_dir, &control_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }

    // The admin token first: the KMS's test clock, when asked for, obeys only it.
    let up_path = args.data_dir.join("up.json");
    let previous: Option<serde_json::Value> = std::fs::read_to_string(&up_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let admin = match previous.as_ref().and_then(|v| v["admin_token"].as_str()) {
        Some(token) => AdminToken::from_string(token.to_owned()).with_context(|| {
            format!(
                "{} holds a bad admin token; delete the file to make new tokens",
                up_path.display()
            )
        })?,
        None => AdminToken::generate()?,
    };

    // The KMS, with its IAM users; its root key from outside the data directory.
    let (identities, operator, customer) = load_or_create_identities(&kms_dir)?;
    let root_key =
        crate::root_key_place::resolve(&args.data_dir, &kms_dir, args.root_key_file.as_deref())?;
    let engine = Engine::open(EngineConfig {
        data_dir: kms_dir.clone(),
        root_key,
        identities,
        dev: true,
    })
    .with_context(|| format!("cannot open the KMS store in {}", kms_dir.display()))?;
    let kms_listener = tokio::net::TcpListener::bind(args.kms_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the KMS (is another `keyward up` running? pass --kms-listen)",
                args.kms_listen
            )
        })?;
    let kms_endpoint = format!("http://{}", kms_listener.local_addr()?);
    let (stop_kms, kms_stopped) = tokio::sync::oneshot::channel::<()>();
    // No reset route, ever; the test clock only when asked for, and then to the admin token only.
    let kms_options = keyward_kms_server::ServeOptions {
        test_clock: args.test_clock,
        reset: false,
        admin_token: Some(keyward_kms_server::AdminToken::new(admin.expose())),
    };
    let kms_task = tokio::spawn(keyward_kms_server::serve_with(
        kms_listener,
        engine,
        kms_options,
        async move {
            let _ = kms_stopped.await;
        },
    ));

    // The control plane, acting only as the operator user.
    let mut config = ControlConfig::embedded(
        &control_dir,
        &kms_endpoint,
        operator.0.clone(),
        operator.1.as_str(),
    );
    args.plane.apply(&mut config);
    let api_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the API (is another `keyward up` running? pass --listen)",
                args.listen
            )
        })?;
    let api_url = format!("http://{}", api_listener.local_addr()?);
    config.replica_api_url = api_url.clone();
    let plane = ControlPlane::open(config)
        .await
        .context("cannot start the control plane")?;

    // One organization's token, made once and kept in up.json beside the admin token.
    let (organization, org_token) = match previous.as_ref().and_then(|v| {
        Some((
            keyward_control::Organization {
                id: v["organization"]["id"].as_str()?.to_owned(),
                name: v["organization"]["name"].as_str()?.to_owned(),
            },
            v["token"].as_str()?.to_owned(),
        ))
    }) {
        Some((org, token)) if plane.authenticate(&token).await.is_ok() => {
            (org, Zeroizing::new(token))
        }
        _ => {
            let (org, token) = create_default_organization(&plane).await?;
            (org, Zeroizing::new(token.expose().to_owned()))
        }
    };

    let up = json!({
        "api_url": api_url,
        "kms_endpoint": kms_endpoint,
        "region": "us-east-1",
        "data_dir": args.data_dir.display().to_string(),
        "admin_token": admin.expose(),
        "organization": organization,
        "token": org_token.as_str(),
        "platform": {
            "account_id": PLATFORM_ACCOUNT,
            "user_arn": embedded::operator_arn(),
            "access_key_id": operator.0,
            "secret_access_key": operator.1.as_str(),
        },
        "customer": {
            "account_id": CUSTOMER_ACCOUNT,
            "user_arn": format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:user/{CUSTOMER_ADMIN_USER}"),
            "access_key_id": customer.0,
            "secret_access_key": customer.1.as_str(),
        },
        "probe_interval_ms": args.plane.probe_interval.as_millis() as u64,
    });
    write_private_replace(&up_path, serde_json::to_string_pretty(&up)?.as_bytes())?;
    print_banner(&up, &up_path);
    tracing::info!(api = %api_url, kms = %kms_endpoint, "serving");

    let served = serve_plane(api_listener, &plane, admin, args.plane.limits()).await;
    let _ = stop_kms.send(());
    let _ = kms_task.await;
    served
}

/// The access keys of the operator and of the customer's admin: (id, secret) each.
type KeyPair = (String, Zeroizing<String>);

fn load_or_create_identities(kms_dir: &Path) -> anyhow::Result<(IdentityConfig, KeyPair, KeyPair)> {
    let path = kms_dir.join("identities.toml");
    if !path.exists() {
        let generated = Identities::generate();
        write_private_new(&path, generated.to_toml().as_bytes())?;
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    let config = IdentityConfig::from_toml_str(&text).with_context(|| {
        format!(
            "{} is not a valid identities file; delete it (and the KMS store) to start afresh",
            path.display()
        )
    })?;
    let find = |account: &str, user: &str| -> anyhow::Result<KeyPair> {
        config
            .access_keys()
            .into_iter()
            .find(|(_, key)| {
                key.identity.account_id == account
                    && key.identity.user_name.as_deref() == Some(user)
            })
            .map(|(id, key)| {
                (
                    id,
                    Zeroizing::new(String::from_utf8_lossy(key.secret()).into_owned()),
                )
            })
            .with_context(|| {
                format!(
                    "{} has no access key of user {user} in account {account}",
                    path.display()
                )
            })
    };
    let operator = find(PLATFORM_ACCOUNT, OPERATOR_USER)?;
    let customer = find(CUSTOMER_ACCOUNT, CUSTOMER_ADMIN_USER)?;
    Ok((config, operator, customer))
}

async fn create_default_organization(
    plane: &ControlPlane,
) -> anyhow::Result<(keyward_control::Organization, keyward_control::ApiToken)> {
    match plane.create_organization("default").await {
        Err(keyward_control::Error::Conflict(_)) => {
            // up.json was lost while the database kept "default": start a fresh organization.
            let name = format!("default-{}", std::process::id());
            Ok(plane.create_organization(&name).await?)
        }
        other => Ok(other?),
    }
}

fn print_banner(up: &serde_json::Value, up_path: &Path) {
    let p = &up["platform"];
    let c = &up["customer"];
    let kms = up["kms_endpoint"].as_str().unwrap_or_default();
    // Tests and scripts read the first line and then up.json: keep their shape.
    println!(
        "keyward is up: API {}",
        up["api_url"].as_str().unwrap_or_default()
    );
    println!("KMS, IAM and STS endpoint: {kms} (region us-east-1)");
    println!();
    println!("The customer, account {CUSTOMER_ACCOUNT} (user {CUSTOMER_ADMIN_USER}):");
    println!(
        "  export AWS_ENDPOINT_URL={kms} AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
        c["access_key_id"].as_str().unwrap_or_default(),
        c["secret_access_key"].as_str().unwrap_or_default()
    );
    println!("The platform, account {PLATFORM_ACCOUNT} (user {OPERATOR_USER}, what the control plane acts as):");
    println!(
        "  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
        p["access_key_id"].as_str().unwrap_or_default(),
        p["secret_access_key"].as_str().unwrap_or_default()
    );
    println!(
        "Admin token (creates organizations): {}",
        up["admin_token"].as_str().unwrap_or_default()
    );
    println!(
        "Organization {} token: {}",
        up["organization"]["id"].as_str().unwrap_or_default(),
        up["token"].as_str().unwrap_or_default()
    );
    println!(
        "All of this is in {} (the keyward CLI reads it).",
        up_path.display()
    );
    println!();
    println!("Next, in another shell (the guide's four steps):");
    println!("  keyward cluster create demo                       # step 1: note the cluster id and role ARN");
    println!(
        "  keyward cluster key-policy <id> --full-policy-for {CUSTOMER_ACCOUNT} > policy.json"
    );
    println!("  aws kms create-key --policy file://policy.json    # step 2, as the customer (exports above)");
    println!("  keyward cluster associate <id> <key ARN>          # step 3");
    println!("  keyward cluster verify <id>                       # step 4");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Creates a file readable by its owner only; fails if it exists.
pub(crate) fn write_private_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Replaces a file atomically (a 0600 temporary file renamed over it).
fn write_private_replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private_new(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration like 10s, 500ms, 1m, 12h or 30d");
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| text.split_at(i))
        .ok_or_else(bad)?;
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(duration)
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64M or 1G"))?;
    let size = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))?;
    if size == 0 || size % 4096 != 0 {
        return Err(format!("{text} must be a positive multiple of 4 KiB"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        for bad in ["", "2", "s", "0s", "0d", "2w", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert!(parse_size("1000").is_err());
        assert!(parse_size("0").is_err());
    }
}
