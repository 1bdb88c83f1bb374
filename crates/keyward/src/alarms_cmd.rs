//! `keyward alarms <cluster>`: the cluster's alarms (key disabled, deletion scheduled, key deleted,
//! access denied, data locked, unexpected principal, key rotated, probe cost over budget) as last
//! evaluated, or with `--history` every change of them with its cause, from
//! `GET /v1/clusters/{id}/alarms[/history]`.
//!
//! `keyward alarms rules get|set [--cluster <id>]`: the organization's (or the cluster's) alarm
//! rule, from `/v1/alarm-rules` or `/v1/clusters/{id}/alarm-rules`. `set` changes the fields
//! given and keeps the others (`--clear <field>` unsets one, `--replace` starts from nothing);
//! the API checks the rule and refuses a bad field by name, storing nothing.
//!
//! Its notifications' subcommands (`destinations`, `deliveries`, `test`) are in `notify_cmd.rs`.

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Map, Value};

use crate::api_client::{ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlarmsArgs {
    #[command(subcommand)]
    command: Option<AlarmsCommand>,
    #[command(flatten)]
    api: ApiArgs,
    /// The cluster whose alarms to show.
    cluster_id: Option<String>,
    /// Every state change, newest first, instead of the current states.
    #[arg(long)]
    history: bool,
    /// With --history: at most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Subcommand)]
enum AlarmsCommand {
    /// The alarm rules of the organization or of one cluster.
    #[command(subcommand)]
    Rules(RulesCommand),
    #[command(flatten)]
    Notify(crate::notify_cmd::NotifyCommand),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Show the rule set at this level, the organization's, and the effective rules.
    Get(RulesGet),
    /// Change the rule at this level (the organization's without --cluster).
    Set(Box<RulesSet>),
}

#[derive(Args)]
struct RulesGet {
    /// The cluster's rule instead of the organization's.
    #[arg(long)]
    cluster: Option<String>,
}

#[derive(Args)]
struct RulesSet {
    /// The cluster's rule instead of the organization's.
    #[arg(long)]
    cluster: Option<String>,
    /// Start from an empty rule instead of the one stored.
    #[arg(long)]
    replace: bool,
    /// Unset a field (it falls through to the organization's rule, then the defaults).
    #[arg(long, value_name = "FIELD")]
    clear: Vec<String>,
    /// Switch an alarm kind on.
    #[arg(long, value_name = "KIND")]
    enable: Vec<String>,
    /// Switch an alarm kind off.
    #[arg(long, value_name = "KIND")]
    disable: Vec<String>,
    /// Refused requests in the window that raise access-denied.
    #[arg(long, value_name = "N")]
    access_denied_threshold: Option<String>,
    /// How far back access-denied counts, in seconds.
    #[arg(long, value_name = "SECONDS")]
    access_denied_window: Option<String>,
    /// Only refusals of these KMS operations count (comma separated).
    #[arg(long, value_name = "OPS", value_delimiter = ',')]
    access_denied_operations: Option<Vec<String>>,
    /// The probe's monthly cost, in USD, above which probe-cost-budget raises.
    #[arg(long, value_name = "USD")]
    probe_cost_budget: Option<String>,
    /// A principal ARN besides the cluster's role that may use the key (repeat for more).
    #[arg(long, value_name = "ARN")]
    allow_principal: Vec<String>,
    /// How far back unexpected-principal looks in the key account's trail, in seconds.
    #[arg(long, value_name = "SECONDS")]
    principal_window: Option<String>,
    /// A role in the key's account the platform assumes to read its CloudTrail.
    #[arg(long, value_name = "ARN")]
    trail_reader_role: Option<String>,
    /// How long key-rotated stays in ALARM after a rotation, in seconds.
    #[arg(long, value_name = "SECONDS")]
    rotation_window: Option<String>,
}

/// A number as typed, or the text itself: the API names the field it refuses.
fn number(text: &str) -> Value {
    serde_json::from_str::<serde_json::Number>(text).map_or_else(|_| Value::from(text), Value::from)
}

fn rules_path(cluster: Option<&str>) -> String {
    match cluster {
        Some(id) => cluster_path(id, "/alarm-rules"),
        None => "/v1/alarm-rules".to_owned(),
    }
}

async fn rules(api_args: &ApiArgs, command: RulesCommand) -> anyhow::Result<()> {
    let cluster = match &command {
        RulesCommand::Get(get) => get.cluster.as_deref(),
        RulesCommand::Set(set) => set.cluster.as_deref(),
    };
    let api = ApiClient::from_args(api_args)?;
    let path = rules_path(cluster);
    let mut view = api.json(Method::GET, &path, None).await?;
    if let RulesCommand::Set(set) = &command {
        let stored = if cluster.is_some() {
            &view["cluster"]
        } else {
            &view["organization"]
        };
        let mut rule: Map<String, Value> = match (set.replace, stored.as_object()) {
            (false, Some(stored)) => stored.clone(),
            _ => Map::new(),
        };
        for field in &set.clear {
            rule.remove(field);
        }
        for (kinds, on) in [(&set.enable, true), (&set.disable, false)] {
            for kind in kinds {
                let enabled = rule
                    .entry("enabled")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(map) = enabled.as_object_mut() {
                    map.insert(kind.clone(), Value::Bool(on));
                }
            }
        }
        let numbers = [
            ("access_denied_threshold", &set.access_denied_threshold),
            ("access_denied_window_seconds", &set.access_denied_window),
            ("probe_cost_budget_usd", &set.probe_cost_budget),
            ("principal_window_seconds", &set.principal_window),
            ("rotation_window_seconds", &set.rotation_window),
        ];
        for (field, value) in numbers {
            if let Some(value) = value {
                rule.insert(field.into(), number(value));
            }
        }
        if let Some(ops) = &set.access_denied_operations {
            rule.insert("access_denied_operations".into(), ops.clone().into());
        }
        if !set.allow_principal.is_empty() {
            rule.insert(
                "allowed_principals".into(),
                set.allow_principal.clone().into(),
            );
        }
        if let Some(arn) = &set.trail_reader_role {
            rule.insert("trail_reader_role_arn".into(), arn.clone().into());
        }
        view = api
            .json(Method::PUT, &path, Some(Value::Object(rule)))
            .await
            .context("the rule was not changed")?;
    }
    if api_args.json {
        return print_json(&view);
    }
    let level = if cluster.is_some() {
        "cluster"
    } else {
        "organization"
    };
    println!("{level} rule: {}", view[level]);
    if cluster.is_some() {
        println!("organization rule: {}", view["organization"]);
    }
    println!("effective:");
    if let Some(effective) = view["effective"].as_object() {
        for (field, value) in effective {
            println!("  {field:<30} {value}");
        }
    }
    Ok(())
}

pub async fn run(args: AlarmsArgs) -> anyhow::Result<()> {
    match args.command {
        Some(AlarmsCommand::Rules(command)) => return rules(&args.api, command).await,
        Some(AlarmsCommand::Notify(command)) => {
            return crate::notify_cmd::run(&args.api, command).await
        }
        None => {}
    }
    let api = ApiClient::from_args(&args.api)?;
    let Some(cluster_id) = args.cluster_id else {
        anyhow::bail!(
            "name a cluster (`keyward alarms <cluster-id>`) or a subcommand (rules, destinations, \
             deliveries, test); see `keyward alarms --help`"
        );
    };
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
