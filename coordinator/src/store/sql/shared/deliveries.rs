//! Webhook deliveries: the durable inbox (insert once per delivery id), leased
//! claims with a bounded number of attempts, their outcome, listing and retention. It must not
//! create runs itself (the caller does, then links the run).

use super::*;

impl Backend {
    pub(super) async fn insert_delivery(
        &self,
        repo_id: i64,
        delivery_id: &str,
        event: &str,
        payload: &[u8],
        now: Millis,
    ) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "INSERT INTO deliveries (repo_id, delivery_id, event, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repo_id, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(repo_id)
        .bind(delivery_id)
        .bind(event)
        .bind(payload)
        .bind(now)
        .fetch_optional(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, String::new))
    }

    pub(super) async fn claim_delivery(
        &self,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Delivery>> {
        // A lease that ran out means the processor crashed or hung; after the last allowed
        // attempt the delivery is finished with the reason instead of crashing it again.
        sqlx::query(
            "UPDATE deliveries SET processed_at = $1, lease_until = NULL, error = $3 \
             WHERE processed_at IS NULL AND lease_until IS NOT NULL AND lease_until <= $1 \
             AND attempts >= $2",
        )
        .bind(now)
        .bind(MAX_DELIVERY_ATTEMPTS)
        .bind(DELIVERY_GAVE_UP)
        .execute(&mut *self.writer().await?)
        .await?;
        let row = sqlx::query(concat!(
            "UPDATE deliveries SET lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM deliveries WHERE processed_at IS NULL \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY id LIMIT 1",
            skip_locked!(),
            ") RETURNING id, repo_id, delivery_id, event, payload, attempts"
        ))
        .bind(now)
        .bind(now + lease_ms)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Delivery {
            id: r.try_get("id")?,
            repo_id: r.try_get("repo_id")?,
            delivery_id: r.try_get("delivery_id")?,
            event: r.try_get("event")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
        }))
    }

    pub(super) async fn delivery_error(&self, id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT error FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("error")?)
    }

    pub(super) async fn finish_delivery(
        &self,
        id: i64,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE deliveries SET processed_at = $2, error = $3, lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(error)
        .execute(&mut *self.writer().await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub(super) async fn set_delivery_run(&self, id: i64, run_id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE deliveries SET run_id = $2 WHERE id = $1")
            .bind(id)
            .bind(run_id)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub(super) async fn list_deliveries(
        &self,
        repo_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT d.id, d.repo_id, r.name AS repo_name, d.delivery_id, d.event, \
             d.received_at, d.processed_at, d.run_id, u.number AS run_number, d.error \
             FROM deliveries d JOIN repos r ON r.id = d.repo_id \
             LEFT JOIN runs u ON u.id = d.run_id \
             WHERE ($1 IS NULL OR d.repo_id = $1) ORDER BY d.id DESC LIMIT $2",
        )
        .bind(repo_id)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let processed_at: Option<Millis> = r.try_get("processed_at")?;
                let run_id: Option<i64> = r.try_get("run_id")?;
                let error: Option<String> = r.try_get("error")?;
                Ok(DeliveryInfo {
                    id: r.try_get("id")?,
                    repo_id: r.try_get("repo_id")?,
                    repo_name: r.try_get("repo_name")?,
                    delivery_id: r.try_get("delivery_id")?,
                    event: r.try_get("event")?,
                    received_at: r.try_get("received_at")?,
                    processed_at,
                    outcome: DeliveryOutcome::of(processed_at.is_some(), run_id, error.as_deref()),
                    run_id,
                    run_number: r.try_get("run_number")?,
                    error,
                })
            })
            .collect()
    }

    pub(super) async fn prune_deliveries(&self, older_than: Millis, keep: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM deliveries WHERE processed_at IS NOT NULL AND received_at < $1 \
             AND id NOT IN (SELECT id FROM deliveries ORDER BY id DESC LIMIT $2)",
        )
        .bind(older_than)
        .bind(keep.max(0))
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(done.rows_affected())
    }
}
