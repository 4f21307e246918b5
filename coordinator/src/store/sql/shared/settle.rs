//! The scheduling rules applied after a job changes: `settle_run` asks
//! [`moat_pipelines::schedule`] what becomes of a run's pending jobs and stores the answers,
//! `finish_run` gives a decided run its final status, `cancel_run_locked` cancels a run. Callers
//! hold the repository lock and the write transaction; this module must not take locks or open
//! transactions itself, and holds no claim or lease logic.

use super::*;

/// What `settle_run` needs to know about a job.
struct JobState {
    id: i64,
    name: String,
    status: JobStatus,
    /// Positions in the run's job list (not stage indices).
    needs: Vec<usize>,
    when_skipped: bool,
    /// Needs an approval that has not been given yet.
    awaits_approval: bool,
}

impl JobState {
    fn view(&self) -> StageView<'_> {
        StageView {
            name: &self.name,
            needs: &self.needs,
            state: match self.status {
                JobStatus::Pending => State::Pending,
                JobStatus::Ready | JobStatus::Running => State::Running,
                JobStatus::Passed => State::Passed,
                JobStatus::Failed => State::Failed,
                JobStatus::Cancelled => State::Cancelled,
                JobStatus::Skipped if self.when_skipped => State::Excluded,
                JobStatus::Skipped => State::Skipped,
            },
            awaits_approval: self.awaits_approval,
        }
    }
}

/// Brings a run up to date after any of its jobs changed: asks the scheduling rule
/// ([`moat_pipelines::schedule`]) what becomes of its pending jobs and stores the answers;
/// when every job is decided, the run gets its final status from the same rule.
pub(super) async fn settle_run(c: &mut Conn, run_id: i64, now: Millis) -> Result<()> {
    // The run's flags ride along on every job row, saving a query per completion.
    let rows = sqlx::query(
        "SELECT j.id, j.stage_index, j.name, j.status, j.needs, j.when_skipped, \
         j.approval_required, j.approved_by, \
         r.status AS run_status, r.cancel_requested AS run_cancel \
         FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.run_id = $1 ORDER BY j.stage_index",
    )
    .bind(run_id)
    .fetch_all(&mut *c)
    .await?;
    let mut by_stage = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        by_stage.insert(row.try_get::<i64, _>("stage_index")?, i);
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: String = row.try_get("status")?;
        let needs: String = row.try_get("needs")?;
        let needs: Vec<i64> = serde_json::from_str(&needs).map_err(|e| corrupt("job needs", e))?;
        let needs = needs
            .iter()
            // create_run refuses unknown needs, so a miss means the rows were tampered with.
            .map(|n| {
                by_stage
                    .get(n)
                    .copied()
                    .ok_or_else(|| corrupt("job needs an unknown stage", n))
            })
            .collect::<Result<Vec<usize>>>()?;
        jobs.push(JobState {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
            needs,
            when_skipped: row.try_get("when_skipped")?,
            awaits_approval: row.try_get::<bool, _>("approval_required")?
                && row.try_get::<Option<String>, _>("approved_by")?.is_none(),
        });
    }

    // Skip reasons are rendered here: a decision borrows the names in `jobs`, which the loop
    // below updates.
    let decisions: Vec<(usize, Option<String>, bool)> = {
        let views: Vec<StageView<'_>> = jobs.iter().map(JobState::view).collect();
        schedule::settle(&views)
            .map_err(|e| corrupt("job needs", e))?
            .into_iter()
            .map(|(i, d)| match d {
                Decision::Run => (i, None, false),
                Decision::AwaitApproval => (i, None, true),
                Decision::Skip(b) => (i, Some(b.to_string()), false),
            })
            .collect()
    };
    for (i, skip, awaits) in decisions {
        let id = jobs[i].id;
        match skip {
            None if awaits => {
                // Noted once; an approver's later reason is not overwritten.
                sqlx::query("UPDATE jobs SET reason = $2 WHERE id = $1 AND reason IS NULL")
                    .bind(id)
                    .bind(schedule::AWAITING_APPROVAL)
                    .execute(&mut *c)
                    .await?;
            }
            None => {
                jobs[i].status = JobStatus::Ready;
                sqlx::query("UPDATE jobs SET status = 'ready', ready_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *c)
                    .await?;
            }
            Some(reason) => {
                jobs[i].status = JobStatus::Skipped;
                sqlx::query(
                    "UPDATE jobs SET status = 'skipped', reason = $2, finished_at = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .execute(&mut *c)
                .await?;
            }
        }
    }

    if !jobs.iter().all(|j| j.status.is_finished()) {
        return Ok(());
    }
    let (run_status, run_cancel): (String, bool) = match rows.first() {
        Some(row) => (row.try_get("run_status")?, row.try_get("run_cancel")?),
        // A run without jobs (nothing in its plan): read the run itself.
        None => {
            let row = sqlx::query("SELECT status, cancel_requested FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_one(&mut *c)
                .await?;
            (row.try_get("status")?, row.try_get("cancel_requested")?)
        }
    };
    let finished = RunStatus::parse(&run_status)
        .ok_or_else(|| corrupt("run status", &run_status))?
        .is_finished();
    if !finished {
        finish_run(c, run_id, run_cancel, &jobs, now).await?;
    }
    Ok(())
}

/// Gives a run whose jobs are all decided its final status.
async fn finish_run(
    c: &mut Conn,
    run_id: i64,
    cancelled: bool,
    jobs: &[JobState],
    now: Millis,
) -> Result<()> {
    let views: Vec<StageView<'_>> = jobs.iter().map(JobState::view).collect();
    let Some(conclusion) = schedule::conclude(&views, cancelled) else {
        return Ok(());
    };
    let status = match conclusion {
        Conclusion::Passed => RunStatus::Passed,
        Conclusion::Failed { .. } => RunStatus::Failed,
        Conclusion::Cancelled => RunStatus::Cancelled,
    };
    // A cancelled run keeps the reason given when the cancel was asked for.
    let reason = conclusion.reason();
    sqlx::query(
        "UPDATE runs SET status = $2, reason = COALESCE($3, reason), finished_at = $4 \
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(run_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Cancels a run's unclaimed jobs, flags its running ones, and settles it.
pub(super) async fn cancel_run_locked(
    c: &mut Conn,
    run_id: i64,
    reason: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET status = 'cancelled', reason = $2, finished_at = $3 \
         WHERE run_id = $1 AND status IN ('pending', 'ready')",
    )
    .bind(run_id)
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE jobs SET cancel_requested = TRUE, reason = $2 \
         WHERE run_id = $1 AND status = 'running'",
    )
    .bind(run_id)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE runs SET cancel_requested = TRUE, reason = $2 \
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(run_id)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    settle_run(c, run_id, now).await
}
