//! `keyward volume ...`: encrypted block volumes and their NBD export.
//!
//! - `create`: a new volume file whose data key comes from KMS
//!   (`GenerateDataKeyWithoutPlaintext` under `{"keyward:volume-id": id, …}`).
//! - `info`: what a volume's header says, without KMS and without the key.
//! - `attach`: check that a node can open the volume, the EBS way (a grant to the
//!   node, `Decrypt` under it, the header MAC verified), then detach and retire
//!   the grant.
//! - `serve`: attach and export the volume over NBD until interrupted: on TCP with
//!   TLS required and a client certificate (`nbds://`), and/or on a 0600 unix
//!   socket. The CA that issues the server and client certificates is kept in
//!   `--tls-dir` (its key in a 0600 file), so a restart keeps the client credentials
//!   working; the client's `ca-cert.pem`, `client-cert.pem` and `client-key.pem` are
//!   written to `--tls-dir`/client. Plain TCP only with `--insecure-plain-tcp`
//!   (tests). KMS is asked again every `--recheck-seconds`, and a refusal detaches
//!   the volume at once (requests fail with EIO); once KMS allows the key again the
//!   volume re-attaches by itself (a fresh grant if the old one was revoked).
//!
//! KMS is reached through `aws-sdk-kms` with the usual AWS configuration
//! (environment, profiles), `--endpoint-url` pointing it at the embedded server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_storage::nbd::bind_unix;
use keyward_storage::{
    attach_volume, create_volume, AwsKms, ClusterCa, NbdConfig, NbdServer, NewVolume, VolumeFile,
};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create an encrypted volume file under a KMS key.
    Create(CreateArgs),
    /// Show a volume's header (no KMS call, no key needed).
    Info(InfoArgs),
    /// Check that a node can attach a volume (grant, decrypt, header MAC), then detach.
    Attach(AttachArgs),
    /// Attach a volume and export it over NBD until interrupted.
    Serve(ServeArgs),
}

/// How to reach KMS.
#[derive(Args)]
pub struct KmsArgs {
    /// KMS endpoint (e.g. the embedded server's http://127.0.0.1:4599). Default: the
    /// AWS configuration (AWS_ENDPOINT_URL or the region's public endpoint).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region. Default: the AWS configuration (AWS_REGION, profile).
    #[arg(long)]
    region: Option<String>,
    /// AWS profile whose credentials are used. Default: the AWS configuration.
    #[arg(long)]
    profile: Option<String>,
}

impl KmsArgs {
    async fn client(&self, profile: Option<&str>) -> AwsKms {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = profile.or(self.profile.as_deref()) {
            loader = loader.profile_name(profile);
        }
        AwsKms::new(aws_sdk_kms::Client::new(&loader.load().await))
    }
}

#[derive(Args)]
pub struct CreateArgs {
    /// The volume file to create (never overwritten).
    #[arg(long)]
    path: PathBuf,
    /// Size: bytes, or with a K/M/G/T suffix (powers of 1024); a multiple of 4 KiB.
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// The KMS key: key id, key ARN, alias name or alias ARN.
    #[arg(long, value_name = "KEY")]
    key_id: String,
    /// Volume id (default: vol- and 17 random hex digits).
    #[arg(long)]
    volume_id: Option<String>,
    /// Extra encryption context, KEY=VALUE, repeatable (e.g. keyward:cluster=c-1).
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    #[command(flatten)]
    kms: KmsArgs,
}

#[derive(Args)]
pub struct InfoArgs {
    #[arg(long)]
    path: PathBuf,
}

#[derive(Args)]
pub struct AttachArgs {
    #[arg(long)]
    path: PathBuf,
    /// The attaching node's principal ARN: the grantee (and retiring principal) of the grant.
    #[arg(long, value_name = "ARN")]
    node_principal: String,
    /// Profile of the node's credentials (Decrypt under the grant, RetireGrant).
    /// Default: the same credentials as the operator's (`--profile`).
    #[arg(long)]
    node_profile: Option<String>,
    #[command(flatten)]
    kms: KmsArgs,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    attach: AttachArgs,
    /// TCP address of the NBD export (TLS required unless --insecure-plain-tcp).
    #[arg(long, default_value = "127.0.0.1:10809")]
    listen: Option<SocketAddr>,
    /// Where the export's CA (ca-cert.pem, ca-key.pem) is kept and the client
    /// credentials are written (DIR/client). Default: the volume path + ".nbd-tls".
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// More names (host names or IP addresses) for the server certificate, besides
    /// 127.0.0.1, ::1 and localhost.
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
    /// Serve TCP without TLS: any local process can then read the volume. Tests only.
    #[arg(long)]
    insecure_plain_tcp: bool,
    /// Also (or with --no-tcp, only) serve on this unix socket.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Serve on the unix socket only.
    #[arg(long, requires = "unix")]
    no_tcp: bool,
    /// Export name (default: the volume id).
    #[arg(long)]
    export: Option<String>,
    /// Seconds between KMS re-checks; a refused check detaches the volume. 0 turns re-checks off.
    #[arg(long, default_value_t = 30)]
    recheck_seconds: u64,
}

pub async fn run(command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create(args) => create(args).await,
        VolumeCommand::Info(args) => info(args),
        VolumeCommand::Attach(args) => attach(args).await,
        VolumeCommand::Serve(args) => serve(args).await,
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        Some('T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1073741824, 512M or 1G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn header_json(
    header: &keyward_storage::VolumeHeader,
    path: &std::path::Path,
) -> serde_json::Value {
    serde_json::json!({
        "Path": path.display().to_string(),
        "VolumeId": header.volume_id,
        "Size": header.size,
        "KeyArn": header.key_arn,
        "Cipher": "aes-xts-plain64",
        "KeyBits": 512,
        "SectorSize": 4096,
        "DataOffset": 4096,
        "EncryptionContext": header.encryption_context,
    })
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let kms = args.kms.client(None).await;
    let context: BTreeMap<String, String> = args.context.into_iter().collect();
    let header = create_volume(
        &kms,
        &args.path,
        NewVolume {
            volume_id: args.volume_id,
            size: args.size,
            key_id: args.key_id,
            encryption_context: context,
        },
    )
    .await
    .with_context(|| {
        format!(
            "cannot create volume {}; check the key id and that your credentials may call \
             kms:GenerateDataKeyWithoutPlaintext and kms:Decrypt on it",
            args.path.display()
        )
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&header_json(&header, &args.path))?
    );
    Ok(())
}

fn info(args: InfoArgs) -> anyhow::Result<()> {
    let file = VolumeFile::open(&args.path).with_context(|| {
        format!(
            "cannot read volume {}; is it a keyward volume file?",
            args.path.display()
        )
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&header_json(file.header(), &args.path))?
    );
    Ok(())
}

async fn attach(args: AttachArgs) -> anyhow::Result<()> {
    let operator = args.kms.client(None).await;
    let node = args.kms.client(args.node_profile.as_deref()).await;
    let attachment = attach_volume(&operator, &node, &args.path, &args.node_principal)
        .await
        .with_context(|| attach_hint(&args))?;
    let grant_id = attachment.grant_id().to_owned();
    let volume_id = attachment.header().volume_id.clone();
    attachment
        .detach(&node)
        .await
        .context("the volume was detached but its grant could not be retired")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "VolumeId": volume_id, "Attached": true, "GrantId": grant_id, "GrantRetired": true,
        }))?
    );
    Ok(())
}

fn attach_hint(args: &AttachArgs) -> String {
    format!(
        "cannot attach {}; the operator needs kms:CreateGrant on the volume's key, and the key must be \
         enabled",
        args.path.display()
    )
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let operator = args.attach.kms.client(None).await;
    let node = args
        .attach
        .kms
        .client(args.attach.node_profile.as_deref())
        .await;
    let mut attachment = attach_volume(
        &operator,
        &node,
        &args.attach.path,
        &args.attach.node_principal,
    )
    .await
    .with_context(|| attach_hint(&args.attach))?;
    let name = args
        .export
        .clone()
        .unwrap_or_else(|| attachment.header().volume_id.clone());
    let volume_id = attachment.header().volume_id.clone();
    let tls_dir = args.tls_dir.clone().unwrap_or_else(|| {
        let mut dir = args.attach.path.clone().into_os_string();
        dir.push(".nbd-tls");
        PathBuf::from(dir)
    });
    let (config, client_dir) = if args.insecure_plain_tcp {
        (NbdConfig::plain_for_tests(), None)
    } else {
        let (config, client_dir) = tls_config(&tls_dir, &volume_id, &args.tls_names)?;
        (config, Some(client_dir))
    };
    let server = NbdServer::new([(name.clone(), attachment.volume().clone())], config);
    let mut handles = Vec::new();
    if !args.no_tcp {
        if let Some(address) = args.listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!("cannot listen on {address}; is another export using it?")
                })?;
            let bound = listener.local_addr()?;
            match &client_dir {
                Some(client) => {
                    println!(
                        "keyward volume {volume_id} exported at nbds://{bound}/{name}?tls-certificates={}",
                        client.display()
                    );
                    println!(
                        "client credentials (ca-cert.pem, client-cert.pem, client-key.pem) in {}; \
                         qemu: --object tls-creds-x509,id=tls0,endpoint=client,dir={}",
                        client.display(),
                        client.display()
                    );
                }
                None => {
                    println!("keyward volume {volume_id} exported at nbd://{bound}/{name}");
                    eprintln!(
                        "warning: plain TCP (--insecure-plain-tcp): any local process can read \
                         and write this volume"
                    );
                }
            }
            handles.push(server.spawn_tcp(listener));
        }
    }
    if let Some(socket) = &args.unix {
        let listener = bind_unix(socket).with_context(|| {
            format!(
                "cannot listen on {}; remove a stale socket file",
                socket.display()
            )
        })?;
        println!(
            "keyward volume {volume_id} exported at nbd+unix:///{name}?socket={}",
            socket.display()
        );
        handles.push(server.spawn_unix(listener));
    }
    if handles.is_empty() {
        bail!("nothing to serve on: give --listen or --unix");
    }
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    let mut recheck = tokio::time::interval(Duration::from_secs(args.recheck_seconds.max(1)));
    recheck.tick().await;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = recheck.tick(), if args.recheck_seconds > 0 => {
                if attachment.volume().is_attached() {
                    if let Err(error) = attachment.recheck(&node).await {
                        eprintln!(
                            "error: KMS refused the volume's key ({error}); the volume is detached and \
                             its export fails every request. Restore access to the key: the volume \
                             re-attaches by itself within --recheck-seconds."
                        );
                    }
                } else if attachment.reopen(&operator, &node).await.is_ok() {
                    eprintln!("KMS allows the volume's key again; volume re-attached");
                }
            }
            _ = watch.tick() => {
                if let Some(stopped) = handles.iter_mut().find(|h| !h.is_running()) {
                    let why = stopped.stopped().await;
                    bail!("the NBD listener on {} stopped ({why}); start `keyward volume serve` again", stopped.address());
                }
            }
        }
    }
    drop(handles);
    if let Some(socket) = &args.unix {
        let _ = std::fs::remove_file(socket);
    }
    attachment
        .detach(&node)
        .await
        .context("the volume was detached but its grant could not be retired")?;
    eprintln!("volume detached, key wiped, grant retired");
    Ok(())
}

/// The export's CA, from `dir` (ca-cert.pem and the 0600 ca-key.pem) or made there,
/// a fresh server certificate, and the client credentials written to `dir`/client.
fn tls_config(
    dir: &std::path::Path,
    volume_id: &str,
    names: &[String],
) -> anyhow::Result<(NbdConfig, PathBuf)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let hint = || {
        format!(
            "cannot prepare the export's TLS credentials in {}; give --tls-dir a directory you own",
            dir.display()
        )
    };
    let cert_path = dir.join("ca-cert.pem");
    let key_path = dir.join("ca-key.pem");
    let fresh = !cert_path.exists();
    let ca = if !fresh {
        let cert = std::fs::read_to_string(&cert_path).with_context(hint)?;
        let key = zeroize::Zeroizing::new(std::fs::read_to_string(&key_path).with_context(hint)?);
        ClusterCa::from_pem(volume_id, &cert, &key).with_context(|| {
            format!(
                "{} does not hold this volume's export CA; remove it to make a new one \
                 (clients then need the new credentials)",
                dir.display()
            )
        })?
    } else {
        std::fs::create_dir_all(dir).with_context(hint)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(hint)?;
        let ca = ClusterCa::generate(volume_id)?;
        let mut key = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(hint)?;
        std::io::Write::write_all(&mut key, ca.key_pem().as_bytes()).with_context(hint)?;
        std::fs::write(&cert_path, ca.cert_pem()).with_context(hint)?;
        ca
    };
    let client_dir = dir.join("client");
    if fresh || !client_dir.join("client-cert.pem").exists() {
        ca.issue_client("keyward volume serve client")?
            .write_dir(&client_dir)?;
    }
    let identity = ca.issue_server(names)?;
    Ok((NbdConfig::tls(ca.server_tls(&identity)?), client_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_pairs_parse() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999999T").is_err());
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_pair("=x").is_err());
    }
}
