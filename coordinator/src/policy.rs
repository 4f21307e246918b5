//! The administrator's policy (`moat.toml`, given with `--policy`): the floor every repository
//! runs at. It is applied after the repository's own pipeline, so a repository can be stricter
//! but never looser: a `fail_on: critical` under a `high` floor runs with `high`, a secret gate
//! a repository turns to `warn` stays `block` when the floor says so, and privileged containers,
//! host mounts and the Docker socket stay refused unless this file names the repository.
//!
//! ```toml
//! [gates]
//! secret_gate = "block"          # block | warn | off: the least a repository gets
//! min_fail_on = "high"           # scan stages fail at this severity or a lower one
//! scan_before_deploy = true      # a deploy needs a passed scan stage among its needs
//! protected_refs = ["main", "release/*", "v*"]   # trusted branches and tags for deploys
//!
//! [pipelines]
//! allow_privileged = ["infra-tools"]
//! allow_host_mounts = []
//! allow_docker_socket = []
//!
//! [environments.production]      # like `moat env add production --repo org/app …`
//! repo = "org/app"
//! listen = "0.0.0.0:443"
//! approval = "required"          # required | none (default none)
//! runner = "edge-1"              # default: the embedded runner of `moat up`
//! target = "docker"              # the default and, for now, the only one
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use moat_pipelines::pattern::Pattern;
use moat_pipelines::{Pipeline, Severity};
use moat_secrets::gate::GateMode;
use serde::Deserialize;

use crate::environments::{self, Environment};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    gates: Gates,
    #[serde(default)]
    pipelines: Pipelines,
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentEntry {
    repo: String,
    listen: String,
    #[serde(default = "default_approval")]
    approval: String,
    #[serde(default)]
    runner: Option<String>,
    #[serde(default = "default_target")]
    target: String,
}

fn default_approval() -> String {
    "none".into()
}
fn default_target() -> String {
    "docker".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gates {
    #[serde(default = "default_gate")]
    secret_gate: String,
    #[serde(default = "default_fail_on")]
    min_fail_on: String,
    #[serde(default = "yes")]
    scan_before_deploy: bool,
    #[serde(default = "default_protected")]
    protected_refs: Vec<String>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            secret_gate: default_gate(),
            min_fail_on: default_fail_on(),
            scan_before_deploy: true,
            protected_refs: default_protected(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Pipelines {
    #[serde(default)]
    allow_privileged: Vec<String>,
    #[serde(default)]
    allow_host_mounts: Vec<String>,
    #[serde(default)]
    allow_docker_socket: Vec<String>,
}

fn default_gate() -> String {
    "block".into()
}
fn default_fail_on() -> String {
    "high".into()
}
fn yes() -> bool {
    true
}
fn default_protected() -> Vec<String> {
    vec!["main".into(), "master".into()]
}

/// The administrator's policy, parsed.
#[derive(Debug, Clone)]
pub struct AdminPolicy {
    pub secret_gate: GateMode,
    pub min_fail_on: Severity,
    pub scan_before_deploy: bool,
    pub protected_refs: Vec<Pattern>,
    allow_privileged: Vec<String>,
    allow_host_mounts: Vec<String>,
    allow_docker_socket: Vec<String>,
    /// The environments the file declares (`[environments.NAME]`), by name.
    pub environments: Vec<Environment>,
}

impl Default for AdminPolicy {
    fn default() -> Self {
        AdminPolicy::from_file(File::default()).expect("the defaults are valid")
    }
}

impl AdminPolicy {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("{}: invalid policy", path.display()))?;
        Self::from_file(file).with_context(|| format!("{}: invalid policy", path.display()))
    }

    fn from_file(f: File) -> anyhow::Result<Self> {
        let secret_gate = GateMode::parse(&f.gates.secret_gate)
            .with_context(|| "gates.secret_gate: block, warn or off")?;
        let min_fail_on = Severity::parse(&f.gates.min_fail_on)
            .with_context(|| "gates.min_fail_on: critical, high, medium or low")?;
        let protected_refs = f
            .gates
            .protected_refs
            .iter()
            .map(|p| {
                Pattern::new(p).map_err(|e| anyhow::anyhow!("gates.protected_refs: {p:?}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut environments = Vec::new();
        for (name, e) in &f.environments {
            let env = environments::declare(
                name,
                &e.target,
                &e.listen,
                &e.repo,
                e.runner.as_deref(),
                &e.approval,
            )
            .with_context(|| format!("environments.{name}"))?;
            environments::check_new(&env, &environments)
                .with_context(|| format!("environments.{name}"))?;
            environments.push(env);
        }
        Ok(AdminPolicy {
            secret_gate,
            min_fail_on,
            scan_before_deploy: f.gates.scan_before_deploy,
            protected_refs,
            allow_privileged: f.pipelines.allow_privileged,
            allow_host_mounts: f.pipelines.allow_host_mounts,
            allow_docker_socket: f.pipelines.allow_docker_socket,
            environments,
        })
    }

    /// What a repository's pipeline may ask for beyond the secure defaults.
    pub fn pipeline_policy(&self, repo: &str) -> moat_pipelines::Policy {
        let named = |list: &[String]| list.iter().any(|r| r == repo);
        moat_pipelines::Policy {
            allow_privileged: named(&self.allow_privileged),
            allow_host_mounts: named(&self.allow_host_mounts),
            allow_docker_socket: named(&self.allow_docker_socket),
        }
    }

    /// Whether `git_ref` (a branch or tag name) is protected.
    pub fn is_protected(&self, git_ref: &str) -> bool {
        self.protected_refs.iter().any(|p| p.matches(git_ref))
    }

    /// Raises every scan stage's `fail_on` to the floor; returns what was changed, as
    /// `(stage, asked, applied)`, for the audit trail.
    pub fn apply_floor(&self, pipeline: &mut Pipeline) -> Vec<(String, Severity, Severity)> {
        let mut changed = Vec::new();
        for stage in &mut pipeline.stages {
            if let Some(scan) = stage.scan.as_mut()
                && scan.fail_on > self.min_fail_on
            {
                changed.push((stage.name.clone(), scan.fail_on, self.min_fail_on));
                scan.fail_on = self.min_fail_on;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_raises_looser_scans_only() {
        let policy = AdminPolicy::default();
        let src = "version: 1\nstages:\n  - name: s1\n    kind: scan\n    scan: { image: \"x:1\", fail_on: critical }\n  - name: s2\n    kind: scan\n    needs: []\n    scan: { image: \"x:1\", fail_on: low }\n";
        let mut p = moat_pipelines::parse(src).unwrap();
        let changed = policy.apply_floor(&mut p);
        assert_eq!(
            changed,
            vec![("s1".to_string(), Severity::Critical, Severity::High)]
        );
        assert_eq!(p.stages[0].scan.as_ref().unwrap().fail_on, Severity::High);
        assert_eq!(p.stages[1].scan.as_ref().unwrap().fail_on, Severity::Low);
    }

    #[test]
    fn files_are_strict() {
        let dir = std::env::temp_dir().join(format!("moat-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("moat.toml");
        std::fs::write(
            &path,
            "[gates]\nsecret_gate = \"warn\"\nmin_fail_on = \"medium\"\nprotected_refs = [\"main\", \"v*\"]\n[pipelines]\nallow_privileged = [\"infra\"]\n",
        )
        .unwrap();
        let p = AdminPolicy::load(&path).unwrap();
        assert_eq!(p.secret_gate, GateMode::Warn);
        assert_eq!(p.min_fail_on, Severity::Medium);
        assert!(p.is_protected("v1.2"));
        assert!(!p.is_protected("feature/x"));
        assert!(p.pipeline_policy("infra").allow_privileged);
        assert!(!p.pipeline_policy("web").allow_privileged);
        std::fs::write(&path, "[gates]\nsecret_gate = \"sometimes\"\n").unwrap();
        assert!(AdminPolicy::load(&path).is_err());
        std::fs::write(&path, "[gates]\nunknown = 1\n").unwrap();
        assert!(AdminPolicy::load(&path).is_err());

        std::fs::write(
            &path,
            "[environments.production]\nrepo = \"org/app\"\nlisten = \"0.0.0.0:443\"\napproval = \"required\"\n[environments.staging]\nrepo = \"org/app\"\nlisten = \"127.0.0.1:8443\"\nrunner = \"edge-1\"\n",
        )
        .unwrap();
        let p = AdminPolicy::load(&path).unwrap();
        let names: Vec<_> = p.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["production", "staging"]);
        assert_eq!(
            p.environments[0].approval,
            moat_pipelines::Approval::Required
        );
        assert_eq!(p.environments[1].runner.name(), "edge-1");
        for (bad, says) in [
            ("[environments.p]\nlisten = \"0.0.0.0:1\"\n", "repo"),
            (
                "[environments.p]\nrepo = \"o/a\"\nlisten = \"0.0.0.0:1\"\nport = 3\n",
                "port",
            ),
            (
                "[environments.p]\nrepo = \"o/a\"\nlisten = \"nowhere\"\n",
                "environments.p",
            ),
            (
                "[environments.a]\nrepo = \"o/a\"\nlisten = \"0.0.0.0:1\"\n[environments.b]\nrepo = \"o/b\"\nlisten = \"127.0.0.1:1\"\n",
                "environments.b",
            ),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = format!("{:#}", AdminPolicy::load(&path).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
