//! Encrypted repository secrets: stored, read, listed (without values) and deleted as
//! ciphertext; encryption is the caller's. It must not decrypt or log values.

use super::*;

impl Backend {
    pub(super) async fn set_secret(
        &self,
        repo_id: i64,
        name: &str,
        secret: &StoredSecret,
        now: Millis,
    ) -> Result<bool> {
        let created: Millis = sqlx::query_scalar(
            "INSERT INTO secrets (repo_id, name, key_id, nonce, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (repo_id, name) DO UPDATE SET key_id = excluded.key_id, \
               nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at \
             RETURNING created_at",
        )
        .bind(repo_id)
        .bind(name)
        .bind(&secret.key_id)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext)
        .bind(now)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || "no such repository".into()))?;
        Ok(created == now)
    }

    pub(super) async fn get_secret(
        &self,
        repo_id: i64,
        name: &str,
    ) -> Result<Option<StoredSecret>> {
        let row = sqlx::query(
            "SELECT key_id, nonce, ciphertext FROM secrets WHERE repo_id = $1 AND name = $2",
        )
        .bind(repo_id)
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.map(|r| {
            Ok(StoredSecret {
                key_id: r.try_get("key_id")?,
                nonce: r.try_get("nonce")?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    pub(super) async fn list_secrets(&self, repo_id: i64) -> Result<Vec<SecretMeta>> {
        let rows = sqlx::query(
            "SELECT name, key_id, created_at, updated_at FROM secrets WHERE repo_id = $1 \
             ORDER BY name",
        )
        .bind(repo_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretMeta {
                    name: r.try_get("name")?,
                    key_id: r.try_get("key_id")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(name)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
