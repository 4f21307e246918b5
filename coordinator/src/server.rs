//! Serving the coordinator: the HTTP(S) listener, first-start initialisation of the admin
//! token, and the embedded runner of `moat up`, which talks to the coordinator over the same
//! HTTP protocol as a remote runner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::store::{Store, TokenKind};
use crate::tokens;

// The command line writes its token files with it, through this module.
pub use crate::files::write_secret_file;

/// Installs the process-wide TLS provider (ring) once; both the HTTPS server and the HTTP
/// clients need it.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// On first start (no admin token in the database) creates one, writes it to
/// `<data_dir>/admin-token` (0600) and returns it so it can be shown; the database keeps only
/// its hash.
///
/// An `admin-token` file that is already there is never overwritten: a database without admin
/// tokens next to it is not the one that file belongs to (a lost or replaced database), and
/// replacing the file would destroy the only copy of a working credential.
pub async fn ensure_admin_token(
    store: &dyn Store,
    data_dir: &Path,
) -> anyhow::Result<Option<String>> {
    if store.count_tokens(TokenKind::Admin).await? > 0 {
        return Ok(None);
    }
    let path = data_dir.join("admin-token");
    if std::fs::symlink_metadata(&path).is_ok() {
        anyhow::bail!(
            "{} exists, but the database has no admin token: this data directory and the \
             database do not belong together. Nothing was changed; restore the database, or \
             move {} away to create a new admin token",
            path.display(),
            path.display()
        );
    }
    let token = tokens::generate(tokens::ADMIN_PREFIX);
    store
        .create_token(TokenKind::Admin, &tokens::hash(&token), "first start", None)
        .await?;
    write_secret_file(&path, &token)?;
    Ok(Some(token))
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let router = crate::http::router(AppState(app));
    listener.set_nonblocking(true)?;
    match tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            // The peer's address is what webhook rate limits count by.
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        }
        Some(tls) => {
            install_tls_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        }
    }
    Ok(())
}

/// Binds `addr`, refusing clearly when it is taken.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))
}

/// An HTTP client for talking to a coordinator. With `ca_cert`, that CA (PEM) is the only one
/// trusted — the usual set-up for a coordinator with a private CA; otherwise the system's roots.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    Ok(builder.build()?)
}
