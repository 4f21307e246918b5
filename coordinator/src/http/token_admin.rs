//! Token administration under `/api/v1` (admin bearer tokens): listing every token (admin,
//! registration, runner — never a token or its hash), creating admin tokens, one-time runner
//! registration tokens with an expiry, and revoking any token by id. A revocation takes effect
//! on the next request: admin tokens are looked up on every request, and the runner cache is
//! emptied here and, through `NOTIFY`, in the other coordinators (see `RunnerCache`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Admin, ApiError, ApiResult};
use crate::app::{AppState, Topic};
use crate::store::{Millis, Token, TokenKind, now_ms};
use crate::tokens;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_admin_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/runner-tokens", post(create_registration_token))
}

/// How long a registration token lives unless asked otherwise.
pub const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(3600);
/// The longest lifetime a registration token may be given.
pub const MAX_REGISTRATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest label kept (longer ones are cut).
const MAX_LABEL: usize = 200;

/// What the API shows of a token.
#[derive(Debug, Serialize)]
struct TokenView {
    id: i64,
    kind: TokenKind,
    label: String,
    created_at: Millis,
    last_used_at: Option<Millis>,
    expires_at: Option<Millis>,
    expired: bool,
    runner_id: Option<i64>,
}

impl TokenView {
    fn new(t: Token, now: Millis) -> Self {
        TokenView {
            expired: t.expired(now),
            id: t.id,
            kind: t.kind,
            label: t.description,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
            runner_id: t.runner_id,
        }
    }
}

/// A label as given, without control characters (it is printed in tables), cut to length.
fn clean_label(label: Option<String>) -> String {
    label
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL)
        .collect()
}

/// The lifetime a registration token asks for (`1h`, `90m`, …), bounded.
pub fn registration_ttl(expires: Option<&str>) -> Result<Duration, String> {
    let ttl = match expires {
        None => return Ok(DEFAULT_REGISTRATION_TTL),
        Some(s) => {
            moat_pipelines::units::parse_duration(s.trim()).map_err(|e| format!("expires: {e}"))?
        }
    };
    if ttl > MAX_REGISTRATION_TTL {
        return Err(format!(
            "expires: registration tokens live at most {}h",
            MAX_REGISTRATION_TTL.as_secs() / 3600
        ));
    }
    Ok(ttl)
}

async fn list_tokens(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<TokenView>>> {
    let now = now_ms();
    let list = state.store.list_tokens().await?;
    Ok(Json(
        list.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdminTokenRequest {
    label: Option<String>,
}

/// A new admin token, shown once. With it an administrator rotates: create a new one, switch
/// to it, revoke the old one.
async fn create_admin_token(
    State(state): State<AppState>,
    admin: Admin,
    body: Option<Json<AdminTokenRequest>>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let label = clean_label(body.and_then(|b| b.0.label));
    let token = tokens::generate(tokens::ADMIN_PREFIX);
    let stored = state
        .store
        .create_token(TokenKind::Admin, &tokens::hash(&token), &label, None)
        .await?;
    let now = now_ms();
    state
        .store
        .audit(
            &admin.actor(),
            "token.created",
            None,
            &json!({ "id": stored.id, "kind": "admin", "label": label }).to_string(),
            now,
        )
        .await?;
    tracing::info!(token.id = stored.id, "admin token created");
    let mut view = serde_json::to_value(TokenView::new(stored, now)).map_err(ApiError::internal)?;
    view["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn revoke_token(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<TokenView>> {
    let revoked = state.store.revoke_token(id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found(format!("no token {id}")),
        other => other.into(),
    })?;
    // Before answering: the next request with this token, here, must already fail.
    state.publish(Topic::Tokens);
    let now = now_ms();
    state
        .store
        .audit(
            &admin.actor(),
            "token.revoked",
            None,
            &json!({
                "id": revoked.id,
                "kind": revoked.kind,
                "label": revoked.description,
                "runner_id": revoked.runner_id,
            })
            .to_string(),
            now,
        )
        .await?;
    tracing::info!(
        token.id = revoked.id,
        token.kind = revoked.kind.as_str(),
        "token revoked"
    );
    Ok(Json(TokenView::new(revoked, now)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegistrationRequest {
    description: Option<String>,
    /// Lifetime like `1h` or `30m` (default 1h, at most 30 days).
    expires: Option<String>,
}

async fn create_registration_token(
    State(state): State<AppState>,
    admin: Admin,
    body: Option<Json<RegistrationRequest>>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let ttl = registration_ttl(body.expires.as_deref()).map_err(ApiError::bad_request)?;
    let description = clean_label(body.description);
    let now = now_ms();
    let expires_at = now.saturating_add(ttl.as_millis() as i64);
    let token = tokens::generate(tokens::REGISTRATION_PREFIX);
    let stored = state
        .store
        .create_token(
            TokenKind::Registration,
            &tokens::hash(&token),
            &description,
            Some(expires_at),
        )
        .await?;
    state
        .store
        .audit(
            &admin.actor(),
            "runner_token.created",
            None,
            &json!({ "id": stored.id, "description": description, "expires_at": expires_at })
                .to_string(),
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "id": stored.id, "expires_at": expires_at })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lifetimes() {
        assert_eq!(registration_ttl(None).unwrap(), DEFAULT_REGISTRATION_TTL);
        assert_eq!(
            registration_ttl(Some("90m")).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            registration_ttl(Some("720h")).unwrap(),
            MAX_REGISTRATION_TTL
        );
        assert!(
            registration_ttl(Some("721h"))
                .unwrap_err()
                .contains("at most 720h")
        );
        assert!(
            registration_ttl(Some("0s"))
                .unwrap_err()
                .starts_with("expires:")
        );
        assert!(registration_ttl(Some("soon")).is_err());
    }

    #[test]
    fn labels_lose_control_characters_and_length() {
        assert_eq!(clean_label(Some("ci\nrunner\t1".into())), "cirunner1");
        assert_eq!(clean_label(Some("x".repeat(500))).len(), MAX_LABEL);
        assert_eq!(clean_label(None), "");
    }
}
