//! The edge proxy of the `docker` deploy target (`moat proxy`).
//!
//! It owns each environment's public listen address (one listener per environment) and
//! forwards every request to that environment's live upstream, the loopback `host:port` of the
//! live colour's container. A switch ([`ControlRequest::SetUpstream`]) is atomic: new requests,
//! also on open keep-alive connections, go to the new upstream at once, while requests, streams
//! and upgraded (WebSocket) connections already on the previous one finish there, up to the
//! drain duration, after which they are closed. No listener is touched by a switch, so no new
//! connection is refused during one. The proxy is driven over a local Unix socket
//! ([`ControlClient`]) and keeps its environments and live upstreams in a JSON state file, so
//! a restarted proxy serves the live colour at once.
//!
//! Modules, along the request's way:
//! - `listener`: one environment's accept loop and HTTP/1.1 server settings;
//! - `forward`: one request to the live upstream, its limits, errors and upgrade tunnel;
//! - `headers`: which headers cross (hop-by-hop out, `X-Forwarded-*` in); pure;
//! - `body`: the request body limit and the lease-bound response body;
//! - `routes`: the route table, leases, switch and drain;
//! - `commands`: applies control requests (the only writer of routes and state);
//! - `control`: the control socket, its size bounds, and [`ControlClient`];
//! - `protocol`: the control protocol's types; pure;
//! - `state`: the state file and its atomic replacement.
//!
//! It must not talk to Docker, start or stop containers, probe health or decide which colour
//! is live: the release state machine decides and tells the proxy. It never touches the
//! database and serves plain HTTP only (TLS would sit in front of it, or come later).

mod body;
mod commands;
mod control;
mod forward;
mod headers;
mod listener;
mod protocol;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use control::ControlClient;
pub use protocol::{
    ControlReply, ControlRequest, DrainStatus, EnvName, EnvStatus, MAX_NAME_LEN, NameError,
};
pub use state::{EnvState, ProxyState, STATE_VERSION, StateError};

use commands::Edge;

/// Where the proxy keeps its socket and state, and how it treats traffic.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The control socket (created with mode 0600).
    pub control_socket: PathBuf,
    /// The JSON state file (replaced atomically on every change).
    pub state_file: PathBuf,
    pub limits: Limits,
    /// The drain of a switch or removal that names none.
    pub default_drain: Duration,
    /// The longest drain a request may ask for.
    pub max_drain: Duration,
    /// On shutdown, how long open connections may finish before they are closed.
    pub shutdown_grace: Duration,
    /// Refuse upstreams that are not loopback addresses (the docker target publishes the
    /// colours' ports on 127.0.0.1).
    pub loopback_upstreams_only: bool,
}

impl ProxyConfig {
    /// Defaults around the two paths: 30 s drains (at most 1 h), 10 s shutdown grace,
    /// loopback upstreams only, [`Limits::default`].
    pub fn new(control_socket: impl Into<PathBuf>, state_file: impl Into<PathBuf>) -> Self {
        Self {
            control_socket: control_socket.into(),
            state_file: state_file.into(),
            limits: Limits::default(),
            default_drain: Duration::from_secs(30),
            max_drain: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
            loopback_upstreams_only: true,
        }
    }
}

/// Bounds on what a client or an upstream may cost the proxy.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The request line and headers together (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Request headers; more is answered 431.
    pub max_headers: usize,
    /// Request body; more is answered 413.
    pub max_body_bytes: u64,
    /// Time to receive a request's headers, also between requests on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Time to connect to an upstream (then 504).
    pub connect_timeout: Duration,
    /// Time from sending a request to the upstream's response headers (then 504).
    pub response_timeout: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle_timeout: Duration,
    /// Idle pooled connections kept per upstream.
    pub upstream_max_idle_per_host: usize,
    /// Client connections open at once per environment; more wait in the accept backlog.
    pub max_connections: usize,
    /// One control message (a JSON line); a larger one is refused and its connection closed.
    pub max_control_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(15),
            upstream_max_idle_per_host: 64,
            max_connections: 10_000,
            max_control_message: 64 * 1024,
        }
    }
}

/// What can go wrong starting, running or talking to the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} for environment {env}: {source}")]
    Bind {
        env: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another proxy answers on control socket {path}")]
    ControlSocketInUse { path: PathBuf },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot reach the proxy at {path}: {source}")]
    Control {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the proxy at {path} did not answer in time")]
    ControlTimeout { path: PathBuf },
    #[error("unexpected reply from the proxy: {0}")]
    ControlReply(String),
    #[error("the proxy refused: {0}")]
    Refused(String),
}

/// A started proxy: its listeners and control socket answer.
#[derive(Debug)]
pub struct RunningProxy {
    control_socket: PathBuf,
    task: JoinHandle<()>,
}

impl RunningProxy {
    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// A client of this proxy's control socket.
    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.control_socket)
    }

    /// Waits until the proxy has stopped (after the `shutdown` token given to [`start`]).
    pub async fn wait(self) -> Result<(), ProxyError> {
        self.task.await.expect("the proxy task does not panic");
        Ok(())
    }
}

/// Starts the proxy: creates missing directories (owner-only), binds the control socket, loads
/// the state file and serves every saved environment's live upstream at once, then answers
/// control requests until `shutdown` is cancelled. Returns once everything listens; an error
/// means nothing was left running.
pub async fn start(
    config: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<RunningProxy, ProxyError> {
    let saved = {
        let path = config.state_file.clone();
        tokio::task::spawn_blocking(move || state::load(&path))
            .await
            .expect("the state reader does not panic")?
    };
    state::ensure_parent(&config.state_file).map_err(|source| {
        ProxyError::State(StateError::Write {
            path: config.state_file.clone(),
            source,
        })
    })?;
    state::ensure_parent(&config.control_socket).map_err(|source| ProxyError::ControlSocket {
        path: config.control_socket.clone(),
        source,
    })?;
    let control_socket = config.control_socket.clone();
    let control = control::bind(&control_socket)?;
    let edge = Arc::new(Edge::new(config));
    if let Err(error) = edge.restore(saved).await {
        edge.shutdown().await;
        let _ = std::fs::remove_file(&control_socket);
        return Err(error);
    }
    tracing::info!(control.path = %control_socket.display(), "edge proxy serving");
    let path = control_socket.clone();
    let task = tokio::spawn(async move {
        control::serve(control, edge.clone(), shutdown).await;
        let _ = std::fs::remove_file(&path);
        edge.shutdown().await;
        tracing::info!(control.path = %path.display(), "edge proxy stopped");
    });
    Ok(RunningProxy {
        control_socket,
        task,
    })
}

/// Runs the proxy until `shutdown` is cancelled: [`start`], then [`RunningProxy::wait`].
pub async fn serve(config: ProxyConfig, shutdown: CancellationToken) -> Result<(), ProxyError> {
    start(config, shutdown).await?.wait().await
}
