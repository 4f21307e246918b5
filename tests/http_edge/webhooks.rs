//! Webhook bodies: senders that never finish their bodies or trickle them slowly (refusals come
//! before the body, memory stays bounded), and the per-source rate limit.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: reqwest cannot send headers and then hold the body back.

/// How a slow request sends its body.
#[derive(Clone, Copy)]
struct Trickle {
    /// The length announced in `Content-Length`; `None`: chunked transfer encoding.
    declared: Option<usize>,
    /// Bytes actually sent (at most), `chunk` bytes every `every`.
    send: usize,
    chunk: usize,
    every: Duration,
}

/// What came back: the status (0 when the connection closed without an answer or nothing
/// came within `give_up`) and the body.
async fn slow_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    t: Trickle,
    give_up: Duration,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the coordinator");
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match t.declared {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let data = vec![b' '; t.chunk];
        let mut sent = 0;
        while sent < t.send {
            tokio::time::sleep(t.every).await;
            let n = t.chunk.min(t.send - sent);
            let ok = match t.declared {
                Some(_) => wr.write_all(&data[..n]).await,
                None => {
                    let mut frame = format!("{n:x}\r\n").into_bytes();
                    frame.extend_from_slice(&data[..n]);
                    frame.extend_from_slice(b"\r\n");
                    wr.write_all(&frame).await
                }
            };
            if ok.is_err() {
                return;
            }
            sent += n;
        }
        if t.declared.is_none() && sent >= t.send {
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the connection open: a slow client does not close its side either.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let answer = tokio::time::timeout(give_up, read_response(&mut rd)).await;
    writer.abort();
    answer.unwrap_or((0, Value::Null))
}

async fn read_response(rd: &mut tokio::net::tcp::OwnedReadHalf) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match rd.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let body = &buf[(end + 4).min(buf.len())..];
            let v = serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            return (status, v);
        }
        match rd.read(&mut tmp).await {
            Ok(0) | Err(_) => return (0, Value::Null),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

const NO_BODY: Trickle = Trickle {
    declared: Some(10 << 20),
    send: 0,
    chunk: 1,
    every: Duration::from_millis(100),
};

// ---------------------------------------------------------------------------------------------
// Item 3: webhook bodies.

/// Everything that can be refused without the body is refused before it: a sender announcing
/// 10 MiB and sending none of it gets its answer at once (before the fix the coordinator
/// waited for the body, for its 60 s request time limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refusals_come_before_the_body() {
    let dir = TempDir::new("edge-before-body").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("edge-before", &[(".moat.yml", "version: 1\n")]);
    let (_, path, _) = api.add_repo("edge-before", &origin.url()).await;
    let port = coordinator.port;
    let wait = Duration::from_secs(8);
    let sig = ("x-hub-signature-256", "sha256=00");
    let event = ("x-github-event", "push");

    // (what, path, headers, body, expected status, expected code)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Trickle,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown repository",
            "/hooks/github/99999".into(),
            vec![sig, event],
            NO_BODY,
            404,
            "not_found",
        ),
        (
            "wrong forge in the URL",
            path.replace("/github/", "/gitlab/"),
            vec![sig, event],
            NO_BODY,
            404,
            "not_found",
        ),
        (
            "no signature header",
            path.clone(),
            vec![event],
            NO_BODY,
            401,
            "unauthorized",
        ),
        (
            "no event header",
            path.clone(),
            vec![sig],
            NO_BODY,
            400,
            "bad_request",
        ),
        (
            "announced body over the limit",
            path.clone(),
            vec![sig, event],
            Trickle {
                declared: Some(11 << 20),
                ..NO_BODY
            },
            413,
            "payload_too_large",
        ),
    ];
    for (what, path, headers, trickle, status, code) in cases {
        let (got, v) = slow_post(port, &path, &headers, trickle, wait).await;
        assert_eq!(
            got,
            status,
            "{what}: expected {status} without sending the body, got {got} {v}\n{}",
            coordinator.log()
        );
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    }

    // A body that never completes is given up on at the body deadline (10 s), well before the
    // 60 s request limit.
    let (got, v) = slow_post(
        port,
        &path,
        &[sig, event],
        Trickle {
            declared: Some(1000),
            send: 10,
            chunk: 10,
            every: Duration::from_millis(10),
        },
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(got, 408, "{v}");
    assert_eq!(v["error"]["code"], "timeout", "{v}");
}

/// 50 slow senders, each trickling a 10 MiB body to a real repository (with a made-up
/// signature; half announce the length, half send chunks) or to one that does not exist:
/// the coordinator's resident memory stays under 64 MB throughout (before the fix each
/// body was buffered whole: hundreds of MB), the senders over the in-flight budget are told
/// to retry (503 with Retry-After), and a real delivery afterwards is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_hold_bounded_memory() {
    let dir = TempDir::new("edge-slow").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new(
        "edge-slow",
        &[(
            ".moat.yml",
            "version: 1\nstages:\n  - name: t\n    kind: test\n    image: x\n",
        )],
    );
    let (_, path, secret) = api.add_repo("edge-slow", &origin.url()).await;
    let pid = coordinator.pid();
    let port = coordinator.port;
    let before = proc_kb(pid, "VmRSS");

    // Sample the resident size while the senders run.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let on = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(proc_kb(pid, "VmRSS"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };
    let ten_mib = 10 << 20;
    let fast_trickle = |declared| Trickle {
        declared,
        send: ten_mib,
        chunk: 128 << 10,
        every: Duration::from_millis(50),
    };
    let mut clients = Vec::new();
    for i in 0..50 {
        let (target, declared) = match i % 3 {
            0 => ("/hooks/github/99999".to_string(), Some(ten_mib)),
            1 => (path.clone(), Some(ten_mib)),
            _ => (path.clone(), None),
        };
        let trickle = fast_trickle(declared);
        clients.push(tokio::spawn(async move {
            let headers = [
                ("x-hub-signature-256", "sha256=00"),
                ("x-github-event", "push"),
            ];
            let (status, v) =
                slow_post(port, &target, &headers, trickle, Duration::from_secs(40)).await;
            (target.contains("99999"), status, v)
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for c in clients {
        let (unknown, status, v) = c.await.unwrap();
        if unknown {
            assert_eq!(status, 404, "unknown repository: {status} {v}");
        } else {
            assert!(
                matches!(status, 401 | 503 | 408),
                "real repository, bad signature: {status} {v}"
            );
            assert!(v["error"]["code"].is_string(), "{v}");
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let sampled = sampler.await.unwrap();
    let peak = proc_kb(pid, "VmHWM").max(sampled);
    eprintln!("RSS before {before} kB, peak {peak} kB; answers {counts:?}");
    assert!(
        peak < 64 * 1024,
        "the coordinator's resident memory reached {peak} kB under 50 slow senders (before: {before} kB); answers {counts:?}"
    );
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "33 bodies of 10 MiB exceed the 16 MiB in-flight budget: some must be told to retry: {counts:?}"
    );

    // The budget was given back: a real delivery goes through.
    let body = push_payload("main", &origin.commit, "x");
    let (status, v) = send_webhook(
        &coordinator.base,
        &path,
        "push",
        "after-the-storm",
        Some(&github_signature(&secret, &body)),
        body,
    )
    .await;
    assert_eq!(status, 202, "{v}\n{}", coordinator.log());
}

/// One source gets a burst of 60 webhook requests, then 10 a second: past the burst it is
/// answered 429 with `Retry-After` before anything is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_senders_are_rate_limited_per_source() {
    let dir = TempDir::new("edge-rate").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let client = http();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..80 {
        let resp = client
            .post(format!("{}/hooks/github/99999", coordinator.base))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", "sha256=00")
            .body("{}")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && limited.is_none() {
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let v: Value = resp.json().await.unwrap();
            limited = Some((retry, v));
        }
    }
    let first_refused = statuses.iter().position(|&s| s == 429);
    assert!(
        first_refused.is_some_and(|i| i >= 60),
        "the first 60 requests pass the limit, later ones are refused: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 404 || s == 429),
        "{statuses:?}"
    );
    let (retry, v) = limited.unwrap();
    assert!(retry.is_some_and(|r| r >= 1), "Retry-After: {retry:?}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
}
