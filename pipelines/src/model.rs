//! The typed model of a version-1 `.moat.yml`. Values here have passed validation: names are
//! unique, `needs` resolve, durations and sizes are parsed, kind blocks match their kind.

use std::time::Duration;

use crate::diag::Pos;
use crate::pattern::Pattern;

/// A whole, valid pipeline file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Pipeline {
    pub version: u32,
    pub on: Triggers,
    /// Plain variables for every stage, in file order.
    pub env: Vec<(String, String)>,
    /// Where each value of `env` is in the file, for planning errors.
    #[serde(default)]
    pub env_pos: Vec<Pos>,
    /// Declared secrets, in file order.
    pub secrets: Vec<SecretDecl>,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// `on:` — which events start a run. When the key is absent, a push to any branch does.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct Triggers {
    /// `None`: pushes do not start runs. `Some(empty)`: any branch.
    pub push: Option<Vec<Pattern>>,
    /// Target branches of pull requests; same convention as `push`.
    pub pull_request: Option<Vec<Pattern>>,
    /// Tag patterns; `Some(empty)` means any tag.
    pub tag: Option<Vec<Pattern>>,
    pub manual: bool,
}

impl Triggers {
    /// What an absent `on:` means.
    pub fn default_push() -> Self {
        Triggers {
            push: Some(Vec::new()),
            ..Triggers::default()
        }
    }
}

/// A secret declared at the top level and granted to stages by name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SecretDecl {
    pub name: String,
    pub source: SecretSource,
    /// Only ever given to `deploy` stages on protected refs.
    pub deploy_only: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum SecretSource {
    /// From the coordinator's encrypted store (repository scope), or `--secret` for `moat run`.
    Store,
    /// A `moat seal` value committed in the file.
    Sealed(String),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Hash)]
pub enum StageKind {
    Test,
    Build,
    Scan,
    Deploy,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Test => "test",
            StageKind::Build => "build",
            StageKind::Scan => "scan",
            StageKind::Deploy => "deploy",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Stage {
    pub name: String,
    /// Where the stage's mapping starts in the file.
    pub pos: Pos,
    pub kind: StageKind,
    pub image: Option<String>,
    pub commands: Vec<String>,
    /// `None`: the key was absent, so the stage waits for the previous one.
    /// `Some(vec![])`: explicitly no dependencies.
    pub needs: Option<Vec<String>>,
    pub when: Option<When>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub no_output_timeout: Option<Duration>,
    pub resources: Resources,
    pub services: Vec<Service>,
    /// Names of declared secrets granted to this stage.
    pub secrets: Vec<String>,
    pub environment: Option<String>,
    pub approval: Approval,
    /// Requested with `privileged: true`; only accepted when policy allows it.
    pub privileged: bool,
    /// Host paths requested with `volumes:`; only accepted when policy allows them.
    pub mounts: Vec<Mount>,
    pub build: Option<BuildSpec>,
    pub scan: Option<ScanSpec>,
    pub deploy: Option<DeploySpec>,
    /// Where the values planning interpolates are in the file.
    #[serde(default)]
    pub spans: StageSpans,
}

/// Positions of a stage's interpolated values, so a planning error names file:line:col. A
/// position left at 0:0 (a pipeline built without them) falls back to the stage's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct StageSpans {
    /// One per entry of [`Stage::env`].
    pub env: Vec<Pos>,
    pub image: Pos,
    /// The `image:` of each service.
    pub services: Vec<Pos>,
    pub build_tag: Pos,
    /// One per entry of [`BuildSpec::args`].
    pub build_args: Vec<Pos>,
    pub scan_image: Pos,
    pub deploy_image: Pos,
}

/// `when:` — conditions evaluated against the event; all given conditions must hold.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct When {
    pub branch: Vec<Pattern>,
    pub event: Vec<EventKind>,
    pub tag: Vec<Pattern>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Push,
    PullRequest,
    Tag,
    Manual,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::PullRequest => "pull_request",
            EventKind::Tag => "tag",
            EventKind::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "push" => EventKind::Push,
            "pull_request" => EventKind::PullRequest,
            "tag" => EventKind::Tag,
            "manual" => EventKind::Manual,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Default)]
pub struct Resources {
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    /// Replaces the image's command when given.
    pub command: Vec<String>,
}

/// A host path mounted into a stage container (`volumes: ["/src:/dst:ro"]`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Default)]
pub enum Approval {
    #[default]
    None,
    Required,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: String,
    /// May contain `${VAR}` references, resolved by the plan.
    pub tag: Option<String>,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
    pub push: bool,
    pub labels: Vec<(String, String)>,
}

/// The one severity scale, owned by `moat-report` and shared with every scanner; re-exported
/// so a `fail_on` reads `moat_pipelines::Severity`.
pub use moat_report::Severity;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ScanSpec {
    pub image: Option<String>,
    pub fail_on: Severity,
    pub manifests: Option<String>,
    pub dependencies: bool,
    pub only_fixed: bool,
    pub ignore: Vec<IgnoreRule>,
}

/// A date without time zone, `YYYY-MM-DD`.
#[derive(
    Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct IgnoreRule {
    pub id: String,
    pub reason: String,
    pub expires: Date,
    pub pos: Pos,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum DeployTarget {
    Docker,
    Kubernetes,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum Strategy {
    BlueGreen,
    Recreate,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq)]
pub enum Rollback {
    Auto,
    Manual,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DeploySpec {
    pub target: DeployTarget,
    pub strategy: Strategy,
    pub image: String,
    /// The container port traffic goes to. Required for `docker`; 0 for a `kubernetes`
    /// deploy that gives none, where the Service's own port is used.
    pub port: u16,
    /// Without a `health:` block: `GET /`, 60s timeout, 2s interval.
    pub health: HealthCheck,
    pub rollback: Rollback,
    /// Kubernetes only.
    pub namespace: Option<String>,
    /// The released application's name; defaults to the repository name.
    pub app: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub timeout: Duration,
    pub interval: Duration,
}
