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

/// Longest `observe`, `drain` and health-check `deadline` accepted.
pub const MAX_DEPLOY_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DeploySpec {
    pub target: DeployTarget,
    pub strategy: Strategy,
    pub image: String,
    /// The container port traffic goes to. Required for `docker`; 0 for a `kubernetes`
    /// deploy that gives none, where the Service's own port is used.
    pub port: u16,
    /// Without a `health:` block: [`HealthCheck::default`].
    pub health: HealthCheck,
    pub rollback: Rollback,
    /// Kubernetes only.
    pub namespace: Option<String>,
    /// The released application's name; defaults to the repository name.
    pub app: Option<String>,
    /// `observe:` — how long the health check keeps running after the switch; failing it in
    /// that window goes back to the old colour. Default [`DeploySpec::DEFAULT_OBSERVE`] (30s):
    /// long enough to catch a release that dies on its first real traffic, short enough not to
    /// hold the old colour for long. Positive, at most [`MAX_DEPLOY_WAIT`].
    #[serde(default = "DeploySpec::default_observe")]
    pub observe: Duration,
    /// `drain:` — how long in-flight requests get to finish on the old colour once traffic has
    /// moved, before it is stopped. Default [`DeploySpec::DEFAULT_DRAIN`] (30s). Positive, at
    /// most [`MAX_DEPLOY_WAIT`].
    #[serde(default = "DeploySpec::default_drain")]
    pub drain: Duration,
    /// `probe:` — the pre-switch security probe of the new release; `None` when absent.
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
}

impl DeploySpec {
    pub const DEFAULT_OBSERVE: Duration = Duration::from_secs(30);
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

    fn default_observe() -> Duration {
        Self::DEFAULT_OBSERVE
    }

    fn default_drain() -> Duration {
        Self::DEFAULT_DRAIN
    }
}

/// `health:` — how the new colour is judged ready, and watched while observed: `GET path`
/// every `interval`, each try given `timeout`, until `successes` tries in a row pass; giving up
/// when `deadline` has passed since the first. Every field has a default, so `health: {}` and
/// no `health:` at all mean [`HealthCheck::default`]: `GET /`, any 2xx, every 2s, 2s per try, one
/// success, 60s deadline.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HealthCheck {
    /// Starts with `/`; may carry a query. No whitespace or control characters, at most
    /// [`HealthCheck::MAX_PATH`] bytes.
    pub path: String,
    /// The limit of one try (it was the overall limit before `deadline` existed).
    pub timeout: Duration,
    /// The wait between tries. At most `deadline`.
    pub interval: Duration,
    /// The status a passing try answers with; `None`: any 2xx. Between 100 and 599.
    #[serde(default)]
    pub status: Option<u16>,
    /// Consecutive passing tries needed; 1 to [`HealthCheck::MAX_SUCCESSES`].
    #[serde(default = "HealthCheck::default_successes")]
    pub successes: u32,
    /// The overall limit, from the first try; at least `timeout` and `interval`, at most
    /// [`MAX_DEPLOY_WAIT`].
    #[serde(default = "HealthCheck::default_deadline")]
    pub deadline: Duration,
}

impl HealthCheck {
    pub const DEFAULT_PATH: &str = "/";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_SUCCESSES: u32 = 1;
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
    pub const MAX_PATH: usize = 1024;
    pub const MAX_SUCCESSES: u32 = 100;

    fn default_successes() -> u32 {
        Self::DEFAULT_SUCCESSES
    }

    fn default_deadline() -> Duration {
        Self::DEFAULT_DEADLINE
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: Self::DEFAULT_PATH.to_string(),
            timeout: Self::DEFAULT_TIMEOUT,
            interval: Self::DEFAULT_INTERVAL,
            status: None,
            successes: Self::DEFAULT_SUCCESSES,
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

/// `probe:` — before any traffic moves, the new colour is probed for reflected XSS, SQL
/// injection and exposed files on `paths`; a finding at `fail_on` or above stops the release.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ProbeSpec {
    /// Request targets, each like a health-check path; default `["/"]`, no duplicates, at
    /// most [`ProbeSpec::MAX_PATHS`].
    pub paths: Vec<String>,
    /// Default `high`, as for scan stages.
    pub fail_on: Severity,
}

impl ProbeSpec {
    pub const MAX_PATHS: usize = 100;
}
