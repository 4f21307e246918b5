//! Approvals of jobs that wait for one: the approval is written under the
//! repository lock, and the run is settled and the approval's audit record written in the same
//! transaction. It must not claim or complete jobs.

use super::*;

async fn approve_tx(
    c: &mut Conn,
    job_id: i64,
    approver: &str,
    audit: &NewAuditEvent,
    now: Millis,
) -> Result<Job> {
    lock_repo_of_job(c, job_id).await?;
    let done = sqlx::query(
        "UPDATE jobs SET approved_by = $2, approved_at = $3, \
           reason = CASE WHEN reason = 'waiting for approval' THEN NULL ELSE reason END \
         WHERE id = $1 AND approval_required AND approved_by IS NULL \
           AND status IN ('pending', 'ready') \
         RETURNING run_id",
    )
    .bind(job_id)
    .bind(approver)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = done else {
        return match fetch_job(c, job_id).await {
            Ok(_) => Err(StoreError::Conflict(
                "the job is not waiting for an approval".into(),
            )),
            Err(e) => Err(e),
        };
    };
    let run_id: i64 = row.try_get("run_id")?;
    settle_run(c, run_id, now).await?;
    insert_audit(c, audit, now).await?;
    fetch_job(c, job_id).await
}

impl Backend {
    pub(super) async fn approve_job(
        &self,
        job_id: i64,
        approver: &str,
        audit: &NewAuditEvent,
        now: Millis,
    ) -> Result<Job> {
        write_tx!(self, |c| approve_tx(c, job_id, approver, audit, now).await)
    }
}
