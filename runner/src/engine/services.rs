//! A stage's services: containers started beside it on the run's network, and the wait until
//! each is healthy or has its exposed ports open.

use super::container::add_job_labels;
use super::*;

impl Engine {
    pub(super) async fn start_service(
        &self,
        run: &RunHandle,
        stage: &PlannedStage,
        svc: &Service,
        job: Option<&docker::JobRef>,
        observer: &dyn Observer,
    ) -> Result<String, EngineError> {
        ensure_image(&self.docker, &svc.image).await?;
        let name = format!("moat-{}-{}-{}", run.run_id, stage.name, svc.name);
        let mut host = self.hardened_host_config(run, stage);
        // A service gets the stage's limits but none of its host mounts or workspace.
        host.mounts = None;
        host.privileged = Some(false);
        host.cap_add = Some(KEPT_CAPABILITIES.iter().map(|c| (*c).to_string()).collect());
        let mut body = ContainerCreateBody {
            image: Some(svc.image.clone()),
            cmd: (!svc.command.is_empty()).then(|| svc.command.clone()),
            env: Some(svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            hostname: Some(svc.name.clone()),
            labels: Some(labels(&self.owner, &run.run_id, Some(&stage.name))),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    run.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![svc.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        add_job_labels(&mut body, job);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove_container(&created.id).await;
            return Err(EngineError::Workspace(format!(
                "service \"{}\" could not start: {}",
                svc.name,
                server_message(&e)
            )));
        }
        observer.log_line(
            stage,
            StreamKind::System,
            &format!("service {} started ({})", svc.name, svc.image),
        );
        if let Err(e) = self.wait_service_ready(run, &created.id, svc).await {
            self.remove_container(&created.id).await;
            return Err(e);
        }
        Ok(created.id)
    }

    /// Waits until a service is usable: healthy when its image has a health check, otherwise
    /// accepting connections on its exposed TCP ports (as GitLab's runner does). A service that
    /// exits is an error.
    pub(super) async fn wait_service_ready(
        &self,
        run: &RunHandle,
        id: &str,
        svc: &Service,
    ) -> Result<(), EngineError> {
        let deadline = Instant::now() + self.config.service_ready_timeout;
        let image = self.docker.inspect_image(&svc.image).await?;
        let config = image.config.unwrap_or_default();
        let has_health = config
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.as_ref())
            .is_some_and(|t| t.first().is_some_and(|f| f != "NONE"));
        let ports: Vec<u16> = config
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.strip_suffix("/tcp").and_then(|n| n.parse().ok()))
            .collect();
        loop {
            let info = self.docker.inspect_container(id, None).await?;
            let state = info.state.unwrap_or_default();
            if state.running != Some(true) {
                return Err(EngineError::Workspace(format!(
                    "service \"{}\" exited with code {} before the stage started",
                    svc.name,
                    state.exit_code.unwrap_or(-1)
                )));
            }
            let ready = if has_health {
                state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY)
            } else if ports.is_empty() {
                true
            } else {
                let ip = info
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|n| n.get(&run.network).cloned())
                    .and_then(|e| e.ip_address)
                    .unwrap_or_default();
                let mut all = !ip.is_empty();
                for port in &ports {
                    let addr = format!("{ip}:{port}");
                    let ok = tokio::time::timeout(
                        Duration::from_millis(300),
                        tokio::net::TcpStream::connect(&addr),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok());
                    all &= ok;
                }
                all
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // The engine may be remote and the ports unreachable from here; the stage gets
                // its chance anyway, as the service is running.
                if has_health {
                    return Err(EngineError::Workspace(format!(
                        "service \"{}\" did not become healthy within {}",
                        svc.name,
                        fmt_duration(self.config.service_ready_timeout)
                    )));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
