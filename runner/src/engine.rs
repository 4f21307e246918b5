//! The execution engine: one run's network and workspace volume, and one stage at a time in a
//! hardened container (with its services beside it). `moat run`, the embedded runner of
//! `moat up` and remote runners all execute stages through [`Engine::run_stage`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthStatusEnum, HostConfig, HostConfigLogConfig,
    Mount, MountType, NetworkCreateRequest, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use moat_pipelines::{PlannedStage, Service, StageKind};
use tokio_util::sync::CancellationToken;

use crate::docker::{self, Owner, ensure_image, is_not_found, labels, server_message};
use crate::error::EngineError;
use crate::logs::{LineSplitter, StreamKind, fmt_duration, fmt_size};
use crate::mask::{MaskStream, Masker};

/// The layer-less image whose never-started containers carry workspaces in and out.
pub const SEED_IMAGE: &str = "moat/seed:1";

/// Where the workspace volume is mounted in every stage container.
pub const WORKSPACE: &str = "/workspace";

/// Capabilities stage and service containers keep; everything else is dropped. This is enough
/// for package managers (which switch users and fix ownership) but excludes raw sockets, mknod,
/// chroot, audit and capability juggling.
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// Limits and defaults applied when a stage does not say otherwise.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub default_memory: u64,
    pub default_cpus: f64,
    pub default_pids: u64,
    pub default_timeout: Duration,
    pub default_no_output_timeout: Duration,
    /// Bytes of output kept per stage; the rest is discarded with a notice.
    pub log_limit: usize,
    pub max_line: usize,
    /// How long a service may take to become healthy or to open its exposed ports.
    pub service_ready_timeout: Duration,
    /// The vulnerability database directory scan stages use (OSV records, see `moat db
    /// update`).
    pub vuln_db: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_memory: 2 << 30,
            default_cpus: 2.0,
            default_pids: 1024,
            default_timeout: Duration::from_secs(60 * 60),
            default_no_output_timeout: Duration::from_secs(15 * 60),
            log_limit: 16 << 20,
            max_line: 64 << 10,
            service_ready_timeout: Duration::from_secs(60),
            vuln_db: None,
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageStatus {
    Passed,
    Failed,
    /// Not run: a stage it needs did not pass, `when:` excluded it, or it was not selected.
    Skipped,
    Cancelled,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Passed => "passed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageResult {
    pub status: StageStatus,
    pub exit_code: Option<i64>,
    /// Why it failed or was skipped, in words for the user.
    pub reason: Option<String>,
    pub duration: Duration,
    /// What the stage produced for later stages and the record: a build's image (id, tag,
    /// digest), a scan's verdict and findings. `Null` for most stages.
    pub outputs: serde_json::Value,
}

/// What a stage gets besides its plan. Its `Debug` shows secret names only.
#[derive(Clone, Default)]
pub struct StageInput {
    /// The secrets granted to it, as (name, value).
    pub secrets: Vec<(String, String)>,
    /// Values masked in its output but never given to it: the secrets granted to the run's
    /// other stages, which may reach this one through the workspace.
    pub mask: Vec<String>,
    /// The outputs of the stages it needs (transitively), as (stage name, outputs).
    pub upstream: Vec<(String, serde_json::Value)>,
    /// The coordinator job attempt this stage runs as (`None` for `moat run`): its containers
    /// are labelled with it (see [`docker::JobRef`]).
    pub job: Option<docker::JobRef>,
}

impl std::fmt::Debug for StageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("StageInput")
            .field("secrets", &names)
            .field("mask", &self.mask.len())
            .field("upstream", &self.upstream)
            .field("job", &self.job)
            .finish()
    }
}

/// How a stage ended, before timing is added.
pub(crate) struct Outcome {
    pub status: StageStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub outputs: serde_json::Value,
}

impl Outcome {
    pub fn new(status: StageStatus, exit_code: Option<i64>, reason: Option<String>) -> Self {
        Outcome {
            status,
            exit_code,
            reason,
            outputs: serde_json::Value::Null,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(StageStatus::Failed, None, Some(reason.into()))
    }
}

impl StageResult {
    pub fn skipped(reason: impl Into<String>) -> Self {
        StageResult {
            status: StageStatus::Skipped,
            exit_code: None,
            reason: Some(reason.into()),
            duration: Duration::ZERO,
            outputs: serde_json::Value::Null,
        }
    }
}

/// Receives what happens during a run. Called from the engine's tasks; keep it quick.
pub trait Observer: Send + Sync {
    fn stage_started(&self, _stage: &PlannedStage) {}
    fn log_line(&self, stage: &PlannedStage, stream: StreamKind, line: &str);
    fn stage_finished(&self, _stage: &PlannedStage, _result: &StageResult) {}
}

/// The Docker resources of one run: its network and its workspace volume.
#[derive(Debug, Clone)]
pub struct RunHandle {
    pub run_id: String,
    pub network: String,
    pub volume: String,
}

pub struct Engine {
    docker: Docker,
    config: EngineConfig,
    owner: Owner,
    /// Serialises creating a run's network: the engine accepts two networks with one name, and
    /// parallel jobs of a run would otherwise both create it.
    resources: tokio::sync::Mutex<()>,
    seed: tokio::sync::OnceCell<()>,
    /// Loaded on first use, then shared by every scan.
    vuln_db: tokio::sync::OnceCell<Result<std::sync::Arc<crate::vuln::db::Database>, String>>,
}

/// Single-quotes a string for `sh`, so a command can be echoed verbatim before it runs.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script a stage runs: each command echoed with `+ ` and then executed, stopping at the
/// first failure. It runs inside the container only; nothing is interpreted on the host.
pub fn stage_script(commands: &[String]) -> String {
    let mut script = String::from("set -e\n");
    for c in commands {
        script.push_str("printf '+ %s\\n' ");
        script.push_str(&sh_quote(c));
        script.push('\n');
        script.push_str(c);
        script.push('\n');
    }
    script
}

/// Marks a stage's container (or one of its services) as the job attempt's, so that a later
/// attempt finds it (see [`docker::remove_older_attempts`]).
fn add_job_labels(body: &mut ContainerCreateBody, job: Option<&docker::JobRef>) {
    if let Some(job) = job {
        body.labels
            .get_or_insert_with(HashMap::new)
            .extend(job.labels());
    }
}

enum Ending {
    Exited(i64),
    Cancelled,
    TimedOut(Duration),
    Silent(Duration),
}

impl Engine {
    pub fn new(docker: Docker, config: EngineConfig) -> Self {
        Engine {
            docker,
            config,
            owner: Owner::current(),
            resources: tokio::sync::Mutex::new(()),
            seed: tokio::sync::OnceCell::new(),
            vuln_db: tokio::sync::OnceCell::new(),
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The vulnerability database, loaded once; the error says how to get one.
    pub async fn vuln_db(&self) -> Result<std::sync::Arc<crate::vuln::db::Database>, String> {
        self.vuln_db
            .get_or_init(|| async {
                let Some(dir) = self.config.vuln_db.clone() else {
                    return Err("no vulnerability database is configured (--vuln-db DIR)".to_string());
                };
                let shown = dir.display().to_string();
                tokio::task::spawn_blocking(move || crate::vuln::db::Database::load(&dir))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(std::sync::Arc::new)
                    .map_err(|e| {
                        format!(
                            "no usable vulnerability database at {shown} ({e}); run `moat db update --db {shown}`"
                        )
                    })
            })
            .await
            .clone()
    }

    /// Creates the run's network and workspace volume and fills the volume with `workspace`
    /// (a tar archive). `seed_image` is any image present locally; a container of it is created,
    /// never started, only to receive the archive.
    pub async fn prepare_run(
        &self,
        run_id: &str,
        workspace: Vec<u8>,
    ) -> Result<RunHandle, EngineError> {
        let handle = self.ensure_run_resources(run_id).await?;
        self.upload_workspace(&handle, workspace).await?;
        Ok(handle)
    }

    /// `moat/seed:1`: an image without layers, built locally once (no registry involved). Its
    /// containers are never started; they only give the engine's archive API a handle on a
    /// run's workspace volume.
    pub async fn ensure_seed_image(&self) -> Result<(), EngineError> {
        self.seed
            .get_or_try_init(|| async {
                if self.docker.inspect_image(SEED_IMAGE).await.is_ok() {
                    return Ok(());
                }
                let dockerfile = b"FROM scratch\nLABEL moat.seed=\"1\"\n";
                let mut tar = tar::Builder::new(Vec::new());
                let mut h = tar::Header::new_gnu();
                h.set_size(dockerfile.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, "Dockerfile", &dockerfile[..])
                    .map_err(|e| EngineError::Workspace(e.to_string()))?;
                let context = tar
                    .into_inner()
                    .map_err(|e| EngineError::Workspace(e.to_string()))?;
                let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
                    .dockerfile("Dockerfile")
                    .t(SEED_IMAGE)
                    .rm(true)
                    .build();
                let mut stream = self.docker.build_image(
                    options,
                    None,
                    Some(bollard::body_full(context.into())),
                );
                while let Some(item) = stream.next().await {
                    let info = item?;
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        return Err(EngineError::Workspace(format!(
                            "cannot build the seed image: {e}"
                        )));
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The run's network and workspace volume, created when missing (runners call this for
    /// every job of a run; the first call creates them).
    pub async fn ensure_run_resources(&self, run_id: &str) -> Result<RunHandle, EngineError> {
        let handle = RunHandle {
            run_id: run_id.to_string(),
            network: format!("moat-{run_id}"),
            volume: format!("moat-{run_id}-workspace"),
        };
        let l = labels(&self.owner, run_id, None);
        let _guard = self.resources.lock().await;
        match self.docker.inspect_network(&handle.network, None).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                self.docker
                    .create_network(NetworkCreateRequest {
                        name: handle.network.clone(),
                        driver: Some("bridge".to_string()),
                        labels: Some(l.clone()),
                        ..Default::default()
                    })
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        // Creating an existing volume is a no-op in the engine.
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(handle.volume.clone()),
                labels: Some(l),
                ..Default::default()
            })
            .await?;
        Ok(handle)
    }

    /// Whether the run's workspace volume exists on this engine.
    pub async fn has_workspace(&self, run_id: &str) -> bool {
        self.docker
            .inspect_volume(&format!("moat-{run_id}-workspace"))
            .await
            .is_ok()
    }

    /// A container of `seed_image` with the workspace mounted, created but never started: the
    /// engine's archive API reads and writes volumes through it.
    async fn seed_container(&self, run: &RunHandle) -> Result<String, EngineError> {
        self.ensure_seed_image().await?;
        let seed = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                ContainerCreateBody {
                    image: Some(SEED_IMAGE.to_string()),
                    entrypoint: Some(vec!["/bin/true".to_string()]),
                    labels: Some(labels(&self.owner, &run.run_id, None)),
                    network_disabled: Some(true),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".to_string()),
                        mounts: Some(vec![self.workspace_mount(run)]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await?;
        Ok(seed.id)
    }

    /// Extracts a tar archive into the workspace; existing files are overwritten, others kept.
    pub async fn upload_workspace(
        &self,
        run: &RunHandle,
        archive: Vec<u8>,
    ) -> Result<(), EngineError> {
        let seed = self.seed_container(run).await?;
        let upload = self
            .docker
            .upload_to_container(
                &seed,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(WORKSPACE)
                        .build(),
                ),
                bollard::body_full(archive.into()),
            )
            .await;
        self.remove_container(&seed).await;
        upload.map_err(|e| {
            EngineError::Workspace(format!(
                "cannot copy the workspace into the run's volume: {}",
                server_message(&e)
            ))
        })
    }

    /// The workspace as a tar archive whose entries are relative to the workspace root, ready
    /// to be uploaded into another run volume.
    pub async fn export_workspace(&self, run: &RunHandle) -> Result<Vec<u8>, EngineError> {
        let seed = self.seed_container(run).await?;
        let mut stream = self.docker.download_from_container(
            &seed,
            Some(
                bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
                    .path(&format!("{WORKSPACE}/."))
                    .build(),
            ),
        );
        let mut tar = Vec::new();
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => tar.extend_from_slice(&bytes),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.remove_container(&seed).await;
        match failure {
            Some(e) => Err(EngineError::Workspace(format!(
                "cannot read the workspace: {}",
                server_message(&e)
            ))),
            None => Ok(tar),
        }
    }

    /// Removes everything of the run: containers (of any stage), its network and its volume.
    pub async fn finish_run(&self, run_id: &str) -> Result<usize, EngineError> {
        docker::remove_labelled(&self.docker, &format!("{}={run_id}", docker::LABEL_RUN)).await
    }

    fn workspace_mount(&self, run: &RunHandle) -> Mount {
        Mount {
            target: Some(WORKSPACE.to_string()),
            source: Some(run.volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }
    }

    fn hardened_host_config(&self, run: &RunHandle, stage: &PlannedStage) -> HostConfig {
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

    async fn remove_container(&self, id: &str) {
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

    /// Runs one stage to its end and reports how it ended. Never panics on engine errors: they
    /// become a failed result with the reason.
    ///
    /// `input.secrets` are the values granted to this stage (name, value): they reach the
    /// container as environment variables and as files `/run/secrets/NAME` (mode 0400), and
    /// every line the stage prints — and every message about it — is masked for them and for
    /// `input.mask`.
    pub async fn run_stage(
        &self,
        run: &RunHandle,
        stage: &PlannedStage,
        input: &StageInput,
        observer: &dyn Observer,
        cancel: &CancellationToken,
    ) -> StageResult {
        let started = Instant::now();
        let masker = stage_masker(input);
        let masked = Masking {
            inner: observer,
            masker: &masker,
        };
        let observer: &dyn Observer = &masked;
        observer.stage_started(stage);
        let outcome = match self
            .run_stage_inner(run, stage, input, &masker, observer, cancel)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                observer.log_line(stage, StreamKind::System, &msg);
                Outcome::failed(msg)
            }
        };
        let status = outcome.status;
        let result = StageResult {
            status,
            exit_code: outcome.exit_code,
            reason: outcome.reason.map(|r| masker.mask_str(&r)),
            duration: started.elapsed(),
            outputs: outcome.outputs,
        };
        tracing::info!(
            run.id = %run.run_id,
            stage.name = %stage.name,
            stage.status = status.as_str(),
            duration_ms = result.duration.as_millis() as u64,
            "stage finished"
        );
        observer.stage_finished(stage, &result);
        result
    }

    async fn run_stage_inner(
        &self,
        run: &RunHandle,
        stage: &PlannedStage,
        input: &StageInput,
        masker: &Masker,
        observer: &dyn Observer,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let secrets = &input.secrets[..];
        match stage.kind {
            StageKind::Test => {}
            StageKind::Build => {
                return crate::stages::build(self, run, stage, input, masker, observer, cancel)
                    .await;
            }
            StageKind::Scan => {
                return crate::stages::scan(self, run, stage, input, observer, cancel).await;
            }
            StageKind::Deploy => {
                let msg = format!(
                    "stage kind {} is not supported yet by this version of Moat",
                    stage.kind
                );
                observer.log_line(stage, StreamKind::System, &msg);
                return Ok(Outcome::failed(msg));
            }
        }
        let Some(image) = stage.image.as_deref() else {
            return Ok(Outcome::failed("the stage has no image"));
        };
        ensure_image(&self.docker, image).await?;

        let mut services = Vec::new();
        let result = async {
            for svc in &stage.services {
                if cancel.is_cancelled() {
                    return Ok(Outcome::new(
                        StageStatus::Cancelled,
                        None,
                        Some("cancelled".to_string()),
                    ));
                }
                services.push(
                    self.start_service(run, stage, svc, input.job.as_ref(), observer)
                        .await?,
                );
            }
            self.run_container(
                run,
                stage,
                image,
                secrets,
                input.job.as_ref(),
                masker,
                observer,
                cancel,
            )
            .await
        }
        .await;
        for id in services {
            self.remove_container(&id).await;
        }
        result
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
    async fn run_container(
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
    async fn supervise(
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
    async fn write_secret_files(
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

    async fn kill(&self, id: &str) {
        let opts = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        if let Err(e) = self.docker.kill_container(id, Some(opts)).await {
            // 409: it already stopped on its own; nothing to kill.
            tracing::debug!(container.id = %id, error = %e, "kill failed");
        }
    }

    async fn start_service(
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
    async fn wait_service_ready(
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

/// The masker of a stage: its own secrets and the run's others.
fn stage_masker(input: &StageInput) -> Masker {
    let values: Vec<&str> = input
        .secrets
        .iter()
        .map(|(_, v)| v.as_str())
        .chain(input.mask.iter().map(String::as_str))
        .collect();
    Masker::new(&values)
}

/// Masks every line and message on its way to the real observer.
struct Masking<'a> {
    inner: &'a dyn Observer,
    masker: &'a Masker,
}

impl Observer for Masking<'_> {
    fn stage_started(&self, stage: &PlannedStage) {
        self.inner.stage_started(stage);
    }

    fn log_line(&self, stage: &PlannedStage, stream: StreamKind, line: &str) {
        if self.masker.is_empty() {
            self.inner.log_line(stage, stream, line);
        } else {
            self.inner
                .log_line(stage, stream, &self.masker.mask_str(line));
        }
    }

    fn stage_finished(&self, stage: &PlannedStage, result: &StageResult) {
        self.inner.stage_finished(stage, result);
    }
}

/// Splits a stage's output into lines per stream, enforces the log cap, and hands lines on.
struct LogSink<'a> {
    stage: &'a PlannedStage,
    observer: &'a dyn Observer,
    stdout: LineSplitter,
    stderr: LineSplitter,
    /// Masking happens on the raw bytes, before lines are cut, so nothing escapes at a cut.
    mask_out: MaskStream,
    mask_err: MaskStream,
    written: usize,
    limit: usize,
    capped: bool,
}

impl<'a> LogSink<'a> {
    fn new(
        config: &EngineConfig,
        stage: &'a PlannedStage,
        masker: &Masker,
        observer: &'a dyn Observer,
    ) -> Self {
        LogSink {
            stage,
            observer,
            stdout: LineSplitter::new(config.max_line),
            stderr: LineSplitter::new(config.max_line),
            mask_out: masker.stream(),
            mask_err: masker.stream(),
            written: 0,
            limit: config.log_limit,
            capped: false,
        }
    }

    fn push(&mut self, out: &bollard::container::LogOutput) {
        use bollard::container::LogOutput;
        let (bytes, kind) = match out {
            LogOutput::StdErr { message } => (message, StreamKind::Stderr),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (message, StreamKind::Stdout)
            }
            LogOutput::StdIn { .. } => return,
        };
        if self.capped {
            return;
        }
        self.written += bytes.len();
        let (stage, observer) = (self.stage, self.observer);
        let emit = |line: &[u8]| observer.log_line(stage, kind, &String::from_utf8_lossy(line));
        match kind {
            StreamKind::Stderr => {
                let masked = self.mask_err.push(bytes);
                self.stderr.push(&masked, emit)
            }
            _ => {
                let masked = self.mask_out.push(bytes);
                self.stdout.push(&masked, emit)
            }
        }
        if self.written > self.limit {
            self.capped = true;
            self.observer.log_line(
                self.stage,
                StreamKind::System,
                &format!(
                    "log limit of {} reached; further output of this stage is discarded",
                    fmt_size(self.limit as u64)
                ),
            );
        }
    }

    fn finish(&mut self) {
        let (stage, observer) = (self.stage, self.observer);
        let out =
            |l: &[u8]| observer.log_line(stage, StreamKind::Stdout, &String::from_utf8_lossy(l));
        let err =
            |l: &[u8]| observer.log_line(stage, StreamKind::Stderr, &String::from_utf8_lossy(l));
        // What the maskers held back for a possible split secret is complete now.
        let rest = self.mask_out.finish();
        if !self.capped {
            self.stdout.push(&rest, out);
        }
        let rest = self.mask_err.finish();
        if !self.capped {
            self.stderr.push(&rest, err);
        }
        self.stdout.finish(out);
        self.stderr.finish(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_echoes_and_quotes() {
        let s = stage_script(&["echo 'hi' && true".to_string()]);
        assert_eq!(
            s,
            "set -e\nprintf '+ %s\\n' 'echo '\\''hi'\\'' && true'\necho 'hi' && true\n"
        );
    }
}
