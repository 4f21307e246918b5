//! `moat up --demo`: an example repository (examples/hello, compiled into the binary) is
//! committed into a local git repository, registered, and run at once; its live output is
//! printed so a newcomer sees a real pipeline in real containers. The stages' image is built
//! locally from the host's static busybox, so no registry is needed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use moat_pipelines::EventKind;
use tokio_util::sync::CancellationToken;

use moat_coordinator::app::App;
use moat_coordinator::forge::Trigger;
use moat_coordinator::store::{Forge, NewRepository, Run, StoreError};
use moat_coordinator::tokens;

const PIPELINE: &str = include_str!("../../examples/hello/.moat.yml");
const TEST_SH: &str = include_str!("../../examples/hello/test.sh");
pub const IMAGE: &str = "moat-demo/busybox:1";

/// Builds `moat-demo/busybox:1` (FROM scratch + the host's busybox) unless it exists.
async fn build_image() -> anyhow::Result<()> {
    let docker = moat_runner::docker::connect().await?;
    if docker.inspect_image(IMAGE).await.is_ok() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context(
            "the demo image needs a static busybox (Debian: apt-get install busybox-static)",
        )?;
    let binary = std::fs::read(busybox)?;
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN [\"/bin/mkdir\", \"-p\", \"/tmp\", \"/root\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("busybox", &binary[..], 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
    }
    let context = tar.into_inner()?;
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(IMAGE)
        .rm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.context("building the demo image")?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            bail!("building the demo image: {err}");
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    const WHO: moat_runner::git::Identity = moat_runner::git::Identity {
        name: "Moat Demo",
        email: "demo@moat.invalid",
    };
    Ok(moat_runner::git::git_as(WHO, dir, args)?)
}

/// Prepares the example repository and starts a run of it.
pub async fn start(app: &Arc<App>, data_dir: &Path) -> anyhow::Result<Run> {
    build_image().await?;
    let dir = std::path::absolute(data_dir.join("demo-repo"))?;
    if !dir.join(".git").exists() {
        std::fs::create_dir_all(&dir)?;
        git(&dir, &["init", "-q", "-b", "main"])?;
        std::fs::write(dir.join(".moat.yml"), PIPELINE)?;
        std::fs::write(dir.join("test.sh"), TEST_SH)?;
        git(&dir, &["add", "-A"])?;
        git(&dir, &["commit", "-q", "-m", "Example pipeline"])?;
    }
    let repo = match app.store.get_repo_by_name("demo").await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            app.store
                .create_repo(NewRepository {
                    name: "demo".to_string(),
                    clone_url: format!("file://{}", dir.display()),
                    forge: Forge::Github,
                    webhook_secret: tokens::webhook_secret(),
                    concurrency: None,
                    cancel_superseded: false,
                    protected_branches: vec!["main".to_string()],
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let commit = app
        .mirrors
        .resolve_branch(repo.id, &repo.clone_url, "main")
        .await?;
    let trigger = Trigger {
        kind: EventKind::Manual,
        branch: Some("main".to_string()),
        target_branch: None,
        tag: None,
        commit,
        trusted: true,
        actor: Some("demo".to_string()),
        fetch_ref: None,
        base_commit: None,
    };
    app.start_run(&repo, &trigger, "manual")
        .await?
        .context("the demo pipeline started nothing")
}

/// Prints the run's output as it arrives, then its summary and where to go next.
pub async fn follow(app: &Arc<App>, run: Run, base: &str, shutdown: &CancellationToken) {
    println!(
        "moat: demo run #{} of repository {} started\n",
        run.number, run.repo_name
    );
    let mut after = 0;
    let mut names: HashMap<i64, String> = HashMap::new();
    let width = 12;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let current = match app.store.get_run(run.id).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("moat: {e}");
                return;
            }
        };
        if let Ok(lines) = app.store.run_logs(run.id, after, 1000).await {
            for l in lines {
                after = l.id;
                if !names.contains_key(&l.job_id)
                    && let Ok(jobs) = app.store.jobs_of_run(run.id).await
                {
                    names.extend(jobs.into_iter().map(|j| (j.id, j.name)));
                }
                let name = names.get(&l.job_id).map(String::as_str).unwrap_or("?");
                println!("{name:<width$} | {}", l.line);
            }
        }
        if current.status.is_finished() {
            println!();
            if let Ok(jobs) = app.store.jobs_of_run(run.id).await {
                for j in jobs {
                    println!(
                        "{:<width$}  {:<9}  {}",
                        j.name,
                        j.status.as_str(),
                        j.reason.unwrap_or_default()
                    );
                }
            }
            println!(
                "\nmoat: demo run {}. The coordinator keeps running at {base}; try\n  MOAT_SERVER={base} moat runs\n(the admin token is in the data directory). Ctrl-C stops it.",
                current.status.as_str()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
