//! From the pipeline's words to the release machine's: a `deploy:` block of `.moat.yml`
//! (already validated by `moat-pipelines`) becomes a [`Plan`]. Pure; the only place the two
//! vocabularies meet, so the machine never reads YAML types and the language never knows the
//! machine.

use moat_pipelines::{DeploySpec, HealthCheck};

use crate::release::{HealthPolicy, Plan, Rollback};

/// The health policy of a `health:` block.
pub fn health_policy(check: &HealthCheck) -> HealthPolicy {
    HealthPolicy {
        path: check.path.clone(),
        status: check.status,
        successes: check.successes.max(1),
        interval: check.interval,
        timeout: check.timeout,
        deadline: check.deadline,
    }
}

/// The plan of a deploy stage; `has_previous` says whether a release is live now (the
/// caller knows from the environment's history).
pub fn plan(spec: &DeploySpec, has_previous: bool) -> Plan {
    Plan {
        health: health_policy(&spec.health),
        observe: spec.observe,
        drain: spec.drain,
        rollback: match spec.rollback {
            moat_pipelines::Rollback::Auto => Rollback::Auto,
            moat_pipelines::Rollback::Manual => Rollback::Manual,
        },
        has_previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn deploy_spec(block: &str) -> DeploySpec {
        let src = format!(
            "version: 1\nstages:\n  - name: deploy\n    kind: deploy\n    environment: production\n    deploy:\n{block}"
        );
        let pipeline = moat_pipelines::parse(&src).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
        pipeline.stages[0].deploy.clone().expect("a deploy block")
    }

    #[test]
    fn every_word_of_the_deploy_block_reaches_the_plan() {
        let spec = deploy_spec(
            "      target: docker\n      image: \"registry.local/app:1\"\n      port: 8080\n      health: { path: /healthz, status: 200, interval: 1s, timeout: 2s, successes: 2, deadline: 60s }\n      observe: 2m\n      drain: 10s\n      rollback: manual\n",
        );
        let p = plan(&spec, true);
        assert_eq!(
            p.health,
            HealthPolicy {
                path: "/healthz".into(),
                status: Some(200),
                successes: 2,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                deadline: Duration::from_secs(60),
            }
        );
        assert_eq!(p.observe, Duration::from_secs(120));
        assert_eq!(p.drain, Duration::from_secs(10));
        assert_eq!(p.rollback, Rollback::Manual);
        assert!(p.has_previous);
    }

    #[test]
    fn an_unsaid_block_gets_the_documented_defaults() {
        let spec = deploy_spec(
            "      target: docker\n      image: \"registry.local/app:1\"\n      port: 8080\n",
        );
        let p = plan(&spec, false);
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
        let p = plan(&read, true);
        assert_eq!(p.health.deadline, read.health.deadline);
        assert!(p.health.deadline >= p.health.timeout);
    }
}
