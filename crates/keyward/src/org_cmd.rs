//! `keyward org token …`: the admin lists, creates and revokes an organization's API tokens.
//!
//! These verbs use the admin token (`--admin-token`, `KEYWARD_ADMIN_TOKEN`, or the one in
//! `<data-dir>/up.json`), never an organization's. A new token is printed once; the API keeps only
//! its SHA-256, so it cannot be shown again.

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;

use crate::api_client::{encode_path, ApiArgs, ApiClient};
use crate::cluster_cmd::print_json;

#[derive(Args)]
pub struct OrgArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The admin token [default: from <data-dir>/up.json]
    #[arg(
        long,
        env = "KEYWARD_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// An organization's API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// The organization's tokens: id, creation time and last four characters (never the secret).
    List { org_id: String },
    /// A new token for the organization, printed once.
    Create { org_id: String },
    /// Revoke a token: the next request with it is refused.
    Revoke { org_id: String, token_id: String },
}

pub async fn run(args: OrgArgs) -> anyhow::Result<()> {
    let api = ApiClient::admin_from_args(&args.api, args.admin_token.clone())?;
    let OrgCommand::Token(command) = args.command;
    let tokens_of = |org: &str| format!("/v1/organizations/{}/tokens", encode_path(org));
    match command {
        TokenCommand::List { org_id } => {
            let answer = api.json(Method::GET, &tokens_of(&org_id), None).await?;
            if args.api.json {
                return print_json(&answer);
            }
            for token in answer["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{}  created {}  …{}",
                    token["id"].as_str().unwrap_or_default(),
                    token["created_at_ms"].as_i64().unwrap_or_default(),
                    token["last4"].as_str().unwrap_or("????"),
                );
            }
        }
        TokenCommand::Create { org_id } => {
            let answer = api.json(Method::POST, &tokens_of(&org_id), None).await?;
            if args.api.json {
                return print_json(&answer);
            }
            let token = answer["token"]
                .as_str()
                .context("the API answered no token")?;
            println!(
                "token {}: {token}",
                answer["id"].as_str().unwrap_or_default()
            );
            println!("It is shown once: keep it now (the API stores only its hash).");
        }
        TokenCommand::Revoke { org_id, token_id } => {
            let path = format!("{}/{}", tokens_of(&org_id), encode_path(&token_id));
            api.json(Method::DELETE, &path, None).await?;
            if !args.api.json {
                println!("revoked {token_id}: requests with it are refused from now on");
            }
        }
    }
    Ok(())
}
