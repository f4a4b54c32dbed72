//! The per-client rate limit of the API routes: a token bucket (GCRA, the `governor` crate)
//! per client, `[http] rate_per_s` sustained and `rate_burst` at once. A client is its
//! token's subject when the request is authenticated, else its address: one user's flood
//! costs nobody else anything, and an unauthenticated flood is held per address. Over the
//! limit: `429` with `Retry-After` (whole seconds, at least 1).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

type Keyed = RateLimiter<String, DashMapStateStore<String>, DefaultClock>;

/// The limiter; cheap to clone (one shared state).
#[derive(Clone)]
pub struct ClientLimiter {
    inner: Option<Arc<Keyed>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimiter")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl ClientLimiter {
    /// `per_s` requests per second and `burst` at once per client; `per_s = 0`: no limit.
    pub fn new(per_s: u32, burst: u32) -> Self {
        let inner = NonZeroU32::new(per_s).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_s)).unwrap_or(rate);
            Arc::new(RateLimiter::dashmap(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        ClientLimiter {
            inner,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until one is free.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        let Some(l) = &self.inner else {
            return Ok(());
        };
        l.check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets clients whose buckets are full again (bounds the memory a spread of addresses
    /// can take); the server calls it every minute.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Clients with state now.
    pub fn clients(&self) -> usize {
        self.inner.as_ref().map_or(0, |l| l.len())
    }
}

/// The `Retry-After` value for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_burst_waits_while_another_client_does_not() {
        let l = ClientLimiter::new(2, 3);
        for _ in 0..3 {
            assert!(l.check("sub:a").is_ok());
        }
        let wait = l.check("sub:a").expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(retry_after_secs(wait) >= 1);
        assert!(
            l.check("sub:b").is_ok(),
            "another client has its own bucket"
        );
        assert_eq!(l.clients(), 2);
        let off = ClientLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(off.check("x").is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
