//! Forwarding: headers added and stripped, 503 without an upstream, the limits, and the
//! upstream errors.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn forwards_to_the_live_upstream_adding_and_stripping_headers() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start("forward").await;
    let addr = proxy.add("web").await;
    proxy
        .switch("web", backend.addr, Duration::from_secs(1))
        .await;

    let (status, headers, body) = get_full(addr, "/").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "v1"));
    assert_eq!(headers["x-backend"], "v1");

    let mut conn = RawConn::open(addr).await;
    conn.send(
        b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n\
          TE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nUpgrade: h2c\r\n\
          X-Keep: yes\r\n\r\n",
    )
    .await;
    let seen = conn.response().await;
    assert_eq!(seen.status, 200);
    let seen = seen.text();
    let lines: Vec<&str> = seen.lines().collect();
    for wanted in [
        "host: app.test",
        "x-keep: yes",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
    ] {
        assert!(
            lines.contains(&wanted),
            "{wanted:?} missing upstream: {seen}"
        );
    }
    for dropped in [
        "x-drop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{dropped}:"))),
            "{dropped} reached the upstream: {seen}"
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("x-forwarded-for:"))
            .count(),
        1
    );

    conn.send(&raw_get("/hop")).await;
    let hop = conn.response().await;
    assert_eq!((hop.status, hop.text().as_str()), (200, "v1"));
    assert_eq!(hop.header("x-app"), Some("kept"));
    for dropped in ["x-internal", "keep-alive", "proxy-thing"] {
        assert!(
            hop.header(dropped).is_none(),
            "{dropped} reached the client: {:?}",
            hop.headers
        );
    }
    assert_ne!(hop.header("connection"), Some("x-internal"));
}

#[tokio::test]
async fn without_an_upstream_the_answer_is_503() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start("no-upstream").await;
    let addr = proxy.add("web").await;
    let (status, body) = get(addr, "/").await;
    assert_eq!((status.as_u16(), body.as_str()), (503, "no upstream\n"));

    proxy.switch("web", backend.addr, Duration::ZERO).await;
    assert_eq!(get(addr, "/").await.1, "v1");
    within(
        WAIT,
        "clear",
        proxy
            .client
            .set_upstream(&name("web"), None, Some(Duration::ZERO)),
    )
    .await
    .unwrap();
    assert_eq!(get(addr, "/").await.0.as_u16(), 503);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start_with("body-limit", |c| c.limits.max_body_bytes = 1024).await;
    let addr = proxy.add("web").await;
    proxy.switch("web", backend.addr, Duration::ZERO).await;

    let mut ok = RawConn::open(addr).await;
    let mut request = b"POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 1000));
    ok.send(&request).await;
    let answer = ok.response().await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "1000"));

    let mut declared = RawConn::open(addr).await;
    declared
        .send(b"POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n")
        .await;
    let answer = declared.response().await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "payload too large\n")
    );

    let mut streamed = RawConn::open(addr).await;
    let mut request =
        b"POST /len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"200\r\n");
        request.extend(std::iter::repeat_n(b'y', 0x200));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    streamed.send(&request).await;
    let answer = streamed.response().await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "payload too large\n")
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start_with("header-limits", |c| {
        c.limits.max_headers = 20;
        c.limits.max_header_bytes = 16 * 1024;
    })
    .await;
    let addr = proxy.add("web").await;
    proxy.switch("web", backend.addr, Duration::ZERO).await;

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let mut conn = RawConn::open(addr).await;
    conn.send(many.as_bytes()).await;
    assert_eq!(conn.response().await.status, 431);

    let large = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "z".repeat(32 * 1024)
    );
    let mut conn = RawConn::open(addr).await;
    conn.send(large.as_bytes()).await;
    assert_eq!(conn.response().await.status, 431);
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    let proxy = TestProxy::start_with("header-timeout", |c| {
        c.limits.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    let addr = proxy.add("web").await;
    let mut conn = RawConn::open(addr).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    let started = Instant::now();
    assert!(
        conn.closed_within(Duration::from_secs(5)).await,
        "the connection stays open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        started.elapsed()
    );

    // An idle kept-alive connection is bounded by the same timeout.
    let mut idle = RawConn::open(addr).await;
    idle.send(&raw_get("/")).await;
    assert_eq!(idle.response().await.status, 503);
    let idle_since = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(5)).await,
        "the idle connection stays open"
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(400),
        "{:?}",
        idle_since.elapsed()
    );
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_with_short_bodies() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start_with("upstream-errors", |c| {
        c.limits.response_timeout = Duration::from_millis(400)
    })
    .await;
    let addr = proxy.add("web").await;

    let closed = {
        let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
        listener.local_addr().unwrap()
    };
    proxy.switch("web", closed, Duration::ZERO).await;
    let (status, body) = get(addr, "/").await;
    assert_eq!((status.as_u16(), body.as_str()), (502, "bad gateway\n"));

    proxy.switch("web", backend.addr, Duration::ZERO).await;
    let started = Instant::now();
    let (status, body) = get(addr, "/hang").await;
    assert_eq!((status.as_u16(), body.as_str()), (504, "gateway timeout\n"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get(addr, "/").await.1,
        "v1",
        "the proxy still serves after the errors"
    );
}

#[tokio::test]
async fn each_environment_serves_its_own_upstream_on_its_own_address() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let proxy = TestProxy::start("two-envs").await;
    let (prod, staging) = (proxy.add("production").await, proxy.add("staging").await);
    assert_ne!(prod, staging);
    proxy.switch("production", blue.addr, Duration::ZERO).await;
    proxy.switch("staging", green.addr, Duration::ZERO).await;
    assert_eq!(get(prod, "/").await.1, "blue");
    assert_eq!(get(staging, "/").await.1, "green");
    proxy.switch("staging", blue.addr, Duration::ZERO).await;
    assert_eq!(get(staging, "/").await.1, "blue");
    let all = within(WAIT, "status", proxy.client.status()).await.unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["production", "staging"]);
    assert!(all.iter().all(|e| e.upstream == Some(blue.addr)));
}
