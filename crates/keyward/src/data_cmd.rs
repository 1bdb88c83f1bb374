//! `keyward doc|backup|disk ...`: a cluster's data paths through the keyward API — documents,
//! backups, and the disks' NBD addresses.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

use crate::api_client::{encode_path, ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json, s};

#[derive(Args)]
pub struct DocArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: DocCommand,
}

#[derive(Subcommand)]
enum DocCommand {
    /// Store a document (from a file or stdin), encrypted under the cluster's key.
    Put {
        cluster_id: String,
        name: String,
        /// Read from this file instead of standard input.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Read a document back, decrypted (to a file or stdout).
    Get {
        cluster_id: String,
        name: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// The cluster's documents.
    List {
        cluster_id: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a document.
    Rm { cluster_id: String, name: String },
}

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Back up the cluster's documents and disks (encrypted under its key).
    Create { cluster_id: String },
    /// The cluster's backups.
    List { cluster_id: String },
    /// Restore a backup into a new cluster of the same organization (the same customer key, or
    /// for internal encryption a platform key of its own).
    Restore {
        cluster_id: String,
        backup_id: String,
    },
    /// Delete one of the cluster's backups.
    Rm {
        cluster_id: String,
        backup_id: String,
    },
    /// The organization's backups of deleted clusters, kept until their retention ends.
    Retained,
    /// Restore a kept backup of a deleted cluster into a new cluster.
    RestoreRetained { backup_id: String },
    /// Delete a kept backup of a deleted cluster now.
    RmRetained { backup_id: String },
}

#[derive(Args)]
pub struct DiskArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: DiskCommand,
}

#[derive(Subcommand)]
enum DiskCommand {
    /// The cluster's disks, whether they are attached, and their NBD addresses
    /// (`nbds://…?tls-certificates=DIR`, DIR as written by `disk credentials`).
    List {
        cluster_id: String,
        /// The credentials directory to name in the addresses.
        #[arg(long, default_value = "DIR")]
        dir: PathBuf,
    },
    /// Fresh client credentials for the cluster's disks, written to DIR (made 0700):
    /// `ca-cert.pem`, `client-cert.pem` and `client-key.pem` (0600).
    Credentials {
        cluster_id: String,
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `<file>.partial`, where a download is written until it is whole.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn doc_path(cluster_id: &str, name: &str) -> String {
    cluster_path(cluster_id, &format!("/documents/{}", encode_path(name)))
}

pub async fn doc(args: DocArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let as_json = args.api.json;
    match args.command {
        DocCommand::Put {
            cluster_id,
            name,
            file,
        } => {
            // Streamed from the file or standard input: never whole in memory.
            let path = doc_path(&cluster_id, &name);
            let answer = match &file {
                Some(file) => {
                    let opened = tokio::fs::File::open(file)
                        .await
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let length = opened
                        .metadata()
                        .await
                        .with_context(|| format!("cannot read {}", file.display()))?
                        .len();
                    api.put_stream(&path, opened, Some(length)).await?
                }
                None => api.put_stream(&path, tokio::io::stdin(), None).await?,
            };
            let info: serde_json::Value =
                serde_json::from_slice(&answer).context("the API answered no JSON")?;
            if as_json {
                return print_json(&info);
            }
            println!(
                "stored {} ({} bytes encrypted) under {}",
                s(&info["name"]),
                info["size"],
                s(&info["key_arn"])
            );
        }
        DocCommand::Get {
            cluster_id,
            name,
            output,
        } => {
            let path = doc_path(&cluster_id, &name);
            match &output {
                // Written beside the file and renamed over it once whole: a download that
                // breaks off leaves no partial file under the name.
                Some(file) => {
                    let partial = partial_path(file);
                    let mut out = tokio::fs::File::create(&partial)
                        .await
                        .with_context(|| format!("cannot write {}", partial.display()))?;
                    let fetched = api.get_to(&path, &mut out).await;
                    drop(out);
                    if let Err(error) = fetched {
                        let _ = tokio::fs::remove_file(&partial).await;
                        return Err(error);
                    }
                    tokio::fs::rename(&partial, file)
                        .await
                        .with_context(|| format!("cannot write {}", file.display()))?;
                }
                None => {
                    api.get_to(&path, &mut tokio::io::stdout()).await?;
                }
            }
        }
        DocCommand::List { cluster_id, prefix } => {
            let path = format!(
                "{}?prefix={}",
                cluster_path(&cluster_id, "/documents"),
                encode_path(&prefix).replace('/', "%2F")
            );
            let answer = api.json(Method::GET, &path, None).await?;
            if as_json {
                return print_json(&answer);
            }
            for d in answer["documents"].as_array().into_iter().flatten() {
                println!("{:>10}  {}", d["size"], s(&d["name"]));
            }
        }
        DocCommand::Rm { cluster_id, name } => {
            api.json(Method::DELETE, &doc_path(&cluster_id, &name), None)
                .await?;
            if as_json {
                return print_json(&json!({"deleted": name}));
            }
            println!("deleted {name}");
        }
    }
    Ok(())
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let as_json = args.api.json;
    match args.command {
        BackupCommand::Create { cluster_id } => {
            let b = api
                .json(Method::POST, &cluster_path(&cluster_id, "/backups"), None)
                .await?;
            if as_json {
                return print_json(&b);
            }
            println!(
                "backup {} of cluster {cluster_id}: {} bytes",
                s(&b["id"]),
                b["bytes"]
            );
        }
        BackupCommand::List { cluster_id } => {
            let answer = api
                .json(Method::GET, &cluster_path(&cluster_id, "/backups"), None)
                .await?;
            if as_json {
                return print_json(&answer);
            }
            for b in answer["backups"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:>12} bytes  {}",
                    s(&b["id"]),
                    b["bytes"],
                    if b["complete"].as_bool() == Some(true) {
                        "complete"
                    } else {
                        "INCOMPLETE"
                    }
                );
            }
        }
        BackupCommand::Restore {
            cluster_id,
            backup_id,
        } => {
            let c = api
                .json(
                    Method::POST,
                    &cluster_path(
                        &cluster_id,
                        &format!("/backups/{}/restore", encode_path(&backup_id)),
                    ),
                    None,
                )
                .await?;
            print_restored(as_json, &backup_id, &c)?;
        }
        BackupCommand::Rm {
            cluster_id,
            backup_id,
        } => {
            api.json(
                Method::DELETE,
                &cluster_path(
                    &cluster_id,
                    &format!("/backups/{}", encode_path(&backup_id)),
                ),
                None,
            )
            .await?;
            if as_json {
                return print_json(&json!({"deleted": backup_id}));
            }
            println!("deleted backup {backup_id} of cluster {cluster_id}");
        }
        BackupCommand::Retained => {
            let answer = api.json(Method::GET, "/v1/backups", None).await?;
            if as_json {
                return print_json(&answer);
            }
            for b in answer["backups"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:>12} bytes  of deleted cluster {} ({}), kept until {} (unix ms)",
                    s(&b["id"]),
                    b["bytes"],
                    s(&b["cluster_id"]),
                    s(&b["cluster_name"]),
                    b["retained_until_ms"]
                );
            }
        }
        BackupCommand::RestoreRetained { backup_id } => {
            let c = api
                .json(
                    Method::POST,
                    &format!("/v1/backups/{}/restore", encode_path(&backup_id)),
                    None,
                )
                .await?;
            print_restored(as_json, &backup_id, &c)?;
        }
        BackupCommand::RmRetained { backup_id } => {
            api.json(
                Method::DELETE,
                &format!("/v1/backups/{}", encode_path(&backup_id)),
                None,
            )
            .await?;
            if as_json {
                return print_json(&json!({"deleted": backup_id}));
            }
            println!("deleted backup {backup_id}");
        }
    }
    Ok(())
}

/// What a restore made: the new cluster.
fn print_restored(as_json: bool, backup_id: &str, c: &serde_json::Value) -> anyhow::Result<()> {
    if as_json {
        return print_json(c);
    }
    println!(
        "backup {backup_id} restored into the new cluster {} ({})",
        s(&c["id"]),
        s(&c["state"])
    );
    Ok(())
}

pub async fn disk(args: DiskArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    match args.command {
        DiskCommand::List { cluster_id, dir } => {
            let answer = api
                .json(Method::GET, &cluster_path(&cluster_id, "/disks"), None)
                .await?;
            if args.api.json {
                return print_json(&answer);
            }
            for d in answer["disks"].as_array().into_iter().flatten() {
                let uri = match d["nbd_uri"].as_str() {
                    Some(uri) => format!("{uri}?tls-certificates={}", dir.display()),
                    None => "(detached)".to_owned(),
                };
                println!(
                    "{}  {:<11} {:>12} bytes  {uri}",
                    s(&d["id"]),
                    s(&d["class"]),
                    d["size_bytes"],
                );
            }
        }
        DiskCommand::Credentials { cluster_id, dir } => {
            let answer = api
                .json(
                    Method::POST,
                    &cluster_path(&cluster_id, "/disk-credentials"),
                    None,
                )
                .await?;
            let pem = |field: &str| {
                answer[field]
                    .as_str()
                    .with_context(|| format!("the answer has no {field}"))
            };
            write_credentials(
                &dir,
                pem("ca_cert_pem")?,
                pem("client_cert_pem")?,
                pem("client_key_pem")?,
            )?;
            if args.api.json {
                return print_json(&json!({ "dir": dir }));
            }
            let disks = api
                .json(Method::GET, &cluster_path(&cluster_id, "/disks"), None)
                .await?;
            let dir = dir.display();
            println!("credentials for cluster {cluster_id} written to {dir}");
            let first = disks["disks"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|d| d["nbd_uri"].as_str());
            if let Some(uri) = first {
                let (server, export) = uri
                    .strip_prefix("nbds://")
                    .and_then(|rest| rest.split_once('/'))
                    .context("an nbds:// address")?;
                let (host, port) = server.rsplit_once(':').context("host:port")?;
                println!("  nbdinfo --list 'nbds://{server}/?tls-certificates={dir}'");
                println!("  nbdinfo '{uri}?tls-certificates={dir}'");
                println!(
                    "  qemu-io --object tls-creds-x509,id=tls0,endpoint=client,dir={dir} \\\n      \
                     --image-opts driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0 \\\n      \
                     -c 'read 0 4k'"
                );
            }
        }
    }
    Ok(())
}

/// Writes the three PEM files the NBD clients read from a credentials directory: the
/// directory made 0700, the key 0600 from its creation on.
fn write_credentials(dir: &Path, ca: &str, cert: &str, key: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    for (name, bytes, mode) in [
        ("ca-cert.pem", ca, 0o644),
        ("client-cert.pem", cert, 0o644),
        ("client-key.pem", key, 0o600),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(bytes.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
