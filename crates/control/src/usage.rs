//! KMS usage and what it costs the customer: the requests keyward made as a cluster's role, per
//! UTC day and operation, probes counted apart from data paths (from the audit, so at most the
//! audit's retention back); the charges they imply at AWS's public prices ([`KmsPrices`],
//! configurable); what the cluster's key-health probe costs per month at the configured interval;
//! and the KMS requests the cluster's data-key cache saved.
//!
//! How the charges are computed (all sums in integer micro-dollars, rounded half up once per
//! month and account, never in floating point):
//! - **Requests**: every request KMS answered (allowed or refused) is counted; one it never
//!   answered (unreachable) is not. The free requests are per calendar month per AWS account (the
//!   account in the key's ARN). keyward applies them to the month's requests of every cluster of
//!   the organization whose key is in that account, and shares them in proportion: each request
//!   of the month is billable by the fraction `max(0, N - free) / N`, `N` the account's requests
//!   that month. A cluster's charge for the days asked is then its requests on those days times
//!   that fraction times the price. The account may make other KMS requests keyward never sees;
//!   the figure is what keyward's own requests cost at least.
//! - **Keys**: a key costs its monthly price prorated per day: `days / days in the month`, a day
//!   counting when the cluster made at least one successful request under the key that day (a
//!   healthy cluster's probe makes one every interval, so that is every day it has the key). A key
//!   several clusters share shows on each of them; AWS charges it once.
//!
//! Not here: the bill itself (taxes, credits, other AWS prices), asymmetric-key prices (keyward
//! uses symmetric keys only), and requests the platform makes with its own keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use keyward_storage::vocab::iso8601;
use serde::Serialize;

use crate::audit::{AuditResult, UsageCount};
use crate::config::KmsPrices;
use crate::cost::{mul_div, probe_projection, usd, ProbeProjection};
use crate::error::{Error, Result};
use crate::org::OrgId;
use crate::plane::ControlPlane;

/// The longest window one usage query covers, in days.
pub const MAX_USAGE_DAYS: i64 = 92;
/// Milliseconds in a UTC day (no leap seconds in unix time).
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The days a usage query covers: UTC days since 1970-01-01, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageWindow {
    pub from_day: i64,
    pub to_day: i64,
}

impl UsageWindow {
    /// The window of `from` and `to` (`YYYY-MM-DD`, UTC, both included). Without `from`: the
    /// first day of `to`'s month; without `to`: `today`. So neither is the current month so far.
    pub fn parse(from: Option<&str>, to: Option<&str>, today: i64) -> Result<UsageWindow> {
        let to_day = match to {
            Some(to) => parse_date("to", to)?,
            None => today,
        };
        let from_day = match from {
            Some(from) => parse_date("from", from)?,
            None => month_start(to_day),
        };
        if from_day > to_day {
            return Err(Error::InvalidRequest(format!(
                "from {} is after to {}: from must be on or before to",
                date(from_day),
                date(to_day)
            )));
        }
        if to_day - from_day + 1 > MAX_USAGE_DAYS {
            return Err(Error::InvalidRequest(format!(
                "from {} to {} is {} days: a usage query covers at most {MAX_USAGE_DAYS} days",
                date(from_day),
                date(to_day),
                to_day - from_day + 1
            )));
        }
        Ok(UsageWindow { from_day, to_day })
    }

    /// The first day of `from`'s month and the first day after `to`'s month: the free requests
    /// are counted over whole months.
    fn months(&self) -> (i64, i64) {
        (month_start(self.from_day), next_month_start(self.to_day))
    }

    fn contains(&self, day: i64) -> bool {
        (self.from_day..=self.to_day).contains(&day)
    }
}

/// A `YYYY-MM-DD` date (exactly that shape, a real calendar day) as days since 1970-01-01.
fn parse_date(name: &str, text: &str) -> Result<i64> {
    let bad = || {
        Error::InvalidRequest(format!(
            "{name} {text:?} is not a date: write YYYY-MM-DD, a real UTC calendar day (like 2026-12-01)"
        ))
    };
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().map_err(|_| bad());
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day < 1 {
        return Err(bad());
    }
    let first = days_from_civil(year, month, 1);
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    if day > next - first {
        return Err(bad());
    }
    Ok(first + day - 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-06`.
fn date(day: i64) -> String {
    iso8601(day * DAY_MS)[..10].to_owned()
}

/// `2026-12`.
fn month_of(day: i64) -> String {
    iso8601(day * DAY_MS)[..7].to_owned()
}

fn month_start(day: i64) -> i64 {
    let text = date(day);
    let (year, month) = (
        text[0..4].parse().unwrap_or(1970),
        text[5..7].parse().unwrap_or(1),
    );
    days_from_civil(year, month, 1)
}

fn next_month_start(day: i64) -> i64 {
    // Any month has at most 31 days: the 32nd day after its first is in the next one.
    month_start(month_start(day) + 31)
}

/// The account of a KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
pub(crate) fn key_account(key_arn: &str) -> Option<String> {
    let parts: Vec<&str> = key_arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, "kms", _, account, _]
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(account.to_owned())
        }
        _ => None,
    }
}

/// Requests, data paths and probes apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Documents, backups, disks, key changes.
    pub data: u64,
    /// Key-health and key-association probes.
    pub probe: u64,
}

impl RequestCounts {
    fn add(&mut self, probe: bool, requests: u64) {
        if probe {
            self.probe += requests;
        } else {
            self.data += requests;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationUsage {
    pub operation: String,
    #[serde(flatten)]
    pub requests: RequestCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub operations: Vec<OperationUsage>,
    pub total: RequestCounts,
}

/// The days one key counts in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyDays {
    pub key_arn: String,
    pub days: u64,
}

/// The charges of one calendar month in one AWS account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargePeriod {
    /// `YYYY-MM`.
    pub month: String,
    /// The AWS account the key is in (who is billed); `unknown` if no key ARN says.
    pub account: String,
    /// The cluster's requests KMS answered, on the days asked in this month.
    pub cluster_requests: u64,
    /// The requests KMS answered in the whole month for every cluster of the organization with a
    /// key in this account: what the free requests are shared over.
    pub account_requests: u64,
    /// The cluster's share of the month's free requests (rounded for display).
    pub free_requests: u64,
    /// `cluster_requests - free_requests`.
    pub billable_requests: u64,
    pub requests_micro_usd: u64,
    pub days_in_month: u64,
    pub keys: Vec<KeyDays>,
    pub keys_micro_usd: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charges {
    pub prices: KmsPrices,
    pub periods: Vec<ChargePeriod>,
    pub requests_micro_usd: u64,
    pub keys_micro_usd: u64,
    pub total_micro_usd: u64,
    /// `total_micro_usd` as dollars, six decimals: `1.015000`.
    pub total_usd: String,
}

/// The KMS requests the cluster's data-key cache answered instead of KMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheSavings {
    /// `GenerateDataKey` and `Decrypt` requests saved; `None` if the cluster has no key loaded.
    pub requests_saved: Option<u64>,
    /// Counted since the cluster's keys were loaded (the process start or the last key change),
    /// not over the days asked.
    pub since: &'static str,
}

/// A cluster's KMS usage over some days, and its cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub cluster_id: String,
    /// `YYYY-MM-DD`, both included.
    pub from: String,
    pub to: String,
    /// Only days with requests, oldest first.
    pub days: Vec<DayUsage>,
    /// Per operation over every day.
    pub operations: Vec<OperationUsage>,
    pub total: RequestCounts,
    pub charges: Charges,
    pub probe_cost: ProbeProjection,
    pub data_key_cache: CacheSavings,
    /// How far back the audit (and so this report) reaches.
    pub audit_retention_days: u64,
}

/// Everything a report is made of.
pub(crate) struct UsageInput<'a> {
    pub(crate) cluster_id: &'a str,
    pub(crate) window: UsageWindow,
    /// The organization's counts over the whole months of the window, each with the account
    /// its request is billed to.
    pub(crate) counts: &'a [(UsageCount, String)],
    pub(crate) prices: KmsPrices,
    pub(crate) probe_interval: Duration,
    pub(crate) cache_saved: Option<u64>,
    pub(crate) audit_retention: Duration,
}

pub(crate) fn report(input: UsageInput<'_>) -> UsageReport {
    let UsageInput {
        cluster_id,
        window,
        counts,
        prices,
        ..
    } = input;
    let mine = |c: &UsageCount| c.cluster_id == cluster_id && window.contains(c.day);

    let mut days: BTreeMap<i64, BTreeMap<&str, RequestCounts>> = BTreeMap::new();
    let mut operations: BTreeMap<&str, RequestCounts> = BTreeMap::new();
    let mut total = RequestCounts::default();
    // (month start, account) -> (account's answered requests in the month, the cluster's in
    // the window, (key, day) of the cluster's successful requests).
    type Period = (u64, u64, BTreeSet<(String, i64)>);
    let mut periods: BTreeMap<(i64, &str), Period> = BTreeMap::new();
    for (count, account) in counts {
        let answered = count.result != AuditResult::Unreachable;
        let period = periods
            .entry((month_start(count.day), account.as_str()))
            .or_default();
        if answered {
            period.0 += count.requests;
        }
        if !mine(count) {
            continue;
        }
        days.entry(count.day)
            .or_default()
            .entry(&count.operation)
            .or_default()
            .add(count.probe, count.requests);
        operations
            .entry(&count.operation)
            .or_default()
            .add(count.probe, count.requests);
        total.add(count.probe, count.requests);
        if answered {
            period.1 += count.requests;
        }
        if let (AuditResult::Success, Some(key)) = (count.result, &count.key_arn) {
            period.2.insert((key.clone(), count.day));
        }
    }

    let mut charge_periods = Vec::new();
    for ((month, account), (account_requests, cluster_requests, key_days)) in periods {
        if cluster_requests == 0 && key_days.is_empty() {
            continue;
        }
        let excess = account_requests.saturating_sub(prices.free_requests_per_month);
        let (billable, requests_micro) = if account_requests == 0 {
            (0, 0)
        } else {
            let share = u128::from(cluster_requests) * u128::from(excess);
            (
                mul_div(share, 1, u128::from(account_requests)),
                mul_div(
                    share,
                    u128::from(prices.per_10k_requests_micro_usd),
                    u128::from(account_requests) * 10_000,
                ),
            )
        };
        let days_in_month = next_month_start(month) - month;
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        for (key, _) in &key_days {
            *keys.entry(key.clone()).or_default() += 1;
        }
        let keys_micro = mul_div(
            key_days.len() as u128,
            u128::from(prices.key_month_micro_usd),
            days_in_month as u128,
        );
        charge_periods.push(ChargePeriod {
            month: month_of(month),
            account: account.to_owned(),
            cluster_requests,
            account_requests,
            free_requests: cluster_requests - billable,
            billable_requests: billable,
            requests_micro_usd: requests_micro,
            days_in_month: days_in_month as u64,
            keys: keys
                .into_iter()
                .map(|(key_arn, days)| KeyDays { key_arn, days })
                .collect(),
            keys_micro_usd: keys_micro,
        });
    }
    let requests_micro_usd = charge_periods.iter().map(|p| p.requests_micro_usd).sum();
    let keys_micro_usd = charge_periods.iter().map(|p| p.keys_micro_usd).sum();
    let total_micro_usd = requests_micro_usd + keys_micro_usd;

    let by_operation = |ops: BTreeMap<&str, RequestCounts>| {
        ops.into_iter()
            .map(|(operation, requests)| OperationUsage {
                operation: operation.to_owned(),
                requests,
            })
            .collect::<Vec<_>>()
    };
    UsageReport {
        cluster_id: cluster_id.to_owned(),
        from: date(window.from_day),
        to: date(window.to_day),
        days: days
            .into_iter()
            .map(|(day, ops)| {
                let mut total = RequestCounts::default();
                for counts in ops.values() {
                    total.data += counts.data;
                    total.probe += counts.probe;
                }
                DayUsage {
                    date: date(day),
                    operations: by_operation(ops),
                    total,
                }
            })
            .collect(),
        operations: by_operation(operations),
        total,
        charges: Charges {
            prices,
            periods: charge_periods,
            requests_micro_usd,
            keys_micro_usd,
            total_micro_usd,
            total_usd: usd(total_micro_usd),
        },
        probe_cost: probe_projection(input.probe_interval, &prices),
        data_key_cache: CacheSavings {
            requests_saved: input.cache_saved,
            since: "the cluster's keys were loaded (process start or the last key change)",
        },
        audit_retention_days: input.audit_retention.as_secs() / 86_400,
    }
}

impl ControlPlane {
    /// The cluster's KMS usage and its cost over `from`..=`to` (`YYYY-MM-DD`, UTC; the current
    /// month so far by default; at most [`MAX_USAGE_DAYS`] days). See the module's doc for how
    /// charges are computed.
    pub async fn usage(
        &self,
        org: &OrgId,
        cluster_id: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<UsageReport> {
        self.cluster(org, cluster_id).await?;
        let config = self.config();
        let today = config.clock.now_ms().div_euclid(DAY_MS);
        let window = UsageWindow::parse(from, to, today)?;
        // The free requests are the account's: every cluster of the organization counts.
        let clusters = self.list_clusters(org).await?;
        let ids: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
        let fallback: HashMap<&str, Option<String>> = clusters
            .iter()
            .map(|c| (c.id.as_str(), c.key_arn.as_deref().and_then(key_account)))
            .collect();
        let (start, end) = window.months();
        let counts = self
            .shared()
            .audit
            .usage_counts(&ids, start * DAY_MS, end * DAY_MS)
            .await?;
        let counts: Vec<(UsageCount, String)> = counts
            .into_iter()
            .map(|count| {
                // A request that named no key ARN is billed where the cluster's key is.
                let account = count
                    .key_arn
                    .as_deref()
                    .and_then(key_account)
                    .or_else(|| fallback.get(count.cluster_id.as_str()).cloned().flatten())
                    .unwrap_or_else(|| "unknown".to_owned());
                (count, account)
            })
            .collect();
        Ok(report(UsageInput {
            cluster_id,
            window,
            counts: &counts,
            prices: config.kms_prices,
            probe_interval: config.probe_interval,
            cache_saved: self.runtime(cluster_id).map(|r| r.kms_calls_saved()),
            audit_retention: config.audit_retention,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:444455556666:key/k-1";

    fn count(cluster: &str, day: i64, requests: u64) -> (UsageCount, String) {
        (
            UsageCount {
                cluster_id: cluster.into(),
                day,
                operation: "Decrypt".into(),
                probe: true,
                key_arn: Some(KEY.into()),
                result: AuditResult::Success,
                requests,
            },
            "444455556666".into(),
        )
    }

    fn input<'a>(
        cluster_id: &'a str,
        window: UsageWindow,
        counts: &'a [(UsageCount, String)],
    ) -> UsageInput<'a> {
        UsageInput {
            cluster_id,
            window,
            counts,
            prices: KmsPrices::default(),
            probe_interval: Duration::from_secs(10),
            cache_saved: Some(7),
            audit_retention: Duration::from_secs(90 * 86_400),
        }
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("from", "1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("from", "2026-12-06").unwrap(), 20_793);
        assert_eq!(date(20_793), "2026-12-06");
        assert_eq!(
            parse_date("from", "2024-02-29").unwrap() + 1,
            parse_date("from", "2024-03-01").unwrap()
        );
        for bad in [
            "",
            "2026-1-01",
            "2026-13-01",
            "2026-02-29",
            "2026-04-31",
            "2026-00-10",
            "2026-01-00",
            "26-01-01",
            "2026/01/01",
            "2026-01-01T00:00:00Z",
            " 2026-01-01",
            "+026-01-01",
            "1969-12-31",
        ] {
            let refused = parse_date("from", bad).unwrap_err();
            assert!(
                refused.to_string().contains("YYYY-MM-DD"),
                "{bad}: {refused}"
            );
        }
    }

    #[test]
    fn windows_default_to_the_month_so_far_and_are_bounded() {
        let today = parse_date("to", "2026-12-06").unwrap();
        let w = UsageWindow::parse(None, None, today).unwrap();
        assert_eq!(
            (date(w.from_day), date(w.to_day)),
            ("2026-12-01".into(), "2026-12-06".into())
        );
        assert_eq!(
            w.months(),
            (w.from_day, parse_date("x", "2027-01-01").unwrap())
        );
        let w = UsageWindow::parse(Some("2026-09-06"), Some("2026-12-06"), today).unwrap();
        assert_eq!(w.to_day - w.from_day + 1, 92);
        let refused =
            UsageWindow::parse(Some("2026-09-05"), Some("2026-12-06"), today).unwrap_err();
        assert!(refused.to_string().contains("at most 92 days"), "{refused}");
        let refused =
            UsageWindow::parse(Some("2026-12-07"), Some("2026-12-06"), today).unwrap_err();
        assert!(refused.to_string().contains("on or before"), "{refused}");
    }

    #[test]
    fn key_accounts_come_from_key_arns_only() {
        assert_eq!(key_account(KEY).as_deref(), Some("444455556666"));
        assert_eq!(key_account("alias/x"), None);
        assert_eq!(key_account("arn:aws:iam::444455556666:role/r"), None);
    }

    /// 25,000 requests in December by the account's one cluster: 5,000 are billable, $0.015;
    /// the key every day of December: $1.00.
    #[test]
    fn a_month_of_one_cluster_costs_its_billable_requests_and_one_key_month() {
        let december = parse_date("from", "2026-12-01").unwrap();
        // 31 days: 30 of 806 requests and one of 820 = 25,000.
        let mut counts: Vec<_> = (0..30).map(|d| count("c-a", december + d, 806)).collect();
        counts.push(count("c-a", december + 30, 820));
        let window = UsageWindow {
            from_day: december,
            to_day: december + 30,
        };
        let report = report(input("c-a", window, &counts));
        assert_eq!(
            report.total,
            RequestCounts {
                data: 0,
                probe: 25_000
            }
        );
        let period = &report.charges.periods[0];
        assert_eq!(period.month, "2026-12");
        assert_eq!(period.account_requests, 25_000);
        assert_eq!(period.billable_requests, 5_000);
        assert_eq!(period.free_requests, 20_000);
        assert_eq!(period.requests_micro_usd, 15_000);
        assert_eq!(
            period.keys,
            vec![KeyDays {
                key_arn: KEY.into(),
                days: 31
            }]
        );
        assert_eq!(period.keys_micro_usd, 1_000_000);
        assert_eq!(report.charges.total_micro_usd, 1_015_000);
        assert_eq!(report.charges.total_usd, "1.015000");
        assert_eq!(report.days.len(), 31);
        assert_eq!(report.data_key_cache.requests_saved, Some(7));
    }

    /// Two clusters of one account share the free requests in proportion; the key of a cluster
    /// that used it 15 days of a 30-day month costs half a key-month.
    #[test]
    fn the_free_requests_are_shared_by_the_accounts_clusters_in_proportion() {
        let november = parse_date("from", "2026-11-01").unwrap();
        let mut counts: Vec<_> = (0..15).map(|d| count("c-a", november + d, 1_000)).collect();
        counts.push(count("c-b", november, 10_000));
        let window = UsageWindow {
            from_day: november,
            to_day: november + 29,
        };
        // 25,000 in the account: 5,000 billable, a fifth of each request. A: 15,000 -> 3,000.
        let a = report(input("c-a", window, &counts));
        let period = &a.charges.periods[0];
        assert_eq!(
            (period.cluster_requests, period.account_requests),
            (15_000, 25_000)
        );
        assert_eq!(period.billable_requests, 3_000);
        assert_eq!(period.requests_micro_usd, 9_000);
        assert_eq!(period.days_in_month, 30);
        assert_eq!(period.keys_micro_usd, 500_000);
        // B: 10,000 -> 2,000, $0.006; its key one day of 30: 33,333 micro-dollars.
        let b = report(input("c-b", window, &counts));
        assert_eq!(b.charges.periods[0].billable_requests, 2_000);
        assert_eq!(b.charges.periods[0].requests_micro_usd, 6_000);
        assert_eq!(b.charges.periods[0].keys_micro_usd, 33_333);
        // Days outside the window are not the cluster's charge but still use up free requests.
        let first_week = UsageWindow {
            from_day: november,
            to_day: november + 6,
        };
        let a = report(input("c-a", first_week, &counts));
        assert_eq!(a.charges.periods[0].cluster_requests, 7_000);
        assert_eq!(a.charges.periods[0].billable_requests, 1_400);
    }

    #[test]
    fn an_unanswered_request_is_counted_but_not_charged() {
        let day = parse_date("from", "2026-12-01").unwrap();
        let (mut lost, account) = count("c-a", day, 5);
        lost.result = AuditResult::Unreachable;
        let counts = vec![(lost, account)];
        let report = report(input(
            "c-a",
            UsageWindow {
                from_day: day,
                to_day: day,
            },
            &counts,
        ));
        assert_eq!(report.total.probe, 5);
        assert!(report.charges.periods.is_empty());
        assert_eq!(report.charges.total_micro_usd, 0);
    }
}
