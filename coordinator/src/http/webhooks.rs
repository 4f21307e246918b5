//! `POST /hooks/{forge}/{repo_id}`: one URL per repository, so the signature is checked with
//! that repository's secret on the raw body before anything is parsed.
//!
//! Nobody is authenticated before the body has been read, so the route spends as little as it
//! can on a sender until then, in this order: the sender's rate (429, per source address), the
//! repository (404), the signature and event headers (401, 400), the declared length (413);
//! then the body is read into a buffer bounded by the largest webhook body, counted against
//! one budget shared by every webhook body being read (503 with `Retry-After` past it), and
//! due in full within the body deadline (408). 202 accepted (a run is created asynchronously),
//! 200 for pings, replays and events that start nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::BodyDataStream;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::limits::Reservation;
use super::{ApiError, ApiResult};
use crate::app::{AppState, Topic};
use crate::forge::{self, Parsed, WebhookError};
use crate::store::{Forge, StoreError, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new().route("/hooks/{forge}/{repo_id}", post(receive))
}

/// How long a sender refused for lack of budget is asked to wait.
const BUSY_RETRY: Duration = Duration::from_secs(5);

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many webhook bodies are being received; retry later",
    )
    .retry_after(BUSY_RETRY)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("webhook bodies are limited to {max} bytes"),
    )
}

/// Reads the whole body into a buffer of at most `max` bytes whose capacity is reserved from
/// the shared budget first, within `deadline`.
async fn read_body(
    body: &mut Option<BodyDataStream>,
    declared: Option<usize>,
    max: usize,
    deadline: tokio::time::Instant,
    budget: &mut Reservation<'_>,
) -> ApiResult<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    if let Some(len) = declared {
        if !budget.grow(len) {
            return Err(busy());
        }
        buf.reserve_exact(len);
    }
    let Some(stream) = body.as_mut() else {
        return Err(ApiError::bad_request("the body was already read"));
    };
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            // Too slow: not worth lingering for either.
            *body = None;
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the webhook body did not arrive in time",
            ));
        };
        let chunk = match next {
            None => {
                *body = None;
                break;
            }
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                *body = None;
                tracing::debug!(error = %e, "webhook body read failed");
                return Err(ApiError::bad_request("cannot read the body"));
            }
        };
        let needed = buf.len() + chunk.len();
        if needed > max {
            return Err(too_large(max));
        }
        if needed > buf.capacity() {
            // Grow geometrically (bounded by `max`), and only with budget for the new capacity.
            let cap = needed.max(buf.capacity().saturating_mul(2)).min(max);
            if cap > budget.held() && !budget.grow(cap - budget.held()) {
                return Err(busy());
            }
            buf.reserve_exact(cap - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// How long, and how much, of a refused request's body is still read (and thrown away) after
/// the answer, so that a sender still writing its body sees the answer instead of a reset
/// connection. Costs no memory; bounded in time.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;

fn linger(mut stream: BodyDataStream) {
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

async fn receive(
    State(state): State<AppState>,
    Path((forge_name, repo_id)): Path<(String, String)>,
    request: Request,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (parts, body) = request.into_parts();
    let mut body = Some(body.into_data_stream());
    let answer = accept(&state, &forge_name, &repo_id, parts, &mut body).await;
    if answer.is_err()
        && let Some(unread) = body
    {
        linger(unread);
    }
    answer
}

async fn accept(
    state: &AppState,
    forge_name: &str,
    repo_id: &str,
    parts: axum::http::request::Parts,
    body: &mut Option<BodyDataStream>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let started = tokio::time::Instant::now();
    let headers: HeaderMap = parts.headers;
    // Requests served without a peer address (in-process tests) share one bucket.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let intake = &state.intake;
    if let Err(wait) = intake.rate.check(peer, Instant::now()) {
        tracing::warn!(peer = %peer, "webhook rate limit reached");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many webhook requests from this address; retry later",
        )
        .retry_after(wait));
    }
    let unknown = || ApiError::not_found("no repository with this webhook URL");
    let forge = Forge::parse(forge_name).ok_or_else(unknown)?;
    let repo_id: i64 = repo_id.parse().map_err(|_| unknown())?;
    let repo = match state.store.get_repo(repo_id).await {
        Ok(r) if r.forge == forge => r,
        Ok(_) | Err(StoreError::NotFound) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    forge::signature_header(forge, &headers).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let event = forge::event_name(forge, &headers)
        .ok_or_else(|| ApiError::bad_request("missing event header"))?;
    let max = state.config.max_webhook_body;
    let declared = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?,
        ),
    };
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut budget = intake.in_flight.reservation();
    let body = read_body(
        body,
        declared.map(|n| n as usize),
        max,
        started + intake.limits.body_timeout,
        &mut budget,
    )
    .await?;
    let secret = state.store.webhook_secret(repo.id).await?;
    forge::verify(forge, &headers, &body, &secret).map_err(|e| {
        tracing::warn!(repo = %repo.name, error = %e, "webhook refused");
        ApiError::unauthorized(e.to_string())
    })?;
    let parsed = forge::parse(forge, &event, &body).map_err(|e| match e {
        WebhookError::Malformed(m) => ApiError::bad_request(format!("malformed payload: {m}")),
        invalid @ WebhookError::Invalid { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            invalid.to_string(),
        ),
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
