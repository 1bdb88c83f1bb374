//! `keyward audit <cluster>`: the cluster's KMS requests as keyward made them (allowed and
//! denied), from the API's `GET /v1/clusters/{id}/audit`; `--cloudtrail` prints them as
//! CloudTrail events, one JSON object per line, for tools that read CloudTrail.

use clap::{Args, ValueEnum};
use hyper::Method;
use serde_json::Value;

use crate::api_client::{ApiArgs, ApiClient};
use crate::cluster_cmd::{cluster_path, print_json};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    api: ApiArgs,
    cluster_id: String,
    /// Only this KMS operation (e.g. Decrypt).
    #[arg(long)]
    operation: Option<String>,
    /// Only requests with this result.
    #[arg(long, value_enum)]
    result: Option<ResultArg>,
    /// Only requests of the last so long: `90s`, `30m`, `12h`, `7d`.
    #[arg(long, value_parser = parse_age)]
    since: Option<u64>,
    /// At most this many (1 to 1000), newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print CloudTrail events (JSON lines) instead of keyward's records.
    #[arg(long)]
    cloudtrail: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ResultArg {
    Success,
    Error,
    Unreachable,
}

/// `30m` as milliseconds.
fn parse_age(value: &str) -> Result<u64, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 30m"))?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{value:?}: the unit is s, m, h or d")),
    };
    number
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("{value:?} is too long"))
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let api = ApiClient::from_args(&args.api)?;
    let mut query = vec![format!("limit={}", args.limit)];
    if let Some(operation) = &args.operation {
        query.push(format!(
            "operation={}",
            crate::api_client::encode_path(operation)
        ));
    }
    if let Some(result) = args.result {
        let result = match result {
            ResultArg::Success => "success",
            ResultArg::Error => "error",
            ResultArg::Unreachable => "unreachable",
        };
        query.push(format!("result={result}"));
    }
    if let Some(age) = args.since {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        query.push(format!("from={}", now.saturating_sub(age)));
    }
    if args.cloudtrail {
        query.push("format=cloudtrail".into());
    }
    let path = format!(
        "{}?{}",
        cluster_path(&args.cluster_id, "/audit"),
        query.join("&")
    );
    let answer = api.json(Method::GET, &path, None).await?;
    let compacted = answer["compacted"]
        .as_array()
        .or(answer["keywardCompacted"].as_array())
        .map_or(0, |counts| {
            counts
                .iter()
                .map(|c| c["requests"].as_u64().unwrap_or(0))
                .sum::<u64>()
        });
    if compacted > 0 {
        eprintln!(
            "note: {compacted} successful probe requests in this range are kept as hourly counts \
             (compacted), not listed one by one; --json shows the counts"
        );
    }
    if args.cloudtrail {
        for event in answer["Records"].as_array().into_iter().flatten() {
            println!("{event}");
        }
        return Ok(());
    }
    if args.api.json {
        return print_json(&answer);
    }
    for record in answer["records"].as_array().into_iter().flatten() {
        println!("{}", line(record));
    }
    if let Some(dropped) = answer["dropped"].as_u64().filter(|d| *d > 0) {
        eprintln!("note: {dropped} audit records were dropped since the platform started (its queue was full)");
    }
    Ok(())
}

/// `2026-12-06T11:06:05Z  Decrypt  error AccessDeniedException  (probe)  arn:...  12 ms`
fn line(record: &Value) -> String {
    let text = |k: &str| record[k].as_str().unwrap_or("-").to_owned();
    let time = record["time_ms"]
        .as_i64()
        .map_or_else(|| "-".to_owned(), keyward_storage::vocab::iso8601);
    let result = match record["error_code"].as_str() {
        Some(code) => format!("{} {code}", text("result")),
        None => text("result"),
    };
    let probe = if record["probe"] == true {
        "  (probe)"
    } else {
        ""
    };
    format!(
        "{time}  {:<16} {result}{probe}  {}  {} ms  {}",
        text("operation"),
        text("key_arn"),
        record["latency_ms"].as_i64().unwrap_or(0),
        text("request_id"),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert_eq!(parse_age("30m"), Ok(1_800_000));
        assert_eq!(parse_age("7d"), Ok(604_800_000));
        assert!(parse_age("7").is_err());
        assert!(parse_age("7w").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
    }
}
