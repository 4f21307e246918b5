//! The coordinator's state and its background work: turning stored webhook deliveries into
//! runs (fetch the mirror, read `.moat.yml` at the commit, plan, store the jobs), expiring
//! leases of lost runners, and waking long-polling runners when jobs become ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use moat_pipelines::{Event, EventKind};
use moat_secrets::gate::{self, GateMode};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::crypto::{KeyRing, SealKey};
use crate::forge::{self, Parsed, Trigger};
use crate::git::Mirrors;
use crate::policy::AdminPolicy;
use crate::store::{self, NewJob, NewRun, Repository, Run, Store, now_ms};

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The address forges and runners use to reach this coordinator (webhook URLs).
    pub public_url: String,
    /// How long a claimed job stays with its runner without a heartbeat.
    pub lease: Duration,
    pub heartbeat: Duration,
    /// Retries of a job after a lost lease.
    pub max_retries: i64,
    /// Largest webhook body accepted.
    pub max_webhook_body: usize,
    /// What unauthenticated webhook senders may cost: rate per source, body bytes being read
    /// at once, the body's deadline.
    pub webhook: crate::http::limits::WebhookLimits,
    /// How long webhook deliveries are kept.
    pub deliveries: DeliveryRetention,
    /// Largest workspace snapshot a runner may upload.
    pub max_snapshot: u64,
    /// The administrator's floor (`--policy moat.toml`).
    pub policy: AdminPolicy,
    /// Set for Postgres: coordinators sharing the database wake each other with
    /// `LISTEN`/`NOTIFY` on this connection string.
    pub notify_url: Option<String>,
    /// The installation's id ([`Store::installation_id`]); runners label job containers
    /// with it.
    pub installation: String,
}

impl Config {
    pub fn new(data_dir: PathBuf, public_url: String) -> Self {
        Config {
            data_dir,
            public_url,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            max_retries: 1,
            max_webhook_body: 10 << 20,
            webhook: crate::http::limits::WebhookLimits::default(),
            deliveries: DeliveryRetention::default(),
            max_snapshot: 4 << 30,
            policy: AdminPolicy::default(),
            notify_url: None,
            installation: String::new(),
        }
    }
}

/// Delivery retention: a delivery is deleted (row and payload; its id no longer detects a
/// replay) once it is both older than `max_age` and not among the newest `keep`, i.e. Moat
/// keeps 7 days or 10 000 deliveries, whichever is more. Pending deliveries are never deleted.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRetention {
    pub max_age: Duration,
    pub keep: i64,
    /// How often the coordinator sweeps.
    pub every: Duration,
}

impl Default for DeliveryRetention {
    fn default() -> Self {
        DeliveryRetention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            keep: 10_000,
            every: Duration::from_secs(3600),
        }
    }
}

/// What changed, for whoever waits on it — in this process and, through Postgres `NOTIFY`, in
/// the other coordinators sharing the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Jobs may have become claimable.
    Jobs,
    /// A webhook delivery was stored.
    Deliveries,
    /// Log lines were stored or a run changed state.
    Logs,
    /// A token was revoked: cached runner authentications are stale.
    Tokens,
}

impl Topic {
    fn as_str(self) -> &'static str {
        match self {
            Topic::Jobs => "jobs",
            Topic::Deliveries => "deliveries",
            Topic::Logs => "logs",
            Topic::Tokens => "tokens",
        }
    }
}

/// The `NOTIFY` channel coordinators share.
const CHANNEL: &str = "moat_events";

/// The coordinator's keys: secrets at rest, and sealed values.
pub struct Keys {
    pub secrets: KeyRing,
    pub seal: SealKey,
}

impl Keys {
    /// `<data>/secrets.key` and `<data>/seal.key`, created (mode 0600) on first start.
    pub fn load_or_create(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Keys {
            secrets: KeyRing::load_or_create(&data_dir.join("secrets.key"))?,
            seal: SealKey::load_or_create(&data_dir.join("seal.key"))?,
        })
    }
}

/// Runners authenticated recently, by token hash, for a short time: their requests are
/// frequent. A revocation empties it at once here ([`RunnerCache::invalidate`]) and, through
/// `NOTIFY` ([`Topic::Tokens`]), in the other coordinators sharing a Postgres database, which
/// also empty theirs whenever their `LISTEN` connection is re-established; [`RunnerCache::TTL`]
/// bounds how long a revoked runner token could still be accepted by another coordinator that
/// missed the notification.
#[derive(Default)]
pub struct RunnerCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<Vec<u8>, (store::Runner, std::time::Instant)>>,
    /// Bumped (under the entries' lock) by every invalidation, so that a lookup which started
    /// before a revocation cannot put the revoked runner back afterwards.
    generation: std::sync::atomic::AtomicU64,
}

impl RunnerCache {
    pub const TTL: Duration = Duration::from_secs(10);
    const MAX: usize = 10_000;

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<Vec<u8>, (store::Runner, std::time::Instant)>,
    > {
        // Entries are plain values: a panic elsewhere cannot leave them half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runner of a token hash: from the cache while fresh, else from `load` (the store).
    pub async fn get_or_load<F, Fut>(
        &self,
        hash: &[u8],
        load: F,
    ) -> store::Result<Option<store::Runner>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = store::Result<Option<store::Runner>>>,
    {
        if let Some((r, at)) = self.entries().get(hash)
            && at.elapsed() < Self::TTL
        {
            return Ok(Some(r.clone()));
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let found = load().await?;
        if let Some(r) = &found {
            let mut map = self.entries();
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
                if map.len() >= Self::MAX {
                    map.retain(|_, (_, at)| at.elapsed() < Self::TTL);
                }
                map.insert(hash.to_vec(), (r.clone(), std::time::Instant::now()));
            }
        }
        Ok(found)
    }

    /// Forgets every cached runner: the next request of each is checked against the store.
    pub fn invalidate(&self) {
        let mut map = self.entries();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.clear();
    }
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub runner_cache: RunnerCache,
    /// Rate limits and the in-flight body budget of the webhook route.
    pub intake: crate::http::limits::Intake,
    pub config: Config,
    pub keys: Keys,
    pub mirrors: Mirrors,
    /// Signalled when jobs may have become claimable.
    pub jobs_ready: Notify,
    /// Signalled when a delivery was stored.
    pub deliveries: Notify,
    /// Signalled when log lines were stored (live streams wake up).
    pub logs_written: Notify,
    /// For `NOTIFY`; present when the store is Postgres.
    notifier: Option<sqlx::PgPool>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    pub fn new(store: Arc<dyn Store>, config: Config, keys: Keys) -> Arc<Self> {
        let mirrors = Mirrors::new(config.data_dir.join("repos"));
        let notifier = config.notify_url.as_deref().and_then(|url| {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect_lazy(url)
                .ok()
        });
        Arc::new(App {
            store,
            runner_cache: RunnerCache::default(),
            intake: crate::http::limits::Intake::new(config.webhook.clone()),
            config,
            keys,
            mirrors,
            jobs_ready: Notify::new(),
            deliveries: Notify::new(),
            logs_written: Notify::new(),
            notifier,
        })
    }

    fn wake_local(&self, topic: Topic) {
        match topic {
            Topic::Jobs => self.jobs_ready.notify_waiters(),
            // One processor per coordinator: keep the permit if it is busy right now.
            Topic::Deliveries => self.deliveries.notify_one(),
            Topic::Logs => self.logs_written.notify_waiters(),
            Topic::Tokens => self.runner_cache.invalidate(),
        }
    }

    /// Wakes whoever waits on `topic`, here and in the other coordinators.
    pub fn publish(&self, topic: Topic) {
        self.wake_local(topic);
        if let Some(pool) = &self.notifier {
            let pool = pool.clone();
            tokio::spawn(async move {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(topic.as_str())
                    .execute(&pool)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "NOTIFY failed");
                }
            });
        }
    }

    /// Relays other coordinators' `NOTIFY`s to the local waiters; reconnects when the
    /// connection drops (waiters also poll, so a gap only delays).
    async fn listen_loop(self: Arc<Self>, url: String, shutdown: CancellationToken) {
        loop {
            let connected = async {
                let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                listener.listen(CHANNEL).await?;
                // A revocation may have been announced while this connection was down.
                self.runner_cache.invalidate();
                loop {
                    // `try_recv` (unlike `recv`) says when it had to reconnect: notifications
                    // sent meanwhile are lost, a revocation among them perhaps.
                    let Some(n) = listener.try_recv().await? else {
                        tracing::warn!("LISTEN connection was lost and re-established");
                        self.runner_cache.invalidate();
                        continue;
                    };
                    let topic = match n.payload() {
                        "jobs" => Topic::Jobs,
                        "deliveries" => Topic::Deliveries,
                        "tokens" => Topic::Tokens,
                        _ => Topic::Logs,
                    };
                    self.wake_local(topic);
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                r = connected => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.config.data_dir.join("snapshots")
    }

    pub fn snapshot_path(&self, job_id: i64) -> PathBuf {
        self.snapshot_dir().join(format!("job-{job_id}.tar"))
    }

    /// Where an upload of job `job_id`'s snapshot is written before it is complete.
    pub fn snapshot_part_path(&self, job_id: i64) -> PathBuf {
        self.snapshot_dir()
            .join(format!("job-{job_id}.tar.{}.part", std::process::id()))
    }

    /// Starts the background loops; they stop with `shutdown`.
    pub async fn start(self: &Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        // No runner could heartbeat while this coordinator was down: give them a full lease to
        // reconnect before their jobs count as lost.
        let grace = now_ms() + self.config.lease.as_millis() as i64;
        let extended = self.store.extend_leases(grace).await?;
        if extended > 0 {
            tracing::info!(
                jobs = extended,
                "extended leases of running jobs after start-up"
            );
        }
        let snapshots = self.snapshot_dir();
        tokio::fs::create_dir_all(&snapshots)
            .await
            .with_context(|| {
                format!(
                    "cannot create the snapshot directory {}",
                    snapshots.display()
                )
            })?;
        let app = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { app.delivery_loop(stop).await });
        if let Some(url) = self.config.notify_url.clone() {
            let app = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { app.listen_loop(url, stop).await });
        }
        let app = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { app.retention_loop(stop).await });
        let app = self.clone();
        tokio::spawn(async move { app.lease_loop(shutdown).await });
        Ok(())
    }

    async fn delivery_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.store.claim_delivery(now_ms(), 5 * 60 * 1000).await {
                Ok(Some(d)) => {
                    let outcome = self.process_delivery(&d).await;
                    if let Ok(Some(run_id)) = outcome
                        && let Err(e) = self.store.set_delivery_run(d.id, run_id).await
                    {
                        tracing::error!(error = %e, "could not record a delivery's run");
                    }
                    let error = outcome.err().map(|e| format!("{e:#}"));
                    if let Some(e) = &error {
                        tracing::warn!(delivery.id = %d.delivery_id, error = %e, "delivery not turned into a run");
                    }
                    if let Err(e) = self
                        .store
                        .finish_delivery(d.id, error.as_deref(), now_ms())
                        .await
                    {
                        tracing::error!(error = %e, "could not mark a delivery processed");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not claim a delivery"),
            }
            tokio::select! {
                _ = self.deliveries.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn lease_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut gc = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.store.expire_leases(now_ms()).await {
                Ok(expired) if !expired.is_empty() => {
                    for e in &expired {
                        tracing::warn!(
                            job.id = e.job_id,
                            run.id = e.run_id,
                            requeued = e.requeued,
                            "lease expired"
                        );
                        if !e.requeued {
                            self.remove_snapshots_if_finished(e.run_id).await;
                        }
                    }
                    self.publish(Topic::Jobs);
                    self.publish(Topic::Logs);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "could not expire leases"),
            }
            gc += 1;
            if gc.is_multiple_of(120) {
                self.collect_snapshots().await;
            }
        }
    }

    /// Removes the workspace snapshots of run `run_id` if it has finished: they hold whatever
    /// its stages wrote, a secret one of them was granted included, and serve no later run.
    /// Called where runs end (a job's result, a refused deploy, a cancel, an expired lease);
    /// [`App::collect_snapshots`] is the backstop for a coordinator stopped in between.
    pub async fn remove_snapshots_if_finished(&self, run_id: i64) {
        match self.store.get_run(run_id).await {
            Ok(run) if run.status.is_finished() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(run.id = run_id, error = %e, "cannot tell whether the run's snapshots can go");
                return;
            }
        }
        let jobs = match self.store.jobs_of_run(run_id).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(run.id = run_id, error = %e, "cannot list the run's snapshots");
                return;
            }
        };
        for job in jobs {
            match tokio::fs::remove_file(self.snapshot_path(job.id)).await {
                Ok(()) => tracing::debug!(run.id = run_id, job.id = job.id, "snapshot removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(run.id = run_id, job.id = job.id, error = %e, "could not remove a snapshot")
                }
            }
        }
    }

    /// Removes workspace snapshots (and uploads cut short) of finished runs.
    async fn collect_snapshots(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(self.snapshot_dir()).await else {
            return;
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(job_id) = snapshot_job(&name) else {
                continue;
            };
            let finished = match self.store.get_job(job_id).await {
                Ok(job) => self
                    .store
                    .get_run(job.run_id)
                    .await
                    .map(|r| r.status.is_finished())
                    .unwrap_or(true),
                Err(store::StoreError::NotFound) => true,
                Err(_) => false,
            };
            if finished {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// The run a delivery started, if any.
    async fn process_delivery(&self, d: &store::Delivery) -> anyhow::Result<Option<i64>> {
        let repo = self.store.get_repo(d.repo_id).await?;
        match forge::parse(repo.forge, &d.event, &d.payload)? {
            Parsed::Trigger(t) => Ok(self
                .start_run(&repo, &t, "webhook")
                .await?
                .map(|run| run.id)),
            Parsed::Ping | Parsed::Ignored(_) => Ok(None),
        }
    }

    /// Deletes deliveries out of retention now and then ([`DeliveryRetention`]).
    async fn retention_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let policy = self.config.deliveries;
        loop {
            let older_than = now_ms() - policy.max_age.as_millis() as i64;
            match self.store.prune_deliveries(older_than, policy.keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries.deleted = n, "old deliveries deleted"),
                Err(e) => tracing::error!(error = %e, "could not delete old deliveries"),
            }
            tokio::select! {
                _ = tokio::time::sleep(policy.every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Scans the source at the event's commit (for a pull request: only what it adds) with
    /// the administrator's gate mode.
    async fn secret_gate(
        &self,
        repo: &Repository,
        t: &Trigger,
    ) -> anyhow::Result<gate::GateOutcome> {
        let mode: GateMode = self.config.policy.secret_gate;
        if mode == GateMode::Off {
            return Ok(gate::GateOutcome {
                mode,
                report: None,
                blocked: false,
            });
        }
        let archive = self.mirrors.archive(repo.id, &t.commit).await?;
        let diff = match (&t.kind, &t.base_commit) {
            (EventKind::PullRequest, Some(base)) => {
                match self.mirrors.diff(repo.id, base, &t.commit).await {
                    Ok(d) => Some(d),
                    Err(e) => {
                        // Without the base, judge the whole tree: stricter, never looser.
                        tracing::warn!(repo = %repo.name, error = %e, "no pull request diff; the secret gate scans the whole tree");
                        None
                    }
                }
            }
            _ => None,
        };
        let tmp = self.config.data_dir.join("tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .with_context(|| format!("cannot create the temporary directory {}", tmp.display()))?;
        let outcome = tokio::task::spawn_blocking(move || {
            gate::check_archive(&archive, mode, diff.as_deref(), &tmp)
        })
        .await??;
        Ok(outcome)
    }

    /// Fetches the commit, reads and plans the pipeline, and stores the run. A pipeline that
    /// does not parse becomes a failed run that says why; one whose `on:` does not match the
    /// event starts nothing (`Ok(None)`).
    pub async fn start_run(
        &self,
        repo: &Repository,
        t: &Trigger,
        trigger: &str,
    ) -> anyhow::Result<Option<Run>> {
        self.mirrors
            .fetch(repo.id, &repo.clone_url, &t.commit, t.fetch_ref.as_deref())
            .await?;
        let mut new = NewRun {
            repo_id: repo.id,
            event: t.kind.as_str().to_string(),
            branch: t.branch.clone(),
            target_branch: t.target_branch.clone(),
            tag: t.tag.clone(),
            commit: t.commit.clone(),
            trusted: t.trusted,
            trigger: trigger.to_string(),
            actor: t.actor.clone(),
            max_retries: self.config.max_retries,
            jobs: Vec::new(),
            failed: None,
        };
        let file = match self
            .mirrors
            .read_file(
                repo.id,
                &t.commit,
                ".moat.yml",
                moat_pipelines::MAX_FILE_SIZE,
            )
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                new.failed = Some(format!("no .moat.yml at commit {}", &t.commit));
                return Ok(Some(self.store.create_run(new, now_ms()).await?));
            }
            Err(e) => {
                // The run's reason is read through the API: git's own words stay in the log.
                new.failed = Some(if e.is_public() {
                    format!("cannot read .moat.yml: {e}")
                } else {
                    tracing::warn!(repo.name = %repo.name, commit = %t.commit, error = %e, "could not read .moat.yml");
                    format!(
                        "cannot read .moat.yml at commit {}; see the coordinator's log",
                        &t.commit
                    )
                });
                return Ok(Some(self.store.create_run(new, now_ms()).await?));
            }
        };
        let policy = &self.config.policy;
        let mut pipeline =
            match moat_pipelines::parse_with(&file, &policy.pipeline_policy(&repo.name)) {
                Ok(p) => p,
                Err(diags) => {
                    new.failed = Some(format!(
                        "invalid pipeline file:\n{}",
                        diags.render(".moat.yml").trim_end()
                    ));
                    return Ok(Some(self.store.create_run(new, now_ms()).await?));
                }
            };
        let raised = policy.apply_floor(&mut pipeline);
        let gate = self.secret_gate(repo, t).await;
        if let Ok(outcome) = &gate
            && outcome.blocked
        {
            new.failed = Some(outcome.summary());
        }
        if let Err(e) = &gate {
            // Fail closed, and say so; the cause (paths, git's words) goes to the log only.
            tracing::warn!(repo.name = %repo.name, commit = %t.commit, error = %format_args!("{e:#}"), "the secret gate could not run");
            new.failed =
                Some("the secret gate could not run; see the coordinator's log".to_string());
        }
        let event = Event {
            kind: t.kind,
            branch: t.branch.clone(),
            target_branch: t.target_branch.clone(),
            tag: t.tag.clone(),
            commit: t.commit.clone(),
            repo: repo.name.clone(),
            // Known only once the run is stored; the coordinator fills it in at claim time.
            run_id: String::new(),
        };
        if t.kind != EventKind::Manual && trigger == "webhook" && !pipeline.triggered_by(&event) {
            tracing::info!(repo = %repo.name, event = %t.kind, "`on:` does not match; no run");
            return Ok(None);
        }
        // A planning error (a value expanding past its cap, an event out of bounds) is the
        // run's result, never the coordinator's crash.
        let planned = if new.failed.is_none() {
            match moat_pipelines::plan(&pipeline, &event) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::info!(repo = %repo.name, error = %e, "pipeline could not be planned");
                    new.failed = Some(format!(
                        "cannot plan the pipeline:\n{}",
                        e.render(".moat.yml")
                    ));
                    None
                }
            }
        } else {
            None
        };
        if let Some(plan) = planned {
            for s in &plan.stages {
                new.jobs.push(NewJob::planned(s)?);
            }
        }
        let run = self.store.create_run(new, now_ms()).await?;
        let now = now_ms();
        if let Ok(outcome) = &gate {
            self.store
                .audit(
                    "coordinator",
                    "gate.secrets",
                    Some(run.id),
                    &outcome.evidence().to_string(),
                    now,
                )
                .await?;
        }
        for (stage, asked, applied) in raised {
            self.store
                .audit(
                    "policy",
                    "policy.fail_on_raised",
                    Some(run.id),
                    &serde_json::json!({
                        "stage": stage,
                        "asked": asked.as_str(),
                        "applied": applied.as_str(),
                    })
                    .to_string(),
                    now,
                )
                .await?;
        }
        tracing::info!(run.id = run.id, repo = %repo.name, run.number = run.number, "run created");
        self.publish(Topic::Jobs);
        Ok(Some(run))
    }
}

/// The job a file of the snapshot directory belongs to: `job-N.tar`, or `job-N.tar.PID.part`
/// (an upload in progress, or cut short by a crash).
fn snapshot_job(file_name: &str) -> Option<i64> {
    let rest = file_name.strip_prefix("job-")?;
    let (id, tail) = rest.split_once(".tar")?;
    let well_formed = tail.is_empty()
        || tail
            .strip_prefix('.')
            .and_then(|t| t.strip_suffix(".part"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::snapshot_job;

    #[test]
    fn snapshot_files_name_their_job() {
        assert_eq!(snapshot_job("job-12.tar"), Some(12));
        assert_eq!(snapshot_job("job-12.tar.4711.part"), Some(12));
        for other in [
            "job-.tar",
            "job-12.tar.part",
            "job-12.tar.x.part",
            "job-12.tarx",
            "job--1.tar",
            "job-12",
            "notes.txt",
            "job-12.tar.4711",
        ] {
            assert_eq!(snapshot_job(other), None, "{other}");
        }
    }
}
