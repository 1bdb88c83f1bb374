//! `keyward cluster ...`: the platform's side of the guide, as a client of the keyward API —
//! create a cluster and get its role ARN, the key-policy statements for the customer, associate
//! the customer's key, verify the storage classes, watch the key's health.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{json, Value};

use crate::api_client::{encode_path, ApiArgs, ApiClient};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Create a cluster; prints its id and the role ARN the customer's key policy must name.
    Create {
        name: String,
        /// The cluster's region; the customer's key must be in it [default: the platform's]
        #[arg(long)]
        region: Option<String>,
        /// `external`: the customer's own KMS key; `internal`: a key the platform owns.
        #[arg(long, value_enum, default_value = "external")]
        encryption: EncryptionArg,
    },
    /// The organization's clusters.
    List,
    /// One cluster: role, key, state, key health, re-wrap progress.
    Show { cluster_id: String },
    /// Delete a cluster, its storage and its role.
    Delete { cluster_id: String },
    /// The key-policy statements the customer adds to their key (JSON).
    KeyPolicy {
        cluster_id: String,
        /// Print a whole key policy for a new key instead: the account root's administrator
        /// statement for this account, then the cluster's statements.
        #[arg(long, value_name = "ACCOUNT_ID")]
        full_policy_for: Option<String>,
    },
    /// Check a KMS key as the cluster's role and apply it when every check passes. A second key
    /// re-wraps every data key under it.
    Associate { cluster_id: String, key_arn: String },
    /// Per storage class: encrypted, under which key, how many, any offender.
    Verify { cluster_id: String },
    /// The key's health as last probed; `--now` probes it first.
    Health {
        cluster_id: String,
        #[arg(long)]
        now: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EncryptionArg {
    External,
    Internal,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let as_json = args.api.json;
    match args.command {
        ClusterCommand::Create {
            name,
            region,
            encryption,
        } => {
            let encryption = match encryption {
                EncryptionArg::External => "external",
                EncryptionArg::Internal => "internal",
            };
            let cluster = api
                .json(
                    Method::POST,
                    "/v1/clusters",
                    Some(json!({"name": name, "region": region, "encryption": encryption})),
                )
                .await?;
            if as_json {
                return print_json(&cluster);
            }
            print_cluster(&cluster);
            if encryption == "external" {
                let id = cluster["id"].as_str().unwrap_or_default();
                println!();
                println!("Next: the customer creates a symmetric key in {} whose policy has the cluster's statements:", cluster["region"].as_str().unwrap_or_default());
                println!("  keyward cluster key-policy {id}");
                println!("then associate it:");
                println!("  keyward cluster associate {id} <key ARN>");
            }
        }
        ClusterCommand::List => {
            let answer = api.json(Method::GET, "/v1/clusters", None).await?;
            if as_json {
                return print_json(&answer);
            }
            let clusters = answer["clusters"].as_array().cloned().unwrap_or_default();
            if clusters.is_empty() {
                println!("no clusters yet: keyward cluster create <name>");
            }
            for c in clusters {
                println!(
                    "{}  {:<20} {:<10} {:<13} {:<17} {}",
                    s(&c["id"]),
                    s(&c["name"]),
                    s(&c["encryption"]),
                    s(&c["state"]),
                    s(&c["health"]["status"]),
                    c["key_arn"].as_str().unwrap_or("-"),
                );
            }
        }
        ClusterCommand::Show { cluster_id } => {
            let cluster = api
                .json(Method::GET, &cluster_path(&cluster_id, ""), None)
                .await?;
            if as_json {
                return print_json(&cluster);
            }
            print_cluster(&cluster);
        }
        ClusterCommand::Delete { cluster_id } => {
            api.json(Method::DELETE, &cluster_path(&cluster_id, ""), None)
                .await?;
            if as_json {
                return print_json(&json!({"deleted": cluster_id}));
            }
            println!("cluster {cluster_id} deleted");
        }
        ClusterCommand::KeyPolicy {
            cluster_id,
            full_policy_for,
        } => {
            let policy = api
                .json(Method::GET, &cluster_path(&cluster_id, "/key-policy"), None)
                .await?;
            let out = match full_policy_for {
                Some(account) => full_policy(&account, &policy)?,
                None => policy,
            };
            // JSON is the useful form either way: it is pasted into a key policy.
            print_json(&out)?;
        }
        ClusterCommand::Associate {
            cluster_id,
            key_arn,
        } => {
            let answer = api
                .json(
                    Method::PUT,
                    &cluster_path(&cluster_id, "/key"),
                    Some(json!({"key_arn": key_arn})),
                )
                .await?;
            if as_json {
                return print_json(&answer);
            }
            println!("key {key_arn} applied to cluster {cluster_id}; every check passed:");
            for check in answer["report"]["checks"].as_array().into_iter().flatten() {
                println!("  {}", check_line(check));
            }
            println!();
            println!("The operator now provisions the storage under it; watch with:");
            println!("  keyward cluster show {cluster_id}");
            println!("  keyward cluster verify {cluster_id}");
        }
        ClusterCommand::Verify { cluster_id } => {
            let v = api
                .json(
                    Method::GET,
                    &cluster_path(&cluster_id, "/verification"),
                    None,
                )
                .await?;
            let all_encrypted = v["all_encrypted"].as_bool() == Some(true);
            // Scripts rely on the exit status: non-zero unless every class is under the key.
            let not_all = || {
                anyhow::anyhow!(
                    "not every storage class of {cluster_id} is encrypted under its key: see the \
                     offenders above, then `keyward cluster show {cluster_id}` for the key's health"
                )
            };
            if as_json {
                print_json(&v)?;
                return if all_encrypted {
                    Ok(())
                } else {
                    Err(not_all())
                };
            }
            println!(
                "cluster {} under {}: {}",
                s(&v["cluster_id"]),
                s(&v["key_arn"]),
                if all_encrypted {
                    "every storage class encrypted under this key"
                } else {
                    "NOT every storage class is encrypted under this key"
                }
            );
            for class in v["classes"].as_array().into_iter().flatten() {
                println!(
                    "  {:<12} {:<3} {:>5} item(s)  {}",
                    s(&class["class"]),
                    if class["encrypted"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "NO"
                    },
                    class["count"].as_u64().unwrap_or(0),
                    class["key_arn"].as_str().unwrap_or("-"),
                );
                for offender in class["offenders"].as_array().into_iter().flatten() {
                    println!("      offender: {}", s(offender));
                }
            }
            if !all_encrypted {
                return Err(not_all());
            }
        }
        ClusterCommand::Health { cluster_id, now } => {
            let health = if now {
                api.json(
                    Method::POST,
                    &cluster_path(&cluster_id, "/health-check"),
                    None,
                )
                .await?
            } else {
                api.json(Method::GET, &cluster_path(&cluster_id, ""), None)
                    .await?["health"]
                    .take()
            };
            if as_json {
                return print_json(&health);
            }
            println!("{}", health_line(&health));
        }
    }
    Ok(())
}

pub fn cluster_path(cluster_id: &str, rest: &str) -> String {
    format!("/v1/clusters/{}{rest}", encode_path(cluster_id))
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A JSON string as text, `-` when absent.
pub fn s(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn print_cluster(c: &Value) {
    println!("cluster {} ({})", s(&c["id"]), s(&c["name"]));
    println!("  region      {}", s(&c["region"]));
    println!("  encryption  {}", s(&c["encryption"]));
    println!("  role ARN    {}", s(&c["role_arn"]));
    println!(
        "  key ARN     {}",
        c["key_arn"].as_str().unwrap_or("(none yet)")
    );
    println!("  state       {}", s(&c["state"]));
    if let Some(failure) = c["failure"].as_str() {
        println!("  failure     {failure}");
    }
    println!("  key health  {}", health_line(&c["health"]));
    if let Some(rewrap) = c["rewrap"].as_object() {
        println!(
            "  re-wrap     {}/{} data keys to {}",
            rewrap["done"], rewrap["total"], rewrap["to_key_arn"]
        );
    }
}

fn health_line(h: &Value) -> String {
    let mut line = s(&h["status"]).to_owned();
    if let Some(reason) = h["reason"].as_str() {
        line.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = h["message"].as_str().filter(|m| !m.is_empty()) {
        line.push_str(&format!(": {message}"));
    }
    line
}

/// One check of an association report, as a line.
pub fn check_line(check: &Value) -> String {
    let name = s(&check["check"]);
    match check["result"].as_str() {
        Some("passed") => format!("pass  {name}"),
        Some("failed") => format!(
            "FAIL  {name}: {}\n        fix: {}",
            s(&check["detail"]),
            s(&check["fix"])
        ),
        Some("skipped") => format!("skip  {name}: {}", s(&check["why"])),
        _ => format!("?     {check}"),
    }
}

/// A whole key policy for a new key: the account root may administer it (the default key
/// policy's statement), and the cluster's role gets the guide's statements.
fn full_policy(account_id: &str, statements: &Value) -> anyhow::Result<Value> {
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("--full-policy-for takes the key's 12-digit account id, got {account_id:?}");
    }
    let mut all = vec![json!({
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
        "Action": "kms:*",
        "Resource": "*"
    })];
    all.extend(
        statements["Statement"]
            .as_array()
            .context("the API's key policy has no Statement list")?
            .iter()
            .cloned(),
    );
    Ok(json!({"Version": "2012-10-17", "Id": "keyward-cluster-key", "Statement": all}))
}
