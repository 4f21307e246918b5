//! One environment's public listener: accepts connections and serves HTTP/1.1 on them.
//!
//! Owns the accept loop, the per-connection HTTP server settings (header size and count,
//! header-read timeout, upgrades) and the graceful stop of an environment's connections when it
//! is removed or the proxy stops. It must not pick an upstream or rewrite requests: every
//! request goes to `forward`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::Limits;
use super::forward::Forwarder;
use super::routes::Env;

/// Serves `env` on `listener` until `env.stop` is cancelled, then closes the listener and
/// lets open connections finish their current request.
pub(crate) async fn run(
    env: Arc<Env>,
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    limits: Limits,
    tracker: TaskTracker,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tracing::info!(env.name = %env.name, listen.addr = %env.listen, "listening");
    loop {
        // Waiting for a slot leaves new connections in the kernel's backlog, not refused.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = env.stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(env.name = %env.name, error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = env.stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = {
            let env = env.clone();
            let forwarder = forwarder.clone();
            service_fn(move |req| {
                let env = env.clone();
                let forwarder = forwarder.clone();
                async move { Ok::<_, Infallible>(forwarder.handle(&env, peer, req).await) }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let name = env.name.clone();
        tracker.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(env.name = %name, client.addr = %peer, error = %error, "client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(env.name = %env.name, listen.addr = %env.listen, "stopped listening");
    graceful.shutdown().await;
}

/// Binds an environment's public address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
