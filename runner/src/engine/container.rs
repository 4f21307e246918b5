//! A stage's own container: its hardened host configuration, creation, secret files, and the
//! supervision loop that streams its output and enforces its timeouts and cancellation.

use super::output::LogSink;
use super::*;

/// Marks a stage's container (or one of its services) as the job attempt's, so that a later
/// attempt finds it (see [`docker::remove_older_attempts`]).
pub(super) fn add_job_labels(body: &mut ContainerCreateBody, job: Option<&docker::JobRef>) {
    if let Some(job) = job {
        body.labels
            .get_or_insert_with(HashMap::new)
            .extend(job.labels());
    }
}

pub(super) enum Ending {
    Exited(i64),
    Cancelled,
    TimedOut(Duration),
    Silent(Duration),
}

impl Engine {
    pub(super) fn hardened_host_config(&self, run: &RunHandle, stage: &PlannedStage) -> HostConfig {
        let r = stage.resources;
        let memory = r.memory.unwrap_or(self.config.default_memory) as i64;
        let cpus = r.cpus.unwrap_or(self.config.default_cpus);
        let mut mounts = vec![self.workspace_mount(run)];
        // Host paths reach this point only when the administrator's policy allowed them at
        // validation.
        for m in &stage.mounts {
            mounts.push(Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            });
        }
        HostConfig {
            network_mode: Some(run.network.clone()),
            mounts: Some(mounts),
            privileged: Some(stage.privileged),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: (!stage.privileged)
                .then(|| KEPT_CAPABILITIES.iter().map(|c| (*c).to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((cpus * 1e9) as i64),
            pids_limit: Some(r.pids.unwrap_or(self.config.default_pids) as i64),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "32m".to_string()),
                    ("max-file".to_string(), "1".to_string()),
                ])),
            }),
            ..Default::default()
        }
    }

    pub(super) async fn remove_container(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!(container.id = %id, error = %e, "could not remove container"),
        }
    }

    /// The create request of a stage container: hardened host settings, the run's network,
    /// the workspace volume, the stage's script and variables. Public so benchmarks can run
    /// exactly the same containers through a plain API loop.
    pub fn stage_container_body(
        &self,
        run: &RunHandle,
        stage: &PlannedStage,
        image: &str,
    ) -> ContainerCreateBody {
        let mut env: Vec<String> = vec!["CI=true".to_string()];
        env.extend(stage.env.iter().map(|(k, v)| format!("{k}={v}")));
        let (entrypoint, cmd) = if stage.commands.is_empty() {
            (None, None)
        } else {
            (
                Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
                Some(vec![stage_script(&stage.commands)]),
            )
        };
        let hostname: String = stage.name.chars().take(63).collect();
        ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint,
            cmd,
            env: Some(env),
            working_dir: Some(WORKSPACE.to_string()),
            hostname: Some(hostname),
            labels: Some(labels(&self.owner, &run.run_id, Some(&stage.name))),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(self.hardened_host_config(run, stage)),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    run.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![stage.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_container(
        &self,
        run: &RunHandle,
        stage: &PlannedStage,
        image: &str,
        secrets: &[(String, String)],
        job: Option<&docker::JobRef>,
        masker: &Masker,
        observer: &dyn Observer,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let name = format!("moat-{}-{}", run.run_id, stage.name);
        let mut body = self.stage_container_body(run, stage, image);
        if let Some(env) = body.env.as_mut() {
            env.extend(secrets.iter().map(|(k, v)| format!("{k}={v}")));
        }
        add_job_labels(&mut body, job);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await?;
        let id = created.id;
        if !secrets.is_empty()
            && let Err(e) = self.write_secret_files(&id, secrets).await
        {
            self.remove_container(&id).await;
            return Err(e);
        }
        let outcome = self.supervise(&id, stage, masker, observer, cancel).await;
        let oom = match &outcome {
            Ok(Ending::Exited(_)) => self
                .docker
                .inspect_container(&id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.oom_killed)
                .unwrap_or(false),
            _ => false,
        };
        self.remove_container(&id).await;
        let limit = stage.resources.memory.unwrap_or(self.config.default_memory);
        let (status, code, reason) = match outcome? {
            Ending::Exited(code) if oom => (
                StageStatus::Failed,
                Some(code),
                Some(format!("killed: out of memory (limit {})", fmt_size(limit))),
            ),
            Ending::Exited(0) => (StageStatus::Passed, Some(0), None),
            Ending::Exited(code) => (
                StageStatus::Failed,
                Some(code),
                Some(format!("exit code {code}")),
            ),
            Ending::Cancelled => (StageStatus::Cancelled, None, Some("cancelled".to_string())),
            Ending::TimedOut(d) => (
                StageStatus::Failed,
                None,
                Some(format!("timed out after {}", fmt_duration(d))),
            ),
            Ending::Silent(d) => (
                StageStatus::Failed,
                None,
                Some(format!("no output for {}; killed", fmt_duration(d))),
            ),
        };
        if let Some(r) = &reason
            && status != StageStatus::Cancelled
        {
            observer.log_line(stage, StreamKind::System, r);
        }
        Ok(Outcome::new(status, code, reason))
    }

    /// Starts the container and follows it to its end: streams its output, enforces the
    /// wall-clock and no-output timeouts, and reacts to cancellation.
    pub(super) async fn supervise(
        &self,
        id: &str,
        stage: &PlannedStage,
        masker: &Masker,
        observer: &dyn Observer,
        cancel: &CancellationToken,
    ) -> Result<Ending, EngineError> {
        self.docker.start_container(id, None).await.map_err(|e| {
            EngineError::Workspace(format!(
                "the container could not start: {}",
                server_message(&e)
            ))
        })?;
        let timeout = stage.timeout.unwrap_or(self.config.default_timeout);
        let silence = stage
            .no_output_timeout
            .unwrap_or(self.config.default_no_output_timeout);
        let mut logs = self.docker.logs(
            id,
            Some(
                LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let mut wait = Box::pin(self.docker.wait_container(id, None));
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_output = tokio::time::Instant::now();
        let mut sink = LogSink::new(&self.config, stage, masker, observer);
        let mut logs_open = true;
        let mut ending: Option<Ending> = None;
        let exit_code: i64 = loop {
            let quiet = tokio::time::sleep_until(last_output + silence);
            tokio::select! {
                _ = cancel.cancelled(), if ending.is_none() => {
                    ending = Some(Ending::Cancelled);
                    self.kill(id).await;
                }
                _ = &mut deadline, if ending.is_none() => {
                    ending = Some(Ending::TimedOut(timeout));
                    self.kill(id).await;
                }
                _ = quiet, if ending.is_none() => {
                    ending = Some(Ending::Silent(silence));
                    self.kill(id).await;
                }
                item = logs.next(), if logs_open => match item {
                    Some(Ok(out)) => {
                        last_output = tokio::time::Instant::now();
                        sink.push(&out);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(stage.name = %stage.name, error = %e, "log stream failed");
                        logs_open = false;
                    }
                    None => logs_open = false,
                },
                w = wait.next() => break match w {
                    Some(Ok(r)) => r.status_code,
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                    Some(Err(e)) => return Err(e.into()),
                    None => -1,
                },
            }
        };
        // The container has stopped: whatever it wrote is in the log stream already.
        if logs_open {
            let drain = async {
                while let Some(Ok(out)) = logs.next().await {
                    sink.push(&out);
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        }
        sink.finish();
        Ok(ending.unwrap_or(Ending::Exited(exit_code)))
    }

    /// Writes `/run/secrets/NAME` (mode 0400) into the created container's own filesystem
    /// layer: never into an image, gone with the container.
    pub(super) async fn write_secret_files(
        &self,
        id: &str,
        secrets: &[(String, String)],
    ) -> Result<(), EngineError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (dir, mode) in [("run/", 0o755), ("run/secrets/", 0o755)] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode);
            h.set_size(0);
            h.set_cksum();
            tar.append_data(&mut h, dir, std::io::empty())
                .map_err(|e| EngineError::Workspace(e.to_string()))?;
        }
        for (name, value) in secrets {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o400);
            h.set_size(value.len() as u64);
            h.set_cksum();
            tar.append_data(&mut h, format!("run/secrets/{name}"), value.as_bytes())
                .map_err(|e| EngineError::Workspace(e.to_string()))?;
        }
        let archive = tar
            .into_inner()
            .map_err(|e| EngineError::Workspace(e.to_string()))?;
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(|e| {
                EngineError::Workspace(format!(
                    "cannot place the stage's secret files: {}",
                    server_message(&e)
                ))
            })
    }

    pub(super) async fn kill(&self, id: &str) {
        let opts = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        if let Err(e) = self.docker.kill_container(id, Some(opts)).await {
            // 409: it already stopped on its own; nothing to kill.
            tracing::debug!(container.id = %id, error = %e, "kill failed");
        }
    }
}
