//! Health tries at a colour: one HTTP/1.1 `GET` of the health path on its loopback port
//! ([`check`]), answered as the release machine's [`Answer`], and a verification series
//! judged by [`Verification`] ([`verify`], for reconciliation; a release's own tries are the
//! driver's). It must not decide what an answer means: `release::health` does.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::release::HealthPolicy;
use crate::release::health::{Failure, Try, Verdict, Verification};

/// One try: `GET path` at `addr` within `timeout`, on a fresh connection (no pool: a try must
/// prove the colour accepts connections now). The status it got, [`Answer::TimedOut`], or
/// [`Answer::Unreachable`] with what went wrong (connection refused, reset, not HTTP).
pub async fn check(addr: SocketAddr, path: &str, timeout: Duration) -> crate::release::Answer {
    use crate::release::Answer;
    match tokio::time::timeout(timeout, get(addr, path)).await {
        Err(_) => Answer::TimedOut,
        Ok(Ok(status)) => Answer::Status(status),
        Ok(Err(why)) => Answer::Unreachable(why),
    }
}

/// Aborts the connection task when the try ends, however it ends.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "moat-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad health path {path:?}: {e}"))?;
    let stream = TcpStream::connect(addr).await.map_err(|e| io_words(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_words(&e))?;
    let _task = Abort(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http_words(&e))?;
    Ok(response.status().as_u16())
}

fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        _ => e.to_string(),
    }
}

fn http_words(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "the connection closed before an answer".into();
    }
    if e.is_parse() {
        return format!("not an HTTP answer ({e})");
    }
    if let Some(io) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>())
    {
        return io_words(io);
    }
    e.to_string()
}

/// Tries `addr` every `policy.interval` until `policy` judges it healthy (`Ok` with the
/// number of tries) or unhealthy (the failure, naming the check and the last answer).
pub async fn verify(addr: SocketAddr, policy: &HealthPolicy) -> Result<u32, Failure> {
    let start = Instant::now();
    let mut tries = Verification::new(policy.clone());
    let mut n = 0;
    loop {
        let answer = check(addr, &policy.path, policy.timeout).await;
        n += 1;
        let t = Try {
            at: start.elapsed(),
            answer,
        };
        match tries.record(&t) {
            Verdict::Healthy => return Ok(n),
            Verdict::Unhealthy(f) => return Err(f),
            Verdict::Pending => tokio::time::sleep(policy.interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Answer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback listener answering every connection with `reply` after reading a request.
    async fn answering(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    if !reply.is_empty() {
                        let _ = s.write_all(reply).await;
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_try_reports_the_status_it_got() {
        let addr = answering(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            check(addr, "/healthz", Duration::from_secs(2)).await,
            Answer::Status(404)
        );
    }

    #[tokio::test]
    async fn a_try_says_what_went_wrong() {
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(
            check(closed, "/", Duration::from_secs(2)).await,
            Answer::Unreachable("connection refused".into())
        );
        let silent = answering(b"").await;
        assert_eq!(
            check(silent, "/", Duration::from_millis(200)).await,
            Answer::TimedOut
        );
        let garbage = answering(b"SSH-2.0-OpenSSH\r\n").await;
        let Answer::Unreachable(why) = check(garbage, "/", Duration::from_secs(2)).await else {
            panic!("not HTTP");
        };
        assert!(why.contains("not an HTTP answer"), "{why}");
    }

    #[tokio::test]
    async fn verify_names_the_check_and_the_last_answer() {
        let addr = answering(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n").await;
        let policy = HealthPolicy {
            path: "/healthz".into(),
            status: None,
            successes: 1,
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(500),
            deadline: Duration::from_millis(200),
        };
        let f = verify(addr, &policy).await.unwrap_err();
        assert!(f.reason.contains("GET /healthz → 2xx"), "{}", f.reason);
        assert_eq!(f.last, Answer::Status(503));
        let ok = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(verify(ok, &policy).await.unwrap(), 1);
    }
}
