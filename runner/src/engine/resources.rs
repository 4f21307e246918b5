//! A run's Docker resources: its network, its workspace volume, the seed image whose
//! never-started containers carry the workspace in and out, and their removal.

use super::*;

impl Engine {
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
    pub(super) async fn seed_container(&self, run: &RunHandle) -> Result<String, EngineError> {
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

    pub(super) fn workspace_mount(&self, run: &RunHandle) -> Mount {
        Mount {
            target: Some(WORKSPACE.to_string()),
            source: Some(run.volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }
    }
}
