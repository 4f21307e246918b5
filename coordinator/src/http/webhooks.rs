//! `POST /hooks/{forge}/{repo_id}`: one URL per repository, so the signature is checked with
//! that repository's secret on the raw body before anything is parsed. 401 bad or missing
//! signature, 413 too large, 400 malformed, 202 accepted (a run is created asynchronously),
//! 200 for pings, replays and events that start nothing.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiResult};
use crate::app::{AppState, Topic};
use crate::forge::{self, Parsed, WebhookError};
use crate::store::{Forge, StoreError, now_ms};

pub fn routes(max_body: usize) -> Router<AppState> {
    Router::new().route(
        "/hooks/{forge}/{repo_id}",
        post(receive).layer(DefaultBodyLimit::max(max_body)),
    )
}

async fn receive(
    State(state): State<AppState>,
    Path((forge_name, repo_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let unknown = || ApiError::not_found("no repository with this webhook URL");
    let forge = Forge::parse(&forge_name).ok_or_else(unknown)?;
    let repo_id: i64 = repo_id.parse().map_err(|_| unknown())?;
    let repo = match state.store.get_repo(repo_id).await {
        Ok(r) if r.forge == forge => r,
        Ok(_) | Err(StoreError::NotFound) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "webhook bodies are limited to {} bytes",
                    state.config.max_webhook_body
                ),
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let secret = state.store.webhook_secret(repo.id).await?;
    forge::verify(forge, &headers, &body, &secret).map_err(|e| {
        tracing::warn!(repo = %repo.name, error = %e, "webhook refused");
        ApiError::unauthorized(e.to_string())
    })?;
    let event = forge::event_name(forge, &headers)
        .ok_or_else(|| ApiError::bad_request("missing event header"))?;
    let parsed = forge::parse(forge, &event, &body).map_err(|e| match e {
        WebhookError::Malformed(m) => ApiError::bad_request(format!("malformed payload: {m}")),
        other => ApiError::bad_request(other.to_string()),
    })?;
    match parsed {
        Parsed::Ping => Ok((StatusCode::OK, Json(json!({ "status": "pong" })))),
        Parsed::Ignored(reason) => Ok((
            StatusCode::OK,
            Json(json!({ "status": "ignored", "reason": reason })),
        )),
        Parsed::Trigger(_) => {
            // Forges always send an id; without one, the body itself identifies a replay.
            let delivery = forge::delivery_id(forge, &headers)
                .unwrap_or_else(|| hex::encode(Sha256::digest(&body)));
            match state
                .store
                .insert_delivery(repo.id, &delivery, &event, &body, now_ms())
                .await?
            {
                Some(_) => {
                    state.publish(Topic::Deliveries);
                    Ok((
                        StatusCode::ACCEPTED,
                        Json(json!({ "status": "accepted", "delivery": delivery })),
                    ))
                }
                None => Ok((
                    StatusCode::OK,
                    Json(json!({ "status": "duplicate", "delivery": delivery })),
                )),
            }
        }
    }
}
