//! What an unauthenticated sender may cost the coordinator: a per-source token bucket on
//! webhook requests, and one budget of webhook body bytes being read at a time across every
//! connection. Webhooks are the only routes that read a body before anyone is authenticated
//! (the signature is over the body), so these bounds are what keeps slow or numerous senders
//! from holding the coordinator's memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The webhook limits (part of [`crate::app::Config`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookLimits {
    /// Requests a source may send at once before it is slowed down to `refill_per_sec`.
    /// A forge sends a burst of deliveries when many branches are pushed together; 60 covers
    /// that, and 10 a second is far above what one repository's activity produces.
    pub burst: u32,
    pub refill_per_sec: f64,
    /// Webhook body bytes being read at once, over all connections; past it a delivery is
    /// answered 503 with `Retry-After` (forges redeliver). 16 MiB holds one body of the
    /// largest size beside many ordinary ones (a push is kilobytes), and keeps the worst a
    /// crowd of slow senders can do within 64 MB of resident memory for a coordinator that
    /// idles at about 30 MB.
    pub max_in_flight: usize,
    /// The whole body must arrive within this time after the headers (a forge sends it at
    /// once; only a slow or hostile sender needs longer).
    pub body_timeout: Duration,
    /// Sources tracked at once (IPv6 sources count per /64); past it, new sources are refused
    /// until idle ones are forgotten, rather than letting the table grow without bound.
    pub max_sources: usize,
}

impl Default for WebhookLimits {
    fn default() -> Self {
        WebhookLimits {
            burst: 60,
            refill_per_sec: 10.0,
            max_in_flight: 16 << 20,
            body_timeout: Duration::from_secs(10),
            max_sources: 100_000,
        }
    }
}

/// One source's bucket: `tokens` left at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at: Instant,
}

impl Bucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// The bucket refilled up to `now` (never above `burst`).
    fn refilled(self, now: Instant, burst: u32, rate: f64) -> Self {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * rate).min(f64::from(burst)),
            at: now.max(self.at),
        }
    }

    /// Takes one request's token at `now`; when there is none, how long until there is.
    pub fn take(&mut self, now: Instant, burst: u32, rate: f64) -> Result<(), Duration> {
        *self = self.refilled(now, burst, rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if rate <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether the bucket is full again at `now` (its source can be forgotten).
    fn is_full(&self, now: Instant, burst: u32, rate: f64) -> bool {
        self.refilled(now, burst, rate).tokens >= f64::from(burst)
    }
}

/// The key a source is counted under: its address, or its /64 for IPv6 (one host usually
/// holds a whole /64, so counting single addresses would let it rotate through them).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Token buckets per source.
pub struct RateLimiter {
    limits: WebhookLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: WebhookLimits) -> Self {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip` at `now`; `Err(retry_after)` when it must wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let WebhookLimits {
            burst,
            refill_per_sec: rate,
            max_sources,
            ..
        } = self.limits;
        // Buckets are plain values: a panic elsewhere cannot leave them half-written.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = source_key(ip);
        if !map.contains_key(&key) && map.len() >= max_sources {
            map.retain(|_, b| !b.is_full(now, burst, rate));
            if map.len() >= max_sources {
                return Err(Duration::from_secs(1));
            }
        }
        map.entry(key)
            .or_insert_with(|| Bucket::full(burst, now))
            .take(now, burst, rate)
    }
}

/// A budget of bytes shared by every webhook body being read.
pub struct InFlight {
    max: usize,
    used: AtomicUsize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        InFlight {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// An empty reservation, grown with [`Reservation::grow`] and given back when dropped.
    pub fn reservation(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            held: 0,
        }
    }
}

/// Bytes of the [`InFlight`] budget held by one request.
pub struct Reservation<'a> {
    budget: &'a InFlight,
    held: usize,
}

impl Reservation<'_> {
    /// Reserves `n` more bytes; false (and nothing reserved) when the budget cannot give them.
    pub fn grow(&mut self, n: usize) -> bool {
        let b = self.budget;
        let mut cur = b.used.load(Ordering::SeqCst);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&t| t <= b.max) else {
                return false;
            };
            match b
                .used
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.held += n;
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// The webhook intake's shared state (one per coordinator process).
pub struct Intake {
    pub limits: WebhookLimits,
    pub rate: RateLimiter,
    pub in_flight: InFlight,
}

impl Intake {
    pub fn new(limits: WebhookLimits) -> Self {
        Intake {
            rate: RateLimiter::new(limits.clone()),
            in_flight: InFlight::new(limits.max_in_flight),
            limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0, 3, 2.0), Ok(()));
        }
        let wait = b.take(t0, 3, 2.0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Half a second at 2/s gives one token back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take(t1, 3, 2.0), Ok(()));
        assert!(b.take(t1, 3, 2.0).is_err());
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(t2, 3, 2.0), Ok(()));
        }
        assert!(b.take(t2, 3, 2.0).is_err());
        // A clock read earlier than the last one does not add tokens.
        assert!(b.take(t0, 3, 2.0).is_err());
    }

    #[test]
    fn zero_rate_never_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::full(1, t0);
        assert_eq!(b.take(t0, 1, 0.0), Ok(()));
        assert!(b.take(t0 + Duration::from_secs(10_000), 1, 0.0).is_err());
    }

    #[test]
    fn sources_are_counted_apart_and_ipv6_per_64() {
        let limits = WebhookLimits {
            burst: 2,
            refill_per_sec: 1.0,
            max_sources: 3,
            ..WebhookLimits::default()
        };
        let r = RateLimiter::new(limits);
        let t = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(r.check(a, t).is_ok() && r.check(a, t).is_ok());
        assert!(r.check(a, t).is_err());
        assert!(r.check(b, t).is_ok(), "another source has its own bucket");
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(r.check(v6a, t).is_ok() && r.check(v6b, t).is_ok());
        assert!(r.check(v6a, t).is_err(), "one /64 shares a bucket");
        // The table is full (3 sources, none idle): a new source waits.
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert!(r.check(c, t).is_err());
        // Once the others are idle (full again) they are forgotten to make room.
        assert!(r.check(c, t + Duration::from_secs(10)).is_ok());
        assert_eq!(
            source_key("::ffff:10.0.0.1".parse().unwrap()),
            a,
            "IPv4-mapped addresses count as IPv4"
        );
    }

    #[test]
    fn in_flight_budget_is_shared_and_given_back() {
        let budget = InFlight::new(100);
        let mut a = budget.reservation();
        assert!(a.grow(60));
        let mut b = budget.reservation();
        assert!(!b.grow(41), "over the budget: refused whole");
        assert_eq!(b.held(), 0);
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(!b.grow(usize::MAX), "no overflow");
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
