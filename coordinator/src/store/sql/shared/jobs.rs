//! Jobs at work: the fair claim across repositories (with the backend's lock pick),
//! heartbeats, completion, lease expiry and extension. Each write holds the repository lock and
//! settles the run through `settle`; it must not create runs or change approvals.

use super::*;

/// The claim's UPDATE (the `jobs_claimed` trigger does the bookkeeping), given `pick`: the
/// repository whose turn it is. Within it, a ready job of a run this runner already works on
/// (bounded by the repository's started, unfinished runs, not by its queue), else the head of
/// its queue (index `jobs_ready`).
macro_rules! claim_sql {
    ($pick:expr) => {
        concat!(
            "WITH pick AS (",
            $pick,
            ") UPDATE jobs SET status = 'running', runner_id = $1, attempt = attempt + 1, \
               lease_expires_at = $2, started_at = $3, finished_at = NULL \
             WHERE status = 'ready' AND id = COALESCE(\
               (SELECT j.id FROM runs r JOIN jobs j ON j.run_id = r.id \
                WHERE r.repo_id = (SELECT id FROM pick) AND r.status = 'running' \
                AND j.status = 'ready' \
                AND EXISTS (SELECT 1 FROM jobs k WHERE k.run_id = r.id AND k.runner_id = $1) \
                ORDER BY j.ready_at, j.id LIMIT 1), \
               (SELECT id FROM jobs WHERE repo_id = (SELECT id FROM pick) AND status = 'ready' \
                ORDER BY ready_at, id LIMIT 1)) \
             RETURNING ",
            job_cols!()
        )
    };
}

/// The repository whose turn it is: has ready jobs, is under its concurrency limit, and was
/// served longest ago (partial index `repos_claimable`).
macro_rules! pick_sql {
    () => {
        "SELECT id FROM repos WHERE ready > 0 AND (concurrency IS NULL OR running < concurrency) \
         ORDER BY claim_seq, id LIMIT 1"
    };
}

/// Postgres: locks the repository whose turn it is, in a statement of its own so that the
/// claim's next statement sees everything committed before the lock was granted. Repositories
/// locked by another claim or a completion are skipped; only if every eligible one is locked
/// do we wait for the first, rather than report "no work" while work exists.
async fn lock_next_repo(c: &mut Conn) -> Result<Option<i64>> {
    let free: Option<i64> = sqlx::query_scalar(concat!(pick_sql!(), skip_locked!()))
        .fetch_optional(&mut *c)
        .await?;
    if free.is_some() {
        return Ok(free);
    }
    Ok(sqlx::query_scalar(concat!(pick_sql!(), for_update!()))
        .fetch_optional(&mut *c)
        .await?)
}

/// A run and its repository in one round trip (for a claim).
async fn fetch_run_and_repo(c: &mut Conn, run_id: i64) -> Result<(Run, Repository)> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_cols!(),
        ", p.clone_url AS repo_clone_url, p.forge AS repo_forge, \
         p.concurrency AS repo_concurrency, p.cancel_superseded AS repo_cancel_superseded, \
         p.protected_branches AS repo_protected_branches, p.created_at AS repo_created_at \
         FROM runs r JOIN repos p ON p.id = r.repo_id WHERE r.id = $1"
    ))
    .bind(run_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let run = run_from_row(&row)?;
    let forge: String = row.try_get("repo_forge")?;
    let branches: String = row.try_get("repo_protected_branches")?;
    let repo = Repository {
        id: run.repo_id,
        name: run.repo_name.clone(),
        clone_url: row.try_get("repo_clone_url")?,
        forge: Forge::parse(&forge).ok_or_else(|| corrupt("forge", &forge))?,
        concurrency: row.try_get("repo_concurrency")?,
        cancel_superseded: row.try_get("repo_cancel_superseded")?,
        protected_branches: serde_json::from_str(&branches)
            .map_err(|e| corrupt("protected branches", e))?,
        created_at: row.try_get("repo_created_at")?,
    };
    Ok((run, repo))
}

async fn complete_tx(
    c: &mut Conn,
    job_id: i64,
    runner_id: i64,
    done: &JobCompletion,
    now: Millis,
) -> Result<()> {
    lock_repo_of_job(c, job_id).await?;
    let status = match done.outcome {
        JobOutcome::Passed => JobStatus::Passed,
        JobOutcome::Failed => JobStatus::Failed,
        JobOutcome::Cancelled => JobStatus::Cancelled,
    };
    // Check and write in one statement. A job whose cancel was requested is recorded as
    // cancelled whatever the container did: the user asked for it to stop.
    let row = sqlx::query(
        "UPDATE jobs SET \
           status = CASE WHEN cancel_requested THEN 'cancelled' ELSE $3 END, \
           reason = CASE WHEN cancel_requested THEN COALESCE($4, reason) ELSE $4 END, \
           exit_code = $5, finished_at = $6, lease_expires_at = NULL, outputs = $7 \
         WHERE id = $1 AND runner_id = $2 AND status = 'running' \
         RETURNING run_id",
    )
    .bind(job_id)
    .bind(runner_id)
    .bind(status.as_str())
    .bind(&done.reason)
    .bind(done.exit_code)
    .bind(now)
    .bind(&done.outputs)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&mut *c)
            .await?;
        return Err(match exists {
            Some(_) => StoreError::LeaseLost,
            None => StoreError::NotFound,
        });
    };
    let run_id: i64 = row.try_get("run_id")?;
    settle_run(c, run_id, now).await
}

async fn expire_one_tx(c: &mut Conn, job_id: i64, now: Millis) -> Result<Option<Expired>> {
    lock_repo_of_job(c, job_id).await?;
    let row = sqlx::query(concat!(
        "SELECT run_id, status, lease_expires_at, attempt, max_retries, cancel_requested \
         FROM jobs WHERE id = $1",
        for_update!()
    ))
    .bind(job_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let status: String = row.try_get("status")?;
    let lease: Option<Millis> = row.try_get("lease_expires_at")?;
    // Re-checked under the lock: the runner may have reported or heartbeated meanwhile.
    if status != JobStatus::Running.as_str() || lease.is_none_or(|l| l >= now) {
        return Ok(None);
    }
    let run_id: i64 = row.try_get("run_id")?;
    let attempt: i64 = row.try_get("attempt")?;
    let max_retries: i64 = row.try_get("max_retries")?;
    let cancel_requested: bool = row.try_get("cancel_requested")?;
    let requeued = !cancel_requested && attempt <= max_retries;
    if requeued {
        sqlx::query(
            "UPDATE jobs SET status = 'ready', runner_id = NULL, lease_expires_at = NULL, \
             started_at = NULL, ready_at = $2, \
             reason = 'runner lost (lease expired); retrying' WHERE id = $1",
        )
        .bind(job_id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    } else {
        let (status, reason) = if cancel_requested {
            (JobStatus::Cancelled, None)
        } else {
            let reason = format!("runner lost: lease expired after {attempt} attempts");
            (JobStatus::Failed, Some(reason))
        };
        sqlx::query(
            "UPDATE jobs SET status = $2, reason = COALESCE($3, reason), finished_at = $4, \
             lease_expires_at = NULL WHERE id = $1",
        )
        .bind(job_id)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .execute(&mut *c)
        .await?;
        settle_run(c, run_id, now).await?;
    }
    Ok(Some(Expired {
        job_id,
        run_id,
        requeued,
    }))
}

impl Backend {
    pub(super) async fn claim_job(
        &self,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Claimed>> {
        if !PICK_IN_OWN_STATEMENT {
            // SQLite: one statement is atomic, and with every write of this process on this
            // one connection its snapshot is current. Two round trips in all, no transaction.
            let mut c = self.writer().await?;
            let mut retries = 0;
            let row = loop {
                let result = sqlx::query(claim_sql!(pick_sql!()))
                    .bind(runner_id)
                    .bind(now + lease_ms)
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await;
                match result {
                    // Another process wrote between our read and our write.
                    Err(e) if retries < 5 && is_retryable(&e) => retries += 1,
                    other => break other?,
                }
            };
            let Some(row) = row else { return Ok(None) };
            let job = job_from_row(&row)?;
            let (run, repo) = fetch_run_and_repo(&mut c, job.run_id).await?;
            return Ok(Some(Claimed { job, run, repo }));
        }
        // Postgres: a statement's snapshot predates the row locks it waits for, so the pick
        // (which locks) and the claim (which must see the state after the lock) are two
        // statements of one transaction.
        write_tx!(self, |c| {
            let Some(repo_id) = lock_next_repo(c).await? else {
                return Ok(None);
            };
            let row = sqlx::query(claim_sql!("SELECT CAST($4 AS BIGINT) AS id"))
                .bind(runner_id)
                .bind(now + lease_ms)
                .bind(now)
                .bind(repo_id)
                .fetch_optional(&mut *c)
                .await?;
            // With the repository locked and its counter saying it has ready jobs, a miss
            // cannot happen; treat it as "nothing right now" rather than an error.
            let Some(row) = row else { return Ok(None) };
            let job = job_from_row(&row)?;
            let (run, repo) = fetch_run_and_repo(c, job.run_id).await?;
            Ok(Some(Claimed { job, run, repo }))
        })
    }

    pub(super) async fn heartbeat(
        &self,
        job_id: i64,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<HeartbeatReply> {
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $3 \
             WHERE id = $1 AND runner_id = $2 AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(job_id)
        .bind(runner_id)
        .bind(now + lease_ms)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        match cancel_requested {
            Some(cancel_requested) => Ok(HeartbeatReply { cancel_requested }),
            None => Err(StoreError::LeaseLost),
        }
    }

    pub(super) async fn complete_job(
        &self,
        job_id: i64,
        runner_id: i64,
        done: JobCompletion,
        now: Millis,
    ) -> Result<()> {
        write_tx!(self, |c| complete_tx(c, job_id, runner_id, &done, now)
            .await)
    }

    pub(super) async fn expire_leases(&self, now: Millis) -> Result<Vec<Expired>> {
        let candidates: Vec<i64> = sqlx::query_scalar(
            // Ordered by the `jobs_lease` index: ORDER BY id would tempt SQLite into a table scan.
            "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at, id",
        )
        .bind(now)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        // One transaction per job: each locks only its own repository.
        let mut expired = Vec::new();
        for job_id in candidates {
            let outcome = write_tx!(self, |c| expire_one_tx(c, job_id, now).await);
            match outcome {
                Ok(Some(e)) => expired.push(e),
                // Reported meanwhile, or its repository was deleted.
                Ok(None) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    pub(super) async fn extend_leases(&self, until: Millis) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 \
             WHERE status = 'running' AND lease_expires_at < $1",
        )
        .bind(until)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(done.rows_affected())
    }
}
