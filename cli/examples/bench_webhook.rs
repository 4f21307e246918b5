//! Benchmark (not a test): webhook-to-first-container latency, beside the bare container start
//! time measured in the same run.
//!
//! A real coordinator (SQLite in a temporary directory, HTTP on a `127.0.0.1` port) and its
//! embedded runner path — an `Agent` of `moat_runner::agent` talking to it over HTTP, with a
//! real `Engine` on the local Docker — run in this process. A repository is registered whose
//! clone URL is a local bare git repository (`file://`) holding a one-stage pipeline (image
//! `moat-test/busybox:1`, built from the host's static busybox; command `true`).
//!
//! Each round pushes a new commit to the bare repository (not timed), then sends a
//! GitHub-signed `push` delivery (the real payload of
//! `tests/fixtures/webhooks/github/push/with-new-branch.payload.json`, with `ref`, `after`,
//! `deleted` rewritten) and measures, from the moment the request is sent:
//!
//! * `202`: the coordinator's answer arrived (signature check, delivery stored);
//! * `run created`: the run's `created_at` (after the mirror fetched the commit and the
//!   pipeline was read and planned);
//! * `claimed`: the job's `started_at` (the runner's long poll got it);
//! * `created` / `started`: Docker's `create` and `start` events of the stage container
//!   (`type=container`, label `moat.managed`, with a `moat.stage` label), by Docker's own
//!   timestamps. Between `claimed` and `created` the runner sets up the run's network and
//!   volume and copies the source into it.
//!
//! In the same round, the bare container start: the same create request
//! (`Engine::stage_container_body`, same image, same hardened settings, network and volume)
//! sent straight to the Docker API, timed from just before `create` to Docker's `start`
//! event; and the same including the creation of the network and the volume. Rounds alternate
//! the two so that drift in the machine's load hits both alike. Prints per-round lines, then
//! median and p90 of each, and the ratio webhook/bare.
//!
//! Usage: `scripts/bench-webhook [--rounds 10]` (needs Docker and busybox-static).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use moat_coordinator::app::{App, Config, Keys};
use moat_coordinator::store::{self, Forge, NewRepository, RunFilter, RunStatus};
use moat_coordinator::{forge, server, tokens};
use moat_pipelines::{Event, EventKind};
use moat_runner::agent::{Agent, AgentConfig, Client};
use moat_runner::{Engine, EngineConfig, RunHandle, docker};
use serde_json::{Value, json};
use support::{arg, build_busybox_image, git};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "moat-test/busybox:1";
const STAGE: &str = "hello";

fn pipeline() -> String {
    format!(
        "version: 1\non:\n  push: {{ branches: [main] }}\nstages:\n  - name: {STAGE}\n    kind: test\n    image: {IMAGE}\n    commands: [\"true\"]\n"
    )
}

/// A working repository and its bare "origin", which the coordinator clones from.
struct Origin {
    work: PathBuf,
    bare: PathBuf,
}

impl Origin {
    fn new(root: &Path) -> anyhow::Result<Origin> {
        let work = root.join("work");
        let bare = root.join("origin.git");
        std::fs::create_dir_all(&work)?;
        std::fs::write(work.join(".moat.yml"), pipeline())?;
        git(&work, &["init", "-q", "-b", "main"])?;
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", "initial"])?;
        git(
            &work,
            &["clone", "-q", "--bare", ".", &bare.display().to_string()],
        )?;
        git(
            &work,
            &["remote", "add", "origin", &bare.display().to_string()],
        )?;
        Ok(Origin { work, bare })
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Commits a change and pushes it; returns the new commit.
    fn push(&self, n: usize) -> anyhow::Result<String> {
        std::fs::write(self.work.join("round.txt"), format!("{n}\n"))?;
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", &format!("round {n}")])?;
        git(&self.work, &["push", "-q", "origin", "main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// GitHub's example push payload, pointed at `main` and `commit` of the local repository.
fn push_payload(commit: &str, clone_url: &str) -> anyhow::Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/webhooks/github/push/with-new-branch.payload.json");
    let raw = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut v: Value = serde_json::from_slice(&raw)?;
    v["ref"] = json!("refs/heads/main");
    v["after"] = json!(commit);
    v["deleted"] = json!(false);
    v["head_commit"]["id"] = json!(commit);
    v["repository"]["clone_url"] = json!(clone_url);
    Ok(serde_json::to_vec(&v)?)
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A container event of a Moat-managed container.
#[derive(Debug, Clone)]
struct ContainerEvent {
    action: String,
    time_ns: i64,
    attributes: HashMap<String, String>,
}

/// Follows Docker's `create` and `start` events of containers labelled `moat.managed`.
fn watch_events(
    docker: Docker,
    stop: CancellationToken,
) -> mpsc::UnboundedReceiver<ContainerEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["create", "start"]),
            ("label", vec![docker::LABEL_MANAGED]),
        ]);
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        loop {
            let item = tokio::select! {
                i = stream.next() => i,
                _ = stop.cancelled() => return,
            };
            match item {
                Some(Ok(e)) => {
                    let ev = ContainerEvent {
                        action: e.action.unwrap_or_default(),
                        time_ns: e.time_nano.unwrap_or(0),
                        attributes: e.actor.and_then(|a| a.attributes).unwrap_or_default(),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    eprintln!("docker events failed: {e}");
                    return;
                }
                None => return,
            }
        }
    });
    rx
}

impl ContainerEvent {
    fn run(&self) -> &str {
        self.attributes
            .get(docker::LABEL_RUN)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Stage containers carry `moat.stage`; the runner's workspace seed containers do not.
    fn is_stage(&self) -> bool {
        self.attributes.contains_key(docker::LABEL_STAGE)
    }
}

/// The next `action` event at or after `since_ns` that satisfies `wanted`.
async fn next_event(
    events: &mut mpsc::UnboundedReceiver<ContainerEvent>,
    action: &str,
    since_ns: i64,
    wanted: impl Fn(&ContainerEvent) -> bool,
) -> anyhow::Result<ContainerEvent> {
    let wait = async {
        while let Some(e) = events.recv().await {
            if e.action == action && e.time_ns >= since_ns && wanted(&e) {
                return Ok(e);
            }
        }
        bail!("the Docker event stream ended")
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .with_context(|| format!("no matching `{action}` container event within 120 s"))?
}

/// Milliseconds between two nanosecond wall-clock stamps.
fn ms_between(from_ns: i64, to_ns: i64) -> f64 {
    (to_ns - from_ns) as f64 / 1e6
}

#[derive(Debug, Clone, Copy)]
struct WebhookRound {
    accepted: f64,
    run_created: f64,
    claimed: f64,
    /// The runner's workspace seed container (network and volume exist by then).
    seed_created: f64,
    container_created: f64,
    container_started: f64,
}

#[derive(Debug, Clone, Copy)]
struct BareRound {
    /// Before `create` → `start` event.
    create_start: f64,
    /// Before the network and volume → `start` event.
    with_resources: f64,
}

struct Bench {
    app: Arc<App>,
    base: String,
    http: reqwest::Client,
    engine: Arc<Engine>,
    origin: Origin,
    repo_id: i64,
    secret: String,
    events: mpsc::UnboundedReceiver<ContainerEvent>,
    stage: moat_pipelines::PlannedStage,
}

impl Bench {
    fn drain_events(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits until the runner has removed every run resource it created (it does so when its
    /// next long poll returns after the run finished).
    async fn wait_clean(&self) -> anyhow::Result<()> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={}", docker::LABEL_PID, std::process::id())],
        )]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = self
                .engine
                .docker()
                .list_networks(Some(
                    ListNetworksOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await?;
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the runner did not remove the run's network within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn webhook_round(&mut self, n: usize) -> anyhow::Result<WebhookRound> {
        let commit = self.origin.push(n)?;
        let body = push_payload(&commit, &self.origin.url())?;
        let signature = forge::github_signature(&self.secret, &body);
        let delivery = format!("bench-{:016x}", rand::random::<u64>());
        self.drain_events();

        let t0 = wall_ns();
        let resp = self
            .http
            .post(format!("{}/hooks/github/{}", self.base, self.repo_id))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", &delivery)
            .header("x-hub-signature-256", &signature)
            .body(body)
            .send()
            .await?;
        let accepted = ms_between(t0, wall_ns());
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.as_u16() != 202 {
            bail!("the webhook was answered {status}: {text}");
        }
        // The runner's first container of the run is the seed that receives the workspace
        // (after the run's network and volume exist); then the stage container.
        let seed = next_event(&mut self.events, "create", t0, |_| true).await?;
        let run_label = seed.run().to_string();
        let created = if seed.is_stage() {
            seed.clone()
        } else {
            next_event(&mut self.events, "create", t0, |e| {
                e.is_stage() && e.run() == run_label
            })
            .await?
        };
        let started = next_event(&mut self.events, "start", t0, |e| {
            e.is_stage() && e.run() == run_label
        })
        .await?;

        let store = &self.app.store;
        let run = store
            .list_runs(&RunFilter {
                repo_id: Some(self.repo_id),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next()
            .context("no run was created")?;
        if run.commit != commit {
            bail!("the newest run is for {}, not {commit}", run.commit);
        }
        let jobs = store.jobs_of_run(run.id).await?;
        let claimed_ms = jobs
            .first()
            .and_then(|j| j.started_at)
            .context("the job has no start time")?;
        let t0_ms = t0 as f64 / 1e6;
        let result = WebhookRound {
            accepted,
            run_created: run.created_at as f64 - t0_ms,
            claimed: claimed_ms as f64 - t0_ms,
            seed_created: ms_between(t0, seed.time_ns),
            container_created: ms_between(t0, created.time_ns),
            container_started: ms_between(t0, started.time_ns),
        };

        // Let the run finish and the runner clean up before the next measurement.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = store.get_run(run.id).await?;
            if r.status.is_finished() {
                if r.status != RunStatus::Passed {
                    bail!("run {} ended {:?}: {:?}", r.id, r.status, r.reason);
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("run {} did not finish within 120 s", r.id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_clean().await?;
        Ok(result)
    }

    async fn bare_round(&mut self, n: usize) -> anyhow::Result<BareRound> {
        let d = self.engine.docker().clone();
        let run_id = format!("benchbare{}x{n}", std::process::id());
        let run = RunHandle {
            run_id: run_id.clone(),
            network: format!("moat-{run_id}"),
            volume: format!("moat-{run_id}-workspace"),
        };
        let labels = docker::labels(self.engine.owner(), &run_id, None);
        let body = self.engine.stage_container_body(&run, &self.stage, IMAGE);
        let name = format!("moat-{run_id}-{STAGE}");
        self.drain_events();

        let t_resources = wall_ns();
        d.create_network(NetworkCreateRequest {
            name: run.network.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
        d.create_volume(VolumeCreateRequest {
            name: Some(run.volume.clone()),
            labels: Some(labels),
            ..Default::default()
        })
        .await?;
        let t_create = wall_ns();
        let id = d
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await?
            .id;
        d.start_container(&id, None).await?;
        let started = next_event(&mut self.events, "start", t_create, |e| {
            e.is_stage() && e.run() == run_id
        })
        .await?;
        let result = BareRound {
            create_start: ms_between(t_create, started.time_ns),
            with_resources: ms_between(t_resources, started.time_ns),
        };

        let mut wait = d.wait_container(&id, None);
        while let Some(r) = wait.next().await {
            r.context("the bare container failed")?;
        }
        d.remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await?;
        d.remove_volume(
            &run.volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await?;
        d.remove_network(&run.network).await?;
        Ok(result)
    }
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn row(label: &str, values: &[f64]) {
    println!(
        "  {label:<44} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1}   max {:>7.1}",
        quantile(values, 0.5),
        quantile(values, 0.9),
        quantile(values, 0.0),
        quantile(values, 1.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = arg("--rounds", "10").parse().context("--rounds")?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    server::install_tls_provider();
    build_busybox_image(IMAGE)?;

    let root = std::env::temp_dir().join(format!(
        "moat-bench-webhook-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&root)?;
    let shutdown = CancellationToken::new();
    let outcome = run(&root, rounds, &shutdown).await;
    shutdown.cancel();
    // Give the agent a moment to remove what it still holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = std::fs::remove_dir_all(&root);
    outcome
}

async fn run(root: &Path, rounds: usize, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let data_dir = root.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let origin = Origin::new(root)?;

    // The coordinator, as `moat up` starts it.
    let url = format!("sqlite://{}", data_dir.join("moat.db").display());
    let store = store::connect(&url).await?;
    let listener = server::bind("127.0.0.1:0".parse()?)?;
    let base = format!("http://{}", listener.local_addr()?);
    let keys = Keys::load_or_create(&data_dir)?;
    let app = App::new(store, Config::new(data_dir.clone(), base.clone()), keys);
    app.start(shutdown.clone()).await?;
    tokio::spawn(server::serve(app.clone(), listener, None, shutdown.clone()));

    // The embedded runner: one slot, the real engine. A short long-poll, so that a finished
    // run's resources are released between rounds rather than inside the next measurement.
    let docker = docker::connect().await?;
    let engine = Arc::new(Engine::new(docker.clone(), EngineConfig::default()));
    let token = tokens::generate(tokens::RUNNER_PREFIX);
    app.store
        .create_runner("embedded", &tokens::hash(&token), 1)
        .await?;
    let http = server::http_client(None)?;
    let agent = Agent::new(
        Client::new(http.clone(), &base, &token),
        engine.clone(),
        AgentConfig {
            slots: 1,
            claim_wait: Duration::from_secs(2),
        },
    );
    tokio::spawn(agent.run(shutdown.clone()));

    let secret = tokens::webhook_secret();
    let repo = app
        .store
        .create_repo(NewRepository {
            name: "bench".into(),
            clone_url: origin.url(),
            forge: Forge::Github,
            webhook_secret: secret.clone(),
            concurrency: None,
            cancel_superseded: false,
            protected_branches: Vec::new(),
        })
        .await?;

    let pipeline =
        moat_pipelines::parse(&pipeline()).map_err(|d| anyhow::anyhow!(d.render("bench")))?;
    let plan = moat_pipelines::plan(
        &pipeline,
        &Event {
            kind: EventKind::Push,
            branch: Some("main".into()),
            target_branch: None,
            tag: None,
            commit: "0".repeat(40),
            repo: "bench".into(),
            run_id: String::new(),
        },
    )?;
    let stage = plan.stages.first().context("one stage")?.clone();

    let events = watch_events(docker, shutdown.clone());
    let mut bench = Bench {
        app,
        base,
        http,
        engine,
        origin,
        repo_id: repo.id,
        secret,
        events,
        stage,
    };
    // Let the event stream and the runner's first long poll settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Warm-up: the first fetch creates the mirror; page cache, image, connections.
    bench
        .webhook_round(0)
        .await
        .context("warm-up webhook round")?;
    bench.bare_round(0).await.context("warm-up bare round")?;

    let mut hooks = Vec::new();
    let mut bares = Vec::new();
    println!(
        "{:>5}  {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} | {:>11} {:>13}",
        "round",
        "202",
        "run",
        "claimed",
        "seed",
        "created",
        "STARTED",
        "bare create",
        "+net+volume"
    );
    for n in 1..=rounds {
        // Alternate which goes first.
        let (h, b) = if n % 2 == 1 {
            let h = bench.webhook_round(n).await?;
            (h, bench.bare_round(n).await?)
        } else {
            let b = bench.bare_round(n).await?;
            (bench.webhook_round(n).await?, b)
        };
        println!(
            "{n:>5}  {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms | {:>9.1}ms {:>11.1}ms",
            h.accepted,
            h.run_created,
            h.claimed,
            h.seed_created,
            h.container_created,
            h.container_started,
            b.create_start,
            b.with_resources
        );
        hooks.push(h);
        bares.push(b);
    }

    let col = |f: fn(&WebhookRound) -> f64| hooks.iter().map(f).collect::<Vec<_>>();
    let started = col(|h| h.container_started);
    let bare: Vec<f64> = bares.iter().map(|b| b.create_start).collect();
    let bare_full: Vec<f64> = bares.iter().map(|b| b.with_resources).collect();
    let ratios: Vec<f64> = started.iter().zip(&bare).map(|(s, b)| s / b).collect();
    println!(
        "\nwebhook → first stage container started, {rounds} rounds (times from sending the webhook):"
    );
    row("202 Accepted received", &col(|h| h.accepted));
    row(
        "run created (fetched, read, planned)",
        &col(|h| h.run_created),
    );
    row("job claimed by the runner", &col(|h| h.claimed));
    row(
        "network+volume made, workspace seed created",
        &col(|h| h.seed_created),
    );
    row(
        "stage container created (Docker event)",
        &col(|h| h.container_created),
    );
    row("stage container STARTED (Docker event)", &started);
    println!("\nbare container start, same image and create request, through the Docker API:");
    row("create + start", &bare);
    row("network + volume + create + start", &bare_full);
    println!("\nstages of the webhook path (medians of per-round differences):");
    let diff = |a: fn(&WebhookRound) -> f64, b: fn(&WebhookRound) -> f64| {
        quantile(&hooks.iter().map(|h| b(h) - a(h)).collect::<Vec<_>>(), 0.5)
    };
    println!(
        "  send → 202                                   {:>7.1} ms  (signature, delivery stored)",
        quantile(&col(|h| h.accepted), 0.5)
    );
    println!(
        "  202 → run created                            {:>7.1} ms  (git fetch, read .moat.yml, plan, insert)",
        diff(|h| h.accepted, |h| h.run_created)
    );
    println!(
        "  run created → claimed                        {:>7.1} ms  (wake-up of the long poll; ms resolution)",
        diff(|h| h.run_created, |h| h.claimed)
    );
    println!(
        "  claimed → workspace seed container created   {:>7.1} ms  (answer to the runner, network + volume)",
        diff(|h| h.claimed, |h| h.seed_created)
    );
    println!(
        "  seed → stage container created               {:>7.1} ms  (GET workspace, copy into the volume, remove seed, create)",
        diff(|h| h.seed_created, |h| h.container_created)
    );
    println!(
        "  stage container created → started            {:>7.1} ms  (Docker start)",
        diff(|h| h.container_created, |h| h.container_started)
    );
    println!(
        "\nratio webhook-to-container / bare create+start: median {:.2}, p90 {:.2} (median of times: {:.0} ms / {:.0} ms = {:.2})",
        quantile(&ratios, 0.5),
        quantile(&ratios, 0.9),
        quantile(&started, 0.5),
        quantile(&bare, 0.5),
        quantile(&started, 0.5) / quantile(&bare, 0.5)
    );
    println!(
        "ratio webhook-to-container / bare network+volume+create+start: {:.2} (medians)",
        quantile(&started, 0.5) / quantile(&bare_full, 0.5)
    );
    Ok(())
}
