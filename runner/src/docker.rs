//! The Docker engine connection and the resources Moat owns on it: labels that mark every
//! container, network and volume with its run and its owning process, removal of a run's
//! resources, removal of leftovers whose owner is gone, and image availability (pull on miss).

use std::collections::HashMap;

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

    /// Whether the owning process still runs. Resources of other hosts are never judged dead:
    /// another machine may share this engine.
    fn is_alive(&self) -> bool {
        if self.host != hostname() {
            return true;
        }
        match process_start_ticks(self.pid) {
            Some(ticks) => self.start_ticks == 0 || ticks == self.start_ticks,
            None => false,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Field 22 of `/proc/PID/stat`: the process start time in clock ticks since boot.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')'
    // are well-formed.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
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
