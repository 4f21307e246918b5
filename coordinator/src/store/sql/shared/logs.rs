//! Log lines: batched appends (ordered per run, see `lock_run_logs`) and paging by run or
//! by job. It must not change job or run state.

use super::*;

/// Rows per multi-row INSERT of log lines (7 parameters each, well under SQLite's limit).
const LOG_BATCH: usize = 500;

async fn append_logs_tx(
    c: &mut Conn,
    job_id: i64,
    attempt: i64,
    lines: &[NewLogLine],
    now: Millis,
) -> Result<()> {
    let run_id: i64 = sqlx::query_scalar("SELECT run_id FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    lock_run_logs(c, run_id).await?;
    for chunk in lines.chunks(LOG_BATCH) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO logs (job_id, run_id, attempt, seq, stream, line, at_ms) ",
        );
        q.push_values(chunk, |mut b, l| {
            b.push_bind(job_id)
                .push_bind(run_id)
                .push_bind(attempt)
                .push_bind(l.seq)
                .push_bind(l.stream.clone())
                .push_bind(l.line.clone())
                .push_bind(now);
        });
        q.push(" ON CONFLICT (job_id, attempt, seq) DO NOTHING");
        q.build().execute(&mut *c).await?;
    }
    Ok(())
}

impl Backend {
    pub(super) async fn append_logs(
        &self,
        job_id: i64,
        attempt: i64,
        lines: &[NewLogLine],
        now: Millis,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        write_tx!(self, |c| append_logs_tx(c, job_id, attempt, lines, now)
            .await)
    }

    pub(super) async fn run_logs(
        &self,
        run_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            log_cols!(),
            " FROM logs WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(run_id)
        .bind(after)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(log_from_row).collect()
    }

    pub(super) async fn job_logs(
        &self,
        job_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            log_cols!(),
            " FROM logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(job_id)
        .bind(after)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(log_from_row).collect()
    }
}
