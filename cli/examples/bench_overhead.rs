//! Benchmark (not a test): the overhead of `moat run` over a plain Docker API loop.
//!
//! Runs a 20-stage pipeline of `true` with `moat run --parallel 1`, and the very same 20
//! containers (same create request: network per run, workspace volume, capabilities, limits,
//! script) through the Docker API in a plain create/start/wait/remove loop. Prints both times
//! and their ratio. Usage: `scripts/bench-overhead` (builds in release mode first).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use moat_pipelines::{Event, EventKind};
use moat_runner::{Engine, EngineConfig, RunHandle, docker};
use support::{arg, build_busybox_image, git};

const IMAGE: &str = "moat-test/busybox:1";

fn pipeline(stages: usize) -> String {
    let mut s = String::from("version: 1\nstages:\n");
    for i in 0..stages {
        s.push_str(&format!(
            "  - name: s{i:02}\n    kind: test\n    image: {IMAGE}\n    commands: [\"true\"]\n"
        ));
    }
    s
}

fn make_repo(stages: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-bench-repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".moat.yml"), pipeline(stages)).unwrap();
    let git = |args: &[&str]| git(&dir, args).expect("git");
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "bench"]);
    dir
}

fn time_moat(moat: &Path, repo: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(moat)
        .args(["run", "--parallel", "1", "--color", "never"])
        .arg(repo)
        .output()
        .expect("run moat");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "moat run failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    elapsed
}

/// The baseline: one network and one volume, then the same container requests, one after the
/// other, create/start/wait/remove — no logs, no supervision, no workspace copy.
async fn time_api_loop(engine: &Engine, stages: usize, round: usize) -> Duration {
    let d = engine.docker();
    let p = moat_pipelines::parse(&pipeline(stages)).expect("valid pipeline");
    let run_id = format!("bench{}x{round}", std::process::id());
    let event = Event {
        kind: EventKind::Push,
        branch: Some("main".into()),
        target_branch: None,
        tag: None,
        commit: "0".repeat(40),
        repo: "bench".into(),
        run_id: run_id.clone(),
    };
    let plan = moat_pipelines::plan(&p, &event).expect("the pipeline plans");
    let start = Instant::now();
    let run = RunHandle {
        run_id: run_id.clone(),
        network: format!("moat-{run_id}"),
        volume: format!("moat-{run_id}-workspace"),
    };
    let labels = docker::labels(engine.owner(), &run_id, None);
    d.create_network(NetworkCreateRequest {
        name: run.network.clone(),
        driver: Some("bridge".into()),
        labels: Some(labels.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    d.create_volume(VolumeCreateRequest {
        name: Some(run.volume.clone()),
        labels: Some(labels),
        ..Default::default()
    })
    .await
    .unwrap();
    for stage in &plan.stages {
        let body = engine.stage_container_body(&run, stage, IMAGE);
        let name = format!("moat-{run_id}-{}", stage.name);
        let id = d
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .unwrap()
            .id;
        d.start_container(&id, None).await.unwrap();
        let mut wait = d.wait_container(&id, None);
        while let Some(r) = wait.next().await {
            r.expect("container exits 0");
        }
        d.remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    }
    d.remove_volume(
        &run.volume,
        None::<bollard::query_parameters::RemoveVolumeOptions>,
    )
    .await
    .unwrap();
    d.remove_network(&run.network).await.unwrap();
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let stages: usize = arg("--stages", "20").parse().unwrap();
    let rounds: usize = arg("--rounds", "5").parse().unwrap();
    let moat = PathBuf::from(arg("--moat", "target/release/moat"));
    build_busybox_image(IMAGE).expect("the busybox test image");
    let repo = make_repo(stages);
    let engine = Arc::new(Engine::new(
        docker::connect().await.expect("docker"),
        EngineConfig::default(),
    ));

    // Warm-up: page cache, image layers, the engine's own caches.
    time_moat(&moat, &repo);
    time_api_loop(&engine, stages, 0).await;

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate so that drift in the machine's load hits both sides alike.
        base.push(time_api_loop(&engine, stages, round).await);
        ours.push(time_moat(&moat, &repo));
        println!(
            "round {round}: api loop {:.2}s, moat run {:.2}s",
            base.last().unwrap().as_secs_f64(),
            ours.last().unwrap().as_secs_f64()
        );
    }
    let (b, o) = (median(base), median(ours));
    println!("\n{stages} containers of `true`, median of {rounds} rounds");
    println!(
        "plain Docker API loop:       {:.2}s ({:.0} ms/container)",
        b.as_secs_f64(),
        b.as_secs_f64() * 1000.0 / stages as f64
    );
    println!(
        "moat run --parallel 1:       {:.2}s ({:.0} ms/stage)",
        o.as_secs_f64(),
        o.as_secs_f64() * 1000.0 / stages as f64
    );
    println!(
        "ratio moat/baseline:         {:.3} (target <= 1.15)",
        o.as_secs_f64() / b.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&repo);
}
