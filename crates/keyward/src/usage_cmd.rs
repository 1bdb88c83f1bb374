//! `keyward usage <cluster>`: the cluster's KMS requests per day and operation (data paths and
//! probes apart), what they cost at AWS's prices, the key-health probe's monthly cost and the
//! requests the data-key cache saved, from the API's `GET /v1/clusters/{id}/usage`.

use clap::Args;
use hyper::Method;
use serde_json::Value;

use crate::api_client::{ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json, s};

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    api: ApiArgs,
    cluster_id: String,
    /// First day, YYYY-MM-DD (UTC), included [default: the first of --to's month].
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC), included; at most 92 days after --from [default: today].
    #[arg(long)]
    to: Option<String>,
}

pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let mut query = Vec::new();
    for (name, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            query.push(format!("{name}={}", crate::api_client::encode_path(value)));
        }
    }
    let mut path = cluster_path(&args.cluster_id, "/usage");
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let answer = api.json(Method::GET, &path, None).await?;
    if args.api.json {
        return print_json(&answer);
    }
    print!("{}", table(&answer));
    Ok(())
}

/// Micro-dollars as `$0.015000`.
fn dollars(micro: &Value) -> String {
    let micro = micro.as_u64().unwrap_or(0);
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn n(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// The report as text: one line per day and operation, then totals, charges and the probe.
fn table(report: &Value) -> String {
    let mut out = format!(
        "KMS usage of {} from {} to {} (UTC days)\n\n{:<12} {:<20} {:>10} {:>10}\n",
        s(&report["cluster_id"]),
        s(&report["from"]),
        s(&report["to"]),
        "DAY",
        "OPERATION",
        "DATA",
        "PROBE"
    );
    let mut line = |day: &str, operation: &str, counts: &Value| {
        out.push_str(&format!(
            "{day:<12} {operation:<20} {:>10} {:>10}\n",
            n(&counts["data"]),
            n(&counts["probe"])
        ));
    };
    for day in report["days"].as_array().into_iter().flatten() {
        for op in day["operations"].as_array().into_iter().flatten() {
            line(s(&day["date"]), s(&op["operation"]), op);
        }
    }
    for op in report["operations"].as_array().into_iter().flatten() {
        line("all days", s(&op["operation"]), op);
    }
    line("all days", "total", &report["total"]);

    let charges = &report["charges"];
    out.push_str("\nCharges at the configured KMS prices (free requests shared per account):\n");
    for p in charges["periods"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} account {}: {} requests (of the account's {} this month), {} free, {} billable: {}\n",
            s(&p["month"]),
            s(&p["account"]),
            n(&p["cluster_requests"]),
            n(&p["account_requests"]),
            n(&p["free_requests"]),
            n(&p["billable_requests"]),
            dollars(&p["requests_micro_usd"]),
        ));
        for key in p["keys"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} key {}: {} of {} days\n",
                s(&p["month"]),
                s(&key["key_arn"]),
                n(&key["days"]),
                n(&p["days_in_month"]),
            ));
        }
        out.push_str(&format!(
            "  {} keys: {}\n",
            s(&p["month"]),
            dollars(&p["keys_micro_usd"])
        ));
    }
    out.push_str(&format!(
        "  total: {} (requests {}, keys {})\n",
        dollars(&charges["total_micro_usd"]),
        dollars(&charges["requests_micro_usd"]),
        dollars(&charges["keys_micro_usd"]),
    ));

    let probe = &report["probe_cost"];
    out.push_str(&format!(
        "\nKey-health probe every {} ms: {} requests per 30-day month, {} ({} after the free requests if it were the account's only use)\n",
        n(&probe["interval_ms"]),
        n(&probe["requests_per_month"]),
        dollars(&probe["micro_usd_per_month"]),
        dollars(&probe["micro_usd_per_month_after_free_requests"]),
    ));
    let cache = &report["data_key_cache"];
    match cache["requests_saved"].as_u64() {
        Some(saved) => out.push_str(&format!(
            "Data-key cache: {saved} GenerateDataKey/Decrypt requests saved since {}\n",
            s(&cache["since"])
        )),
        None => out.push_str("Data-key cache: the cluster has no key loaded\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn the_table_shows_days_charges_and_the_probe() {
        let report = serde_json::json!({
            "cluster_id": "c-0123456789abcdef", "from": "2026-12-01", "to": "2026-12-06",
            "days": [{"date": "2026-12-06", "operations": [
                {"operation": "Decrypt", "data": 3, "probe": 8640}], "total": {"data": 3, "probe": 8640}}],
            "operations": [{"operation": "Decrypt", "data": 3, "probe": 8640}],
            "total": {"data": 3, "probe": 8640},
            "charges": {"periods": [{"month": "2026-12", "account": "444455556666",
                "cluster_requests": 25000, "account_requests": 25000, "free_requests": 20000,
                "billable_requests": 5000, "requests_micro_usd": 15000, "days_in_month": 31,
                "keys": [{"key_arn": "arn:aws:kms:us-east-1:444455556666:key/k", "days": 31}],
                "keys_micro_usd": 1000000}],
                "requests_micro_usd": 15000, "keys_micro_usd": 1000000, "total_micro_usd": 1015000},
            "probe_cost": {"interval_ms": 10000, "requests_per_month": 259200,
                "micro_usd_per_month": 777600, "micro_usd_per_month_after_free_requests": 717600},
            "data_key_cache": {"requests_saved": 3, "since": "process start"}
        });
        let text = table(&report);
        assert!(
            text.contains("2026-12-06   Decrypt                       3       8640"),
            "{text}"
        );
        assert!(text.contains("5000 billable: $0.015000"), "{text}");
        assert!(text.contains("31 of 31 days"), "{text}");
        assert!(text.contains("total: $1.015000"), "{text}");
        assert!(
            text.contains("259200 requests per 30-day month, $0.777600"),
            "{text}"
        );
        assert!(
            text.contains("3 GenerateDataKey/Decrypt requests saved"),
            "{text}"
        );
    }
}
