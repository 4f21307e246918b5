//! The route table: environments, their live upstream, and the upstreams still draining.
//!
//! Owns the atomic switch. The set of environments sits behind an `ArcSwap` map and each
//! environment's live upstream behind an `ArcSwapOption`, so the request path only loads
//! pointers (no lock). Every request, response stream and upgraded connection holds a
//! [`Lease`] on the upstream it was sent to; a switch swaps the pointer (new requests go to
//! the new upstream at once) and drains the previous one: it is closed when its last lease
//! ends, or, at the drain deadline, its leases are cancelled and their connections closed.
//!
//! It must not do network I/O, persist anything or decide which upstream is live; `commands`
//! calls it after the state file is written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use super::protocol::{DrainStatus, EnvName, EnvStatus};

/// Set in [`Upstream::state`] once no new lease may be taken.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Every environment by name. Writers (`commands`) are serialised by its lock.
#[derive(Default)]
pub(crate) struct RouteTable {
    envs: ArcSwap<HashMap<EnvName, Arc<Env>>>,
}

impl RouteTable {
    pub(crate) fn get(&self, name: &EnvName) -> Option<Arc<Env>> {
        self.envs.load().get(name).cloned()
    }

    pub(crate) fn insert(&self, env: Arc<Env>) {
        self.envs.rcu(|envs| {
            let mut envs = HashMap::clone(envs);
            envs.insert(env.name.clone(), env.clone());
            envs
        });
    }

    pub(crate) fn remove(&self, name: &EnvName) -> Option<Arc<Env>> {
        let mut removed = None;
        self.envs.rcu(|envs| {
            let mut envs = HashMap::clone(envs);
            removed = envs.remove(name);
            envs
        });
        removed
    }

    /// Every environment, sorted by name.
    pub(crate) fn all(&self) -> Vec<Arc<Env>> {
        let mut all: Vec<Arc<Env>> = self.envs.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// One environment: its public address and where its traffic goes.
pub(crate) struct Env {
    pub(crate) name: EnvName,
    /// The bound listen address.
    pub(crate) listen: SocketAddr,
    live: ArcSwapOption<Upstream>,
    draining: Mutex<Vec<Arc<Upstream>>>,
    /// Cancelled when the environment is removed or the proxy stops: its listener stops.
    pub(crate) stop: CancellationToken,
    /// The parent of every upstream's close token: cancelled when the proxy stops for good.
    close: CancellationToken,
}

impl Env {
    /// `stop` and `close` are children of the proxy's own tokens, so stopping the proxy stops
    /// every environment, and closing it closes every upstream, also of removed environments.
    pub(crate) fn new(
        name: EnvName,
        listen: SocketAddr,
        stop: CancellationToken,
        close: CancellationToken,
    ) -> Self {
        Self {
            name,
            listen,
            live: ArcSwapOption::empty(),
            draining: Mutex::new(Vec::new()),
            stop,
            close,
        }
    }

    /// The live upstream's address.
    pub(crate) fn upstream(&self) -> Option<SocketAddr> {
        self.live.load().as_ref().map(|u| u.addr)
    }

    /// A lease on the live upstream, or `None` when there is none (503).
    ///
    /// A lease can only fail on an upstream that a switch has already swapped out, so loading
    /// again finds the new one.
    pub(crate) fn lease(&self) -> Option<Lease> {
        for _ in 0..16 {
            let live = self.live.load_full()?;
            if let Some(lease) = live.try_lease() {
                return Some(lease);
            }
        }
        None
    }

    /// Makes `addr` the live upstream. The previous one drains for up to `drain` on a task of
    /// `tracker`. Setting the live address again changes nothing.
    pub(crate) fn switch(
        self: &Arc<Self>,
        addr: Option<SocketAddr>,
        drain: Duration,
        tracker: &TaskTracker,
    ) {
        if self.upstream() == addr {
            return;
        }
        let next = addr.map(|addr| Arc::new(Upstream::new(addr, self.close.child_token())));
        let previous = self.live.swap(next);
        if let Some(previous) = previous {
            self.draining
                .lock()
                .expect("draining lock")
                .push(previous.clone());
            tracker.spawn(drain_upstream(self.clone(), previous, drain));
        }
    }

    pub(crate) fn status(&self) -> EnvStatus {
        let live = self.live.load_full();
        let now = Instant::now();
        let draining = self
            .draining
            .lock()
            .expect("draining lock")
            .iter()
            .map(|up| DrainStatus {
                upstream: up.addr,
                connections: up.leases(),
                remaining_ms: up
                    .deadline
                    .lock()
                    .expect("deadline lock")
                    .map_or(0, |d| d.saturating_duration_since(now).as_millis() as u64),
            })
            .collect();
        EnvStatus {
            name: self.name.clone(),
            listen: self.listen,
            upstream: live.as_ref().map(|u| u.addr),
            active: live.as_ref().map_or(0, |u| u.leases()),
            draining,
        }
    }
}

/// Waits until `up` has no lease left or `drain` has passed, then closes it.
async fn drain_upstream(env: Arc<Env>, up: Arc<Upstream>, drain: Duration) {
    let deadline = Instant::now() + drain;
    *up.deadline.lock().expect("deadline lock") = Some(deadline);
    tracing::info!(env.name = %env.name, upstream.addr = %up.addr, drain.ms = drain.as_millis() as u64,
        upstream.leases = up.leases(), "draining previous upstream");
    let expired = loop {
        if up.try_close_idle() {
            break false;
        }
        tokio::select! {
            _ = up.idle.notified() => {}
            _ = tokio::time::sleep_until(deadline) => break true,
            _ = up.cancel.cancelled() => break false,
        }
    };
    let left = up.leases();
    up.close();
    env.draining
        .lock()
        .expect("draining lock")
        .retain(|u| !Arc::ptr_eq(u, &up));
    if expired && left > 0 {
        tracing::warn!(env.name = %env.name, upstream.addr = %up.addr, upstream.leases = left,
            "drain expired; closing what is left on the previous upstream");
    } else {
        tracing::info!(env.name = %env.name, upstream.addr = %up.addr, "previous upstream drained");
    }
}

/// An upstream address and the leases taken on it.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// Open leases, plus [`CLOSED`] once no new one may be taken.
    state: AtomicUsize,
    /// Signalled when the last lease ends.
    idle: Notify,
    /// Cancelled when the upstream is closed: every lease's connection ends.
    cancel: CancellationToken,
    /// When a drain closes it.
    deadline: Mutex<Option<Instant>>,
}

impl Upstream {
    fn new(addr: SocketAddr, cancel: CancellationToken) -> Self {
        Self {
            addr,
            state: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel,
            deadline: Mutex::new(None),
        }
    }

    fn leases(&self) -> usize {
        self.state.load(Ordering::Acquire) & !CLOSED
    }

    fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & CLOSED != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Lease {
                        upstream: self.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Closes the upstream if no lease is open; then none can be taken any more.
    fn try_close_idle(&self) -> bool {
        let closed = self
            .state
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if closed {
            self.cancel.cancel();
        }
        closed
    }

    /// Refuses new leases and cancels the open ones.
    fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        self.cancel.cancel();
    }
}

/// A request, response stream or upgraded connection in progress on one upstream.
pub(crate) struct Lease {
    upstream: Arc<Upstream>,
}

impl Lease {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.upstream.addr
    }

    /// Resolves when the upstream is closed (drain deadline or shutdown): stop now.
    pub(crate) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.upstream.cancel.cancelled()
    }

    /// The token behind [`Lease::closed`], for futures that must own it.
    pub(crate) fn close_token(&self) -> CancellationToken {
        self.upstream.cancel.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let before = self.upstream.state.fetch_sub(1, Ordering::AcqRel);
        if before & !CLOSED == 1 {
            self.upstream.idle.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Arc<Env> {
        Arc::new(Env::new(
            EnvName::new("e").unwrap(),
            "127.0.0.1:1".parse().unwrap(),
            CancellationToken::new(),
            CancellationToken::new(),
        ))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn no_upstream_no_lease() {
        assert!(env().lease().is_none());
    }

    #[tokio::test]
    async fn a_switch_sends_new_leases_to_the_new_upstream_and_drains_the_old() {
        let tracker = TaskTracker::new();
        let env = env();
        env.switch(Some(addr(1)), Duration::from_secs(5), &tracker);
        let old = env.lease().unwrap();
        env.switch(Some(addr(2)), Duration::from_secs(5), &tracker);
        assert_eq!(env.lease().unwrap().addr(), addr(2));
        let status = env.status();
        assert_eq!(status.upstream, Some(addr(2)));
        assert_eq!(status.draining.len(), 1);
        assert_eq!(status.draining[0].connections, 1);
        assert!(!old.close_token().is_cancelled());
        drop(old);
        tokio::time::timeout(Duration::from_secs(2), async {
            while !env.status().draining.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the idle upstream is retired at once");
    }

    #[tokio::test]
    async fn drain_expiry_cancels_open_leases() {
        let tracker = TaskTracker::new();
        let env = env();
        env.switch(Some(addr(1)), Duration::ZERO, &tracker);
        let old = env.lease().unwrap();
        env.switch(Some(addr(2)), Duration::from_millis(300), &tracker);
        tokio::time::timeout(Duration::from_secs(1), old.closed())
            .await
            .expect("closed at the deadline");
        assert!(env.status().draining.is_empty());
    }

    #[test]
    fn a_closed_upstream_gives_no_lease() {
        let up = Arc::new(Upstream::new(addr(1), CancellationToken::new()));
        let lease = up.try_lease().unwrap();
        assert!(!up.try_close_idle());
        drop(lease);
        assert!(up.try_close_idle());
        assert!(up.try_lease().is_none());
        assert_eq!(up.leases(), 0);
    }

    #[tokio::test]
    async fn switching_to_the_live_upstream_changes_nothing() {
        let tracker = TaskTracker::new();
        let env = env();
        env.switch(Some(addr(1)), Duration::ZERO, &tracker);
        let lease = env.lease().unwrap();
        env.switch(Some(addr(1)), Duration::ZERO, &tracker);
        assert!(env.status().draining.is_empty());
        assert!(!lease.close_token().is_cancelled());
    }
}
