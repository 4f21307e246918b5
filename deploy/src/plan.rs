//! From the pipeline's `deploy:` block ([`moat_pipelines::DeploySpec`]) to what this crate
//! carries out: the release machine's [`Plan`] and [`HealthPolicy`], and the docker target's
//! [`App`]. Pure.
//!
//! What the block asks for that no target carries out yet (the `recreate` strategy, the
//! pre-switch `probe:`) is refused with a reason, never ignored.

use moat_pipelines::{DeploySpec, DeployTarget, HealthCheck, Resources, Strategy};

use crate::docker::{App, Sandbox};
use crate::release::{HealthPolicy, Plan, Rollback};

/// Why a deploy block cannot be carried out here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("this deploy targets {0}, not docker")]
    NotDocker(&'static str),
    #[error("a docker deploy needs the container's port")]
    NoPort,
    #[error("strategy recreate is not carried out yet; use blue-green")]
    Recreate,
    #[error("the pre-switch probe is not carried out yet; remove `probe:` to deploy")]
    Probe,
}

/// The release machine's health policy from a `health:` block.
pub fn health_policy(h: &HealthCheck) -> HealthPolicy {
    HealthPolicy {
        path: h.path.clone(),
        status: h.status,
        successes: h.successes.max(1),
        interval: h.interval,
        timeout: h.timeout,
        deadline: h.deadline,
    }
}

/// The release plan of `spec`; `has_previous` is whether a release serves now (the target
/// knows: [`crate::docker::DockerTarget::has_previous`]).
pub fn release_plan(spec: &DeploySpec, has_previous: bool) -> Result<Plan, PlanError> {
    if spec.strategy == Strategy::Recreate {
        return Err(PlanError::Recreate);
    }
    if spec.probe.is_some() {
        return Err(PlanError::Probe);
    }
    Ok(Plan {
        health: health_policy(&spec.health),
        observe: spec.observe,
        drain: spec.drain,
        rollback: match spec.rollback {
            moat_pipelines::Rollback::Auto => Rollback::Auto,
            moat_pipelines::Rollback::Manual => Rollback::Manual,
        },
        has_previous,
    })
}

/// How the docker target runs `spec`'s application: its port and health path, `env` (the
/// variables the caller gives it), and the stage's `resources:` as its limits (the defaults of
/// [`Sandbox`] where it gives none).
pub fn docker_app(
    spec: &DeploySpec,
    env: Vec<(String, String)>,
    resources: &Resources,
) -> Result<App, PlanError> {
    if spec.target != DeployTarget::Docker {
        return Err(PlanError::NotDocker("kubernetes"));
    }
    if spec.port == 0 {
        return Err(PlanError::NoPort);
    }
    let defaults = Sandbox::default();
    Ok(App {
        port: spec.port,
        env,
        health_path: spec.health.path.clone(),
        sandbox: Sandbox {
            memory: resources.memory.unwrap_or(defaults.memory),
            cpus: resources.cpus.unwrap_or(defaults.cpus),
            pids: resources.pids.unwrap_or(defaults.pids),
            ..defaults
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> DeploySpec {
        DeploySpec {
            target: DeployTarget::Docker,
            strategy: Strategy::BlueGreen,
            image: "app".into(),
            port: 8080,
            health: HealthCheck {
                path: "/healthz".into(),
                status: Some(204),
                successes: 3,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                deadline: Duration::from_secs(20),
            },
            rollback: moat_pipelines::Rollback::Manual,
            namespace: None,
            app: None,
            observe: Duration::from_secs(40),
            drain: Duration::from_secs(5),
            probe: None,
        }
    }

    #[test]
    fn a_blue_green_block_becomes_the_plan_and_the_app() {
        let plan = release_plan(&spec(), true).unwrap();
        assert_eq!(
            plan.health,
            HealthPolicy {
                path: "/healthz".into(),
                status: Some(204),
                successes: 3,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                deadline: Duration::from_secs(20),
            }
        );
        assert_eq!(plan.observe, Duration::from_secs(40));
        assert_eq!(plan.drain, Duration::from_secs(5));
        assert_eq!(plan.rollback, Rollback::Manual);
        assert!(plan.has_previous);

        let resources = Resources {
            cpus: Some(0.5),
            memory: Some(64 << 20),
            pids: None,
        };
        let app = docker_app(&spec(), vec![("A".into(), "1".into())], &resources).unwrap();
        assert_eq!(app.port, 8080);
        assert_eq!(app.health_path, "/healthz");
        assert_eq!(app.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(app.sandbox.memory, 64 << 20);
        assert_eq!(app.sandbox.cpus, 0.5);
        assert_eq!(app.sandbox.pids, Sandbox::default().pids);
    }

    #[test]
    fn what_is_not_carried_out_is_refused() {
        let mut s = spec();
        s.strategy = Strategy::Recreate;
        assert_eq!(release_plan(&s, false).unwrap_err(), PlanError::Recreate);
        let mut s = spec();
        s.probe = Some(moat_pipelines::ProbeSpec {
            paths: vec!["/".into()],
            fail_on: moat_pipelines::Severity::High,
        });
        assert_eq!(release_plan(&s, false).unwrap_err(), PlanError::Probe);
        let mut s = spec();
        s.target = DeployTarget::Kubernetes;
        assert!(matches!(
            docker_app(&s, Vec::new(), &Resources::default()),
            Err(PlanError::NotDocker(_))
        ));
        let mut s = spec();
        s.port = 0;
        assert_eq!(
            docker_app(&s, Vec::new(), &Resources::default()).unwrap_err(),
            PlanError::NoPort
        );
    }

    fn deploy_spec(block: &str) -> DeploySpec {
        let src = format!(
            "version: 1\nstages:\n  - name: deploy\n    kind: deploy\n    environment: production\n    deploy:\n{block}"
        );
        let pipeline = moat_pipelines::parse(&src).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
        pipeline.stages[0].deploy.clone().expect("a deploy block")
    }

    #[test]
    fn an_unsaid_block_gets_the_documented_defaults() {
        let spec = deploy_spec(
            "      target: docker\n      image: \"registry.local/app:1\"\n      port: 8080\n",
        );
        let p = release_plan(&spec, false).unwrap();
        assert_eq!(p.health.path, HealthCheck::DEFAULT_PATH);
        assert_eq!(p.health.status, None, "any 2xx");
        assert_eq!(p.health.successes, 1);
        assert_eq!(p.health.timeout, HealthCheck::DEFAULT_TIMEOUT);
        assert_eq!(p.observe, DeploySpec::DEFAULT_OBSERVE);
        assert_eq!(p.drain, DeploySpec::DEFAULT_DRAIN);
        assert_eq!(p.rollback, Rollback::Auto);
        assert!(!p.has_previous);
    }

    /// Jobs queued before `observe`, `drain`, `probe` and the richer `health:` existed keep
    /// their stored spec (JSON in the database); they must still read, with the defaults.
    #[test]
    fn specs_stored_before_the_lifecycle_fields_read_with_the_defaults() {
        let spec = deploy_spec(
            "      target: docker\n      image: \"registry.local/app:1\"\n      port: 8080\n      health: { path: /healthz, status: 204, interval: 1s, timeout: 2s, successes: 3, deadline: 90s }\n      observe: 2m\n      drain: 10s\n",
        );
        let mut old = serde_json::to_value(&spec).unwrap();
        let o = old.as_object_mut().unwrap();
        for key in ["observe", "drain", "probe"] {
            assert!(o.remove(key).is_some(), "{key} is stored today");
        }
        let health = o["health"].as_object_mut().unwrap();
        for key in ["status", "successes", "deadline"] {
            assert!(health.remove(key).is_some(), "health.{key} is stored today");
        }
        let read: DeploySpec = serde_json::from_value(old).expect("an older spec still reads");
        assert_eq!(read.observe, DeploySpec::DEFAULT_OBSERVE);
        assert_eq!(read.drain, DeploySpec::DEFAULT_DRAIN);
        assert_eq!(read.probe, None);
        assert_eq!(read.health.status, None);
        assert_eq!(read.health.successes, 1);
        assert_eq!(read.health.path, "/healthz");
        let p = release_plan(&read, true).unwrap();
        assert_eq!(p.health.deadline, read.health.deadline);
        assert!(p.health.deadline >= p.health.timeout);
    }
}
