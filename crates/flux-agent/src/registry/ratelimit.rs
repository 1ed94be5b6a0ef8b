//! Per-host request limits, Flux v1's `pkg/registry/middleware/rate_limiter.go`: a token bucket
//! of `--registry-rps` and `--registry-burst` per registry host, at most `burst` requests in
//! flight per host, and the adaptive rule: a 429 halves the host's rate (floor 0.1 rps) and,
//! with `Retry-After`, holds every request to that host until then; after 20 minutes without a
//! 429, each successful repository round raises the rate ×1.5 up to the configured one.
//!
//! Responses to requests sent before the last halving do not halve again, so a burst of
//! concurrent 429s counts once. Does not retry anything itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::GaugeVec;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Lowest rate a host is slowed down to, in requests per second.
pub(crate) const MIN_RPS: f64 = 0.1;
/// Calm time after the last 429 (or the last raise) before the rate is raised again.
pub(crate) const RECOVERY_COOL_DOWN: Duration = Duration::from_secs(20 * 60);
/// Factor of each raise.
const RECOVERY_FACTOR: f64 = 1.5;

/// The token bucket of one host; pure state, times passed in.
#[derive(Debug)]
pub(crate) struct Bucket {
    configured: f64,
    rate: f64,
    burst: f64,
    tokens: f64,
    last_refill: Instant,
    blocked_until: Option<Instant>,
    last_change: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(rps: f64, burst: u32, now: Instant) -> Self {
        let rate = rps.max(MIN_RPS);
        let burst = f64::from(burst.max(1));
        Self {
            configured: rate,
            rate,
            burst,
            tokens: burst,
            last_refill: now,
            blocked_until: None,
            last_change: None,
        }
    }

    /// Takes one token and says how long to wait before using it (zero when one was there).
    /// Tokens may go negative: later callers queue behind earlier ones, in order.
    pub(crate) fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last_refill = now;
        self.tokens -= 1.0;
        let mut wait = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        };
        if let Some(until) = self.blocked_until {
            wait = wait.max(until.saturating_duration_since(now));
        }
        wait
    }

    /// A 429 for a request sent at `sent_at`: halves the rate unless it was halved after that
    /// request was sent, empties the bucket, and holds requests until `retry_after` passed.
    /// Returns `true` when the rate changed.
    pub(crate) fn back_off(
        &mut self,
        now: Instant,
        sent_at: Instant,
        retry_after: Option<Duration>,
    ) -> bool {
        if let Some(retry_after) = retry_after {
            let until = now + retry_after;
            self.blocked_until = Some(self.blocked_until.map_or(until, |u| u.max(until)));
        }
        if self.last_change.is_some_and(|c| sent_at < c) {
            return false;
        }
        self.rate = (self.rate / 2.0).max(MIN_RPS);
        self.tokens = self.tokens.min(0.0);
        self.last_change = Some(now);
        true
    }

    /// A successful round: raises the rate ×1.5 (capped at the configured one) when it is
    /// below and the last change is at least [`RECOVERY_COOL_DOWN`] old. Returns `true` when the
    /// rate changed.
    pub(crate) fn recover(&mut self, now: Instant) -> bool {
        if self.rate >= self.configured {
            return false;
        }
        if self
            .last_change
            .is_some_and(|c| now.saturating_duration_since(c) < RECOVERY_COOL_DOWN)
        {
            return false;
        }
        self.rate = (self.rate * RECOVERY_FACTOR).min(self.configured);
        self.last_change = Some(now);
        true
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }
}

/// The limits of one host.
#[derive(Debug)]
pub(crate) struct HostLimiter {
    host: String,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    gauge: GaugeVec,
}

impl HostLimiter {
    /// Waits for a free slot and a token; the permit is held while the request runs.
    pub(crate) async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.in_flight.acquire().await.ok()?;
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some(permit)
    }

    /// See [`Bucket::back_off`]; updates the rate gauge.
    pub(crate) fn back_off(&self, sent_at: Instant, retry_after: Option<Duration>) {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        if bucket.back_off(Instant::now(), sent_at, retry_after) {
            tracing::warn!(host = %self.host, rps = bucket.rate(), "registry rate limited; slowing down");
            self.gauge
                .with_label_values(&[&self.host])
                .set(bucket.rate());
        }
    }

    /// See [`Bucket::recover`]; updates the rate gauge.
    pub(crate) fn recover(&self) {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        if bucket.recover(Instant::now()) {
            tracing::info!(host = %self.host, rps = bucket.rate(), "registry rate limit raised");
            self.gauge
                .with_label_values(&[&self.host])
                .set(bucket.rate());
        }
    }

    /// The current rate in requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rate()
    }
}

/// Every host's limits, created on first use.
#[derive(Debug)]
pub(crate) struct RateLimiters {
    rps: f64,
    burst: u32,
    hosts: Mutex<HashMap<String, Arc<HostLimiter>>>,
    gauge: GaugeVec,
}

impl RateLimiters {
    pub(crate) fn new(rps: f64, burst: u32, gauge: GaugeVec) -> Self {
        Self {
            rps,
            burst,
            hosts: Mutex::new(HashMap::new()),
            gauge,
        }
    }

    /// The limiter of `host`.
    pub(crate) fn host(&self, host: &str) -> Arc<HostLimiter> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| {
                let bucket = Bucket::new(self.rps, self.burst, Instant::now());
                self.gauge.with_label_values(&[host]).set(bucket.rate());
                Arc::new(HostLimiter {
                    host: host.to_owned(),
                    bucket: Mutex::new(bucket),
                    in_flight: Semaphore::new(self.burst.max(1) as usize),
                    gauge: self.gauge.clone(),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_gives_the_burst_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // 4th and 5th wait 0.1 s and 0.2 s.
        let w4 = b.reserve(t0).as_secs_f64();
        let w5 = b.reserve(t0).as_secs_f64();
        assert!(
            (w4 - 0.1).abs() < 1e-9 && (w5 - 0.2).abs() < 1e-9,
            "{w4} {w5}"
        );
        // One second later the debt (2) is repaid and 8 tokens would have come, capped at 3.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.reserve(t1), Duration::ZERO);
    }

    #[test]
    fn a_429_halves_once_per_round_of_requests_and_holds_for_retry_after() {
        let t0 = Instant::now();
        let mut b = Bucket::new(200.0, 125, t0);
        let t1 = t0 + Duration::from_millis(10);
        assert!(b.back_off(t1, t0, Some(Duration::from_secs(3))));
        assert!((b.rate() - 100.0).abs() < 1e-9);
        // Another 429 of a request sent before the halving does not halve again.
        assert!(!b.back_off(t1 + Duration::from_millis(1), t0, None));
        assert!((b.rate() - 100.0).abs() < 1e-9);
        // Held until Retry-After passed.
        let wait = b.reserve(t1 + Duration::from_secs(1));
        assert!(wait >= Duration::from_secs(2), "{wait:?}");
        // Repeated 429s floor at 0.1 rps.
        let mut t = t1;
        for _ in 0..20 {
            t += Duration::from_secs(1);
            b.back_off(t, t, None);
        }
        assert!((b.rate() - MIN_RPS).abs() < 1e-9);
    }

    #[test]
    fn recovery_waits_for_the_cool_down_and_caps_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(200.0, 125, t0);
        assert!(!b.recover(t0), "nothing to recover at the configured rate");
        b.back_off(t0, t0, None);
        b.back_off(
            t0 + Duration::from_secs(1),
            t0 + Duration::from_secs(1),
            None,
        );
        assert!((b.rate() - 50.0).abs() < 1e-9);
        assert!(!b.recover(t0 + Duration::from_secs(60)));
        let t2 = t0 + Duration::from_secs(1) + RECOVERY_COOL_DOWN;
        assert!(b.recover(t2));
        assert!((b.rate() - 75.0).abs() < 1e-9);
        assert!(
            !b.recover(t2 + Duration::from_secs(1)),
            "cool-down restarts"
        );
        let t3 = t2 + RECOVERY_COOL_DOWN;
        assert!(b.recover(t3));
        assert!(b.recover(t3 + RECOVERY_COOL_DOWN));
        assert!((b.rate() - 168.75).abs() < 1e-9);
        assert!(b.recover(t3 + RECOVERY_COOL_DOWN * 2));
        assert!((b.rate() - 200.0).abs() < 1e-9, "capped");
    }
}
