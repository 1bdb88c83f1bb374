//! Price arithmetic that needs no stored state: micro-dollars as dollars, `a * b / c` rounded
//! half up, and what the key-health probe costs per month at an interval and prices
//! ([`probe_projection`]). Both the usage report (`usage.rs`) and the probe-cost alarm
//! (`alarms.rs`) use it, so it sits below both.

use std::time::Duration;

use serde::Serialize;

use crate::config::KmsPrices;

/// The month a projection assumes: 30 days.
const PROJECTION_MONTH_MS: u128 = 30 * 86_400_000;

/// What the key-health probe costs a cluster per month at the configured interval: one request
/// (a `Decrypt`) per probe of a healthy key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeProjection {
    pub interval_ms: u64,
    /// Over 30 days.
    pub requests_per_month: u64,
    pub micro_usd_per_month: u64,
    pub usd_per_month: String,
    /// The same if the probe were the account's only KMS use (the free requests taken first).
    pub micro_usd_per_month_after_free_requests: u64,
}

/// `a * b / c` rounded half up (`c` > 0).
pub(crate) fn mul_div(a: u128, b: u128, c: u128) -> u64 {
    u64::try_from((a * b + c / 2) / c).unwrap_or(u64::MAX)
}

/// Micro-dollars as dollars with six decimals.
pub fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// The probe's monthly requests and cost at `interval`.
pub fn probe_projection(interval: Duration, prices: &KmsPrices) -> ProbeProjection {
    let interval_ms = interval.as_millis().max(1);
    let requests = u64::try_from(PROJECTION_MONTH_MS / interval_ms).unwrap_or(u64::MAX);
    let price = u128::from(prices.per_10k_requests_micro_usd);
    let cost = mul_div(u128::from(requests), price, 10_000);
    let after_free = mul_div(
        u128::from(requests.saturating_sub(prices.free_requests_per_month)),
        price,
        10_000,
    );
    ProbeProjection {
        interval_ms: u64::try_from(interval_ms).unwrap_or(u64::MAX),
        requests_per_month: requests,
        micro_usd_per_month: cost,
        usd_per_month: usd(cost),
        micro_usd_per_month_after_free_requests: after_free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Decrypt every 10 s for 30 days: 259,200 requests, $0.7776 ($0.7176 after the free
    /// requests).
    #[test]
    fn the_probe_costs_at_the_default_interval() {
        let p = probe_projection(Duration::from_secs(10), &KmsPrices::default());
        assert_eq!(p.requests_per_month, 259_200);
        assert_eq!(p.micro_usd_per_month, 777_600);
        assert_eq!(p.usd_per_month, "0.777600");
        assert_eq!(p.micro_usd_per_month_after_free_requests, 717_600);
    }
}
