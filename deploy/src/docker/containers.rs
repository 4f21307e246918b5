//! An environment's containers on the Docker host: their names and labels, the sandboxed
//! create request, starting one (image present, network present, a stale container of the
//! same name replaced unless it serves), reading its published port back, stopping and
//! removing, listing what an environment has ([`Found`]), and removing an environment.
//!
//! It must not decide which colour to start or remove (`layout` does) or route traffic.

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HostConfig,
    HostConfigLogConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use super::image::{self, ImageRef};
use super::layout::Found;
use super::{
    App, Colour, DockerError, Environment, LABEL_COLOUR, LABEL_ENVIRONMENT, LABEL_RELEASE,
    LABEL_ROLE, ReleaseRef, Role, is_not_found, loopback,
};
use crate::proxy::EnvName;

/// `moat-<env>-<colour>`: one container per colour and environment.
pub fn container_name(env: &EnvName, colour: Colour) -> String {
    format!("moat-{env}-{colour}")
}

/// `moat-env-<env>`: the environment's own network.
pub fn network_name(env: &EnvName) -> String {
    format!("moat-env-{env}")
}

/// The container port as the engine names it.
fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

/// The create request of a colour's container: the release's image by digest, the app's
/// variables, its port published on 127.0.0.1 at an ephemeral host port, every capability
/// dropped, no new privileges, memory (no swap), CPU and PID limits, bounded logs, the
/// environment's network, and the labels that find it again. Only API 1.41 fields.
pub(crate) fn container_body(
    env: &Environment,
    release: &ReleaseRef,
    image: &ImageRef,
    app: &App,
    colour: Colour,
    role: Role,
) -> ContainerCreateBody {
    let s = &app.sandbox;
    let network = network_name(&env.name);
    let labels = HashMap::from([
        (LABEL_ENVIRONMENT.to_string(), env.name.to_string()),
        (LABEL_RELEASE.to_string(), release.id.clone()),
        (LABEL_COLOUR.to_string(), colour.as_str().to_string()),
        (LABEL_ROLE.to_string(), role.as_str().to_string()),
    ]);
    let port_bindings = HashMap::from([(
        port_key(app.port),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".to_string()),
            host_port: Some(String::new()),
        }]),
    )]);
    let memory = i64::try_from(s.memory).unwrap_or(i64::MAX);
    ContainerCreateBody {
        image: Some(image.as_str().to_string()),
        env: Some(app.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: Some(vec![port_key(app.port)]),
        labels: Some(labels),
        hostname: Some(format!("{}-{colour}", env.name).chars().take(63).collect()),
        host_config: Some(HostConfig {
            network_mode: Some(network.clone()),
            port_bindings: Some(port_bindings),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((s.cpus * 1e9) as i64),
            pids_limit: Some(i64::try_from(s.pids).unwrap_or(i64::MAX)),
            init: Some(s.init),
            readonly_rootfs: Some(s.read_only_rootfs),
            tmpfs: s.read_only_rootfs.then(|| {
                HashMap::from([("/tmp".to_string(), "rw,noexec,nosuid,size=64m".to_string())])
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "16m".to_string()),
                    ("max-file".to_string(), "2".to_string()),
                ])),
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
        }),
        ..Default::default()
    }
}

/// A started colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub id: String,
    pub name: String,
    /// Where the proxy reaches it.
    pub upstream: SocketAddr,
}

/// Starts `colour` of `env` from `release`'s image: the image made present (pulled by digest
/// if missing), the network created if missing, a container of the same name removed first
/// unless it is what the proxy routes to (`upstream`), then created, started and its host port
/// read back. A container that was created but did not come up is removed again.
pub(crate) async fn start(
    docker: &Docker,
    env: &Environment,
    release: &ReleaseRef,
    app: &App,
    colour: Colour,
    role: Role,
    upstream: Option<SocketAddr>,
) -> Result<Started, DockerError> {
    let image = ImageRef::parse(&release.image)?;
    image::ensure(docker, &image).await?;
    ensure_network(docker, &env.name).await?;
    let name = container_name(&env.name, colour);
    if let Some(stale) = inspect(docker, &name).await? {
        if stale.serves(upstream) {
            return Err(DockerError::Refused(format!(
                "container {name} serves environment {} now; not replacing it",
                env.name
            )));
        }
        tracing::info!(environment.name = %env.name, container.name = %name,
            release.id = stale.release.as_deref().unwrap_or("?"), "removing a stale container");
        stop_and_remove(docker, &name, app.sandbox.stop_timeout).await?;
    }
    let body = container_body(env, release, &image, app, colour, role);
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| DockerError::engine(format!("creating container {name}"), &e))?;
    let up = async {
        docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| DockerError::engine(format!("starting container {name}"), &e))?;
        let info = docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| DockerError::engine(format!("inspecting container {name}"), &e))?;
        let ports = info.network_settings.and_then(|n| n.ports);
        published_port(ports.as_ref(), app.port).ok_or_else(|| DockerError::Engine {
            doing: format!("starting container {name}"),
            detail: format!(
                "port {} is not published on 127.0.0.1 (has the container exited?)",
                app.port
            ),
        })
    };
    match up.await {
        Ok(port) => Ok(Started {
            id: created.id,
            name,
            upstream: loopback(port),
        }),
        Err(e) => {
            let _ = remove(docker, &created.id).await;
            Err(e)
        }
    }
}

/// The host port 127.0.0.1 publishes `port` on, from an inspect's port map.
fn published_port(
    ports: Option<&HashMap<String, Option<Vec<PortBinding>>>>,
    port: u16,
) -> Option<u16> {
    ports?
        .get(&port_key(port))?
        .as_ref()?
        .iter()
        .filter(|b| b.host_ip.as_deref() == Some("127.0.0.1"))
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

/// Creates the environment's network unless it exists (a plain bridge: the application may
/// reach out; its port is only published on loopback).
pub(crate) async fn ensure_network(docker: &Docker, env: &EnvName) -> Result<(), DockerError> {
    let name = network_name(env);
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(DockerError::engine(
                format!("inspecting network {name}"),
                &e,
            ));
        }
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_string()),
        labels: Some(HashMap::from([(
            LABEL_ENVIRONMENT.to_string(),
            env.to_string(),
        )])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(()),
        // Created meanwhile by another deploy of the same environment.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(DockerError::engine(format!("creating network {name}"), &e)),
    }
}

/// Every container of `env`, running or not.
pub(crate) async fn list(docker: &Docker, env: &EnvName) -> Result<Vec<Found>, DockerError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_ENVIRONMENT}={env}")],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let listed = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| DockerError::engine(format!("listing the containers of {env}"), &e))?;
    Ok(listed.into_iter().filter_map(found).collect())
}

/// What a listed container is; `None` without an id.
fn found(c: ContainerSummary) -> Option<Found> {
    let labels = c.labels.unwrap_or_default();
    let name = c
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let port = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.ip.as_deref() == Some("127.0.0.1"))
        .find_map(|p| p.public_port);
    Some(Found {
        id: c.id?,
        name,
        colour: labels.get(LABEL_COLOUR).and_then(|c| Colour::parse(c)),
        release: labels.get(LABEL_RELEASE).cloned(),
        role: labels.get(LABEL_ROLE).and_then(|r| Role::parse(r)),
        running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
        port,
    })
}

/// One container by name or id; `None` when there is none.
pub(crate) async fn inspect(docker: &Docker, name: &str) -> Result<Option<Found>, DockerError> {
    let info = match docker.inspect_container(name, None).await {
        Ok(info) => info,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            return Err(DockerError::engine(
                format!("inspecting container {name}"),
                &e,
            ));
        }
    };
    let labels = info
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let ports = info.network_settings.and_then(|n| n.ports);
    let port = ports.as_ref().and_then(|ports| {
        ports
            .values()
            .flatten()
            .flatten()
            .filter(|b| b.host_ip.as_deref() == Some("127.0.0.1"))
            .find_map(|b| b.host_port.as_deref()?.parse().ok())
    });
    Ok(Some(Found {
        id: info.id.unwrap_or_default(),
        name: info
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        colour: labels.get(LABEL_COLOUR).and_then(|c| Colour::parse(c)),
        release: labels.get(LABEL_RELEASE).cloned(),
        role: labels.get(LABEL_ROLE).and_then(|r| Role::parse(r)),
        running,
        port,
    }))
}

/// Why a container does not run, in words: `exited with code 1`, `killed: out of memory`.
/// `None` when it runs (or cannot be inspected).
pub(crate) async fn why_not_running(docker: &Docker, name: &str) -> Option<String> {
    let info = docker.inspect_container(name, None).await;
    let state = match info {
        Ok(info) => info.state?,
        Err(e) if is_not_found(&e) => return Some("the container is gone".into()),
        Err(_) => return None,
    };
    if state.running == Some(true) {
        return None;
    }
    if state.oom_killed == Some(true) {
        return Some("the container was killed: out of memory".into());
    }
    Some(match state.exit_code {
        Some(code) => format!("the container exited with code {code}"),
        None => "the container does not run".into(),
    })
}

/// Stops a container (SIGTERM, then SIGKILL after `timeout`) and removes it. A container that
/// is not there is fine. Its image stays.
pub(crate) async fn stop_and_remove(
    docker: &Docker,
    name: &str,
    timeout: std::time::Duration,
) -> Result<(), DockerError> {
    let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
    let options = StopContainerOptionsBuilder::default().t(t).build();
    match docker.stop_container(name, Some(options)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // 304: it was not running.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => {
            return Err(DockerError::engine(
                format!("stopping container {name}"),
                &e,
            ));
        }
    }
    remove(docker, name).await
}

/// Force-removes a container (and its anonymous volumes).
async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // Already being removed.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("already in progress") => Ok(()),
        Err(e) => Err(DockerError::engine(
            format!("removing container {name}"),
            &e,
        )),
    }
}

/// Removes every container of `env` and its network (`moat env rm`; the tests' clean-up).
/// Images stay. Returns how many containers went.
pub async fn remove_environment(docker: &Docker, env: &EnvName) -> Result<usize, DockerError> {
    let found = list(docker, env).await?;
    for f in &found {
        remove(docker, &f.id).await?;
    }
    let network = network_name(env);
    match docker.remove_network(&network).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(DockerError::engine(
                format!("removing network {network}"),
                &e,
            ));
        }
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Sandbox;

    #[test]
    fn a_colour_is_sandboxed_published_on_loopback_and_labelled() {
        let env = Environment {
            name: EnvName::new("prod").unwrap(),
            listen: "0.0.0.0:443".parse().unwrap(),
        };
        let release = ReleaseRef {
            id: "42".into(),
            image: format!("app@sha256:{}", "a".repeat(64)),
        };
        let image = ImageRef::parse(&release.image).unwrap();
        let app = App {
            port: 8080,
            env: vec![("TOKEN".into(), "s3cret".into())],
            health_path: "/healthz".into(),
            sandbox: Sandbox::default(),
        };
        let body = container_body(&env, &release, &image, &app, Colour::Green, Role::Candidate);
        assert_eq!(body.image.as_deref(), Some(release.image.as_str()));
        assert_eq!(body.env, Some(vec!["TOKEN=s3cret".to_string()]));
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_ENVIRONMENT], "prod");
        assert_eq!(labels[LABEL_RELEASE], "42");
        assert_eq!(labels[LABEL_COLOUR], "green");
        assert_eq!(labels[LABEL_ROLE], "candidate");
        assert!(!labels.contains_key("moat.managed"), "outlives the run");
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.privileged, Some(false));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.memory, Some(512 << 20));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.pids_limit, Some(512));
        assert_eq!(host.network_mode.as_deref(), Some("moat-env-prod"));
        assert_eq!(host.mounts, None);
        assert_eq!(host.binds, None);
        let bindings = host.port_bindings.unwrap();
        let b = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b[0].host_port.as_deref(), Some(""), "ephemeral");
        assert_eq!(host.tmpfs, None);
        let debug = format!("{app:?}");
        assert!(
            debug.contains("TOKEN") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn the_published_port_is_read_from_the_loopback_binding() {
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let ports = HashMap::from([(
            "8080/tcp".to_string(),
            Some(vec![binding("0.0.0.0", "1"), binding("127.0.0.1", "49153")]),
        )]);
        assert_eq!(published_port(Some(&ports), 8080), Some(49153));
        assert_eq!(published_port(Some(&ports), 80), None);
        assert_eq!(published_port(None, 8080), None);
    }
}
