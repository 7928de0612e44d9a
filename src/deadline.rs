//! The deadline of the FUSE request a thread is answering. The FUSE layer sets it around each
//! request it hands to the pool (arrival plus `--timeout` plus a margin), so time spent queued
//! counts; every wait on a shared fetch or listing, and every AWS call made for that request,
//! ends by it. Background work (refreshes, listings that go on after a reader gave up) runs on
//! threads without one and takes its own full deadline.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run `request` with `deadline` as this thread's request deadline.
pub fn within<T>(deadline: Instant, request: impl FnOnce() -> T) -> T {
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }
    let _reset = Reset(DEADLINE.replace(Some(deadline)));
    request()
}

/// `wait`, cut to what is left of this thread's request deadline (zero once it has passed).
pub fn bound(wait: Duration) -> Duration {
    match DEADLINE.get() {
        Some(deadline) => wait.min(deadline.saturating_duration_since(Instant::now())),
        None => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_cut_to_the_request_deadline_and_only_inside_it() {
        let long = Duration::from_secs(60);
        assert_eq!(bound(long), long, "no request deadline: the full wait");
        let soon = Instant::now() + Duration::from_millis(200);
        within(soon, || {
            assert!(bound(long) <= Duration::from_millis(200));
            assert_eq!(bound(Duration::from_millis(5)), Duration::from_millis(5));
        });
        within(Instant::now(), || assert_eq!(bound(long), Duration::ZERO, "passed: nothing left"));
        assert_eq!(bound(long), long, "reset afterwards");
    }
}
