//! Tokens (admin, registration, runner) and runners: creation, lookup, the coalesced
//! "last used" / "last seen" writes, revocation that keeps one admin token, and the
//! installation id. It must not touch repositories, runs or jobs.

use super::*;

/// The runner row and its token row, together.
async fn create_runner_tx(
    c: &mut Conn,
    name: &str,
    token_hash: &[u8],
    slots: i64,
) -> Result<Runner> {
    let now = crate::store::now_ms();
    let conflict = || "a runner with this token already exists".to_string();
    let row = sqlx::query(
        "INSERT INTO runners (name, token_hash, slots, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, slots, created_at, last_seen_at",
    )
    .bind(name)
    .bind(token_hash)
    .bind(slots)
    .bind(now)
    .fetch_one(&mut *c)
    .await
    .map_err(|e| classify(e, conflict))?;
    let runner = runner_from_row(&row)?;
    sqlx::query(
        "INSERT INTO tokens (kind, hash, description, created_at, runner_id) \
         VALUES ('runner', $1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(name)
    .bind(now)
    .bind(runner.id)
    .execute(&mut *c)
    .await
    .map_err(|e| classify(e, conflict))?;
    Ok(runner)
}

/// Deletes a token; an admin token only while another remains. The admin rows are locked in id
/// order first, so two coordinators revoking the last two admin tokens at once cannot both
/// succeed (one sees the other's deletion) and cannot deadlock.
async fn revoke_token_tx(c: &mut Conn, id: i64) -> Result<Token> {
    let kind: String = sqlx::query_scalar("SELECT kind FROM tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    if kind == token_kind_str(TokenKind::Admin) {
        let admins: Vec<i64> = sqlx::query_scalar(concat!(
            "SELECT id FROM tokens WHERE kind = 'admin' ORDER BY id",
            for_update!()
        ))
        .fetch_all(&mut *c)
        .await?;
        if !admins.contains(&id) {
            return Err(StoreError::NotFound);
        }
        if admins.len() < 2 {
            return Err(StoreError::Conflict(
                "this is the last admin token: create another one first (moat token create), \
                 then revoke this one"
                    .into(),
            ));
        }
    }
    let row = sqlx::query(concat!(
        "DELETE FROM tokens WHERE id = $1 RETURNING ",
        token_cols!()
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    token_from_row(&row)
}

impl Backend {
    pub(super) async fn create_token(
        &self,
        kind: TokenKind,
        hash: &[u8],
        description: &str,
        expires_at: Option<Millis>,
    ) -> Result<Token> {
        if kind == TokenKind::Runner {
            return Err(StoreError::Conflict(
                "runner tokens are made when a runner registers".into(),
            ));
        }
        let row = sqlx::query(concat!(
            "INSERT INTO tokens (kind, hash, description, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            token_cols!()
        ))
        .bind(token_kind_str(kind))
        .bind(hash)
        .bind(description)
        .bind(crate::store::now_ms())
        .bind(expires_at)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || "a token with this hash already exists".into()))?;
        token_from_row(&row)
    }

    pub(super) async fn find_token(&self, hash: &[u8]) -> Result<Option<Token>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_cols!(),
            " FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub(super) async fn use_token(&self, hash: &[u8], now: Millis) -> Result<Option<Token>> {
        let Some(mut token) = self.find_token(hash).await? else {
            return Ok(None);
        };
        if token.expired(now) {
            return Ok(None);
        }
        // Admins call in bursts (a dashboard, a script); "last used" needs no finer grain than
        // a minute, and a write per request would queue behind the scheduler's.
        let key = (Touch::Token, token.id);
        let recent = |last: Millis| last <= now && now - last < TOKEN_USE_GRAIN_MS;
        if !self.touched().get(&key).is_some_and(|&last| recent(last)) {
            sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token.id)
                .bind(now)
                .execute(&mut *self.writer().await?)
                .await?;
            self.touched().insert(key, now);
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    pub(super) async fn consume_registration_token(
        &self,
        hash: &[u8],
        now: Millis,
    ) -> Result<Registration> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE hash = $1 AND kind = 'registration' \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(hash)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Registration::Accepted);
        }
        Ok(match self.find_token(hash).await? {
            Some(t) if t.kind == TokenKind::Registration => Registration::Expired,
            _ => Registration::Unknown,
        })
    }

    pub(super) async fn count_tokens(&self, kind: TokenKind) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE kind = $1")
                .bind(token_kind_str(kind))
                .fetch_one(&mut *self.reader().await?)
                .await?,
        )
    }

    pub(super) async fn list_tokens(&self) -> Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT t.id, t.kind, t.description, t.created_at, t.expires_at, \
             COALESCE(r.last_seen_at, t.last_used_at) AS last_used_at, t.runner_id \
             FROM tokens t LEFT JOIN runners r ON r.id = t.runner_id ORDER BY t.id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub(super) async fn revoke_token(&self, id: i64) -> Result<Token> {
        write_tx!(self, |c| revoke_token_tx(c, id).await)
    }

    pub(super) async fn installation_id(&self) -> Result<String> {
        sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or_else(|| corrupt("installation", "no installation id"))
    }

    pub(super) async fn create_runner(
        &self,
        name: &str,
        token_hash: &[u8],
        slots: i64,
    ) -> Result<Runner> {
        write_tx!(self, |c| create_runner_tx(c, name, token_hash, slots).await)
    }

    pub(super) async fn runner_by_token(&self, hash: &[u8]) -> Result<Option<Runner>> {
        let row = sqlx::query(
            "SELECT r.id, r.name, r.slots, r.created_at, r.last_seen_at \
             FROM tokens t JOIN runners r ON r.id = t.runner_id \
             WHERE t.hash = $1 AND t.kind = 'runner'",
        )
        .bind(hash)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(runner_from_row).transpose()
    }

    pub(super) async fn touch_runner(&self, runner_id: i64, now: Millis) -> Result<()> {
        // Runners touch on every request; "last seen" needs no finer grain than a second, and
        // a write per request would queue behind the claims for nothing.
        let recent = |last: Millis| last <= now && now - last < TOUCH_GRAIN_MS;
        if self
            .touched()
            .get(&(Touch::Runner, runner_id))
            .is_some_and(|&last| recent(last))
        {
            return Ok(());
        }
        let done = sqlx::query("UPDATE runners SET last_seen_at = $2 WHERE id = $1")
            .bind(runner_id)
            .bind(now)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.touched().insert((Touch::Runner, runner_id), now);
        Ok(())
    }

    pub(super) async fn list_runners(&self) -> Result<Vec<Runner>> {
        let rows = sqlx::query(
            "SELECT id, name, slots, created_at, last_seen_at FROM runners ORDER BY id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(runner_from_row).collect()
    }
}
