//! `keyward alarms <cluster>`: the cluster's alarms (key disabled, deletion scheduled, key deleted,
//! access denied, data locked) as last evaluated, or with `--history` every change of them with
//! its cause, from `GET /v1/clusters/{id}/alarms[/history]`.

use clap::Args;
use hyper::Method;

use crate::api_client::{ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json};

#[derive(Args)]
pub struct AlarmsArgs {
    #[command(flatten)]
    api: ApiArgs,
    cluster_id: String,
    /// Every state change, newest first, instead of the current states.
    #[arg(long)]
    history: bool,
    /// With --history: at most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn run(args: AlarmsArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let path = if args.history {
        format!(
            "{}?limit={}",
            cluster_path(&args.cluster_id, "/alarms/history"),
            args.limit
        )
    } else {
        cluster_path(&args.cluster_id, "/alarms")
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
