//! `keyward alarms <cluster>`: the cluster's alarms (key disabled, deletion scheduled, key deleted,
//! access denied, data locked) as last evaluated, or with `--history` every change of them with
//! its cause, from `GET /v1/clusters/{id}/alarms[/history]`; its notifications' subcommands
//! (`destinations`, `deliveries`, `test`) are in `notify_cmd.rs`.

use clap::Args;
use hyper::Method;

use crate::api_client::{ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlarmsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    notify: Option<crate::notify_cmd::NotifyCommand>,
    /// The cluster whose alarms to show.
    cluster_id: Option<String>,
    /// Every state change, newest first, instead of the current states.
    #[arg(long)]
    history: bool,
    /// With --history: at most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn run(args: AlarmsArgs) -> anyhow::Result<()> {
    if let Some(command) = args.notify {
        return crate::notify_cmd::run(&args.api, command).await;
    }
    let Some(cluster_id) = args.cluster_id else {
        anyhow::bail!(
            "name a cluster (`keyward alarms <cluster-id>`) or a subcommand (destinations, \
             deliveries, test); see `keyward alarms --help`"
        );
    };
    let api = ApiClient::from_args(&args.api)?;
    let path = if args.history {
        format!(
            "{}?limit={}",
            cluster_path(&cluster_id, "/alarms/history"),
            args.limit
        )
    } else {
        cluster_path(&cluster_id, "/alarms")
    };
    let answer = api.json(Method::GET, &path, None).await?;
    if args.api.json {
        return print_json(&answer);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    if args.history {
        for t in answer["transitions"].as_array().into_iter().flatten() {
            let at = t["at_ms"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), keyward_storage::vocab::iso8601);
            println!(
                "{at}  {:<26} {} -> {}  {}",
                text(&t["kind"]),
                text(&t["from"]),
                text(&t["to"]),
                text(&t["reason"])
            );
        }
    } else {
        for a in answer["alarms"].as_array().into_iter().flatten() {
            println!(
                "{:<26} {:<17} {}",
                text(&a["kind"]),
                text(&a["state"]),
                text(&a["reason"])
            );
        }
    }
    Ok(())
}
