//! Environments: where deploys go. They are set by the administrator — with `moat env add` or
//! in the policy file's `[environments.NAME]` — and never by a pipeline, so that a repository
//! cannot take another repository's address. This module owns the typed model, its
//! validation, the union of the two sources (a disagreement is an error that names both), and
//! the decision whether a deploy stage may use an environment.
//!
//! Pure: the store keeps `moat env`'s rows, the policy module reads the file, the runner
//! protocol asks these functions when a deploy job is claimed. Nothing here does I/O.

use std::fmt;
use std::net::SocketAddr;

use moat_pipelines::Approval;
use serde::Serialize;

/// The longest environment name (the same rule as a stage's `environment:` in `.moat.yml`
/// and the edge proxy's).
pub const MAX_NAME_LEN: usize = 64;

/// An environment's name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct EnvironmentName(String);

impl EnvironmentName {
    pub fn new(name: &str) -> Result<Self, EnvironmentError> {
        let mut chars = name.chars();
        let ok = name.len() <= MAX_NAME_LEN
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(EnvironmentError::Name(name.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvironmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<EnvironmentName> for String {
    fn from(n: EnvironmentName) -> String {
        n.0
    }
}

/// Where an environment's releases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A Docker host and Moat's edge proxy on it.
    Docker,
}

impl TargetKind {
    pub fn parse(s: &str) -> Result<Self, EnvironmentError> {
        match s {
            "docker" => Ok(TargetKind::Docker),
            other => Err(EnvironmentError::Target(other.chars().take(40).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Docker => "docker",
        }
    }
}

/// The runner that owns a `docker` environment (its engine and proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum RunnerChoice {
    /// The embedded runner of `moat up`.
    Embedded,
    Named(String),
}

/// The name of `moat up`'s embedded runner.
pub const EMBEDDED_RUNNER: &str = "embedded";

impl RunnerChoice {
    pub fn from_name(name: Option<&str>) -> Self {
        match name {
            None | Some(EMBEDDED_RUNNER) => RunnerChoice::Embedded,
            Some(n) => RunnerChoice::Named(n.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RunnerChoice::Embedded => EMBEDDED_RUNNER,
            RunnerChoice::Named(n) => n,
        }
    }
}

impl From<RunnerChoice> for String {
    fn from(r: RunnerChoice) -> String {
        r.name().to_string()
    }
}

/// One environment as the administrator declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    pub name: EnvironmentName,
    pub target: TargetKind,
    /// The public address its edge proxy listens on.
    pub listen: SocketAddr,
    /// The one repository allowed to deploy to it (`owner/name`).
    pub repo: String,
    pub runner: RunnerChoice,
    #[serde(serialize_with = "approval_word")]
    pub approval: Approval,
}

fn approval_word<S: serde::Serializer>(a: &Approval, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match a {
        Approval::Required => "required",
        Approval::None => "none",
    })
}

/// Where an environment was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The policy file (`[environments.NAME]`).
    PolicyFile,
    /// `moat env add` (the database).
    Command,
    /// Both, identically.
    Both,
}

/// What is wrong with an environment's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "invalid environment name {0:?}: use up to {MAX_NAME_LEN} letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit"
    )]
    Name(String),
    #[error("unknown target {0:?}: the only target is docker")]
    Target(String),
    #[error("invalid approval {0:?}: required or none")]
    Approval(String),
    #[error("invalid repository {0:?}: owner/name")]
    Repo(String),
    #[error("invalid listen address {0:?}: an IP address and a port, like 0.0.0.0:443")]
    Listen(String),
    #[error("the listen address of environment {0} has port 0; give the port it serves on")]
    PortZero(EnvironmentName),
    #[error("environment {0} already exists")]
    Exists(EnvironmentName),
    #[error("environment {name} would listen on {listen}, which environment {other} uses")]
    AddressTaken {
        name: EnvironmentName,
        listen: SocketAddr,
        other: EnvironmentName,
    },
    #[error(
        "environment {name} is declared in the policy file and with `moat env add`, and they disagree on {field} (file: {file}, moat env: {command}); remove one or make them equal"
    )]
    Disagree {
        name: EnvironmentName,
        field: &'static str,
        file: String,
        command: String,
    },
    #[error("environment {0} is declared in the policy file; change it there")]
    InPolicyFile(EnvironmentName),
}

/// Parses the administrator's words into an [`Environment`] (for `moat env add` and the
/// policy file alike).
pub fn declare(
    name: &str,
    target: &str,
    listen: &str,
    repo: &str,
    runner: Option<&str>,
    approval: &str,
) -> Result<Environment, EnvironmentError> {
    let name = EnvironmentName::new(name)?;
    let target = TargetKind::parse(target)?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| EnvironmentError::Listen(listen.chars().take(80).collect()))?;
    if listen.port() == 0 {
        return Err(EnvironmentError::PortZero(name));
    }
    if !valid_repo(repo) {
        return Err(EnvironmentError::Repo(repo.chars().take(200).collect()));
    }
    let approval = match approval {
        "required" => Approval::Required,
        "none" => Approval::None,
        other => return Err(EnvironmentError::Approval(other.chars().take(40).collect())),
    };
    Ok(Environment {
        name,
        target,
        listen,
        repo: repo.to_string(),
        runner: RunnerChoice::from_name(runner),
        approval,
    })
}

/// `owner/name` or GitLab's `group/subgroup/project`: segments of printable ASCII without
/// spaces, none empty.
fn valid_repo(repo: &str) -> bool {
    repo.len() <= 200
        && repo.contains('/')
        && repo.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// Whether two listen addresses would fight over one port: the same port on the same
/// address, or on any address when either listens on all of them.
pub fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether `new` may be added beside `existing`: its name is free and its address clashes
/// with none.
pub fn check_new(new: &Environment, existing: &[Environment]) -> Result<(), EnvironmentError> {
    for e in existing {
        if e.name == new.name {
            return Err(EnvironmentError::Exists(new.name.clone()));
        }
        if addresses_clash(e.listen, new.listen) {
            return Err(EnvironmentError::AddressTaken {
                name: new.name.clone(),
                listen: new.listen,
                other: e.name.clone(),
            });
        }
    }
    Ok(())
}

/// The environments in force: the policy file's and `moat env`'s, by name. One declared in
/// both must be the same in both; and no two may clash on an address.
pub fn union(
    file: &[Environment],
    command: &[Environment],
) -> Result<Vec<(Environment, Source)>, EnvironmentError> {
    let mut all: Vec<(Environment, Source)> = Vec::new();
    for f in file {
        match command.iter().find(|c| c.name == f.name) {
            Some(c) => {
                if let Some((field, a, b)) = first_difference(f, c) {
                    return Err(EnvironmentError::Disagree {
                        name: f.name.clone(),
                        field,
                        file: a,
                        command: b,
                    });
                }
                all.push((f.clone(), Source::Both));
            }
            None => all.push((f.clone(), Source::PolicyFile)),
        }
    }
    for c in command {
        if !file.iter().any(|f| f.name == c.name) {
            all.push((c.clone(), Source::Command));
        }
    }
    for (i, (a, _)) in all.iter().enumerate() {
        if let Some((b, _)) = all[i + 1..]
            .iter()
            .find(|(b, _)| addresses_clash(a.listen, b.listen))
        {
            return Err(EnvironmentError::AddressTaken {
                name: b.name.clone(),
                listen: b.listen,
                other: a.name.clone(),
            });
        }
    }
    all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(all)
}

fn first_difference(a: &Environment, b: &Environment) -> Option<(&'static str, String, String)> {
    let pairs = [
        (
            "target",
            a.target.as_str().to_string(),
            b.target.as_str().to_string(),
        ),
        ("listen", a.listen.to_string(), b.listen.to_string()),
        ("repo", a.repo.clone(), b.repo.clone()),
        (
            "runner",
            a.runner.name().to_string(),
            b.runner.name().to_string(),
        ),
        (
            "approval",
            word(a.approval).to_string(),
            word(b.approval).to_string(),
        ),
    ];
    pairs.into_iter().find(|(_, x, y)| x != y)
}

fn word(a: Approval) -> &'static str {
    match a {
        Approval::Required => "required",
        Approval::None => "none",
    }
}

/// Why a deploy stage may not use the environment it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentRefusal {
    #[error("refused: a deploy stage must name its environment")]
    Unnamed,
    #[error("refused: environment {0} does not exist (the administrator adds it: moat env add)")]
    Unknown(String),
    #[error("refused: environment {name} belongs to repository {owner}, not {repo}")]
    OtherRepository {
        name: String,
        owner: String,
        repo: String,
    },
}

/// The environment a deploy stage of `repo` that names `wanted` deploys to, or why it may
/// not.
pub fn environment_for<'a>(
    wanted: Option<&str>,
    repo: &str,
    environments: &'a [Environment],
) -> Result<&'a Environment, EnvironmentRefusal> {
    let wanted = wanted.ok_or(EnvironmentRefusal::Unnamed)?;
    let env = environments
        .iter()
        .find(|e| e.name.as_str() == wanted)
        .ok_or_else(|| EnvironmentRefusal::Unknown(wanted.to_string()))?;
    if env.repo != repo {
        return Err(EnvironmentRefusal::OtherRepository {
            name: wanted.to_string(),
            owner: env.repo.clone(),
            repo: repo.to_string(),
        });
    }
    Ok(env)
}

/// Whether a deploy to `env` needs an approval: when the environment says so, whatever the
/// stage says (a stage can ask for more, never for less).
pub fn needs_approval(env: &Environment, stage: Approval) -> bool {
    env.approval == Approval::Required || stage == Approval::Required
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, listen: &str, repo: &str) -> Environment {
        declare(name, "docker", listen, repo, None, "none").unwrap()
    }

    #[test]
    fn declarations_are_checked_word_by_word() {
        let e = declare(
            "production",
            "docker",
            "0.0.0.0:443",
            "org/app",
            Some("edge-1"),
            "required",
        )
        .unwrap();
        assert_eq!(e.runner, RunnerChoice::Named("edge-1".into()));
        assert_eq!(e.approval, Approval::Required);
        assert_eq!(
            declare(
                "prod",
                "docker",
                "0.0.0.0:443",
                "org/app",
                Some("embedded"),
                "none"
            )
            .unwrap()
            .runner,
            RunnerChoice::Embedded
        );
        let bad = |r: Result<Environment, EnvironmentError>| r.unwrap_err().to_string();
        assert!(bad(declare("-x", "docker", "0.0.0.0:1", "o/a", None, "none")).contains("name"));
        assert!(
            bad(declare(
                &"a".repeat(65),
                "docker",
                "0.0.0.0:1",
                "o/a",
                None,
                "none"
            ))
            .contains("name")
        );
        assert!(bad(declare("p", "k8s", "0.0.0.0:1", "o/a", None, "none")).contains("target"));
        assert!(
            bad(declare("p", "docker", "localhost:80", "o/a", None, "none")).contains("listen")
        );
        assert!(bad(declare("p", "docker", "127.0.0.1:0", "o/a", None, "none")).contains("port 0"));
        assert!(
            bad(declare("p", "docker", "127.0.0.1:80", "app", None, "none")).contains("repository")
        );
        assert!(
            bad(declare("p", "docker", "127.0.0.1:80", "o//a", None, "none"))
                .contains("repository")
        );
        assert!(
            bad(declare(
                "p",
                "docker",
                "127.0.0.1:80",
                "o/a b",
                None,
                "none"
            ))
            .contains("repository")
        );
        assert!(
            bad(declare("p", "docker", "127.0.0.1:80", "o/a", None, "maybe")).contains("approval")
        );
        assert!(
            declare(
                "p",
                "docker",
                "[::1]:8443",
                "group/sub/project",
                None,
                "none"
            )
            .is_ok()
        );
    }

    #[test]
    fn addresses_clash_on_one_port_when_either_listens_everywhere() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(addresses_clash(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(addresses_clash(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(addresses_clash(a("127.0.0.2:80"), a("[::]:80")));
        assert!(!addresses_clash(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!addresses_clash(a("0.0.0.0:80"), a("0.0.0.0:81")));
    }

    #[test]
    fn a_new_environment_needs_a_free_name_and_a_free_address() {
        let existing = [env("production", "0.0.0.0:443", "org/app")];
        assert!(check_new(&env("staging", "0.0.0.0:8443", "org/app"), &existing).is_ok());
        assert_eq!(
            check_new(&env("production", "0.0.0.0:8443", "org/app"), &existing),
            Err(EnvironmentError::Exists(
                EnvironmentName::new("production").unwrap()
            ))
        );
        let taken = check_new(&env("other", "127.0.0.1:443", "org/other"), &existing)
            .unwrap_err()
            .to_string();
        assert!(taken.contains("production"), "{taken}");
    }

    #[test]
    fn file_and_command_agree_or_the_error_names_both() {
        let file = [env("production", "0.0.0.0:443", "org/app")];
        let same = union(&file, &file).unwrap();
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].1, Source::Both);

        let command = [
            env("production", "0.0.0.0:443", "org/other"),
            env("staging", "0.0.0.0:8443", "org/app"),
        ];
        let err = union(&file, &command).unwrap_err().to_string();
        assert!(err.contains("production") && err.contains("repo"), "{err}");
        assert!(
            err.contains("org/app") && err.contains("org/other"),
            "{err}"
        );

        let both = union(&file, &command[1..]).unwrap();
        let sources: Vec<_> = both.iter().map(|(e, s)| (e.name.as_str(), *s)).collect();
        assert_eq!(
            sources,
            [
                ("production", Source::PolicyFile),
                ("staging", Source::Command)
            ]
        );

        let clash = union(&file, &[env("staging", "127.0.0.1:443", "org/app")]).unwrap_err();
        assert!(
            matches!(clash, EnvironmentError::AddressTaken { .. }),
            "{clash}"
        );
    }

    #[test]
    fn a_deploy_may_use_only_its_own_repository_s_environment() {
        let envs = [
            env("production", "0.0.0.0:443", "org/app"),
            env("other-prod", "0.0.0.0:8443", "org/other"),
        ];
        assert_eq!(
            environment_for(Some("production"), "org/app", &envs).map(|e| e.name.as_str()),
            Ok("production")
        );
        assert_eq!(
            environment_for(Some("nowhere"), "org/app", &envs),
            Err(EnvironmentRefusal::Unknown("nowhere".into()))
        );
        let other = environment_for(Some("other-prod"), "org/app", &envs).unwrap_err();
        assert_eq!(
            other.to_string(),
            "refused: environment other-prod belongs to repository org/other, not org/app"
        );
        assert_eq!(
            environment_for(None, "org/app", &envs),
            Err(EnvironmentRefusal::Unnamed)
        );
    }

    #[test]
    fn the_environment_s_approval_rule_wins_over_a_looser_stage() {
        let mut e = env("production", "0.0.0.0:443", "org/app");
        assert!(!needs_approval(&e, Approval::None));
        assert!(needs_approval(&e, Approval::Required));
        e.approval = Approval::Required;
        assert!(needs_approval(&e, Approval::None));
    }
}
