//! The coordinator's HTTP surface: webhooks (signed per repository), the REST API (admin
//! bearer tokens), and the runner protocol (runner tokens). Every failure is answered as
//! `{"error": {"code", "message"}}`: handlers' [`ApiError`], and through [`edge_layers`]
//! also axum's extractor rejections, unknown routes and methods, time limits and panics;
//! internal details are logged, never sent.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use moat_protocol::{ErrorBody, ErrorDetail};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::store::{Runner, StoreError, TokenKind};
use crate::tokens;

mod api;
pub mod limits;
mod runner;
mod token_admin;
mod webhooks;

/// Largest JSON body of an API or runner request (log batches are the largest).
pub const MAX_JSON_BODY: usize = 4 << 20;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After` (whole seconds, at least one).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// Logs the cause once; the client learns only that something went wrong on our side.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the coordinator's log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::LeaseLost => {
                ApiError::new(StatusCode::CONFLICT, "lease_lost", e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer TOKEN"))?
        .trim();
    if token.is_empty() || token.len() > tokens::MAX_TOKEN_LEN {
        return Err(ApiError::unauthorized("invalid token"));
    }
    Ok(token)
}

/// An authenticated administrator (`Authorization: Bearer moat_a_…`).
pub struct Admin {
    pub token_id: i64,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(parts)?;
        match state
            .store
            .use_token(&tokens::hash(token), crate::store::now_ms())
            .await?
        {
            Some(t) if t.kind == TokenKind::Admin => Ok(Admin { token_id: t.id }),
            _ => Err(ApiError::unauthorized("invalid token")),
        }
    }
}

impl Admin {
    /// How the audit trail names this caller.
    pub fn actor(&self) -> String {
        format!("admin-token:{}", self.token_id)
    }
}

/// An authenticated runner (`Authorization: Bearer moat_r_…`).
pub struct RunnerAuth(pub Runner);

impl FromRequestParts<AppState> for RunnerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(parts)?;
        let hash = tokens::hash(token);
        // Runners call several times a second; a token seen recently needs no database read.
        match state
            .runner_cache
            .get_or_load(&hash, || state.store.runner_by_token(&hash))
            .await?
        {
            Some(r) => Ok(RunnerAuth(r)),
            None => Err(ApiError::unauthorized("invalid runner token")),
        }
    }
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

/// The stable `code` of an error answer that has no code of its own (axum's extractor
/// rejections, the method-not-allowed answer, time limits): one per status.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        429 => "rate_limited",
        500 => "internal",
        503 => "unavailable",
        504 => "timeout",
        _ if status.is_client_error() => "client_error",
        _ => "server_error",
    }
}

/// What an error answer says when it came without words (or with words not meant for clients).
fn default_message(status: StatusCode) -> String {
    match status.as_u16() {
        405 => "this route does not accept this method (see the Allow header)".to_string(),
        408 => "the request did not complete in time".to_string(),
        500..=599 => "internal error; see the coordinator's log".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
    }
}

/// An error message as a client may see it: one line, no control characters, bounded.
fn client_message(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    out.truncate(out.trim_end().len());
    out
}

/// Rewrites every error answer that is not already `{"error": {"code", "message"}}` into that
/// shape, keeping its status and headers (`Allow`, `Retry-After`). Axum's own rejections are
/// plain text and its 405 and the time limit's 408 are empty; handlers answer [`ApiError`]
/// (JSON already) and pass through untouched. Server errors never carry their text to the
/// client.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = client_message(&String::from_utf8_lossy(&text));
    let message = if text.is_empty() || status.is_server_error() {
        default_message(status)
    } else {
        text
    };
    let rewritten = ApiError::new(status, code_for(status), message).into_response();
    let (new_parts, body) = rewritten.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::TRANSFER_ENCODING);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

/// The layers every route is served with, outermost first: one JSON error shape, tracing,
/// panics turned into a 500, the JSON body limit, and the number of requests served at once.
pub fn edge_layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal("a request handler panicked").into_response()
                }))
                .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
                .layer(tower::limit::ConcurrencyLimitLayer::new(1024)),
        )
        // Last, so that it wraps everything above (and sees axum's plain bodies).
        .layer(axum::middleware::map_response(json_errors))
}

/// The whole HTTP application. Long-lived routes (claims, live logs, snapshots) have their own
/// time limits; everything else must answer within 60 s.
pub fn router(state: AppState) -> Router {
    let timed = Router::new()
        .merge(api::routes())
        .merge(token_admin::routes())
        .merge(runner::routes())
        .merge(webhooks::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ));
    let routes = Router::new()
        .merge(timed)
        .merge(api::streaming_routes())
        .merge(runner::streaming_routes(state.config.max_snapshot))
        .fallback(fallback);
    edge_layers(routes).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    /// A small application served with [`edge_layers`]: a handler that panics, one that takes
    /// longer than its time limit, one that answers plain text, and one answering an
    /// [`ApiError`] with a header.
    fn app() -> Router {
        let slow = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(20),
            ));
        let routes = Router::new()
            .merge(slow)
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("boom with a secret in it");
                    }
                    "never"
                }),
            )
            .route(
                "/plain",
                get(|| async { (StatusCode::CONFLICT, "plain\ntext\u{1b}[31m") }),
            )
            .route(
                "/busy",
                get(|| async {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "try later")
                        .retry_after(Duration::from_secs(3))
                }),
            )
            .route("/ok", get(|| async { "fine" }))
            .fallback(fallback);
        edge_layers(routes)
    }

    async fn call(
        method: &str,
        path: &str,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        (status, headers, value)
    }

    fn assert_shape(value: &serde_json::Value, code: &str) -> String {
        assert_eq!(value["error"]["code"], code, "{value}");
        let message = value["error"]["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty(), "{value}");
        assert!(!message.chars().any(char::is_control), "{value}");
        message
    }

    #[tokio::test]
    async fn time_limits_panics_and_plain_answers_get_the_json_shape() {
        let (status, _, v) = call("GET", "/slow").await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_shape(&v, "timeout");

        let (status, _, v) = call("GET", "/panic").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let message = assert_shape(&v, "internal");
        assert!(!message.contains("secret"), "{message}");

        let (status, _, v) = call("GET", "/plain").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(assert_shape(&v, "conflict"), "plain text [31m");

        let (status, headers, v) = call("POST", "/ok").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_shape(&v, "method_not_allowed");
        assert_eq!(headers["allow"], "GET,HEAD");

        let (status, _, v) = call("GET", "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_shape(&v, "not_found");
    }

    #[tokio::test]
    async fn answers_that_are_already_right_pass_untouched() {
        let (status, headers, v) = call("GET", "/busy").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(assert_shape(&v, "busy"), "try later");
        assert_eq!(headers["retry-after"], "3");
        assert_eq!(headers.get_all("content-type").iter().count(), 1);

        let (status, _, v) = call("GET", "/ok").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v, "fine");
    }

    #[test]
    fn every_status_has_a_stable_code() {
        for (status, code) in [
            (400, "bad_request"),
            (405, "method_not_allowed"),
            (408, "timeout"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
            (422, "invalid_body"),
            (418, "client_error"),
            (502, "server_error"),
        ] {
            assert_eq!(code_for(StatusCode::from_u16(status).unwrap()), code);
        }
        assert_eq!(client_message("a\nb\u{7}c  \n"), "a b c");
        assert_eq!(client_message(&"x".repeat(5000)).len(), 1000);
    }
}
