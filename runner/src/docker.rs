//! The Docker engine connection and the resources Moat owns on it: labels that mark every
//! container, network and volume with its run and its owning process (and stage containers
//! with their coordinator job and attempt), removal of a run's resources, removal of leftovers
//! whose owner is gone, removal of an older attempt's containers before a job runs again, and
//! image availability (pull on miss).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;

use crate::error::EngineError;

/// Present on everything Moat creates.
pub const LABEL_MANAGED: &str = "moat.managed";
/// The run a resource belongs to.
pub const LABEL_RUN: &str = "moat.run";
/// The stage a container runs (absent on run-wide resources).
pub const LABEL_STAGE: &str = "moat.stage";
/// The process that created it: `host/pid/start-ticks`; leftovers are found through it.
pub const LABEL_OWNER: &str = "moat.owner";
/// The pid alone, so tests and operators can filter by it.
pub const LABEL_PID: &str = "moat.pid";
/// The coordinator installation (database) a job belongs to: job ids are only unique within
/// one, and several installations may share an engine.
pub const LABEL_INSTALLATION: &str = "moat.installation";
/// The coordinator's job id of a stage container (and its services).
pub const LABEL_JOB: &str = "moat.job";
/// Which attempt of that job created the container (1, 2, …).
pub const LABEL_ATTEMPT: &str = "moat.attempt";

/// Identifies this process on this host, robust against pid reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub start_ticks: u64,
}

impl Owner {
    pub fn current() -> Self {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            pid,
            start_ticks: process_start_ticks(pid).unwrap_or(0),
        }
    }

    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.host, self.pid, self.start_ticks)
    }

    fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(3, '/');
        let start_ticks = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        Some(Owner {
            host,
            pid,
            start_ticks,
        })
    }

    /// Whether the owning process still runs (see [`owner_alive`]).
    fn is_alive(&self) -> bool {
        let this_host = hostname();
        let stat = if self.host == this_host {
            read_stat(self.pid)
        } else {
            None
        };
        owner_alive(self, &this_host, stat)
    }
}

/// What `/proc/PID/stat` says about a process that matters for liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, … `Z` (zombie), `X` (dead).
    pub state: char,
    /// Field 22: the start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses; the fields after the last `)` are well-formed.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 … 21 lie between the state and the start time.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether the resources of `owner` belong to a live process, given what this host's
/// `/proc/PID/stat` says about its pid (`None`: no such process).
///
/// Resources of other hosts are never judged dead: another machine may share this engine.
/// On this host the process must exist, must not be a zombie or dead (`Z`, `X`: a `kill -9`ed
/// process stays a zombie until its parent reaps it, and runs nothing), and must have the
/// start time the label recorded — a different one means the pid was reused. A label without
/// a start time cannot tell the owner from a reused pid, so it does not prove liveness.
pub fn owner_alive(owner: &Owner, this_host: &str, stat: Option<ProcStat>) -> bool {
    if owner.host != this_host {
        return true;
    }
    match stat {
        None => false,
        Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => false,
        Some(_) if owner.start_ticks == 0 => false,
        Some(s) => s.start_ticks == owner.start_ticks,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of `/proc/PID/stat`: the process start time in clock ticks since boot.
fn process_start_ticks(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_ticks)
}

/// The labels for a resource of `run_id` (and `stage`, for stage containers).
pub fn labels(owner: &Owner, run_id: &str, stage: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_MANAGED.to_string(), "1".to_string()),
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_OWNER.to_string(), owner.label()),
        (LABEL_PID.to_string(), owner.pid.to_string()),
    ]);
    if let Some(stage) = stage {
        l.insert(LABEL_STAGE.to_string(), stage.to_string());
    }
    l
}

/// A coordinator job attempt as the engine sees it: stage containers (and their services)
/// carry these labels, so a later attempt can find what an earlier one left running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// The coordinator installation's id (see [`LABEL_INSTALLATION`]).
    pub installation: String,
    pub job_id: i64,
    pub attempt: i64,
}

impl JobRef {
    pub fn labels(&self) -> [(String, String); 3] {
        [
            (LABEL_INSTALLATION.to_string(), self.installation.clone()),
            (LABEL_JOB.to_string(), self.job_id.to_string()),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
        ]
    }
}

/// Of the containers labelled with one job (id, labels), those an attempt before `attempt`
/// created. A missing or unreadable attempt label counts as older: the container is this
/// job's, and nothing says it is the current attempt's.
pub fn older_attempts(
    containers: &[(String, HashMap<String, String>)],
    attempt: i64,
) -> Vec<String> {
    containers
        .iter()
        .filter(|(_, labels)| {
            labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse::<i64>().ok())
                .is_none_or(|a| a < attempt)
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Every container (running or not) of `job`'s installation and job id, as (id, labels).
async fn job_containers(
    docker: &Docker,
    job: &JobRef,
) -> Result<Vec<(String, HashMap<String, String>)>, EngineError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_INSTALLATION}={}", job.installation),
            format!("{LABEL_JOB}={}", job.job_id),
        ],
    )]);
    let found = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|c| Some((c.id?, c.labels.unwrap_or_default())))
        .collect())
}

/// Removes the containers earlier attempts of `job` left on this engine (a runner that lost
/// its lease but still runs, a `kill -9`ed one whose containers outlived it) and confirms,
/// listing again for up to `confirm_within`, that none remains. Returns how many were
/// removed; an error when one could not be confirmed gone, so the caller does not run the
/// stage a second time beside it.
pub async fn remove_older_attempts(
    docker: &Docker,
    job: &JobRef,
    confirm_within: Duration,
) -> Result<usize, EngineError> {
    let older = older_attempts(&job_containers(docker, job).await?, job.attempt);
    if older.is_empty() {
        return Ok(0);
    }
    let deadline = Instant::now() + confirm_within;
    let mut left = older.clone();
    loop {
        let mut last_error = None;
        for id in &left {
            tracing::warn!(
                job.id = job.job_id,
                job.attempt = job.attempt,
                container.id = %id,
                "removing a container of an earlier attempt of this job"
            );
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(id, Some(opts)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => last_error = Some(server_message(&e)),
            }
        }
        left = older_attempts(&job_containers(docker, job).await?, job.attempt);
        if left.is_empty() {
            return Ok(older.len());
        }
        if Instant::now() >= deadline {
            return Err(EngineError::PreviousAttempt(format!(
                "container {} of an earlier attempt of job {} is still on the engine after {}s{}",
                left[0],
                job.job_id,
                confirm_within.as_secs(),
                last_error.map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Connects to the engine named by `DOCKER_HOST`, or the local socket, and checks it answers.
pub async fn connect() -> Result<Docker, EngineError> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| EngineError::Unreachable {
        detail: e.to_string(),
    })?;
    docker.ping().await.map_err(|e| EngineError::Unreachable {
        detail: e.to_string(),
    })?;
    Ok(docker)
}

fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![label.to_string()])])
}

/// Force-removes every container, network and volume carrying `label` (`key` or `key=value`).
/// Returns how many resources were removed. Errors on single resources are logged and skipped
/// so that one stuck resource does not keep the others alive.
pub async fn remove_labelled(docker: &Docker, label: &str) -> Result<usize, EngineError> {
    remove_matching(docker, label, |_| true).await
}

async fn remove_matching(
    docker: &Docker,
    label: &str,
    keep_if_false: impl Fn(&HashMap<String, String>) -> bool,
) -> Result<usize, EngineError> {
    let mut removed = 0;
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&label_filter(label))
                .build(),
        ))
        .await?;
    for c in containers {
        if !keep_if_false(c.labels.as_ref().unwrap_or(&HashMap::new())) {
            continue;
        }
        let Some(id) = c.id else { continue };
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(opts)).await {
            Ok(()) => removed += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!(container.id = %id, error = %e, "could not remove container"),
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&label_filter(label))
                .build(),
        ))
        .await?;
    for n in networks {
        if !keep_if_false(n.labels.as_ref().unwrap_or(&HashMap::new())) {
            continue;
        }
        let Some(id) = n.id else { continue };
        match docker.remove_network(&id).await {
            Ok(()) => removed += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!(network.id = %id, error = %e, "could not remove network"),
        }
    }
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&label_filter(label))
                .build(),
        ))
        .await?;
    for v in volumes.volumes.unwrap_or_default() {
        if !keep_if_false(&v.labels) {
            continue;
        }
        let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
        match docker.remove_volume(&v.name, Some(opts)).await {
            Ok(()) => removed += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!(volume.name = %v.name, error = %e, "could not remove volume"),
        }
    }
    Ok(removed)
}

/// Removes resources left by Moat processes on this host that no longer run (a crash, a
/// `kill -9`). Resources of live processes, including other concurrent `moat run`s, are kept.
pub async fn remove_leftovers(docker: &Docker) -> Result<usize, EngineError> {
    let dead = |labels: &HashMap<String, String>| match labels.get(LABEL_OWNER) {
        Some(owner) => Owner::parse(owner).is_some_and(|o| !o.is_alive()),
        None => false,
    };
    let n = remove_matching(docker, LABEL_MANAGED, dead).await?;
    if n > 0 {
        tracing::info!(removed = n, "removed leftovers of earlier runs");
    }
    Ok(n)
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Splits `name[:tag|@digest]` into what the create-image API wants; a reference without a tag
/// means `latest` (an empty tag would pull every tag).
fn split_reference(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Makes sure `image` is present: inspect, and pull when missing. A failed pull names the
/// image and says the engine could not pull it.
pub async fn ensure_image(docker: &Docker, image: &str) -> Result<(), EngineError> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(image = %image, "pulling image");
    let (from_image, tag) = split_reference(image);
    let mut builder = CreateImageOptionsBuilder::default().from_image(&from_image);
    if !tag.is_empty() {
        builder = builder.tag(&tag);
    }
    let mut stream = docker.create_image(Some(builder.build()), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(EngineError::Pull {
                        image: image.to_string(),
                        detail: err,
                    });
                }
            }
            Err(e) => {
                return Err(EngineError::Pull {
                    image: image.to_string(),
                    detail: server_message(&e),
                });
            }
        }
    }
    // A pull that "succeeds" without producing the image (e.g. a platform mismatch) is still a
    // failure for the stage that needs it.
    docker
        .inspect_image(image)
        .await
        .map(|_| ())
        .map_err(|e| EngineError::Pull {
            image: image.to_string(),
            detail: server_message(&e),
        })
}

/// The engine's own message for an API error, without bollard's wrapping.
pub(crate) fn server_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("rust:1.82-slim"),
            ("rust".into(), "1.82-slim".into())
        );
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app".into(), "latest".into())
        );
        assert_eq!(
            split_reference("localhost:5000/app:v1"),
            ("localhost:5000/app".into(), "v1".into())
        );
        assert_eq!(
            split_reference("app@sha256:abc"),
            ("app@sha256:abc".into(), String::new())
        );
    }

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let running = "4242 (moat) S 1 4242 4242 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 8 0 987654 \
                       123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(running),
            Some(ProcStat {
                state: 'S',
                start_ticks: 987654
            })
        );
        // A zombie keeps its start time; the command name may hold spaces and parentheses.
        let zombie = "77 (a) b (c)) Z 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 5555 0 0 \
                      18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(zombie),
            Some(ProcStat {
                state: 'Z',
                start_ticks: 5555
            })
        );
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
        assert_eq!(
            parse_stat("1 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 nan"),
            None
        );
    }

    #[test]
    fn liveness_decisions() {
        let owner = Owner {
            host: "h".into(),
            pid: 10,
            start_ticks: 500,
        };
        let stat = |state, start_ticks| Some(ProcStat { state, start_ticks });
        assert!(owner_alive(&owner, "h", stat('S', 500)));
        assert!(owner_alive(&owner, "h", stat('R', 500)));
        assert!(owner_alive(&owner, "h", stat('D', 500)));
        // Gone, a zombie (kill -9, not yet reaped), dead, or the pid reused by another process.
        assert!(!owner_alive(&owner, "h", None));
        assert!(!owner_alive(&owner, "h", stat('Z', 500)));
        assert!(!owner_alive(&owner, "h", stat('X', 500)));
        assert!(!owner_alive(&owner, "h", stat('S', 501)));
        // A label without a start time proves nothing about the process now using the pid.
        let unknown = Owner {
            start_ticks: 0,
            ..owner.clone()
        };
        assert!(!owner_alive(&unknown, "h", stat('S', 500)));
        // Another host's resources are never judged from here.
        assert!(owner_alive(&owner, "other", None));
        assert!(owner_alive(&unknown, "other", stat('Z', 1)));
    }

    #[test]
    fn older_attempts_are_picked_by_label() {
        let c = |id: &str, attempt: Option<&str>| {
            let mut l = HashMap::from([(LABEL_JOB.to_string(), "7".to_string())]);
            if let Some(a) = attempt {
                l.insert(LABEL_ATTEMPT.to_string(), a.to_string());
            }
            (id.to_string(), l)
        };
        let found = vec![
            c("first", Some("1")),
            c("second", Some("2")),
            c("third", Some("3")),
            c("unlabelled", None),
            c("garbled", Some("two")),
        ];
        assert_eq!(
            older_attempts(&found, 3),
            vec!["first", "second", "unlabelled", "garbled"]
        );
        assert_eq!(older_attempts(&found, 1), vec!["unlabelled", "garbled"]);
        assert!(older_attempts(&[], 5).is_empty());
        let job = JobRef {
            installation: "abc".into(),
            job_id: 7,
            attempt: 2,
        };
        assert_eq!(
            HashMap::<String, String>::from_iter(job.labels()),
            HashMap::from([
                (LABEL_INSTALLATION.to_string(), "abc".to_string()),
                (LABEL_JOB.to_string(), "7".to_string()),
                (LABEL_ATTEMPT.to_string(), "2".to_string()),
            ])
        );
    }

    #[test]
    fn owner_round_trip_and_liveness() {
        let me = Owner::current();
        assert!(me.start_ticks > 0);
        let parsed = Owner::parse(&me.label()).unwrap();
        assert_eq!(parsed, me);
        assert!(parsed.is_alive());
        let gone = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!gone.is_alive());
        let elsewhere = Owner {
            host: "another-host".into(),
            pid: 1,
            start_ticks: 1,
        };
        assert!(elsewhere.is_alive());
    }
}
