//! KMS usage and cost: the report of a cluster's requests per day and operation, and its charges,
//! checked against a hand computation from the raw audit records of the organization's clusters.

use std::collections::{BTreeMap, BTreeSet};

use keyward_control::{AuditQuery, AuditRecord, AuditResult, KmsPrices, MAX_AUDIT_PAGE};

use crate::harness::{self, org, ready_external_cluster, CUSTOMER, PROBE_INTERVAL};

const DAY_MS: i64 = 86_400_000;
/// Prices that make a few requests cost something: 10 free requests a month, $3,000 per 10,000
/// requests (3,000 micro-dollars each), $3.10 a key-month.
const PRICES: KmsPrices = KmsPrices {
    key_month_micro_usd: 3_100_000,
    per_10k_requests_micro_usd: 30_000_000,
    free_requests_per_month: 10,
};

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `a * b / c`, rounded half up, by hand.
fn rounded(a: u128, b: u128, c: u128) -> u64 {
    ((a * b + c / 2) / c) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_report_matches_a_hand_computation_from_the_audit() {
    let env = harness::start().await;
    let data = env.dir.path().join("plane");
    let url = format!("sqlite:{}", data.join("control.db").display());
    let mut config = env.config(&data, &url);
    config.kms_prices = PRICES;
    let plane = keyward_control::ControlPlane::open(config).await.unwrap();
    let acme = org(&plane, "acme").await;
    let (a, key) = ready_external_cluster(&env, &plane, &acme, "a").await;
    // A second cluster of the organization with a key in the same account: it shares the free
    // requests.
    let (b, _) = ready_external_cluster(&env, &plane, &acme, "b").await;

    // Data paths: three documents put, each read twice (the second read may come from the
    // data-key cache).
    for i in 0..3 {
        let name = format!("doc-{i}.txt");
        plane
            .put_document(&acme.id, &a.id, &name, &b"usage"[..])
            .await
            .unwrap();
        for _ in 0..2 {
            let body = plane.get_document(&acme.id, &a.id, &name).await.unwrap();
            assert_eq!(body.bytes().await.unwrap(), b"usage");
        }
    }
    let live = plane.usage(&acme.id, &a.id, None, None).await.unwrap();
    let saved = live
        .data_key_cache
        .requests_saved
        .expect("a has its keys loaded");

    // Stop the probes so the audit holds still, then read both the report and the records.
    plane.shutdown().await;
    let report = plane.usage(&acme.id, &a.id, None, None).await.unwrap();
    let records = |id: String| {
        let plane = plane.clone();
        let org = acme.id.clone();
        async move {
            let all = plane
                .audit(&org, &id, &AuditQuery::default())
                .await
                .unwrap();
            assert!(all.len() < MAX_AUDIT_PAGE, "the page holds every record");
            all
        }
    };
    let (of_a, of_b) = (records(a.id.clone()).await, records(b.id.clone()).await);

    // The window: the current month so far; every record is in it.
    let today = plane.config().clock.now_ms() / DAY_MS;
    let (year, month): (i64, i64) = (
        report.from[0..4].parse().unwrap(),
        report.from[5..7].parse().unwrap(),
    );
    assert!(report.from.ends_with("-01"));
    assert_eq!(report.from[..7], report.to[..7]);
    let month_days = days_in_month(year, month);
    let first_day = today - (report.to[8..10].parse::<i64>().unwrap() - 1);
    for r in of_a.iter().chain(&of_b) {
        let day = r.time_ms / DAY_MS;
        assert!(first_day <= day && day <= today, "{r:?}");
    }

    // Per day and operation, probes apart.
    let mut by_day: BTreeMap<i64, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for r in &of_a {
        let counts = by_day
            .entry(r.time_ms / DAY_MS)
            .or_default()
            .entry(r.operation.as_str())
            .or_default();
        if r.probe {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    assert_eq!(report.days.len(), by_day.len());
    for (shown, (_, operations)) in report.days.iter().zip(&by_day) {
        let shown: BTreeMap<&str, (u64, u64)> = shown
            .operations
            .iter()
            .map(|o| (o.operation.as_str(), (o.requests.data, o.requests.probe)))
            .collect();
        assert_eq!(&shown, operations);
    }
    let data = of_a.iter().filter(|r| !r.probe).count() as u64;
    let probes = of_a.iter().filter(|r| r.probe).count() as u64;
    assert_eq!((report.total.data, report.total.probe), (data, probes));
    assert!(data > 0 && probes > 0);
    // The data-key cache answered some reads: fewer document Decrypts than the six reads.
    let document_decrypts = of_a
        .iter()
        .filter(|r| {
            r.operation == "Decrypt"
                && !r.probe
                && r.encryption_context
                    .as_ref()
                    .is_some_and(|c| c["keyward:class"] == "documents")
        })
        .count() as u64;
    assert!(document_decrypts < 6, "{document_decrypts}");
    assert!(saved >= 6 - document_decrypts, "{saved}");

    // Charges, by hand. Every request is billed in the customer's account: the one its key ARN
    // names, or (a request that named none, like a grant's retirement) the cluster's key's.
    assert!(of_a.iter().chain(&of_b).all(|r| r
        .key_arn
        .as_deref()
        .is_none_or(|k| k.split(':').nth(4) == Some(CUSTOMER))));
    let answered = |rs: &[AuditRecord]| {
        rs.iter()
            .filter(|r| r.result != AuditResult::Unreachable)
            .count() as u128
    };
    let (n_a, n_b) = (answered(&of_a), answered(&of_b));
    // The free requests are the account's: shared by both clusters, in proportion.
    let account = n_a + n_b;
    let excess = account - 10;
    // Billable a: n_a * excess / account; at 3,000 micro-dollars a request.
    let billable_a = rounded(n_a, excess, account);
    let requests_micro = rounded(n_a * excess, 30_000_000, account * 10_000);
    // One key, used (successfully) on one day: 1 / days-in-month of $3.10.
    let key_days: BTreeSet<(String, i64)> = of_a
        .iter()
        .filter(|r| r.result == AuditResult::Success)
        .filter_map(|r| Some((r.key_arn.clone()?, r.time_ms / DAY_MS)))
        .collect();
    assert_eq!(
        key_days.iter().map(|(k, _)| k).collect::<BTreeSet<_>>(),
        BTreeSet::from([&key])
    );
    let keys_micro = rounded(key_days.len() as u128, 3_100_000, month_days as u128);

    assert_eq!(report.charges.periods.len(), 1);
    let period = &report.charges.periods[0];
    assert_eq!(period.account, CUSTOMER);
    assert_eq!(period.month, report.from[..7]);
    assert_eq!(u128::from(period.cluster_requests), n_a);
    assert_eq!(u128::from(period.account_requests), account);
    assert_eq!(period.billable_requests, billable_a);
    assert_eq!(period.free_requests, n_a as u64 - billable_a);
    assert_eq!(period.requests_micro_usd, requests_micro);
    assert_eq!(period.days_in_month, month_days as u64);
    assert_eq!(period.keys_micro_usd, keys_micro);
    assert_eq!(report.charges.requests_micro_usd, requests_micro);
    assert_eq!(report.charges.keys_micro_usd, keys_micro);
    assert_eq!(report.charges.total_micro_usd, requests_micro + keys_micro);
    let total = requests_micro + keys_micro;
    assert_eq!(
        report.charges.total_usd,
        format!("{}.{:06}", total / 1_000_000, total % 1_000_000)
    );

    // b's share of the same month is the rest of the account's billable requests.
    let of_b_report = plane.usage(&acme.id, &b.id, None, None).await.unwrap();
    let period_b = &of_b_report.charges.periods[0];
    assert_eq!(u128::from(period_b.account_requests), account);
    assert_eq!(
        period_b.requests_micro_usd,
        rounded(n_b * excess, 30_000_000, account * 10_000)
    );
    let all_billable = u128::from(period.billable_requests + period_b.billable_requests);
    assert!(
        all_billable.abs_diff(excess) <= 1,
        "{all_billable} vs {excess}"
    );

    // The probe at the tests' 1 s interval: 30 days of one request a second, 3,000 each.
    assert_eq!(PROBE_INTERVAL.as_secs(), 1);
    assert_eq!(report.probe_cost.requests_per_month, 2_592_000);
    assert_eq!(report.probe_cost.micro_usd_per_month, 2_592_000 * 3_000);
    assert_eq!(
        report.probe_cost.micro_usd_per_month_after_free_requests,
        (2_592_000 - 10) * 3_000
    );

    // A day without requests (the day before the records): nothing counted, nothing charged.
    if first_day < today {
        let before = &report.to[..8];
        let day = format!("{before}{:02}", today - first_day);
        let empty = plane
            .usage(&acme.id, &a.id, Some(&day), Some(&day))
            .await
            .unwrap();
        assert!(empty.days.is_empty());
        assert_eq!(empty.charges.total_micro_usd, 0);
    }
}
