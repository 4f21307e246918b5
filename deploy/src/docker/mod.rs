//! The `docker` deploy target: a release's new colour runs beside the live one on one Docker
//! host, and Moat's edge proxy ([`crate::proxy`]) moves the environment's traffic between them.
//!
//! Colours are `blue` and `green`; a release starts the colour that is not live. Every
//! container of an environment is named `moat-<env>-<colour>`, runs on the environment's own
//! network `moat-env-<env>`, publishes its one port on `127.0.0.1` only (an ephemeral host
//! port; the proxy's upstream) and is sandboxed ([`Sandbox`]). It carries the labels
//! [`LABEL_ENVIRONMENT`], [`LABEL_RELEASE`], [`LABEL_COLOUR`] and [`LABEL_ROLE`], so a later
//! process finds it. Labels are fixed when a container is created: which colour is live is the
//! proxy's upstream, always; `moat.role` only says why the container was started.
//!
//! Deployed containers outlive the run and the runner that started them: they do not carry the
//! runner's `moat.managed`/`moat.owner` labels, so the runner's leftover cleanup never stops a
//! live release. They go when a release retires them, when [`recover`] finds them abandoned,
//! or with [`remove_environment`].
//!
//! Modules, along a release's way:
//! - `image`: the image reference (by digest only) and making it present (a pull by digest);
//! - `containers`: names, labels, the sandboxed create request, start/stop/remove, the
//!   environment's network, what an environment's containers are ([`Found`]);
//! - `layout`: the decisions over what was found: which colour is live, which one a release
//!   starts, what a recovery removes, what reconciliation does. Pure;
//! - `health`: one HTTP health try, and a verification series;
//! - `target`: [`DockerTarget`], the [`crate::driver::Target`] of one release;
//! - `recovery`: [`recover`] after a killed deploy, [`ensure_live`] (reconciliation).
//!
//! It must not touch the database or decide whether a deploy may run (the coordinator does), nor
//! decide the order of a release's steps (the release machine does). It never logs an
//! application's environment values.

mod containers;
mod health;
mod image;
mod layout;
mod recovery;
mod target;

use std::net::SocketAddr;
use std::time::Duration;

pub use containers::{container_name, network_name, remove_environment};
pub use health::{check, verify};
pub use image::ImageRef;
pub use layout::{
    Found, Interrupted, Layout, LiveAction, RecoveryPlan, layout, plan_live, plan_recovery,
};
pub use recovery::{Reconciled, Recovered, ensure_live, recover};
pub use target::{DockerTarget, PhaseLog, Recorder};

use crate::proxy::{EnvName, ProxyError};

/// The environment a container belongs to.
pub const LABEL_ENVIRONMENT: &str = "moat.environment";
/// The release (its id, as the coordinator records it) a container runs.
pub const LABEL_RELEASE: &str = "moat.release";
/// `blue` or `green`.
pub const LABEL_COLOUR: &str = "moat.colour";
/// Why the container was started: `candidate` (by a release) or `live` (by [`ensure_live`]).
pub const LABEL_ROLE: &str = "moat.role";

/// One of the two slots of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    pub fn parse(s: &str) -> Option<Colour> {
        match s {
            "blue" => Some(Colour::Blue),
            "green" => Some(Colour::Green),
            _ => None,
        }
    }
}

impl std::fmt::Display for Colour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a container was started (its [`LABEL_ROLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The new colour of a release.
    Candidate,
    /// The live release started again by reconciliation.
    Live,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "candidate" => Some(Role::Candidate),
            "live" => Some(Role::Live),
            _ => None,
        }
    }
}

/// An environment as the administrator set it up (`moat env add NAME --listen ADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: EnvName,
    /// The public address the proxy listens on for it.
    pub listen: SocketAddr,
}

/// A release: the coordinator's id for it and the image it runs, by digest
/// (`repo@sha256:…`, or a local image id `sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRef {
    pub id: String,
    pub image: String,
}

/// How the application runs, from the deploy stage.
#[derive(Clone)]
pub struct App {
    /// The container port traffic goes to.
    pub port: u16,
    /// Its environment variables (values may be secrets: never logged).
    pub env: Vec<(String, String)>,
    /// The path health tries `GET`.
    pub health_path: String,
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("App")
            .field("port", &self.port)
            .field("env", &names)
            .field("health_path", &self.health_path)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// The limits and hardening of a deployed container. Every capability is dropped and
/// `no-new-privileges` is set, always; these are the parts that may vary.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// Bytes of memory (swap is not allowed beyond it).
    pub memory: u64,
    pub cpus: f64,
    pub pids: u64,
    /// A read-only root filesystem (with a small tmpfs on `/tmp`). Off by default: many
    /// applications write beside themselves.
    pub read_only_rootfs: bool,
    /// Docker's init as PID 1 (forwards signals, reaps zombies), so a stop is prompt.
    pub init: bool,
    /// How long a stopped container gets before it is killed.
    pub stop_timeout: Duration,
}

impl Default for Sandbox {
    /// 512 MiB, one CPU, 512 processes, writable root, init, 10 s to stop.
    fn default() -> Self {
        Sandbox {
            memory: 512 << 20,
            cpus: 1.0,
            pids: 512,
            read_only_rootfs: false,
            init: true,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// What can go wrong on the Docker host or at the proxy.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The image reference was refused, is missing or cannot be pulled.
    #[error("{0}")]
    Image(String),
    /// The Docker engine failed at something.
    #[error("{doing}: {detail}")]
    Engine { doing: String, detail: String },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Doing it would break what serves (e.g. replace the live colour's container).
    #[error("{0}")]
    Refused(String),
    /// A colour did not pass its health check.
    #[error("{0}")]
    Unhealthy(String),
}

impl DockerError {
    pub(crate) fn engine(doing: impl Into<String>, e: &bollard::errors::Error) -> Self {
        DockerError::Engine {
            doing: doing.into(),
            detail: server_message(e),
        }
    }
}

/// The engine's own words for an API error, without bollard's wrapping.
pub(crate) fn server_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connects to the engine named by `DOCKER_HOST`, or the local socket, and checks it answers.
pub async fn connect() -> Result<bollard::Docker, DockerError> {
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(|e| DockerError::engine("connecting to the Docker engine", &e))?;
    docker
        .ping()
        .await
        .map_err(|e| DockerError::engine("connecting to the Docker engine", &e))?;
    Ok(docker)
}

/// The loopback address a published host port answers on.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
