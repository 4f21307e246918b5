//! Repositories: creation, listing, lookup, deletion (which cascades to their runs,
//! jobs, logs, secrets and deliveries) and their webhook secret. It must not change jobs or runs
//! directly.

use super::*;

impl Backend {
    pub(super) async fn create_repo(&self, repo: NewRepository) -> Result<Repository> {
        let branches = serde_json::to_string(&repo.protected_branches).expect("strings serialise");
        let row = sqlx::query(concat!(
            "INSERT INTO repos (name, clone_url, forge, webhook_secret, concurrency, \
             cancel_superseded, protected_branches, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            repo_cols!()
        ))
        .bind(&repo.name)
        .bind(&repo.clone_url)
        .bind(repo.forge.as_str())
        .bind(&repo.webhook_secret)
        .bind(repo.concurrency)
        .bind(repo.cancel_superseded)
        .bind(branches)
        .bind(crate::store::now_ms())
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || format!("repository {} already exists", repo.name)))?;
        repo_from_row(&row)
    }

    pub(super) async fn list_repos(&self) -> Result<Vec<Repository>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            repo_cols!(),
            " FROM repos ORDER BY name"
        ))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(repo_from_row).collect()
    }

    pub(super) async fn get_repo(&self, id: i64) -> Result<Repository> {
        fetch_repo(&mut *self.reader().await?, id).await
    }

    pub(super) async fn get_repo_by_name(&self, name: &str) -> Result<Repository> {
        let row = sqlx::query(concat!(
            "SELECT ",
            repo_cols!(),
            " FROM repos WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or(StoreError::NotFound)?;
        repo_from_row(&row)
    }

    pub(super) async fn delete_repo(&self, id: i64) -> Result<()> {
        // Runs, jobs, logs and deliveries go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM repos WHERE id = $1")
            .bind(id)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub(super) async fn webhook_secret(&self, repo_id: i64) -> Result<String> {
        sqlx::query_scalar("SELECT webhook_secret FROM repos WHERE id = $1")
            .bind(repo_id)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or(StoreError::NotFound)
    }
}
