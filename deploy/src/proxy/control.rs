//! The control socket: a local Unix socket speaking one JSON object per line (see `protocol`).
//!
//! Owns the socket file (created owner-only, mode 0600, before anyone can connect: it is bound
//! under a temporary name, restricted, then renamed into place), the size bound of every
//! message, idle timeouts and the number of control connections, and [`ControlClient`], the
//! caller's side. It must not decide anything: every request goes to `commands`.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ProxyError;
use super::commands::Edge;
use super::protocol::{ControlReply, ControlRequest, EnvName, EnvStatus};

/// Control connections served at once; more are answered "busy" and closed.
const MAX_CONTROL_CONNECTIONS: usize = 16;
/// A control connection with no complete request for this long is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(30);
/// The largest reply [`ControlClient`] reads.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Binds the control socket at `path`, owner-only. A stale socket file (nobody answers on it)
/// is replaced; a live one means another proxy runs there; any other file is left alone.
pub(crate) fn bind(path: &Path) -> Result<UnixListener, ProxyError> {
    let socket_error = |source| ProxyError::ControlSocket {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ProxyError::ControlSocketInUse {
                    path: path.to_owned(),
                });
            }
            fs::remove_file(path).map_err(socket_error)?;
        }
        Ok(_) => {
            return Err(socket_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_error(e)),
    }
    let name = path
        .file_name()
        .map_or_else(|| "control".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let bound = (|| {
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    if bound.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    bound.map_err(socket_error)
}

/// Answers control connections until `shutdown` is cancelled.
pub(crate) async fn serve(listener: UnixListener, edge: Arc<Edge>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONTROL_CONNECTIONS));
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(error = %error, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (edge, shutdown) = (edge.clone(), shutdown.clone());
                tasks.spawn(async move {
                    answer(stream, &edge, &shutdown).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tasks.spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        write_reply(
                            &mut stream,
                            &ControlReply::refused("busy: too many control connections"),
                        ),
                    )
                    .await;
                });
            }
        }
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
}

/// Answers the requests of one control connection, one reply line per request line.
async fn answer(stream: UnixStream, edge: &Edge, shutdown: &CancellationToken) {
    let max = edge.config().limits.max_control_message;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let line = tokio::select! {
            line = tokio::time::timeout(CONTROL_IDLE, read_line(&mut reader, max)) => line,
            _ = shutdown.cancelled() => return,
        };
        let (reply, last) = match line {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(LineError::Io(error))) => {
                tracing::debug!(error = %error, "control connection failed");
                return;
            }
            Ok(Err(LineError::TooLong)) => {
                tracing::warn!(
                    control.max_bytes = max,
                    "control message too large; closing the connection"
                );
                (
                    ControlReply::refused(format!("control message larger than {max} bytes")),
                    true,
                )
            }
            Ok(Ok(Some(line))) if line.trim_ascii().is_empty() => continue,
            Ok(Ok(Some(line))) => match serde_json::from_slice::<ControlRequest>(&line) {
                Ok(request) => (edge.apply(request).await, false),
                Err(error) => (
                    ControlReply::refused(format!("bad request: {error}")),
                    false,
                ),
            },
        };
        let written =
            tokio::time::timeout(Duration::from_secs(5), write_reply(&mut write, &reply)).await;
        if last || !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

async fn write_reply<W: AsyncWriteExt + Unpin>(
    write: &mut W,
    reply: &ControlReply,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("a reply serialises");
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    TooLong,
    Io(io::Error),
}

/// Reads one `\n`-terminated line of at most `max` bytes (without the `\n`, and a `\r` before
/// it). `None` at the end of the stream; a last line without `\n` still counts. Never holds
/// more than `max` bytes plus one read buffer.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.map_err(LineError::Io)?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

/// The caller's side of the control socket: one connection per request, bounded in time and
/// reply size.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the proxy whose control socket is at `path` (10 s per request).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The same client with another per-request time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one request and returns the reply as it came, refusals included.
    pub async fn request(&self, request: &ControlRequest) -> Result<ControlReply, ProxyError> {
        let exchange = async {
            let io_error = |source| ProxyError::Control {
                path: self.path.clone(),
                source,
            };
            let mut stream = UnixStream::connect(&self.path).await.map_err(io_error)?;
            let mut line = serde_json::to_vec(request).expect("a request serialises");
            line.push(b'\n');
            stream.write_all(&line).await.map_err(io_error)?;
            let mut reader = BufReader::new(stream);
            match read_line(&mut reader, MAX_REPLY).await {
                Ok(Some(reply)) => serde_json::from_slice(&reply)
                    .map_err(|e| ProxyError::ControlReply(format!("not a reply: {e}"))),
                Ok(None) => Err(ProxyError::ControlReply(
                    "the proxy closed the connection".into(),
                )),
                Err(LineError::TooLong) => Err(ProxyError::ControlReply("reply too large".into())),
                Err(LineError::Io(source)) => Err(io_error(source)),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProxyError::ControlTimeout {
                path: self.path.clone(),
            })?
    }

    /// Sends one request; a refusal is [`ProxyError::Refused`].
    async fn expect_ok(&self, request: &ControlRequest) -> Result<Vec<EnvStatus>, ProxyError> {
        let reply = self.request(request).await?;
        if reply.ok {
            Ok(reply.environments)
        } else {
            Err(ProxyError::Refused(reply.error.unwrap_or_default()))
        }
    }

    async fn expect_one(&self, request: &ControlRequest) -> Result<EnvStatus, ProxyError> {
        self.expect_ok(request)
            .await?
            .pop()
            .ok_or_else(|| ProxyError::ControlReply("no environment in the reply".into()))
    }

    /// Adds an environment listening on `listen`; returns it with its bound address.
    pub async fn add(&self, name: &EnvName, listen: SocketAddr) -> Result<EnvStatus, ProxyError> {
        self.expect_one(&ControlRequest::Add {
            name: name.clone(),
            listen,
        })
        .await
    }

    /// Removes an environment; open requests get up to `drain` (the proxy's default if `None`).
    pub async fn remove(&self, name: &EnvName, drain: Option<Duration>) -> Result<(), ProxyError> {
        let drain_ms = drain.map(|d| d.as_millis() as u64);
        self.expect_ok(&ControlRequest::Remove {
            name: name.clone(),
            drain_ms,
        })
        .await
        .map(drop)
    }

    /// Switches an environment to `upstream` (or to none); the previous one drains for up to
    /// `drain` (the proxy's default if `None`).
    pub async fn set_upstream(
        &self,
        name: &EnvName,
        upstream: Option<SocketAddr>,
        drain: Option<Duration>,
    ) -> Result<EnvStatus, ProxyError> {
        let drain_ms = drain.map(|d| d.as_millis() as u64);
        self.expect_one(&ControlRequest::SetUpstream {
            name: name.clone(),
            upstream,
            drain_ms,
        })
        .await
    }

    /// Every environment.
    pub async fn status(&self) -> Result<Vec<EnvStatus>, ProxyError> {
        self.expect_ok(&ControlRequest::Status { name: None }).await
    }

    /// One environment.
    pub async fn status_of(&self, name: &EnvName) -> Result<EnvStatus, ProxyError> {
        self.expect_one(&ControlRequest::Status {
            name: Some(name.clone()),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Option<Vec<u8>>, String>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, max).await {
                Ok(None) => break,
                Ok(line) => out.push(Ok(line)),
                Err(LineError::TooLong) => {
                    out.push(Err("too long".into()));
                    break;
                }
                Err(LineError::Io(e)) => panic!("{e}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        assert_eq!(
            lines(b"ab\r\ncdefgh\nlast", 8).await,
            [
                Ok(Some(b"ab".to_vec())),
                Ok(Some(b"cdefgh".to_vec())),
                Ok(Some(b"last".to_vec()))
            ]
        );
        assert_eq!(
            lines(b"12345678\n", 8).await,
            [Ok(Some(b"12345678".to_vec()))]
        );
        assert_eq!(
            lines(b"123456789\n", 8).await,
            [Err("too long".to_string())]
        );
        assert_eq!(
            lines(b"ok\n123456789", 8).await,
            [Ok(Some(b"ok".to_vec())), Err("too long".to_string())]
        );
    }
}
