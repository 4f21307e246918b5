//! Runs: creation with their planned jobs (plan checks, numbering, superseding older
//! runs), lookup, filtered listing, their jobs, and cancellation. It must not claim jobs or
//! touch leases.

use super::*;

/// Checks a plan before anything is written: unique stage indices, needs that exist, and no
/// cycle (whose jobs would wait for each other forever and keep the run open).
fn check_jobs(jobs: &[NewJob]) -> Result<()> {
    let mut seen = HashMap::new();
    for job in jobs {
        if seen.insert(job.stage_index, &job.name).is_some() {
            return Err(StoreError::Conflict(format!(
                "two jobs have stage index {}",
                job.stage_index
            )));
        }
    }
    for job in jobs {
        if let Some(need) = job.needs.iter().find(|n| !seen.contains_key(n)) {
            return Err(StoreError::Conflict(format!(
                "job {} needs stage index {need}, which the run does not have",
                job.name
            )));
        }
    }
    // Kahn: repeatedly decide jobs whose needs are all decided; whatever is left is a cycle.
    let mut decided = std::collections::HashSet::new();
    loop {
        let before = decided.len();
        for job in jobs {
            if !decided.contains(&job.stage_index) && job.needs.iter().all(|n| decided.contains(n))
            {
                decided.insert(job.stage_index);
            }
        }
        if decided.len() == jobs.len() {
            return Ok(());
        }
        if decided.len() == before {
            let stuck = jobs.iter().find(|j| !decided.contains(&j.stage_index));
            return Err(StoreError::Conflict(format!(
                "job {} is part of a cycle of needs",
                stuck.map_or("?", |j| j.name.as_str())
            )));
        }
    }
}

async fn create_run_tx(c: &mut Conn, run: &NewRun, now: Millis) -> Result<i64> {
    if run.failed.is_none() {
        check_jobs(&run.jobs)?;
    }
    // Numbering through the repository row is atomic and takes the repository lock first.
    let row = sqlx::query(
        "UPDATE repos SET run_counter = run_counter + 1 WHERE id = $1 \
         RETURNING run_counter, cancel_superseded",
    )
    .bind(run.repo_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let number: i64 = row.try_get("run_counter")?;
    let cancel_superseded: bool = row.try_get("cancel_superseded")?;

    let (status, finished_at) = match run.failed {
        Some(_) => (RunStatus::Failed, Some(now)),
        None => (RunStatus::Queued, None),
    };
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (repo_id, number, status, event, branch, target_branch, tag, \
         commit_sha, trusted, trigger_kind, actor, reason, created_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
    )
    .bind(run.repo_id)
    .bind(number)
    .bind(status.as_str())
    .bind(&run.event)
    .bind(&run.branch)
    .bind(&run.target_branch)
    .bind(&run.tag)
    .bind(&run.commit)
    .bind(run.trusted)
    .bind(&run.trigger)
    .bind(&run.actor)
    .bind(&run.failed)
    .bind(now)
    .bind(finished_at)
    .fetch_one(&mut *c)
    .await?;

    if run.failed.is_none() {
        for job in &run.jobs {
            let (status, ready_at, finished_at) = if job.skip.is_some() {
                (JobStatus::Skipped, None, Some(now))
            } else if job.needs.is_empty() && !job.approval_required {
                (JobStatus::Ready, Some(now), None)
            } else {
                // Needs, or an approval, decide later (settle_run).
                (JobStatus::Pending, None, None)
            };
            let needs = serde_json::to_string(&job.needs).expect("a list of integers serialises");
            sqlx::query(
                "INSERT INTO jobs (run_id, repo_id, stage_index, name, status, needs, spec, \
                 max_retries, reason, when_skipped, ready_at, finished_at, approval_required) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(run_id)
            .bind(run.repo_id)
            .bind(job.stage_index)
            .bind(&job.name)
            .bind(status.as_str())
            .bind(needs)
            .bind(&job.spec)
            .bind(run.max_retries)
            .bind(&job.skip)
            .bind(job.skip.is_some())
            .bind(ready_at)
            .bind(finished_at)
            .bind(job.approval_required)
            .execute(&mut *c)
            .await?;
        }
        // Decides dependants of `when:` skips, and finishes a run with nothing to do.
        settle_run(c, run_id, now).await?;
    }

    if cancel_superseded
        && run.event == "push"
        && let Some(branch) = &run.branch
    {
        let older: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE repo_id = $1 AND event = $2 AND branch = $3 \
                 AND status IN ('queued', 'running') AND id < $4 ORDER BY id",
        )
        .bind(run.repo_id)
        .bind(&run.event)
        .bind(branch)
        .bind(run_id)
        .fetch_all(&mut *c)
        .await?;
        let reason = format!("superseded by run #{number}");
        for old in older {
            cancel_run_locked(c, old, &reason, now).await?;
        }
    }
    Ok(run_id)
}

impl Backend {
    pub(super) async fn create_run(&self, run: NewRun, now: Millis) -> Result<Run> {
        write_tx!(self, |c| {
            let id = create_run_tx(c, &run, now).await?;
            fetch_run(c, id).await
        })
    }

    pub(super) async fn get_run(&self, id: i64) -> Result<Run> {
        fetch_run(&mut *self.reader().await?, id).await
    }

    pub(super) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut q = QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs r JOIN repos p ON p.id = r.repo_id WHERE TRUE"
        ));
        if let Some(repo_id) = filter.repo_id {
            q.push(" AND r.repo_id = ").push_bind(repo_id);
        }
        if let Some(branch) = &filter.branch {
            q.push(" AND r.branch = ").push_bind(branch.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND r.status = ").push_bind(status.as_str());
        }
        if let Some(before) = filter.before {
            q.push(" AND r.id < ").push_bind(before);
        }
        q.push(" ORDER BY r.id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows = q.build().fetch_all(&mut *self.reader().await?).await?;
        rows.iter().map(run_from_row).collect()
    }

    pub(super) async fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_cols!(),
            " FROM jobs WHERE run_id = $1 ORDER BY stage_index"
        ))
        .bind(run_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn get_job(&self, id: i64) -> Result<Job> {
        fetch_job(&mut *self.reader().await?, id).await
    }

    pub(super) async fn cancel_run(&self, run_id: i64, reason: &str, now: Millis) -> Result<Run> {
        write_tx!(self, |c| {
            let run = fetch_run(c, run_id).await?;
            if run.status.is_finished() {
                return Ok(run);
            }
            lock_repo(c, run.repo_id).await?;
            cancel_run_locked(c, run_id, reason, now).await?;
            fetch_run(c, run_id).await
        })
    }
}
