//! Forwarding one client request to its environment's live upstream.
//!
//! Owns the request path: the body limit (413), the lease on the live upstream (503 without
//! one), the pooled client with its connect and response timeouts (502 / 504), header
//! rewriting through `headers`, and the WebSocket / HTTP upgrade tunnel. Error answers carry a
//! short fixed body; what went wrong goes to the log only. It must not change the route table
//! or read the control socket.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::task::TaskTracker;

use super::Limits;
use super::body::{BoxError, LeasedBody, LimitedBody};
use super::headers;
use super::routes::{Env, Lease};

/// The body of every answer the proxy gives a client.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The request handler shared by every listener.
pub(crate) struct Forwarder {
    client: Client<HttpConnector, LimitedBody>,
    limits: Limits,
    tracker: TaskTracker,
}

impl Forwarder {
    pub(crate) fn new(limits: Limits, tracker: TaskTracker) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .pool_max_idle_per_host(limits.upstream_max_idle_per_host)
            .build(connector);
        Self {
            client,
            limits,
            tracker,
        }
    }

    /// Answers one request from `peer` to `env`.
    pub(crate) async fn handle(
        &self,
        env: &Env,
        peer: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return short(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        if declared_length(&req).is_some_and(|len| len > self.limits.max_body_bytes) {
            tracing::info!(env.name = %env.name, client.addr = %peer, "request body over the limit (content-length)");
            return close_after(short(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"));
        }
        let Some(lease) = env.lease() else {
            return short(StatusCode::SERVICE_UNAVAILABLE, "no upstream\n");
        };
        let upgrade = (req.version() == Version::HTTP_11)
            .then(|| headers::upgrade_protocol(req.headers()))
            .flatten();
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match Uri::try_from(format!("http://{}{}", lease.addr(), path)) {
            Ok(uri) => uri,
            Err(_) => return short(StatusCode::BAD_REQUEST, "bad request\n"),
        };
        parts.version = Version::HTTP_11;
        headers::prepare_request(&mut parts.headers, peer.ip(), upgrade.as_ref());
        let (body, exceeded) = LimitedBody::new(body, self.limits.max_body_bytes);
        let outbound = Request::from_parts(parts, body);

        let sent = tokio::select! {
            sent = tokio::time::timeout(self.limits.response_timeout, self.client.request(outbound)) => sent,
            _ = lease.closed() => {
                tracing::warn!(env.name = %env.name, upstream.addr = %lease.addr(), "drain expired before the upstream answered");
                return close_after(short(StatusCode::BAD_GATEWAY, "bad gateway\n"));
            }
        };
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) if exceeded.load(Ordering::Acquire) => {
                tracing::info!(env.name = %env.name, client.addr = %peer, error = %error, "request body over the limit");
                return close_after(short(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"));
            }
            Ok(Err(error)) => {
                let timed_out = is_timeout(&error);
                tracing::warn!(env.name = %env.name, upstream.addr = %lease.addr(), error = %error_chain(&error),
                    upstream.connect = error.is_connect(), "upstream request failed");
                return if timed_out {
                    short(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n")
                } else {
                    short(StatusCode::BAD_GATEWAY, "bad gateway\n")
                };
            }
            Err(_) => {
                tracing::warn!(env.name = %env.name, upstream.addr = %lease.addr(),
                    timeout.ms = self.limits.response_timeout.as_millis() as u64, "upstream response timed out");
                return short(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n");
            }
        };

        if let (StatusCode::SWITCHING_PROTOCOLS, Some(protocol), Some(client_upgrade)) =
            (response.status(), upgrade.as_ref(), client_upgrade)
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (mut parts, _) = response.into_parts();
            headers::prepare_response(&mut parts.headers, Some(protocol));
            self.tracker.spawn(tunnel(
                env.name.to_string(),
                lease,
                client_upgrade,
                upstream_upgrade,
            ));
            return Response::from_parts(parts, Empty::new().map_err(never).boxed_unsync());
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            tracing::warn!(env.name = %env.name, upstream.addr = %lease.addr(),
                "upstream switched protocols on a request that asked for no upgrade");
            return short(StatusCode::BAD_GATEWAY, "bad gateway\n");
        }
        let (mut parts, body) = response.into_parts();
        headers::prepare_response(&mut parts.headers, None);
        Response::from_parts(parts, LeasedBody::new(body, lease).boxed_unsync())
    }
}

/// Copies bytes both ways between an upgraded client connection and its upstream until
/// either side ends or the upstream's drain expires.
async fn tunnel(env: String, lease: Lease, client: OnUpgrade, upstream: OnUpgrade) {
    let upgraded = tokio::select! {
        both = async { tokio::try_join!(client, upstream) } => both,
        _ = lease.closed() => return,
    };
    let (client, upstream) = match upgraded {
        Ok(both) => both,
        Err(error) => {
            tracing::warn!(env.name = %env, upstream.addr = %lease.addr(), error = %error, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => tracing::debug!(env.name = %env, upstream.addr = %lease.addr(),
                tunnel.bytes_up = up, tunnel.bytes_down = down, "upgraded connection ended"),
            Err(error) => tracing::debug!(env.name = %env, upstream.addr = %lease.addr(), error = %error,
                "upgraded connection failed"),
        },
        _ = lease.closed() => tracing::info!(env.name = %env, upstream.addr = %lease.addr(),
            "upgraded connection closed: the upstream's drain expired"),
    }
}

fn never(never: std::convert::Infallible) -> BoxError {
    match never {}
}

/// A short plain-text answer.
pub(crate) fn short(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(never)
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Asks hyper to close the client connection after this answer (its body may be unread).
fn close_after(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a client error comes from the connect timeout.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// An error and its causes on one line, for the log.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    line
}
