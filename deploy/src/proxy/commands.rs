//! Applying control requests: the one writer of the state file and the route table.
//!
//! Owns the order of every change: validate, bind (for `add`), write the state file, and only
//! then change what is served, so the file never claims less than the proxy does and a refused
//! request changes nothing. Requests are serialised by one lock; the request path never takes
//! it. It must not parse the wire (that is `control`) or forward traffic (that is `forward`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::forward::Forwarder;
use super::protocol::{ControlReply, ControlRequest, EnvName, EnvStatus};
use super::routes::{Env, RouteTable};
use super::state::{self, EnvState, ProxyState, StateError};
use super::{ProxyConfig, ProxyError, listener};

/// Why a control request was refused. Its text is the reply's `error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("no environment named {0}")]
    Unknown(EnvName),
    #[error("environment {name} already exists, listening on {listen}")]
    Exists { name: EnvName, listen: SocketAddr },
    #[error("{listen} is already the address of environment {other}")]
    ListenTaken { listen: SocketAddr, other: EnvName },
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("a drain of {ms} ms is longer than the maximum of {max} ms")]
    DrainTooLong { ms: u64, max: u64 },
    #[error("nothing changed: {0}")]
    Persist(StateError),
}

/// The proxy's moving parts, shared by the control server and every listener.
pub(crate) struct Edge {
    config: ProxyConfig,
    routes: RouteTable,
    forwarder: Arc<Forwarder>,
    tracker: TaskTracker,
    /// What the state file holds; its lock serialises changes.
    state: Mutex<ProxyState>,
    /// Parent of every environment's `stop`.
    stop: CancellationToken,
    /// Parent of every upstream's close token.
    close: CancellationToken,
}

impl Edge {
    pub(crate) fn new(config: ProxyConfig) -> Self {
        let tracker = TaskTracker::new();
        let forwarder = Arc::new(Forwarder::new(config.limits.clone(), tracker.clone()));
        Self {
            config,
            routes: RouteTable::default(),
            forwarder,
            tracker,
            state: Mutex::new(ProxyState::default()),
            stop: CancellationToken::new(),
            close: CancellationToken::new(),
        }
    }

    pub(crate) fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Serves `saved` at once: binds every environment and sets its live upstream, with no
    /// drain (nothing was open). Used once, before the control socket answers.
    pub(crate) async fn restore(&self, saved: ProxyState) -> Result<(), ProxyError> {
        let mut state = self.state.lock().await;
        for (name, env) in &saved.environments {
            let listener = listener::bind(env.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    env: name.to_string(),
                    addr: env.listen,
                    source,
                })?;
            let env_routes = self.start_env(name.clone(), env.listen, listener);
            env_routes.switch(env.upstream, Duration::ZERO, &self.tracker);
            tracing::info!(env.name = %name, listen.addr = %env.listen,
                upstream.addr = ?env.upstream, "restored environment");
        }
        *state = saved;
        Ok(())
    }

    /// Answers one control request.
    pub(crate) async fn apply(&self, request: ControlRequest) -> ControlReply {
        let outcome = match request {
            ControlRequest::Add { name, listen } => self.add(name, listen).await.map(|s| vec![s]),
            ControlRequest::Remove { name, drain_ms } => {
                self.remove(name, drain_ms).await.map(|()| Vec::new())
            }
            ControlRequest::SetUpstream {
                name,
                upstream,
                drain_ms,
            } => self
                .set_upstream(name, upstream, drain_ms)
                .await
                .map(|s| vec![s]),
            ControlRequest::Status { name } => self.status(name.as_ref()),
        };
        match outcome {
            Ok(environments) => ControlReply::ok(environments),
            Err(refusal) => {
                tracing::info!(error = %refusal, "control request refused");
                ControlReply::refused(refusal)
            }
        }
    }

    async fn add(&self, name: EnvName, listen: SocketAddr) -> Result<EnvStatus, Refusal> {
        let mut state = self.state.lock().await;
        if let Some(existing) = state.environments.get(&name) {
            let same = existing.listen == listen
                || (listen.port() == 0 && existing.listen.ip() == listen.ip());
            return match (same, self.routes.get(&name)) {
                (true, Some(env)) => Ok(env.status()),
                _ => Err(Refusal::Exists {
                    name,
                    listen: existing.listen,
                }),
            };
        }
        if let Some((other, _)) = state.environments.iter().find(|(_, e)| e.listen == listen) {
            return Err(Refusal::ListenTaken {
                listen,
                other: other.clone(),
            });
        }
        let listener = listener::bind(listen)
            .await
            .map_err(|source| Refusal::Bind { listen, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| Refusal::Bind { listen, source })?;
        let mut next = state.clone();
        next.environments.insert(
            name.clone(),
            EnvState {
                listen: bound,
                upstream: None,
            },
        );
        self.persist(&next).await?;
        *state = next;
        let env = self.start_env(name.clone(), bound, listener);
        tracing::info!(env.name = %name, listen.addr = %bound, "environment added");
        Ok(env.status())
    }

    async fn remove(&self, name: EnvName, drain_ms: Option<u64>) -> Result<(), Refusal> {
        let drain = self.drain(drain_ms)?;
        let mut state = self.state.lock().await;
        if !state.environments.contains_key(&name) {
            return Err(Refusal::Unknown(name));
        }
        let mut next = state.clone();
        next.environments.remove(&name);
        self.persist(&next).await?;
        *state = next;
        if let Some(env) = self.routes.remove(&name) {
            env.stop.cancel();
            env.switch(None, drain, &self.tracker);
        }
        tracing::info!(env.name = %name, drain.ms = drain.as_millis() as u64, "environment removed");
        Ok(())
    }

    async fn set_upstream(
        &self,
        name: EnvName,
        upstream: Option<SocketAddr>,
        drain_ms: Option<u64>,
    ) -> Result<EnvStatus, Refusal> {
        let drain = self.drain(drain_ms)?;
        if let Some(addr) = upstream
            && self.config.loopback_upstreams_only
            && !addr.ip().to_canonical().is_loopback()
        {
            return Err(Refusal::NotLoopback(addr));
        }
        let mut state = self.state.lock().await;
        let (Some(saved), Some(env)) = (state.environments.get(&name), self.routes.get(&name))
        else {
            return Err(Refusal::Unknown(name));
        };
        if saved.upstream != upstream {
            let mut next = state.clone();
            next.environments.insert(
                name.clone(),
                EnvState {
                    listen: saved.listen,
                    upstream,
                },
            );
            self.persist(&next).await?;
            *state = next;
        }
        let previous = env.upstream();
        env.switch(upstream, drain, &self.tracker);
        if previous != upstream {
            tracing::info!(env.name = %name, upstream.addr = ?upstream, upstream.previous = ?previous,
                drain.ms = drain.as_millis() as u64, "upstream switched");
        }
        Ok(env.status())
    }

    fn status(&self, name: Option<&EnvName>) -> Result<Vec<EnvStatus>, Refusal> {
        match name {
            Some(name) => match self.routes.get(name) {
                Some(env) => Ok(vec![env.status()]),
                None => Err(Refusal::Unknown(name.clone())),
            },
            None => Ok(self.routes.all().iter().map(|env| env.status()).collect()),
        }
    }

    /// Stops every listener, lets connections finish for up to the shutdown grace, then closes
    /// what is left.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                grace.ms = grace.as_millis() as u64,
                "closing connections still open after the grace"
            );
        }
        self.close.cancel();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close");
        }
    }

    /// Puts an environment in the route table and starts its listener.
    fn start_env(
        &self,
        name: EnvName,
        listen: SocketAddr,
        listener: tokio::net::TcpListener,
    ) -> Arc<Env> {
        let env = Arc::new(Env::new(
            name,
            listen,
            self.stop.child_token(),
            self.close.child_token(),
        ));
        self.routes.insert(env.clone());
        self.tracker.spawn(listener::run(
            env.clone(),
            listener,
            self.forwarder.clone(),
            self.config.limits.clone(),
            self.tracker.clone(),
        ));
        env
    }

    fn drain(&self, drain_ms: Option<u64>) -> Result<Duration, Refusal> {
        let max = self.config.max_drain.as_millis() as u64;
        match drain_ms {
            None => Ok(self.config.default_drain),
            Some(ms) if ms > max => Err(Refusal::DrainTooLong { ms, max }),
            Some(ms) => Ok(Duration::from_millis(ms)),
        }
    }

    async fn persist(&self, next: &ProxyState) -> Result<(), Refusal> {
        let path = self.config.state_file.clone();
        let next = next.clone();
        tokio::task::spawn_blocking(move || state::save(&path, &next))
            .await
            .expect("the state writer does not panic")
            .map_err(|e| {
                tracing::error!(error = %e, "state file not written");
                Refusal::Persist(e)
            })
    }
}
