//! Planning: a valid pipeline plus an event becomes a DAG of stages with resolved
//! dependencies, environment and `when` decisions. The runner and the coordinator both execute
//! plans; neither re-interprets the YAML.

use std::time::Duration;

use crate::diag::Pos;
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

/// Largest value one interpolation may produce (an `env` value, an image, a build tag or arg).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest total of a plan's `env` (names and values, the file's counted once per stage) and
/// interpolated fields. The built-ins are not counted: they are bounded per stage (see the
/// `MAX_*_BYTES` bounds) and so grow with the file, not with its references.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// Bounds on what an event contributes to the built-in variables. Validation expands a file
/// with every built-in at its bound, so a file that validates plans for every event within
/// them; [`plan`] refuses an event beyond them instead of guessing.
pub const MAX_REPO_BYTES: usize = 512;
pub const MAX_BRANCH_BYTES: usize = 255;
pub const MAX_TAG_BYTES: usize = 255;
/// A SHA-256 object name in hex.
pub const MAX_COMMIT_BYTES: usize = 64;
pub const MAX_RUN_ID_BYTES: usize = 64;

/// Why a pipeline could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A value of the file expanded past a cap; `pos` is the value's place in the file.
    #[error("{pos}: {message}")]
    Located { pos: Pos, message: String },
    /// The event itself is out of bounds (no fault of the file).
    #[error("the event's {field} is {len} bytes long; at most {max} are accepted")]
    EventTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl PlanError {
    /// Where in the file (1:1 for an event problem).
    pub fn pos(&self) -> Pos {
        match self {
            PlanError::Located { pos, .. } => *pos,
            PlanError::EventTooLong { .. } => Pos::new(1, 1),
        }
    }

    /// The message without the position.
    pub fn message(&self) -> String {
        match self {
            PlanError::Located { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }

    /// `file:line:col: message` for a file problem, the plain message for an event problem.
    pub fn render(&self, file: &str) -> String {
        match self {
            PlanError::Located { pos, message } => format!("{file}:{pos}: {message}"),
            e => e.to_string(),
        }
    }
}

/// Like [`interpolate`], but gives up (`None`) as soon as the result would exceed `cap`
/// bytes, before allocating it: a few self-referencing variables double at every step.
pub fn interpolate_capped(s: &str, vars: &[(String, String)], cap: usize) -> Option<String> {
    let mut out = String::with_capacity(s.len().min(cap));
    let mut rest = s;
    let push = |out: &mut String, piece: &str| {
        if out.len() + piece.len() > cap {
            return false;
        }
        out.push_str(piece);
        true
    };
    while let Some(start) = rest.find("${") {
        if !push(&mut out, &rest[..start]) {
            return None;
        }
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                let ok = match vars.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => push(&mut out, v),
                    None => push(&mut out, &rest[start..start + 2 + end + 1]),
                };
                if !ok {
                    return None;
                }
                rest = &after[end + 1..];
            }
            None => {
                if !push(&mut out, &rest[start..]) {
                    return None;
                }
                rest = "";
            }
        }
    }
    push(&mut out, rest).then_some(out)
}

/// Interpolation under the caps, with the running total of the plan.
struct Expander {
    /// Whether interpolated image references are checked against the grammar (not when
    /// validating with [`Event::largest`], whose filler values are not real names).
    references: bool,
    /// Whether the current stage runs for the event: a stage `when:` skips (a tag-only
    /// deploy on a push, with an empty `${MOAT_TAG}`) is not refused for its references.
    runs: bool,
    total: usize,
    /// Stage position, the fallback for values without one.
    stage_pos: Pos,
}

impl Expander {
    fn count(&mut self, bytes: usize, pos: Pos, what: &str) -> Result<(), PlanError> {
        self.total = self.total.saturating_add(bytes);
        if self.total > MAX_PLAN_BYTES {
            return Err(self.located(
                pos,
                format!(
                    "the plan grows past {} KiB of variables and images at {what}; make the values shorter or reference them less often",
                    MAX_PLAN_BYTES / 1024
                ),
            ));
        }
        Ok(())
    }

    fn located(&self, pos: Pos, message: String) -> PlanError {
        let pos = if pos == Pos::default() {
            self.stage_pos
        } else {
            pos
        };
        PlanError::Located { pos, message }
    }

    /// Expands `value`, `what` naming it in the error ("env value FOO of stage \"x\"").
    fn expand(
        &mut self,
        value: &str,
        vars: &[(String, String)],
        pos: Pos,
        what: &str,
    ) -> Result<String, PlanError> {
        let out = interpolate_capped(value, vars, MAX_VALUE_BYTES).ok_or_else(|| {
            self.located(
                pos,
                format!(
                    "{what} expands to more than {} KiB; make it shorter or reference variables less often",
                    MAX_VALUE_BYTES / 1024
                ),
            )
        })?;
        self.count(out.len(), pos, what)?;
        Ok(out)
    }

    /// Expands an image reference and checks the result when it had variables (a literal
    /// one was checked by validation).
    fn image(
        &mut self,
        value: &str,
        vars: &[(String, String)],
        pos: Pos,
        what: &str,
    ) -> Result<String, PlanError> {
        let out = self.expand(value, vars, pos, what)?;
        if self.references && self.runs && value.contains("${") {
            crate::reference::check(&out).map_err(|e| {
                self.located(
                    pos,
                    format!(
                        "{what} is {} after interpolation: {e}",
                        crate::reference::quote(&out)
                    ),
                )
            })?;
        }
        Ok(out)
    }
}

fn check_event(event: &Event) -> Result<(), PlanError> {
    let fields: [(&'static str, usize, usize); 6] = [
        ("repository name", event.repo.len(), MAX_REPO_BYTES),
        (
            "branch name",
            event.branch.as_deref().map_or(0, str::len),
            MAX_BRANCH_BYTES,
        ),
        (
            "target branch name",
            event.target_branch.as_deref().map_or(0, str::len),
            MAX_BRANCH_BYTES,
        ),
        (
            "tag name",
            event.tag.as_deref().map_or(0, str::len),
            MAX_TAG_BYTES,
        ),
        ("commit", event.commit.len(), MAX_COMMIT_BYTES),
        ("run id", event.run_id.len(), MAX_RUN_ID_BYTES),
    ];
    for (field, len, max) in fields {
        if len > max {
            return Err(PlanError::EventTooLong { field, len, max });
        }
    }
    Ok(())
}

impl Event {
    /// The largest event [`plan`] accepts: every built-in at its bound. Expanding a file for
    /// it bounds what any accepted event can make of the file.
    pub fn largest() -> Event {
        Event {
            kind: EventKind::PullRequest,
            branch: Some("b".repeat(MAX_BRANCH_BYTES)),
            target_branch: Some("b".repeat(MAX_BRANCH_BYTES)),
            tag: Some("t".repeat(MAX_TAG_BYTES)),
            commit: "c".repeat(MAX_COMMIT_BYTES),
            repo: "r".repeat(MAX_REPO_BYTES),
            run_id: "i".repeat(MAX_RUN_ID_BYTES),
        }
    }
}

/// The expansion checks of validation: plans `pipeline` for [`Event::largest`]. Interpolation
/// only substitutes (it never rescans what it inserted), so every value's length grows with
/// the built-ins' lengths and no accepted event can expand the file further than this.
///
/// Then the image references: the file's own variables are known, only the built-ins depend
/// on the event, so the references are checked with every built-in a neutral "x" (valid
/// anywhere in a reference). An event whose names make a reference invalid (a branch
/// `feature/x` in a tag) fails planning with the same located error.
pub fn check_expansion(pipeline: &Pipeline) -> Result<(), PlanError> {
    plan_with(pipeline, &Event::largest(), false)?;
    let neutral = Event {
        kind: EventKind::Push,
        branch: Some("x".into()),
        target_branch: Some("x".into()),
        tag: Some("x".into()),
        commit: "x".into(),
        repo: "x".into(),
        run_id: "x".into(),
    };
    plan_with(pipeline, &neutral, true).map(|_| ())
}

/// Turns a valid pipeline into a plan for `event`. Fails, with the place in the file, when a
/// value expands past [`MAX_VALUE_BYTES`] or the plan past [`MAX_PLAN_BYTES`], and when the
/// event is beyond the bounds validation assumes.
/// Image references that contain `${...}` are checked against the reference grammar once
/// interpolated.
pub fn plan(pipeline: &Pipeline, event: &Event) -> Result<Plan, PlanError> {
    plan_with(pipeline, event, true)
}

fn plan_with(pipeline: &Pipeline, event: &Event, references: bool) -> Result<Plan, PlanError> {
    check_event(event)?;
    let index_of = |name: &str| pipeline.stages.iter().position(|s| s.name == name);
    let mut stages = Vec::with_capacity(pipeline.stages.len());
    let mut x = Expander {
        references,
        runs: true,
        total: 0,
        stage_pos: Pos::new(1, 1),
    };
    for (i, s) in pipeline.stages.iter().enumerate() {
        x.stage_pos = s.pos;
        let skip = s.when.as_ref().and_then(|w| when_skip(w, event));
        x.runs = skip.is_none();
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
        let label = format!("stage \"{}\"", s.name);
        let pos_at = |list: &[Pos], i: usize| list.get(i).copied().unwrap_or_default();
        let file_env = pipeline
            .env
            .iter()
            .enumerate()
            .map(|(j, kv)| (kv, pos_at(&pipeline.env_pos, j), " (top-level env)"));
        let stage_env = s
            .env
            .iter()
            .enumerate()
            .map(|(j, kv)| (kv, pos_at(&s.spans.env, j), ""));
        for ((k, v), pos, place) in file_env.chain(stage_env).collect::<Vec<_>>() {
            let what = format!("env value {k}{place} in {label}");
            let v = x.expand(v, &env, pos, &what)?;
            x.count(k.len(), pos, &what)?;
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v));
        }
        let image = match &s.image {
            Some(img) => {
                Some(x.image(img, &env, s.spans.image, &format!("the image of {label}"))?)
            }
            None => None,
        };
        let build = match &s.build {
            Some(b) => {
                let mut b = b.clone();
                if let Some(tag) = &b.tag {
                    b.tag = Some(x.image(
                        tag,
                        &env,
                        s.spans.build_tag,
                        &format!("the build tag of {label}"),
                    )?);
                }
                for (j, (k, v)) in b.args.iter_mut().enumerate() {
                    *v = x.expand(
                        v,
                        &env,
                        pos_at(&s.spans.build_args, j),
                        &format!("build arg {k} of {label}"),
                    )?;
                }
                Some(b)
            }
            None => None,
        };
        let scan = match &s.scan {
            Some(sc) => {
                let mut sc = sc.clone();
                if let Some(img) = &sc.image {
                    sc.image = Some(x.image(
                        img,
                        &env,
                        s.spans.scan_image,
                        &format!("the scan image of {label}"),
                    )?);
                }
                Some(sc)
            }
            None => None,
        };
        let deploy = match &s.deploy {
            Some(d) => {
                let mut d = d.clone();
                d.image = x.image(
                    &d.image,
                    &env,
                    s.spans.deploy_image,
                    &format!("the deploy image of {label}"),
                )?;
                Some(d)
            }
            None => None,
        };
        let mut services = Vec::with_capacity(s.services.len());
        for (j, svc) in s.services.iter().enumerate() {
            services.push(Service {
                image: x.image(
                    &svc.image,
                    &env,
                    pos_at(&s.spans.services, j),
                    &format!("the image of service \"{}\" of {label}", svc.name),
                )?,
                ..svc.clone()
            });
        }
        stages.push(PlannedStage {
            index: i,
            name: s.name.clone(),
            kind: s.kind,
            image,
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
            skip,
            env,
        });
    }
    Ok(Plan { stages })
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
