//! `keyward doc|backup|disk ...`: a cluster's data paths through the keyward API — documents,
//! backups, and the disks' NBD addresses.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
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
    /// Restore a backup into a new cluster of the same organization and key.
    Restore {
        cluster_id: String,
        backup_id: String,
    },
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
    /// The cluster's disks, whether they are attached, and their NBD addresses.
    List { cluster_id: String },
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
            let body = match &file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let mut buffer = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buffer)
                        .context("cannot read standard input")?;
                    buffer
                }
            };
            let (_, answer) = api
                .send(
                    Method::PUT,
                    &doc_path(&cluster_id, &name),
                    Some(("application/octet-stream", Bytes::from(body))),
                )
                .await?;
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
            let (_, bytes) = api
                .send(Method::GET, &doc_path(&cluster_id, &name), None)
                .await?;
            match &output {
                Some(path) => std::fs::write(path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.flush()?;
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
            if as_json {
                return print_json(&c);
            }
            println!(
                "backup {backup_id} restored into the new cluster {} ({})",
                s(&c["id"]),
                s(&c["state"])
            );
        }
    }
    Ok(())
}

pub async fn disk(args: DiskArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let DiskCommand::List { cluster_id } = args.command;
    let answer = api
        .json(Method::GET, &cluster_path(&cluster_id, "/disks"), None)
        .await?;
    if args.api.json {
        return print_json(&answer);
    }
    for d in answer["disks"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<11} {:>12} bytes  {}",
            s(&d["id"]),
            s(&d["class"]),
            d["size_bytes"],
            d["nbd_uri"].as_str().unwrap_or("(detached)")
        );
    }
    Ok(())
}
