//! The KMS clock: wall clock plus a persisted offset that only dev mode moves.
//!
//! Deletion windows and rotation periods run on this clock, so a test can watch a key rotate or a
//! deletion complete by advancing it instead of waiting days.

use std::sync::atomic::{AtomicI64, Ordering};

pub(crate) const DAY_MS: i64 = 86_400_000;

pub(crate) struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub(crate) fn new(offset_ms: i64) -> Self {
        Clock {
            offset_ms: AtomicI64::new(offset_ms),
        }
    }

    /// Milliseconds since the Unix epoch on the KMS clock.
    pub(crate) fn now_ms(&self) -> i64 {
        wall_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn set_offset_ms(&self, offset: i64) {
        self.offset_ms.store(offset, Ordering::Relaxed);
    }
}

fn wall_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}

/// Epoch seconds as the JSON number AWS sends (`1764389123.456`).
pub(crate) fn epoch_seconds(ms: i64) -> serde_json::Value {
    serde_json::json!(ms as f64 / 1000.0)
}

/// `2026-11-29T04:12:00Z`, CloudTrail's `eventTime` format (and IAM's and STS's dates).
pub fn iso8601(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_is_cloudtrail_format() {
        assert_eq!(iso8601(1_774_292_310_000), "2026-03-23T18:58:30Z");
    }

    #[test]
    fn offset_moves_now() {
        let c = Clock::new(0);
        let a = c.now_ms();
        c.set_offset_ms(DAY_MS);
        assert!(c.now_ms() - a >= DAY_MS);
    }
}
