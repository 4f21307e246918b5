//! [`DockerTarget`]: one release on one environment of a Docker host, as a
//! [`crate::driver::Target`]. [`DockerTarget::prepare`] reads where the environment stands
//! (the proxy's live upstream, the environment's containers) and picks the colour to start;
//! the driver then calls its steps. Phases go to a caller-supplied [`Recorder`] (the runner
//! reports them to the coordinator).
//!
//! It must not order the steps or judge health answers (the release machine does), and never
//! removes or replaces the container the proxy routes to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use super::containers::{self, Started};
use super::health;
use super::layout::{self, Found};
use super::{App, Colour, DockerError, Environment, ReleaseRef, Role};
use crate::driver::Target;
use crate::proxy::{ControlClient, EnvStatus};
use crate::release::{Action, Answer, Phase};

/// Where a release's phases are recorded before they happen (see [`Target::record`]).
#[allow(async_fn_in_trait)] // used with concrete recorders; the driver needs no `Send`
pub trait Recorder {
    async fn record(&mut self, phase: Phase) -> Result<(), String>;
}

/// A recorder that keeps the phases in memory (tests, `moat` without a coordinator). Clones
/// share one log.
#[derive(Debug, Clone, Default)]
pub struct PhaseLog(Arc<Mutex<Vec<Phase>>>);

impl PhaseLog {
    pub fn phases(&self) -> Vec<Phase> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl Recorder for PhaseLog {
    async fn record(&mut self, phase: Phase) -> Result<(), String> {
        self.0.lock().expect("not poisoned").push(phase);
        Ok(())
    }
}

/// One release of one environment on a Docker host, driven by [`crate::driver::drive`].
pub struct DockerTarget<R> {
    docker: Docker,
    proxy: ControlClient,
    env: Environment,
    release: ReleaseRef,
    app: App,
    recorder: R,
    /// The container that served when the release began.
    previous: Option<Found>,
    /// The proxy's upstream when the release began (what the way back restores).
    previous_upstream: Option<SocketAddr>,
    colour: Colour,
    candidate: Option<Started>,
    /// Whether traffic may have moved to the candidate (a switch was asked for and not
    /// undone).
    routed: bool,
    drain: Duration,
}

impl<R: Recorder> DockerTarget<R> {
    /// Reads where `env` stands: the proxy's live upstream (none if the proxy does not know
    /// the environment yet) and its containers; the release will start the colour not live.
    pub async fn prepare(
        docker: Docker,
        proxy: ControlClient,
        env: Environment,
        release: ReleaseRef,
        app: App,
        recorder: R,
    ) -> Result<Self, DockerError> {
        let upstream = route(&proxy, &env).await?.and_then(|s| s.upstream);
        let found = containers::list(&docker, &env.name).await?;
        let layout = layout::layout(upstream, &found);
        tracing::info!(environment.name = %env.name, release.id = %release.id,
            candidate.colour = %layout.candidate,
            live.colour = ?layout.live.as_ref().and_then(|l| l.colour),
            live.upstream = ?upstream, "release prepared");
        Ok(DockerTarget {
            docker,
            proxy,
            env,
            release,
            app,
            recorder,
            previous: layout.live,
            previous_upstream: upstream,
            colour: layout.candidate,
            candidate: None,
            routed: false,
            drain: Duration::ZERO,
        })
    }

    /// Whether a release serves now (the plan's `has_previous`).
    pub fn has_previous(&self) -> bool {
        self.previous_upstream.is_some()
    }

    /// The colour this release starts.
    pub fn candidate_colour(&self) -> Colour {
        self.colour
    }

    /// The colour that served when the release began, if a known container did.
    pub fn previous_colour(&self) -> Option<Colour> {
        self.previous.as_ref().and_then(|p| p.colour)
    }

    /// Where the started candidate answers.
    pub fn candidate_upstream(&self) -> Option<SocketAddr> {
        self.candidate.as_ref().map(|c| c.upstream)
    }

    pub fn recorder(&self) -> &R {
        &self.recorder
    }

    /// One health try at the colour traffic goes to now: the candidate once a switch was
    /// asked for (the driver's observe tries, through [`Target::check_candidate`], reach the
    /// same container), the previous colour before.
    pub async fn check_live(&self, timeout: Duration) -> Answer {
        let upstream = if self.routed {
            self.candidate_upstream()
        } else {
            self.previous_upstream
        };
        match upstream {
            Some(addr) => health::check(addr, &self.app.health_path, timeout).await,
            None => Answer::Unreachable("nothing is live".into()),
        }
    }

    fn candidate_name(&self) -> String {
        containers::container_name(&self.env.name, self.colour)
    }

    /// The proxy's route for the environment, added (on the environment's listen address)
    /// when the proxy does not have it.
    async fn ensure_route(&self) -> Result<EnvStatus, DockerError> {
        ensure_route(&self.proxy, &self.env).await
    }
}

/// The environment's route at the proxy; `None` when the proxy does not know it.
pub(crate) async fn route(
    proxy: &ControlClient,
    env: &Environment,
) -> Result<Option<EnvStatus>, DockerError> {
    let all = proxy.status().await?;
    Ok(all.into_iter().find(|s| s.name == env.name))
}

/// The environment's route, added on `env.listen` when missing.
pub(crate) async fn ensure_route(
    proxy: &ControlClient,
    env: &Environment,
) -> Result<EnvStatus, DockerError> {
    if let Some(status) = route(proxy, env).await? {
        return Ok(status);
    }
    tracing::info!(environment.name = %env.name, listen.addr = %env.listen,
        "adding the environment's route to the proxy");
    Ok(proxy.add(&env.name, env.listen).await?)
}

fn words(e: DockerError) -> String {
    e.to_string()
}

impl<R: Recorder> Target for DockerTarget<R> {
    async fn record(&mut self, phase: Phase) -> Result<(), String> {
        self.recorder.record(phase).await
    }

    async fn start_candidate(&mut self) -> Result<(), String> {
        let started = containers::start(
            &self.docker,
            &self.env,
            &self.release,
            &self.app,
            self.colour,
            Role::Candidate,
            self.previous_upstream,
        )
        .await
        .map_err(words)?;
        tracing::info!(environment.name = %self.env.name, release.id = %self.release.id,
            container.name = %started.name, upstream.addr = %started.upstream,
            "candidate started");
        self.candidate = Some(started);
        Ok(())
    }

    async fn check_candidate(&mut self, timeout: Duration) -> Answer {
        let Some(c) = &self.candidate else {
            return Answer::Unreachable("the candidate was not started".into());
        };
        let answer = health::check(c.upstream, &self.app.health_path, timeout).await;
        if let Answer::Unreachable(why) = &answer
            && let Some(state) = containers::why_not_running(&self.docker, &c.id).await
        {
            return Answer::Unreachable(format!("{why}; {state}"));
        }
        answer
    }

    async fn route_to_candidate(&mut self, drain: Duration) -> Result<(), String> {
        let Some(upstream) = self.candidate_upstream() else {
            return Err("the candidate was not started".into());
        };
        self.ensure_route().await.map_err(words)?;
        self.routed = true;
        self.drain = drain;
        self.proxy
            .set_upstream(&self.env.name, Some(upstream), Some(drain))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(environment.name = %self.env.name, release.id = %self.release.id,
            upstream.addr = %upstream, drain.ms = drain.as_millis() as u64,
            "traffic switched to the candidate");
        Ok(())
    }

    async fn route_to_previous(&mut self) -> Result<(), String> {
        let back = self.previous_upstream;
        if back.is_none()
            && route(&self.proxy, &self.env)
                .await
                .map_err(words)?
                .is_none()
        {
            // Nothing served and the proxy never had the route: nothing to put back.
            self.routed = false;
            return Ok(());
        }
        self.ensure_route().await.map_err(words)?;
        self.proxy
            .set_upstream(&self.env.name, back, Some(self.drain))
            .await
            .map_err(|e| e.to_string())?;
        self.routed = false;
        tracing::info!(environment.name = %self.env.name, release.id = %self.release.id,
            upstream.addr = ?back, "traffic back on the previous release");
        Ok(())
    }

    async fn remove_candidate(&mut self) -> Result<(), String> {
        let name = self.candidate_name();
        if let Some(upstream) = self.candidate_upstream() {
            match route(&self.proxy, &self.env).await {
                Ok(Some(s)) if s.upstream == Some(upstream) => {
                    return Err(format!(
                        "the proxy still sends {}'s traffic to {name}; not removing it",
                        self.env.name
                    ));
                }
                Ok(_) => {}
                Err(e) if self.routed => {
                    return Err(format!(
                        "cannot tell whether the proxy still sends traffic to {name}: {e}"
                    ));
                }
                Err(_) => {} // never routed: traffic cannot be on it
            }
        }
        containers::stop_and_remove(&self.docker, &name, self.app.sandbox.stop_timeout)
            .await
            .map_err(words)?;
        self.candidate = None;
        tracing::info!(environment.name = %self.env.name, release.id = %self.release.id,
            container.name = %name, "candidate removed");
        Ok(())
    }

    async fn retire_previous(&mut self) -> Result<(), String> {
        let Some(previous) = &self.previous else {
            return Ok(());
        };
        let status = route(&self.proxy, &self.env).await.map_err(words)?;
        if status.and_then(|s| s.upstream) == previous.upstream() {
            return Err(format!(
                "the proxy still sends {}'s traffic to {}; not retiring it",
                self.env.name, previous.name
            ));
        }
        containers::stop_and_remove(&self.docker, &previous.id, self.app.sandbox.stop_timeout)
            .await
            .map_err(words)?;
        tracing::info!(environment.name = %self.env.name, release.id = %self.release.id,
            container.name = %previous.name,
            retired.release = previous.release.as_deref().unwrap_or("?"),
            "previous colour retired; its image stays");
        Ok(())
    }

    fn trouble(&mut self, action: &Action, error: &str) {
        tracing::warn!(environment.name = %self.env.name, release.id = %self.release.id,
            action = ?action, error = %error, "a step of the way back failed; retrying");
    }
}
