//! `keyward alarms destinations|deliveries|test`: an organization's webhook destinations for alarm
//! notifications (`create` shows the signing secret, once), the delivery log with every attempt,
//! and a test notification to a cluster's destinations.

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::api_client::{encode_path, ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json};

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// The organization's webhook destinations: create, list, delete, and each one's deliveries.
    #[command(subcommand)]
    Destinations(DestinationsCommand),
    /// A cluster's notification delivery log, newest first, with every attempt.
    Deliveries(DeliveriesArgs),
    /// Sends a test notification to each of the cluster's destinations.
    Test(TestArgs),
}

#[derive(Subcommand)]
pub enum DestinationsCommand {
    /// Creates a destination and prints its signing secret (shown only this once).
    Create(CreateArgs),
    /// Lists the destinations (never their secrets).
    List,
    /// Deletes a destination: nothing more is sent to it.
    Delete {
        /// The destination's id (nd-...).
        destination_id: String,
    },
    /// A destination's delivery log (suppressed-notification summaries included).
    Deliveries {
        destination_id: String,
        /// Only this alarm's (key-disabled, access-denied, ...).
        #[arg(long)]
        alarm: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The webhook's URL (https://...; no user:password@).
    #[arg(long)]
    url: String,
    /// `keyward` (JSON event) or `slack` (a Slack incoming-webhook message).
    #[arg(long, default_value = "keyward")]
    format: String,
    /// Only this cluster's alarms [default: every cluster of the organization].
    #[arg(long)]
    cluster: Option<String>,
    /// A note to recognise it by.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Args)]
pub struct DeliveriesArgs {
    cluster_id: String,
    /// Only this alarm's (key-disabled, access-denied, ...).
    #[arg(long)]
    alarm: Option<String>,
    /// Only this destination's.
    #[arg(long)]
    destination: Option<String>,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Args)]
pub struct TestArgs {
    cluster_id: String,
}

pub async fn run(api_args: &ApiArgs, command: NotifyCommand) -> anyhow::Result<()> {
    let api = ApiClient::from_args(api_args)?;
    let answer = match &command {
        NotifyCommand::Destinations(DestinationsCommand::Create(args)) => {
            let body = json!({
                "url": args.url,
                "format": args.format,
                "cluster_id": args.cluster,
                "description": args.description,
            });
            api.json(Method::POST, "/v1/notification-destinations", Some(body))
                .await?
        }
        NotifyCommand::Destinations(DestinationsCommand::List) => {
            api.json(Method::GET, "/v1/notification-destinations", None)
                .await?
        }
        NotifyCommand::Destinations(DestinationsCommand::Delete { destination_id }) => {
            api.json(
                Method::DELETE,
                &format!(
                    "/v1/notification-destinations/{}",
                    encode_path(destination_id)
                ),
                None,
            )
            .await?
        }
        NotifyCommand::Destinations(DestinationsCommand::Deliveries {
            destination_id,
            alarm,
            limit,
        }) => {
            let mut path = format!(
                "/v1/notification-destinations/{}/deliveries?limit={limit}",
                encode_path(destination_id)
            );
            if let Some(alarm) = alarm {
                path.push_str(&format!("&alarm={}", encode_path(alarm)));
            }
            api.json(Method::GET, &path, None).await?
        }
        NotifyCommand::Deliveries(args) => {
            let mut path = format!(
                "{}?limit={}",
                cluster_path(&args.cluster_id, "/alarms/deliveries"),
                args.limit
            );
            if let Some(alarm) = &args.alarm {
                path.push_str(&format!("&alarm={}", encode_path(alarm)));
            }
            if let Some(destination) = &args.destination {
                path.push_str(&format!("&destination={}", encode_path(destination)));
            }
            api.json(Method::GET, &path, None).await?
        }
        NotifyCommand::Test(args) => {
            api.json(
                Method::POST,
                &cluster_path(&args.cluster_id, "/alarms/test"),
                None,
            )
            .await?
        }
    };
    if api_args.json {
        return print_json(&answer);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    match command {
        NotifyCommand::Destinations(DestinationsCommand::Create(_)) => {
            let d = &answer["destination"];
            println!(
                "destination {} created ({})",
                text(&d["id"]),
                text(&d["url"])
            );
            println!("signing secret (shown only now; keep it with the receiver):");
            println!("{}", text(&answer["secret"]));
        }
        NotifyCommand::Destinations(DestinationsCommand::List) => {
            for d in answer["destinations"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<7}  {:<20}  {}",
                    text(&d["id"]),
                    text(&d["format"]),
                    d["cluster_id"].as_str().unwrap_or("(every cluster)"),
                    text(&d["url"])
                );
            }
        }
        NotifyCommand::Destinations(DestinationsCommand::Delete { destination_id }) => {
            println!("destination {destination_id} deleted");
        }
        _ => {
            for d in answer["deliveries"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {:<18} {:<24} {:<9} {} attempt(s){}",
                    text(&d["id"]),
                    text(&d["destination_id"]),
                    text(&d["kind"]),
                    d["alarm"].as_str().unwrap_or("-"),
                    text(&d["state"]),
                    d["attempts"].as_array().map_or(0, Vec::len),
                    d["last_error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
