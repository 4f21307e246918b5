//! The edge proxy as `moat up` runs it: a `moat proxy` process of its own, started with
//! `moat up`, started again when it is killed (serving the live upstream it had, from its
//! state file), left serving when `moat up` itself is killed and adopted by the next
//! `moat up`, and stopped by a clean shutdown. Through the real `moat` binary and real sockets;
//! the upstream is a plain HTTP server of the test's own on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moat_deploy::proxy::{ControlClient, EnvName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with `body`.
async fn upstream(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> reqwest::Client {
    moat_coordinator::server::install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(url: &str) -> Option<String> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Polls `url` until it answers `want` (at most `within`); how long that took.
async fn serves(url: &str, want: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if get(url).await.as_deref() == Some(want) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has no command line any more; count it as gone.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// `moat up` in `data_dir`, its stdout lines collected.
struct Up {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Up {
    fn start(data_dir: &Path) -> Up {
        let mut child = moat()
            .args(["up", "--listen", "127.0.0.1:0", "--slots", "1"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("MOAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moat up");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up { child, lines }
    }

    /// The stdout line that mentions the edge proxy.
    fn proxy_line(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("edge proxy") => return line,
                Ok(_) => {}
                Err(_) => panic!("moat up never mentioned its edge proxy"),
            }
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_proxies(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_up_keeps_its_proxy_serving_through_kills() {
    let tmp = moat_runner::scratch::TempDir::new("moat-edge-up").unwrap();
    let data = tmp.path().join("data");
    let _cleanup = Cleanup(data.clone());
    let socket = data.join("proxy").join("control.sock");

    let up = Up::start(&data);
    let line = up.proxy_line();
    assert!(
        line.contains("control.sock") && !line.contains("already"),
        "{line}"
    );
    let first = proxy_pids(&data);
    assert_eq!(
        first.len(),
        1,
        "one proxy for the data directory: {first:?}"
    );

    // An environment with a live upstream, as the docker target would set it.
    let v1 = upstream("v1").await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let client = ControlClient::new(&socket);
    let web = EnvName::new("web").unwrap();
    client.add(&web, listen).await.expect("add the environment");
    client
        .set_upstream(&web, Some(v1), None)
        .await
        .expect("set the live upstream");
    let url = format!("http://{listen}/version");
    assert!(serves(&url, "v1", Duration::from_secs(5)).await.is_some());

    // kill -9 of the proxy: moat up starts it again and it serves the same upstream at once
    // from its state file.
    let _ = std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status();
    wait_until("the killed proxy is gone", Duration::from_secs(5), || {
        !alive(first[0])
    });
    let took = serves(&url, "v1", Duration::from_secs(15)).await;
    assert!(took.is_some(), "the restarted proxy serves v1 again");
    let second = proxy_pids(&data);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "a new proxy process");
    let status = client.status_of(&web).await.unwrap();
    assert_eq!(status.listen, listen);

    // kill -9 of moat up: the proxy keeps serving; the next moat up adopts it.
    let mut up = up;
    let _ = up.child.kill();
    let _ = up.child.wait();
    for _ in 0..5 {
        assert_eq!(get(&url).await.as_deref(), Some("v1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(up);
    let up = Up::start(&data);
    let line = up.proxy_line();
    assert!(line.contains("already running"), "{line}");
    assert_eq!(proxy_pids(&data), second, "the running proxy was adopted");

    // A clean shutdown of the moat up that adopted it leaves it running (it did not start
    // it); one that started its own proxy stops it.
    let mut up = up;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status();
    let _ = up.child.wait();
    assert_eq!(proxy_pids(&data), second);
    kill_proxies(&data);
    wait_until("the adopted proxy is gone", Duration::from_secs(5), || {
        !second.iter().any(|p| alive(*p))
    });
    drop(up);

    let mut up = Up::start(&data);
    assert!(!up.proxy_line().contains("already"));
    let own = proxy_pids(&data);
    assert_eq!(own.len(), 1);
    assert!(serves(&url, "v1", Duration::from_secs(5)).await.is_some());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status();
    let _ = up.child.wait();
    wait_until(
        "moat up's clean shutdown stops its own proxy",
        Duration::from_secs(20),
        || !alive(own[0]),
    );
}

#[test]
fn moat_proxy_status_says_when_no_proxy_answers() {
    let tmp = moat_runner::scratch::TempDir::new("moat-edge-status").unwrap();
    let out = moat()
        .args(["proxy", "--status", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("control.sock"), "{err}");
}
