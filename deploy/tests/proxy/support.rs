//! What the proxy tests share: bounded waits, a scratch directory, a real loopback backend
//! (hyper, with slow, streaming, hanging and WebSocket routes), the proxy under test, and raw
//! HTTP/1.1 and WebSocket clients. Traffic goes to 127.0.0.1 only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat_deploy::proxy::{self, ControlClient, EnvName, ProxyConfig, RunningProxy};
use sha1::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Every await in these tests is bounded; this is the usual bound.
pub const WAIT: Duration = Duration::from_secs(10);

/// `fut`, or a panic naming `what` after `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// A directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("moat-proxy-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn name(s: &str) -> EnvName {
    EnvName::new(s).unwrap()
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The proxy under test.

/// A running proxy in its own scratch directory.
pub struct TestProxy {
    pub dir: Scratch,
    pub config: ProxyConfig,
    pub shutdown: CancellationToken,
    pub running: Option<RunningProxy>,
    pub client: ControlClient,
    /// Stops the proxy when the test ends.
    _guard: DropGuard,
}

impl TestProxy {
    pub fn config(dir: &Path) -> ProxyConfig {
        let mut config = ProxyConfig::new(dir.join("control.sock"), dir.join("state.json"));
        config.shutdown_grace = Duration::from_secs(2);
        config
    }

    pub async fn start(tag: &str) -> Self {
        Self::start_with(tag, |_| {}).await
    }

    pub async fn start_with(tag: &str, tweak: impl FnOnce(&mut ProxyConfig)) -> Self {
        let dir = Scratch::new(tag);
        let mut config = Self::config(&dir.0);
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: Scratch, config: ProxyConfig) -> Self {
        let shutdown = CancellationToken::new();
        let running = within(
            WAIT,
            "proxy start",
            proxy::start(config.clone(), shutdown.clone()),
        )
        .await
        .expect("the proxy starts");
        let client = running.client();
        let _guard = shutdown.clone().drop_guard();
        Self {
            dir,
            config,
            shutdown,
            running: Some(running),
            client,
            _guard,
        }
    }

    /// Adds environment `env` on a free loopback port; returns its address.
    pub async fn add(&self, env: &str) -> SocketAddr {
        within(WAIT, "add", self.client.add(&name(env), any_port()))
            .await
            .expect("add")
            .listen
    }

    pub async fn switch(&self, env: &str, upstream: SocketAddr, drain: Duration) {
        within(
            WAIT,
            "set_upstream",
            self.client
                .set_upstream(&name(env), Some(upstream), Some(drain)),
        )
        .await
        .expect("set_upstream");
    }

    /// Stops the proxy and waits for it; returns the directory for a restart.
    pub async fn stop(mut self) -> (Scratch, ProxyConfig) {
        self.shutdown.cancel();
        let running = self.running.take().unwrap();
        within(WAIT, "proxy stop", running.wait()).await.unwrap();
        (self.dir, self.config)
    }
}

// ---------------------------------------------------------------------------------------------
// The backend: a real HTTP server on a loopback port.

type BackendBody = BoxBody<Bytes, Infallible>;

/// A loopback HTTP backend answering as `name`; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend {
    /// Routes: `/` (the name), `/headers` (the request's headers, one `name: value` a line),
    /// `/hop` (the name, with hop-by-hop response headers), `/slow?ms=N`,
    /// `/stream?n=N&ms=M` (`name:i\n` every M ms, endless for n=0), `/hang` (never answers),
    /// `/len` (the request body's length), `/ws` (WebSocket echo, `name:` before each text).
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let requests = Arc::new(AtomicUsize::new(0));
        let (token, count) = (stop.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = token.cancelled() => return,
                };
                let count = count.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        count.fetch_add(1, Ordering::Relaxed);
                        answer(name, req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }
}

fn full(body: impl Into<Bytes>) -> BackendBody {
    Full::new(body.into()).boxed()
}

fn query(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| v.parse().unwrap())
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<BackendBody>, Infallible> {
    let response = match req.uri().path() {
        "/headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            Response::new(full(lines.join("\n")))
        }
        "/hop" => Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-thing", "1")
            .header("x-app", "kept")
            .body(full(name))
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query(&req, "ms"))).await;
            Response::new(full(name))
        }
        "/stream" => {
            let (n, ms) = (query(&req, "n"), query(&req, "ms"));
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let mut i = 0;
                while n == 0 || i < n {
                    if tx.send(Bytes::from(format!("{name}:{i}\n"))).await.is_err() {
                        return;
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            });
            Response::new(ChanBody(rx).boxed())
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(full(name))
        }
        "/len" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            Response::new(full(body.to_string()))
        }
        "/ws" => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let upgrade = req
                .headers()
                .get("upgrade")
                .map(|v| v.as_bytes() == b"websocket");
            let (Some(key), Some(true)) = (key, upgrade) else {
                return Ok(Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(full("no upgrade"))
                    .unwrap());
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    ws_echo(name, TokioIo::new(upgraded)).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", ws_accept(key.as_bytes()))
                .body(full(Bytes::new()))
                .unwrap()
        }
        _ => Response::builder()
            .header("x-backend", name)
            .body(full(name))
            .unwrap(),
    };
    Ok(response)
}

/// A response body fed by a channel.
struct ChanBody(mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket, by hand (RFC 6455): the handshake key, and text frames.

pub fn ws_accept(key: &[u8]) -> String {
    let mut sha = sha1::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A frame: (opcode, payload), unmasked.
pub async fn ws_read<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        io.read_exact(&mut ext).await?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        io.read_exact(&mut ext).await?;
        len = u64::from_be_bytes(ext);
    }
    let mut mask = [0u8; 4];
    if masked {
        io.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    io.read_exact(&mut payload).await?;
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Ok((opcode, payload))
}

/// Writes one final frame; `mask` for the client's side.
pub async fn ws_write<W: AsyncWrite + Unpin>(
    io: &mut W,
    opcode: u8,
    payload: &[u8],
    mask: bool,
) -> std::io::Result<()> {
    assert!(payload.len() < 126, "short frames only");
    let mut frame = vec![
        0x80 | opcode,
        payload.len() as u8 | if mask { 0x80 } else { 0 },
    ];
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    io.write_all(&frame).await?;
    io.flush().await
}

/// The backend side: echoes each text frame as `name:text`, answers a close with a close.
async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(name: &str, mut io: S) {
    while let Ok((opcode, payload)) = ws_read(&mut io).await {
        match opcode {
            0x1 => {
                let mut reply = format!("{name}:").into_bytes();
                reply.extend_from_slice(&payload);
                if ws_write(&mut io, 0x1, &reply, false).await.is_err() {
                    return;
                }
            }
            0x8 => {
                let _ = ws_write(&mut io, 0x8, &payload, false).await;
                return;
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// A pooled keep-alive HTTP client.
pub fn http_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `path` from `addr`; (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let (status, _, body) = get_full(addr, path).await;
    (status, body)
}

/// GETs `path` from `addr` on a fresh connection; (status, headers, body).
pub async fn get_full(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    let uri = format!("http://{addr}{path}");
    let response = within(WAIT, "GET", http_client().get(uri.parse().unwrap()))
        .await
        .expect("GET answered");
    let (parts, body) = response.into_parts();
    let body = within(WAIT, "body", body.collect())
        .await
        .expect("whole body")
        .to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// One raw HTTP/1.1 connection, for requests a library client would not send and for
/// proving that a kept-alive connection is reused.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A response read off a [`RawConn`]: status, lower-cased header lines, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawConn {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = within(WAIT, "connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within(WAIT, "write", self.stream.write_all(bytes))
            .await
            .expect("write");
    }

    /// Reads one response with a `Content-Length` body (or none, for 101 and 1xx).
    pub async fn response(&mut self) -> RawResponse {
        within(WAIT, "response", self.read_response()).await
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await.expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn read_response(&mut self) -> RawResponse {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(
                self.fill().await > 0,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while self.buf.len() < len {
            assert!(self.fill().await > 0, "connection closed inside a body");
        }
        let body = self.buf.drain(..len).collect();
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Whether the peer closes the connection within `limit` (reading and dropping the rest).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            let mut chunk = [0u8; 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// `GET path` with keep-alive, as raw bytes.
pub fn raw_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").into_bytes()
}
