//! Planning: a valid pipeline plus an event becomes a DAG of stages with resolved
//! dependencies, environment and `when` decisions. The runner and the coordinator both execute
//! plans; neither re-interprets the YAML.

use std::time::Duration;

use crate::model::{
    BuildSpec, DeploySpec, EventKind, Mount, Pipeline, Resources, ScanSpec, Service, StageKind,
};
use crate::pattern::any_matches;

/// What started a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The pushed branch; for a pull request, its source branch.
    pub branch: Option<String>,
    /// For pull requests: the branch the change targets.
    pub target_branch: Option<String>,
    pub tag: Option<String>,
    pub commit: String,
    pub repo: String,
    pub run_id: String,
}

/// One stage, ready to execute.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PlannedStage {
    pub index: usize,
    pub name: String,
    pub kind: StageKind,
    pub image: Option<String>,
    pub commands: Vec<String>,
    /// Indices into [`Plan::stages`] this stage waits for.
    pub needs: Vec<usize>,
    /// Built-in `MOAT_*` variables, then the file's `env`, then the stage's `env`.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub no_output_timeout: Option<Duration>,
    pub resources: Resources,
    pub services: Vec<Service>,
    pub secrets: Vec<String>,
    /// The declarations of the granted secrets (where each value comes from, whether it is
    /// deploy-only), so an executor needs nothing but the planned stage.
    #[serde(default)]
    pub secret_decls: Vec<crate::model::SecretDecl>,
    pub privileged: bool,
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub approval: crate::model::Approval,
    pub build: Option<BuildSpec>,
    pub scan: Option<ScanSpec>,
    pub deploy: Option<DeploySpec>,
    /// `Some(reason)` when `when:` excludes the stage for this event, or it was not selected.
    pub skip: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
}

/// The names of the variables Moat sets in every stage.
pub const BUILTIN_VARS: &[&str] = &[
    "MOAT_REPO",
    "MOAT_COMMIT",
    "MOAT_BRANCH",
    "MOAT_TAG",
    "MOAT_EVENT",
    "MOAT_RUN_ID",
    "MOAT_STAGE",
];

impl Pipeline {
    /// Whether `on:` starts a run for this event.
    pub fn triggered_by(&self, event: &Event) -> bool {
        let on = &self.on;
        match event.kind {
            EventKind::Push => match (&on.push, &event.branch) {
                (Some(p), Some(b)) => any_matches(p, b),
                _ => false,
            },
            EventKind::PullRequest => match (&on.pull_request, &event.target_branch) {
                (Some(p), Some(b)) => any_matches(p, b),
                (Some(p), None) => p.is_empty(),
                _ => false,
            },
            EventKind::Tag => match (&on.tag, &event.tag) {
                (Some(p), Some(t)) => any_matches(p, t),
                _ => false,
            },
            EventKind::Manual => on.manual,
        }
    }
}

/// Substitutes `${NAME}` from `vars`; unknown names are left as written (validation has already
/// rejected them in the fields where they matter).
pub fn interpolate(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn when_skip(when: &crate::model::When, event: &Event) -> Option<String> {
    if !when.event.is_empty() && !when.event.contains(&event.kind) {
        return Some(format!("when: event is {}", event.kind));
    }
    if !when.branch.is_empty() {
        let branch = match event.kind {
            EventKind::PullRequest => event.target_branch.as_deref(),
            _ => event.branch.as_deref(),
        };
        match branch {
            Some(b) if any_matches(&when.branch, b) => {}
            Some(b) => return Some(format!("when: branch {b} does not match")),
            None => return Some("when: the event has no branch".to_string()),
        }
    }
    if !when.tag.is_empty() {
        match event.tag.as_deref() {
            Some(t) if any_matches(&when.tag, t) => {}
            Some(t) => return Some(format!("when: tag {t} does not match")),
            None => return Some("when: the event has no tag".to_string()),
        }
    }
    None
}

/// Turns a valid pipeline into a plan for `event`.
pub fn plan(pipeline: &Pipeline, event: &Event) -> Plan {
    let index_of = |name: &str| pipeline.stages.iter().position(|s| s.name == name);
    let mut stages = Vec::with_capacity(pipeline.stages.len());
    for (i, s) in pipeline.stages.iter().enumerate() {
        let needs = match &s.needs {
            Some(names) => names.iter().filter_map(|n| index_of(n)).collect(),
            None if i == 0 => Vec::new(),
            None => vec![i - 1],
        };
        let mut env: Vec<(String, String)> = vec![
            ("MOAT_REPO".into(), event.repo.clone()),
            ("MOAT_COMMIT".into(), event.commit.clone()),
            (
                "MOAT_BRANCH".into(),
                event.branch.clone().unwrap_or_default(),
            ),
            ("MOAT_TAG".into(), event.tag.clone().unwrap_or_default()),
            ("MOAT_EVENT".into(), event.kind.as_str().into()),
            ("MOAT_RUN_ID".into(), event.run_id.clone()),
            ("MOAT_STAGE".into(), s.name.clone()),
        ];
        let push_var = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
            let v = interpolate(v, env);
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v));
        };
        for (k, v) in &pipeline.env {
            push_var(&mut env, k, v);
        }
        for (k, v) in &s.env {
            push_var(&mut env, k, v);
        }
        let ip = |v: &str| interpolate(v, &env);
        let build = s.build.clone().map(|mut b| {
            b.tag = b.tag.as_deref().map(ip);
            b.args = b.args.iter().map(|(k, v)| (k.clone(), ip(v))).collect();
            b
        });
        let scan = s.scan.clone().map(|mut sc| {
            sc.image = sc.image.as_deref().map(ip);
            sc
        });
        let deploy = s.deploy.clone().map(|mut d| {
            d.image = ip(&d.image);
            d
        });
        let services = s
            .services
            .iter()
            .map(|svc| Service {
                image: ip(&svc.image),
                ..svc.clone()
            })
            .collect();
        stages.push(PlannedStage {
            index: i,
            name: s.name.clone(),
            kind: s.kind,
            image: s.image.as_deref().map(ip),
            commands: s.commands.clone(),
            needs,
            timeout: s.timeout,
            no_output_timeout: s.no_output_timeout,
            resources: s.resources,
            services,
            secrets: s.secrets.clone(),
            secret_decls: s
                .secrets
                .iter()
                .filter_map(|n| pipeline.secrets.iter().find(|d| &d.name == n).cloned())
                .collect(),
            privileged: s.privileged,
            mounts: s.mounts.clone(),
            environment: s.environment.clone(),
            approval: s.approval,
            build,
            scan,
            deploy,
            skip: s.when.as_ref().and_then(|w| when_skip(w, event)),
            env,
        });
    }
    Plan { stages }
}

impl Plan {
    /// Keeps only the named stages and everything they need, transitively; the others are
    /// marked skipped as "not selected". Returns the unknown names, if any.
    pub fn select(&mut self, names: &[String]) -> Result<(), Vec<String>> {
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| !self.stages.iter().any(|s| &s.name == *n))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let mut keep = vec![false; self.stages.len()];
        let mut todo: Vec<usize> = self
            .stages
            .iter()
            .filter(|s| names.contains(&s.name))
            .map(|s| s.index)
            .collect();
        while let Some(i) = todo.pop() {
            if !keep[i] {
                keep[i] = true;
                todo.extend(self.stages[i].needs.iter().copied());
            }
        }
        for (s, k) in self.stages.iter_mut().zip(keep) {
            if !k && s.skip.is_none() {
                s.skip = Some("not selected".to_string());
            }
        }
        Ok(())
    }

    /// Stage indices in an order where every stage comes after all it needs.
    pub fn topological_order(&self) -> Vec<usize> {
        let n = self.stages.len();
        let mut indegree: Vec<usize> = self.stages.iter().map(|s| s.needs.len()).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for (j, s) in self.stages.iter().enumerate().rev() {
                if s.needs.contains(&i) {
                    indegree[j] -= 1;
                    if indegree[j] == 0 {
                        ready.push(j);
                    }
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let vars = vec![("A".to_string(), "1".to_string())];
        assert_eq!(interpolate("x${A}y", &vars), "x1y");
        assert_eq!(interpolate("x${B}y", &vars), "x${B}y");
        assert_eq!(interpolate("x${A", &vars), "x${A");
        assert_eq!(interpolate("$A", &vars), "$A");
    }
}
