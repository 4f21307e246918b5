//! After the fact: [`recover`] cleans up after a deploy that was killed (the runner died, the
//! host rebooted), and [`ensure_live`] makes the live release serve again when its container
//! is gone or dead (reconciliation). Both only load what is there (the proxy's route, the
//! environment's containers), ask `layout` what to do, and do it.
//!
//! Neither may run while a deploy of the same environment does: the coordinator serialises
//! them per environment.

use std::net::SocketAddr;
use std::time::Duration;

use bollard::Docker;

use super::containers;
use super::health;
use super::layout::{self, Interrupted, LiveAction};
use super::target::{ensure_route, route};
use super::{App, Colour, DockerError, Environment, ReleaseRef, Role};
use crate::proxy::ControlClient;
use crate::release::HealthPolicy;

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The colour that serves now, if any.
    pub live: Option<Colour>,
    /// The release it runs.
    pub live_release: Option<String>,
    /// Whether traffic was sent back to the previous release (an interrupted switch/observe).
    pub routed_back: bool,
    /// The containers removed, by name.
    pub removed: Vec<String>,
}

/// Cleans up `env` after a killed deploy: containers are found by their labels, the live one
/// is the proxy's upstream; every other container is stopped and removed. With `interrupted`
/// (the release and its last recorded phase) a release killed during its switch or observe is
/// undone: traffic goes back to the previous release first. See [`layout::plan_recovery`].
pub async fn recover(
    docker: &Docker,
    proxy: &ControlClient,
    env: &Environment,
    interrupted: Option<&Interrupted>,
    stop_timeout: Duration,
) -> Result<Recovered, DockerError> {
    let upstream = route(proxy, env).await?.and_then(|s| s.upstream);
    let found = containers::list(docker, &env.name).await?;
    let plan = layout::plan_recovery(upstream, &found, interrupted);
    if let Some(back) = &plan.route_back {
        proxy
            .set_upstream(&env.name, back.upstream(), Some(Duration::ZERO))
            .await?;
        tracing::info!(environment.name = %env.name, upstream.addr = ?back.upstream(),
            release.id = back.release.as_deref().unwrap_or("?"),
            "recovery: traffic back on the previous release");
    }
    let mut removed = Vec::new();
    for f in &plan.remove {
        containers::stop_and_remove(docker, &f.id, stop_timeout).await?;
        tracing::info!(environment.name = %env.name, container.name = %f.name,
            release.id = f.release.as_deref().unwrap_or("?"), "recovery: removed");
        removed.push(f.name.clone());
    }
    let kept = plan.route_back.as_ref().or_else(|| {
        found
            .iter()
            .find(|f| f.serves(upstream) && !plan.remove.contains(f))
    });
    Ok(Recovered {
        live: plan.live,
        live_release: kept.and_then(|k| k.release.clone()),
        routed_back: plan.route_back.is_some(),
        removed,
    })
}

/// What reconciliation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The release served already.
    Serving { colour: Option<Colour> },
    /// Its container ran but the proxy did not route to it; now it does.
    Rerouted {
        colour: Option<Colour>,
        upstream: SocketAddr,
    },
    /// Its container was gone or dead: started again from the same image, verified, routed.
    Restarted {
        colour: Colour,
        upstream: SocketAddr,
    },
}

/// Makes `release` (the one the coordinator says is live) serve `env`: nothing if it does; if
/// its container runs but the proxy points elsewhere, a verified re-route; if its container is
/// gone or dead, the same image started again (`moat.role=live`), verified with `health` and
/// routed to. A restart that does not pass its health check is removed again and reported.
pub async fn ensure_live(
    docker: &Docker,
    proxy: &ControlClient,
    env: &Environment,
    release: &ReleaseRef,
    app: &App,
    health: &HealthPolicy,
) -> Result<Reconciled, DockerError> {
    let upstream = route(proxy, env).await?.and_then(|s| s.upstream);
    let found = containers::list(docker, &env.name).await?;
    let unhealthy = |f: crate::release::health::Failure| {
        DockerError::Unhealthy(format!(
            "release {} did not come back on {}: {f}",
            release.id, env.name
        ))
    };
    match layout::plan_live(upstream, &found, &release.id) {
        LiveAction::Serving(f) => Ok(Reconciled::Serving { colour: f.colour }),
        LiveAction::Reroute(f) => {
            let addr = f.upstream().expect("a running container with a port");
            health::verify(addr, health).await.map_err(unhealthy)?;
            ensure_route(proxy, env).await?;
            proxy
                .set_upstream(&env.name, Some(addr), Some(Duration::ZERO))
                .await?;
            tracing::info!(environment.name = %env.name, release.id = %release.id,
                upstream.addr = %addr, "reconciliation: routed to the live release");
            Ok(Reconciled::Rerouted {
                colour: f.colour,
                upstream: addr,
            })
        }
        LiveAction::Restart { colour, replace } => {
            if let Some(stale) = &replace {
                containers::stop_and_remove(docker, &stale.id, app.sandbox.stop_timeout).await?;
            }
            tracing::info!(environment.name = %env.name, release.id = %release.id,
                colour = %colour, "reconciliation: starting the live release again");
            let started =
                containers::start(docker, env, release, app, colour, Role::Live, upstream).await?;
            if let Err(f) = health::verify(started.upstream, health).await {
                containers::stop_and_remove(docker, &started.id, app.sandbox.stop_timeout).await?;
                return Err(unhealthy(f));
            }
            ensure_route(proxy, env).await?;
            proxy
                .set_upstream(&env.name, Some(started.upstream), Some(Duration::ZERO))
                .await?;
            tracing::info!(environment.name = %env.name, release.id = %release.id,
                upstream.addr = %started.upstream, "reconciliation: the live release serves again");
            Ok(Reconciled::Restarted {
                colour,
                upstream: started.upstream,
            })
        }
    }
}
