//! Row mapping (`*_from_row`) and the plain reads by id (`fetch_repo`, `fetch_run`,
//! `fetch_job`) that work inside and outside a transaction. It owns how a stored row becomes a
//! [`crate::store`] value and which values it refuses as corrupt; it must not write, lock or
//! decide anything.

use super::*;

pub(super) fn repo_from_row(r: &DbRow) -> Result<Repository> {
    let forge: String = r.try_get("forge")?;
    let branches: String = r.try_get("protected_branches")?;
    Ok(Repository {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        clone_url: r.try_get("clone_url")?,
        forge: Forge::parse(&forge).ok_or_else(|| corrupt("forge", &forge))?,
        concurrency: r.try_get("concurrency")?,
        cancel_superseded: r.try_get("cancel_superseded")?,
        protected_branches: serde_json::from_str(&branches)
            .map_err(|e| corrupt("protected branches", e))?,
        created_at: r.try_get("created_at")?,
    })
}

pub(super) fn run_from_row(r: &DbRow) -> Result<Run> {
    let status: String = r.try_get("status")?;
    Ok(Run {
        id: r.try_get("id")?,
        repo_id: r.try_get("repo_id")?,
        repo_name: r.try_get("repo_name")?,
        number: r.try_get("number")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("run status", &status))?,
        event: r.try_get("event")?,
        branch: r.try_get("branch")?,
        target_branch: r.try_get("target_branch")?,
        tag: r.try_get("tag")?,
        commit: r.try_get("commit_sha")?,
        trusted: r.try_get("trusted")?,
        trigger: r.try_get("trigger_kind")?,
        actor: r.try_get("actor")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub(super) fn job_from_row(r: &DbRow) -> Result<Job> {
    let status: String = r.try_get("status")?;
    let needs: String = r.try_get("needs")?;
    Ok(Job {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        repo_id: r.try_get("repo_id")?,
        stage_index: r.try_get("stage_index")?,
        name: r.try_get("name")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        needs: serde_json::from_str(&needs).map_err(|e| corrupt("job needs", e))?,
        spec: r.try_get("spec")?,
        attempt: r.try_get("attempt")?,
        max_retries: r.try_get("max_retries")?,
        runner_id: r.try_get("runner_id")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        exit_code: r.try_get("exit_code")?,
        reason: r.try_get("reason")?,
        when_skipped: r.try_get("when_skipped")?,
        cancel_requested: r.try_get("cancel_requested")?,
        ready_at: r.try_get("ready_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        approval_required: r.try_get("approval_required")?,
        approved_by: r.try_get("approved_by")?,
        outputs: r
            .try_get::<Option<String>, _>("outputs")?
            .map(|o| serde_json::from_str(&o).map_err(|e| corrupt("job outputs", e)))
            .transpose()?,
    })
}

pub(super) fn token_from_row(r: &DbRow) -> Result<Token> {
    let kind: String = r.try_get("kind")?;
    Ok(Token {
        id: r.try_get("id")?,
        kind: match kind.as_str() {
            "admin" => TokenKind::Admin,
            "registration" => TokenKind::Registration,
            "runner" => TokenKind::Runner,
            _ => return Err(corrupt("token kind", &kind)),
        },
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        runner_id: r.try_get("runner_id")?,
    })
}

pub(super) fn runner_from_row(r: &DbRow) -> Result<Runner> {
    Ok(Runner {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slots: r.try_get("slots")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

pub(super) fn log_from_row(r: &DbRow) -> Result<LogLine> {
    Ok(LogLine {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        attempt: r.try_get("attempt")?,
        seq: r.try_get("seq")?,
        stream: r.try_get("stream")?,
        line: r.try_get("line")?,
        at: r.try_get("at_ms")?,
    })
}

pub(super) fn audit_from_row(r: &DbRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.try_get("id")?,
        at: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        run_id: r.try_get("run_id")?,
        detail: r.try_get("detail")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Reads usable inside and outside transactions.

pub(super) async fn fetch_repo(c: &mut Conn, id: i64) -> Result<Repository> {
    let row = sqlx::query(concat!(
        "SELECT ",
        repo_cols!(),
        " FROM repos WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    repo_from_row(&row)
}

pub(super) async fn fetch_run(c: &mut Conn, id: i64) -> Result<Run> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_cols!(),
        " FROM runs r JOIN repos p ON p.id = r.repo_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    run_from_row(&row)
}

pub(super) async fn fetch_job(c: &mut Conn, id: i64) -> Result<Job> {
    let row = sqlx::query(concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    job_from_row(&row)
}
