//! The audit trail: appending events (alone, or with `insert_audit` inside another write's
//! transaction) and reading the latest of one run or of all. Events are never updated or
//! deleted here.

use super::*;

/// Records an event at `now` on `c` (a connection, or a write transaction it belongs to).
pub(super) async fn insert_audit(c: &mut Conn, event: &NewAuditEvent, now: Millis) -> Result<()> {
    insert_event(
        c,
        &event.actor,
        &event.action,
        event.run_id,
        &event.detail,
        now,
    )
    .await
}

async fn insert_event(
    c: &mut Conn,
    actor: &str,
    action: &str,
    run_id: Option<i64>,
    detail: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at_ms, actor, action, run_id, detail) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(run_id)
    .bind(detail)
    .execute(&mut *c)
    .await?;
    Ok(())
}

impl Backend {
    pub(super) async fn audit(
        &self,
        actor: &str,
        action: &str,
        run_id: Option<i64>,
        detail: &str,
        now: Millis,
    ) -> Result<()> {
        insert_event(
            &mut *self.writer().await?,
            actor,
            action,
            run_id,
            detail,
            now,
        )
        .await
    }

    /// The latest `limit` events (of one run, or of all), oldest first.
    pub(super) async fn audit_events(
        &self,
        run_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let limit = limit_or_default(limit);
        let rows = match run_id {
            Some(run_id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_events WHERE run_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(run_id)
                .bind(limit)
                .fetch_all(&mut *self.reader().await?)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_events ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&mut *self.reader().await?)
                .await?
            }
        };
        let mut events = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }
}
