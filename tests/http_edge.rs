//! Hostile input at the coordinator's HTTP edge, against the real `moat server` process:
//! webhook senders that never finish their bodies or trickle them slowly (refusals come before
//! the body, memory stays bounded), and the one JSON error shape.

mod cluster;
mod common;

use std::time::Duration;

use cluster::*;
use common::*;
use serde_json::Value;
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
    let dir = TempDir::new("edge-before-body");
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
    let dir = TempDir::new("edge-slow");
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
    let dir = TempDir::new("edge-rate");
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

// ---------------------------------------------------------------------------------------------
// One error shape for every error the HTTP layer answers.

/// How a route takes its input, for the cases that apply to it.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// No JSON body.
    None,
    /// A JSON body that refuses unknown fields.
    Json,
    /// An optional JSON body (refusing unknown fields when present).
    OptionalJson,
    /// A runner-protocol JSON body: unknown fields are tolerated on purpose (runners and
    /// coordinators of neighbouring versions talk to each other), the rest is checked.
    ProtocolJson,
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Admin,
    Runner,
    Open,
}

/// One route: its method, its path with a valid parameter (`{id}` is replaced), a method it
/// does not serve, whether its path parameter is a number, and its input.
struct RouteCase {
    method: &'static str,
    path: &'static str,
    wrong_method: &'static str,
    numeric_id: bool,
    input: Input,
    auth: Auth,
}

const fn case(
    method: &'static str,
    path: &'static str,
    wrong_method: &'static str,
    numeric_id: bool,
    input: Input,
    auth: Auth,
) -> RouteCase {
    RouteCase {
        method,
        path,
        wrong_method,
        numeric_id,
        input,
        auth,
    }
}

/// Every route the coordinator serves.
const ROUTES: &[RouteCase] = &[
    case(
        "GET",
        "/api/v1/repos",
        "PATCH",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/repos",
        "PUT",
        false,
        Input::Json,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/repos/{id}",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "DELETE",
        "/api/v1/repos/{id}",
        "PUT",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/repos/{id}/runs",
        "GET",
        false,
        Input::Json,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/runs",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/runs/{id}",
        "DELETE",
        true,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/runs/{id}/logs",
        "POST",
        true,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/runs/{id}/logs/stream",
        "POST",
        true,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/runs/{id}/cancel",
        "GET",
        true,
        Input::OptionalJson,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/runs/{id}/rerun",
        "GET",
        true,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/runs/{id}/approve",
        "GET",
        true,
        Input::OptionalJson,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/runners",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/audit",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/seal-key",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/repos/{id}/secrets",
        "POST",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "PUT",
        "/api/v1/repos/{id}/secrets/S",
        "POST",
        false,
        Input::Json,
        Auth::Admin,
    ),
    case(
        "DELETE",
        "/api/v1/repos/{id}/secrets/S",
        "GET",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "GET",
        "/api/v1/tokens",
        "PUT",
        false,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/tokens",
        "PUT",
        false,
        Input::OptionalJson,
        Auth::Admin,
    ),
    case(
        "DELETE",
        "/api/v1/tokens/{id}",
        "GET",
        true,
        Input::None,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/runner-tokens",
        "GET",
        false,
        Input::OptionalJson,
        Auth::Admin,
    ),
    case(
        "POST",
        "/api/v1/runners/register",
        "GET",
        false,
        Input::ProtocolJson,
        Auth::Open,
    ),
    case(
        "POST",
        "/api/v1/runner/claim",
        "GET",
        false,
        Input::ProtocolJson,
        Auth::Runner,
    ),
    case(
        "POST",
        "/api/v1/runner/jobs/{id}/heartbeat",
        "GET",
        true,
        Input::None,
        Auth::Runner,
    ),
    case(
        "POST",
        "/api/v1/runner/jobs/{id}/logs",
        "GET",
        true,
        Input::ProtocolJson,
        Auth::Runner,
    ),
    case(
        "POST",
        "/api/v1/runner/jobs/{id}/complete",
        "GET",
        true,
        Input::ProtocolJson,
        Auth::Runner,
    ),
    case(
        "GET",
        "/api/v1/runner/jobs/{id}/workspace",
        "POST",
        true,
        Input::None,
        Auth::Runner,
    ),
    case(
        "PUT",
        "/api/v1/runner/jobs/{id}/snapshot",
        "POST",
        true,
        Input::None,
        Auth::Runner,
    ),
    case(
        "POST",
        "/hooks/github/{id}",
        "GET",
        false,
        Input::None,
        Auth::Open,
    ),
];

/// Sends one request and checks that the answer is `{"error": {"code", "message"}}` with the
/// expected status and code; returns the response headers.
#[allow(clippy::too_many_arguments)]
async fn expect_error(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &str,
) -> reqwest::header::HeaderMap {
    let what = format!("{method} {path} (content type {content_type:?})");
    let mut req = http().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let got = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: answered {got} {text}");
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: not JSON: {headers:?} {text:?}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{what}: {v}");
    let err = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {v}"));
    assert_eq!(err.len(), 2, "{what}: {v}");
    assert_eq!(err["code"], code, "{what}: {v}");
    let message = err["message"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.chars().any(char::is_control),
        "{what}: message {message:?}"
    );
    headers
}

/// Every route, against the real server: a method it does not serve (405 with `Allow`), a
/// path parameter that is not a number, malformed JSON, an unknown field, a wrong content
/// type, a body over the limit, an unknown route and bad query strings each answer the one
/// JSON error shape with a stable code. Before the fix, axum answered these in plain text and
/// the 405 with an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_has_the_json_shape() {
    let dir = TempDir::new("edge-errors");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let base = coordinator.base.clone();
    let origin = Origin::new("edge-errors", &[(".moat.yml", "version: 1\n")]);
    let (repo_id, _, _) = api.add_repo("edge-errors", &origin.url()).await;
    let registration = api.registration_token().await;
    let (status, registered) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runners/register",
            Some(serde_json::json!({ "token": registration, "name": "r1", "slots": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{registered}");
    let runner_token = registered["token"].as_str().unwrap().to_string();
    let admin = api.token.clone();

    let json = Some("application/json");
    for r in ROUTES {
        let token = match r.auth {
            Auth::Admin => Some(admin.as_str()),
            Auth::Runner => Some(runner_token.as_str()),
            Auth::Open => None,
        };
        let path = r.path.replace("{id}", &repo_id.to_string());

        let headers = expect_error(
            &base,
            r.wrong_method,
            &path,
            token,
            None,
            None,
            405,
            "method_not_allowed",
        )
        .await;
        let allow = headers
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow.as_deref().is_some_and(|a| a.contains(r.method)),
            "{} {path}: Allow {allow:?}",
            r.wrong_method
        );

        if r.numeric_id {
            let bad = r.path.replace("{id}", "not-a-number");
            let body = (r.input != Input::None).then(|| b"{}".to_vec());
            let ct = body.as_ref().and(json);
            expect_error(&base, r.method, &bad, token, ct, body, 400, "bad_request").await;
        }

        if r.input == Input::None {
            continue;
        }
        expect_error(
            &base,
            r.method,
            &path,
            token,
            json,
            Some(b"{,}".to_vec()),
            400,
            "bad_request",
        )
        .await;
        expect_error(
            &base,
            r.method,
            &path,
            token,
            Some("text/plain"),
            Some(b"{}".to_vec()),
            415,
            "unsupported_media_type",
        )
        .await;
        // A body of the wrong type (a string) is refused by every JSON route.
        expect_error(
            &base,
            r.method,
            &path,
            token,
            json,
            Some(b"\"text\"".to_vec()),
            422,
            "invalid_body",
        )
        .await;
        if r.input != Input::ProtocolJson {
            expect_error(
                &base,
                r.method,
                &path,
                token,
                json,
                Some(br#"{"no_such_field": 1}"#.to_vec()),
                422,
                "invalid_body",
            )
            .await;
        }
    }

    // A JSON body over the API's limit (4 MiB).
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(5 << 20)).into_bytes();
    expect_error(
        &base,
        "POST",
        "/api/v1/repos",
        Some(&admin),
        json,
        Some(big),
        413,
        "payload_too_large",
    )
    .await;
    // Unknown routes, with and without a token.
    expect_error(
        &base,
        "GET",
        "/api/v1/nothing",
        Some(&admin),
        None,
        None,
        404,
        "not_found",
    )
    .await;
    expect_error(&base, "GET", "/nothing", None, None, None, 404, "not_found").await;
    // Query strings: a value of the wrong type, an unknown parameter.
    for q in [
        "/api/v1/runs?limit=many",
        "/api/v1/runs?no_such=1",
        "/api/v1/audit?limit=-",
    ] {
        expect_error(
            &base,
            "GET",
            q,
            Some(&admin),
            None,
            None,
            400,
            "bad_request",
        )
        .await;
    }
    expect_error(
        &base,
        "GET",
        &format!("/api/v1/runs/{repo_id}/logs?after=x"),
        Some(&admin),
        None,
        None,
        400,
        "bad_request",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Payload fields.

fn cli(c: &Coordinator, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .output()
        .expect("run moat")
}

/// Signed pushes whose branch git would refuse (a line break, `..`, an escape sequence, 5 000
/// characters) or whose commit is abbreviated are refused with 400 and a message naming the
/// field, and nothing is stored: `moat runs` stays empty and prints no control character.
/// Before the fix they were accepted (202) and the branch later printed raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_payloads_with_bad_fields_are_refused() {
    let dir = TempDir::new("edge-fields");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let pipeline = "version: 1\non:\n  push: { branches: [main] }\nstages:\n  - name: t\n    kind: test\n    image: moat-edge-none\n    commands: [\"true\"]\n";
    let origin = Origin::new("edge-fields", &[(".moat.yml", pipeline)]);
    let (_, path, secret) = api.add_repo("edge-fields", &origin.url()).await;
    let long = "b".repeat(5000);
    let cases: Vec<(String, String, &str)> = vec![
        ("a\nb".into(), origin.commit.clone(), "ref"),
        ("a..b".into(), origin.commit.clone(), "ref"),
        (
            "\u{1b}[2J\u{1b}]0;owned\u{7}".into(),
            origin.commit.clone(),
            "ref",
        ),
        (long, origin.commit.clone(), "ref"),
        ("main".into(), origin.commit[..7].to_string(), "commit"),
    ];
    for (i, (branch, commit, field)) in cases.iter().enumerate() {
        let body = push_payload(branch, commit, &origin.url());
        let sig = github_signature(&secret, &body);
        let (status, v) = send_webhook(
            &coordinator.base,
            &path,
            "push",
            &format!("bad-field-{i}"),
            Some(&sig),
            body,
        )
        .await;
        assert_eq!(status, 400, "{branch:?} {commit}: {v}");
        assert_eq!(v["error"]["code"], "invalid_payload", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid {field} in the payload")),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control), "{message}");
        assert!(message.len() < 400, "{message}");
    }
    // A good push is still accepted.
    let body = push_payload("main", &origin.commit, &origin.url());
    let sig = github_signature(&secret, &body);
    let (status, v) =
        send_webhook(&coordinator.base, &path, "push", "good", Some(&sig), body).await;
    assert_eq!(status, 202, "{v}");
    api.first_run("edge-fields", Duration::from_secs(60)).await;

    let out = cli(&coordinator, &["runs", "--repo", "edge-fields"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    let (status, runs) = api
        .call(reqwest::Method::GET, "/api/v1/runs?repo=edge-fields", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

// ---------------------------------------------------------------------------------------------
// Deliveries.

/// `moat deliveries` shows every stored delivery with what became of it: one that fails after
/// its 202 (the commit is not in the repository) is `failed` with its error, a push the
/// pipeline does not react to is `ignored`, a good push is `processed` with its run number.
/// Before the fix, there was no such view (and the failure appeared nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_show_their_outcome() {
    let dir = TempDir::new("edge-deliveries");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let pipeline = "version: 1\non:\n  push: { branches: [main] }\nstages:\n  - name: t\n    kind: test\n    image: moat-edge-none\n    commands: [\"true\"]\n";
    let origin = Origin::new("edge-deliveries", &[(".moat.yml", pipeline)]);
    let (_, path, secret) = api.add_repo("edge-deliveries", &origin.url()).await;
    let other = Origin::new("edge-deliveries-other", &[(".moat.yml", pipeline)]);
    api.add_repo("edge-deliveries-other", &other.url()).await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    for (id, branch, commit) in [
        ("d-missing", "main", missing),
        ("d-ignored", "docs", origin.commit.as_str()),
        ("d-good", "main", origin.commit.as_str()),
    ] {
        let body = push_payload(branch, commit, &origin.url());
        let sig = github_signature(&secret, &body);
        let (status, v) =
            send_webhook(&coordinator.base, &path, "push", id, Some(&sig), body).await;
        assert_eq!(status, 202, "{id}: {v}");
    }

    // Wait (bounded) until all three are processed.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let list = loop {
        let out = cli(
            &coordinator,
            &["deliveries", "--repo", "edge-deliveries", "--json"],
        );
        assert!(out.status.success(), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = v.as_array().unwrap().clone();
        assert_eq!(list.len(), 3, "{v}");
        if list.iter().all(|d| d["outcome"] != "pending") {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "still pending: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id = |id: &str| {
        list.iter()
            .find(|d| d["delivery_id"] == id)
            .unwrap()
            .clone()
    };
    let failed = by_id("d-missing");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert_eq!(failed["run_number"], Value::Null);
    let ignored = by_id("d-ignored");
    assert_eq!(ignored["outcome"], "ignored", "{ignored}");
    assert_eq!(ignored["error"], Value::Null);
    let good = by_id("d-good");
    assert_eq!(good["outcome"], "processed", "{good}");
    assert_eq!(good["run_number"], 1, "{good}");
    assert_eq!(good["event"], "push");
    assert!(
        good.get("payload").is_none(),
        "payloads stay in the store: {good}"
    );
    // Newest first.
    assert_eq!(list[0]["delivery_id"], "d-good");

    // The table: one line per delivery, outcome and run number shown.
    let out = cli(&coordinator, &["deliveries", "--repo", "edge-deliveries"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].contains("OUTCOME"), "{table}");
    let line = |id: &str| *lines.iter().find(|l| l.contains(id)).unwrap();
    assert!(
        line("d-good").contains("processed") && line("d-good").contains("#1"),
        "{table}"
    );
    assert!(line("d-ignored").contains("ignored"), "{table}");
    assert!(line("d-missing").contains("failed"), "{table}");
    // Without --repo: every repository's (the other one has none); an unknown one: an error.
    let out = cli(&coordinator, &["deliveries", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let out = cli(&coordinator, &["deliveries", "--repo", "no-such-repo"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no repository"),
        "{}",
        describe(&out)
    );
    // The API route is for administrators only.
    let resp = http()
        .get(format!("{}/api/v1/deliveries", coordinator.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
