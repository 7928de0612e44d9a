//! The request rate of one service on one host, adapted to what AWS accepts (AIMD): a token
//! bucket whose rate starts at its ceiling (`--ps-max-tps`, `--sm-max-tps`), is cut to 50–70 %
//! (at random, so hosts throttled together do not come back together) when AWS throttles, at
//! most once a second, and grows back by a tenth (at least 0.05 a second) for every second of
//! accepted requests. Every host of a fleet backs off when the account's quota is reached, and
//! takes its share again when it is not. Pure: the caller passes the time, so it runs on a fake
//! clock too.

use std::time::{Duration, Instant};

/// Lowest rate, requests a second: a host never stops asking altogether, and a thousand hosts
/// at the floor still fit in a 40 TPS quota.
pub const FLOOR: f64 = 0.02;
/// Growth per second of accepted requests: this share of the rate, at least [`MIN_GROWTH`].
pub const GROWTH: f64 = 0.1;
/// Smallest growth per second, requests a second.
pub const MIN_GROWTH: f64 = 0.05;
/// Shortest time between two cuts: the throttles of one burst count once.
pub const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// The bucket and its current rate.
#[derive(Clone, Debug)]
pub struct AdaptiveRate {
    ceiling: f64,
    rate: f64,
    tokens: f64,
    at: Instant,
    changed_at: Instant,
}

impl AdaptiveRate {
    /// A bucket of `ceiling` requests a second (at least 1), full.
    pub fn new(ceiling: u32, now: Instant) -> Self {
        let ceiling = f64::from(ceiling.max(1));
        AdaptiveRate { ceiling, rate: ceiling, tokens: ceiling, at: now, changed_at: now }
    }

    /// Requests a second allowed now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Reserve the next slot: how long the request waits for it (zero within a burst). Slots
    /// are handed out in order, so waiters queue instead of racing.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.reserve_within(now, Duration::MAX).unwrap_or_default()
    }

    /// Reserve the next slot if it comes within `patience`: how long to wait for it, or `None`
    /// (nothing taken) when it comes later, so requests that would miss their deadline do
    /// not push every later request back.
    pub fn reserve_within(&mut self, now: Instant, patience: Duration) -> Option<Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        let tokens = (self.tokens + refill).min(self.rate.max(1.0)) - 1.0;
        let wait = match tokens < 0.0 {
            true => Duration::from_secs_f64(-tokens / self.rate),
            false => Duration::ZERO,
        };
        if wait > patience {
            return None;
        }
        self.tokens = tokens;
        self.at = self.at.max(now);
        Some(wait)
    }

    /// AWS throttled a request: cut the rate to 50–70 % (`jitter` in 0..1 picks where), unless
    /// it was cut less than [`CUT_INTERVAL`] ago.
    pub fn throttled(&mut self, now: Instant, jitter: f64) {
        if now.saturating_duration_since(self.changed_at) < CUT_INTERVAL && self.rate < self.ceiling {
            return;
        }
        self.rate = (self.rate * (0.5 + 0.2 * jitter.clamp(0.0, 1.0))).max(FLOOR);
        self.tokens = self.tokens.min(self.rate.max(1.0));
        self.changed_at = now;
    }

    /// AWS accepted a request: grow the rate by a tenth (at least 0.05 a second) per whole
    /// second since it last changed, up to the ceiling. A small fleet is back at its ceiling
    /// within a minute of a throttle; a thousand hosts at the floor grow by 50 requests a
    /// second each second, not a thousand.
    pub fn accepted(&mut self, now: Instant) {
        let seconds = now.saturating_duration_since(self.changed_at).as_secs();
        if self.rate < self.ceiling && seconds >= 1 {
            for _ in 0..seconds.min(120) {
                self.rate = (self.rate + (self.rate * GROWTH).max(MIN_GROWTH)).min(self.ceiling);
            }
            self.changed_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests granted within `seconds` to a caller asking as fast as the bucket allows.
    fn granted(rate: &mut AdaptiveRate, start: Instant, seconds: u64) -> usize {
        let mut at = start;
        let mut count = 0;
        while at < start + Duration::from_secs(seconds) {
            at += rate.reserve(at);
            count += 1;
        }
        count
    }

    #[test]
    fn a_burst_then_the_ceiling_rate() {
        let start = Instant::now();
        let mut rate = AdaptiveRate::new(10, start);
        assert!((0..10).all(|_| rate.reserve(start).is_zero()), "a full bucket's burst passes at once");
        assert_eq!(rate.reserve(start), Duration::from_millis(100));
        assert_eq!(rate.reserve(start), Duration::from_millis(200), "waiters queue in order");
    }

    #[test]
    fn a_slot_beyond_the_patience_is_not_taken() {
        let start = Instant::now();
        let mut rate = AdaptiveRate::new(2, start);
        assert_eq!(rate.reserve_within(start, Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(rate.reserve_within(start, Duration::ZERO), Some(Duration::ZERO));
        for _ in 0..100 {
            assert_eq!(rate.reserve_within(start, Duration::from_millis(400)), None, "the next slot is 0.5 s away");
        }
        assert_eq!(
            rate.reserve_within(start, Duration::from_secs(1)),
            Some(Duration::from_millis(500)),
            "refused requests took nothing"
        );
    }

    #[test]
    fn throttles_cut_the_rate_once_a_second_and_acceptance_grows_it_back() {
        let start = Instant::now();
        let mut rate = AdaptiveRate::new(20, start);
        rate.throttled(start, 0.0);
        assert_eq!(rate.rate(), 10.0);
        rate.throttled(start + Duration::from_millis(500), 0.0);
        assert_eq!(rate.rate(), 10.0, "throttles of one burst cut once");
        rate.throttled(start + Duration::from_millis(1500), 1.0);
        assert!((rate.rate() - 7.0).abs() < 1e-9, "70 % at the top of the jitter: {}", rate.rate());
        for _ in 0..20 {
            rate.throttled(start + Duration::from_secs(100), 0.0);
        }
        let cut_at = start + Duration::from_secs(100);
        for step in 0..20 {
            rate.throttled(cut_at + Duration::from_secs(step * 2), 0.0);
        }
        assert_eq!(rate.rate(), FLOOR, "never below the floor");
        let last_cut = cut_at + Duration::from_secs(38);
        rate.accepted(last_cut + Duration::from_millis(500));
        assert_eq!(rate.rate(), FLOOR, "less than a second since the cut");
        rate.accepted(last_cut + Duration::from_secs(2));
        assert!((rate.rate() - (FLOOR + 2.0 * MIN_GROWTH)).abs() < 1e-9, "slowly from the floor: {}", rate.rate());
        rate.accepted(last_cut + Duration::from_secs(100));
        assert_eq!(rate.rate(), 20.0, "up to the ceiling");
    }

    #[test]
    fn a_cut_rate_admits_fewer_requests() {
        let start = Instant::now();
        let mut full = AdaptiveRate::new(10, start);
        let mut cut = AdaptiveRate::new(10, start);
        cut.throttled(start, 0.0);
        cut.throttled(start + CUT_INTERVAL, 0.0);
        let (full, cut) = (granted(&mut full, start, 10), granted(&mut cut, start, 10));
        assert!(full >= 100 && cut <= 40, "{full} vs {cut} requests in 10 s");
    }
}
