//! `keyward kms ...`: the embedded KMS server and its trail.
//!
//! Flags are turned into an [`EngineConfig`] before anything listens, so a missing or wrong root key
//! or credentials file fails at startup with what to do next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_kms::{Engine, EngineConfig, IdentityConfig, RootKey};

use crate::root_key_place::ROOT_KEY_ENV;
/// Dev-mode files, kept beside the data so a restart finds the same key and credentials.
const DEV_ROOT_KEY_FILE: &str = "dev-root.key";
const DEV_CREDENTIALS_FILE: &str = "dev-credentials.toml";

#[derive(Subcommand)]
pub enum KmsCommand {
    /// Serve the AWS-compatible KMS (KMS JSON 1.1, CloudTrail LookupEvents, SigV4).
    Serve(ServeArgs),
    /// The CloudTrail-format trail of every KMS call.
    #[command(subcommand)]
    Trail(TrailCommand),
}

#[derive(Subcommand)]
pub enum TrailCommand {
    /// Write every trail record as JSON lines (one CloudTrail record per line), oldest first.
    Export(ExportArgs),
}

/// Where the store is and how to unwrap it.
#[derive(Args)]
pub struct StoreArgs {
    /// Directory of the KMS store (SQLite, WAL).
    #[arg(long, default_value = "keyward-data/kms")]
    data_dir: PathBuf,
    /// Development mode: the root key is `<data-dir>/dev-root.key` (created 0600 when missing) and a
    /// default account with printed (root) credentials is created.
    #[arg(long)]
    dev: bool,
    /// File holding the root key (32 raw bytes or 64 hex characters). Otherwise the root key is read
    /// from the environment variable KEYWARD_KMS_ROOT_KEY.
    #[arg(long, value_name = "FILE")]
    root_key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: the server speaks plain HTTP.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// The account the dev mode creates (12 digits).
    #[arg(long, default_value = "111122223333", value_name = "ID")]
    account_id: String,
    /// TOML file of accounts and their access keys ([[account]] id, [[account.access_key]] id,
    /// secret, principal).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// With --dev: serve `POST /_keyward/clock` to move the KMS clock forward (for tests that
    /// watch a rotation or a deletion window). Only an account root's SigV4-signed request is
    /// obeyed.
    #[arg(long, requires = "dev")]
    test_clock: bool,
    /// With --dev: serve `POST /_keyward/reset`, which deletes every key, alias, grant and trail
    /// record. Only an account root's SigV4-signed request is obeyed.
    #[arg(long, requires = "dev")]
    allow_reset: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub async fn run(command: KmsCommand) -> anyhow::Result<()> {
    match command {
        KmsCommand::Serve(args) => serve(args).await,
        KmsCommand::Trail(TrailCommand::Export(args)) => export(args),
    }
}

fn root_key(store: &StoreArgs) -> anyhow::Result<RootKey> {
    if let Some(path) = &store.root_key_file {
        return RootKey::from_file(path).with_context(|| {
            format!(
                "cannot read the root key from {}; it must hold 32 raw bytes or 64 hex characters",
                path.display()
            )
        });
    }
    if let Ok(hex) = std::env::var(ROOT_KEY_ENV) {
        return RootKey::from_hex(hex.trim())
            .with_context(|| format!("{ROOT_KEY_ENV} must hold 64 hex characters (32 bytes)"));
    }
    if store.dev {
        std::fs::create_dir_all(&store.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                store.data_dir.display()
            )
        })?;
        let path = store.data_dir.join(DEV_ROOT_KEY_FILE);
        return RootKey::load_or_create_dev(&path)
            .with_context(|| format!("cannot create or read the dev root key {}", path.display()));
    }
    bail!(
        "no root key: the KMS store is encrypted under a root key that must be supplied.\n\
         Pass --root-key-file FILE (32 raw bytes or 64 hex characters) or set {ROOT_KEY_ENV}; \
         generate one with `head -c 32 /dev/urandom > root.key && chmod 600 root.key`.\n\
         For a local trial, run `keyward kms serve --dev` instead."
    )
}

fn open_engine(store: &StoreArgs, identities: IdentityConfig) -> anyhow::Result<Engine> {
    let root_key = root_key(store)?;
    Engine::open(EngineConfig {
        data_dir: store.data_dir.clone(),
        root_key,
        identities,
        dev: store.dev,
    })
    .with_context(|| {
        format!(
            "cannot open the KMS store in {} (if the root key is wrong for this data, supply the one it was created with)",
            store.data_dir.display()
        )
    })
}

/// Dev credentials survive restarts: created once, written 0600 beside the data, read back after.
fn dev_identities(
    data_dir: &Path,
    account_id: &str,
) -> anyhow::Result<(IdentityConfig, String, String)> {
    let path = data_dir.join(DEV_CREDENTIALS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config = IdentityConfig::from_toml_str(&text).with_context(|| {
            format!(
                "{} is not a valid credentials file; delete it to start afresh",
                path.display()
            )
        })?;
        let (id, key) = config.access_keys().into_iter().next().with_context(|| {
            format!(
                "{} holds no access key; delete it to start afresh",
                path.display()
            )
        })?;
        let secret = String::from_utf8_lossy(key.secret()).into_owned();
        let account = key.identity.account_id.clone();
        if account != account_id {
            tracing::warn!(
                "--account-id {account_id} ignored: {} already holds account {account}",
                path.display()
            );
        }
        return Ok((config, account, format!("{id}\n{secret}")));
    }
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account-id must be 12 digits, got {account_id:?}");
    }
    let config = IdentityConfig::dev(account_id);
    let (id, key) = config
        .access_keys()
        .into_iter()
        .next()
        .context("the dev identity config has no access key")?;
    let secret = String::from_utf8_lossy(key.secret()).into_owned();
    let text = format!(
        "# Dev-mode credentials of `keyward kms serve --dev` (created once, reused on restart).\n\
         [[account]]\nid = \"{account_id}\"\n\n[[account.access_key]]\nid = \"{id}\"\nsecret = \"{secret}\"\nprincipal = \"root\"\n"
    );
    write_private(&path, text.as_bytes())?;
    let config =
        IdentityConfig::from_toml_str(&text).context("the dev credentials do not parse back")?;
    Ok((config, account_id.to_owned(), format!("{id}\n{secret}")))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut dev_login = None;
    let identities = match (&args.credentials, args.store.dev) {
        (Some(path), _) => IdentityConfig::from_toml_file(path)
            .with_context(|| format!("cannot load the credentials file {}", path.display()))?,
        (None, true) => {
            std::fs::create_dir_all(&args.store.data_dir)
                .with_context(|| format!("cannot create {}", args.store.data_dir.display()))?;
            let (config, account, login) = dev_identities(&args.store.data_dir, &args.account_id)?;
            dev_login = Some((account, login));
            config
        }
        (None, false) => bail!(
            "no credentials: pass --credentials FILE, a TOML file of accounts and access keys:\n\
             [[account]]\nid = \"111122223333\"\n[[account.access_key]]\nid = \"AKIA...\"\nsecret = \"...\"\nprincipal = \"root\"\n\
             For a local trial, run `keyward kms serve --dev` instead."
        ),
    };
    let engine = open_engine(&args.store, identities)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another server running there?)",
                args.listen
            )
        })?;
    let address = listener.local_addr()?;
    let endpoint = format!("http://{address}");

    // Tests and scripts read these lines: keep their shape.
    println!("keyward KMS listening on {endpoint}");
    if let Some((account, login)) = &dev_login {
        let (id, secret) = login.split_once('\n').unwrap_or_default();
        println!(
            "dev mode: account {account}, data in {}",
            args.store.data_dir.display()
        );
        println!("AWS_ACCESS_KEY_ID={id}");
        println!("AWS_SECRET_ACCESS_KEY={secret}");
        println!("AWS_DEFAULT_REGION=us-east-1");
        println!();
        println!("Next, in another shell:");
        println!("  export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1");
        println!("  aws kms create-key --endpoint-url {endpoint} --description my-first-key");
    }
    {
        use std::io::Write;
        std::io::stdout().flush()?;
    }
    tracing::info!(%endpoint, dev = args.store.dev, "serving");
    let options = keyward_kms_server::ServeOptions {
        test_clock: args.test_clock,
        reset: args.allow_reset,
        admin_token: None,
    };
    keyward_kms_server::serve_with(listener, engine, options, shutdown_signal())
        .await
        .context("the KMS server stopped")?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C: every long-running command stops on either.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    // Exporting needs the store, not the callers.
    let engine = open_engine(&args.store, IdentityConfig::empty())?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            engine
                .export_trail(&mut out)
                .context("cannot export the trail")?;
            use std::io::Write;
            out.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            engine
                .export_trail(&mut out)
                .context("cannot export the trail")?;
            use std::io::Write;
            out.flush()?;
        }
    }
    Ok(())
}
