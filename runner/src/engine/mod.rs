//! The execution engine: one run's network and workspace volume, and one stage at a time in a
//! hardened container (with its services beside it). `moat run`, the embedded runner of
//! `moat up` and remote runners all execute stages through [`Engine::run_stage`].

mod container;
mod output;
mod resources;
mod services;
mod stages;

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

pub(crate) use crate::outcome::Outcome;
pub use crate::outcome::{Observer, StageInput, StageResult, StageStatus};
use output::{Masking, stage_masker};

use moat_secrets::mask::{MaskStream, Masker};

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
    vuln_db: tokio::sync::OnceCell<Result<std::sync::Arc<moat_vuln::db::Database>, String>>,
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
    pub async fn vuln_db(&self) -> Result<std::sync::Arc<moat_vuln::db::Database>, String> {
        self.vuln_db
            .get_or_init(|| async {
                let Some(dir) = self.config.vuln_db.clone() else {
                    return Err("no vulnerability database is configured (--vuln-db DIR)".to_string());
                };
                let shown = dir.display().to_string();
                tokio::task::spawn_blocking(move || moat_vuln::db::Database::load(&dir))
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
                return stages::build(self, run, stage, input, masker, observer, cancel).await;
            }
            StageKind::Scan => {
                return stages::scan(self, run, stage, input, observer, cancel).await;
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
