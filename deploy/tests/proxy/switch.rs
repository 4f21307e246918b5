//! The switch: atomic for new requests (also on kept-alive connections), while requests and
//! streams already on the previous upstream finish there until the drain expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::support::*;

#[tokio::test]
async fn a_switch_under_a_request_loop_fails_nothing_and_flips_once() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("switch-loop").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(5)).await;

    let switched = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (switched, stop) = (switched.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            // One pooled client per loop: its requests reuse kept-alive connections.
            let client = http_client();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let after_switch = switched.load(Ordering::Acquire);
                let uri = format!("http://{addr}/").parse().unwrap();
                let answer = tokio::time::timeout(WAIT, async {
                    let response = client.get(uri).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, body))
                })
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                seen.push((after_switch, answer));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.switch("web", v2.addr, Duration::from_secs(5)).await;
    switched.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Release);

    let mut total = 0;
    for handle in loops {
        let seen = within(WAIT, "request loop", handle).await.unwrap();
        let mut versions = Vec::new();
        for (after_switch, answer) in &seen {
            let (status, body) = answer
                .as_ref()
                .unwrap_or_else(|e| panic!("a request failed: {e}"));
            assert_eq!(status.as_u16(), 200);
            let version = std::str::from_utf8(body).unwrap().to_string();
            if *after_switch {
                assert_eq!(
                    version, "v2",
                    "a request sent after the switch reached the old upstream"
                );
            }
            versions.push(version);
        }
        let flips = versions.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(flips, 1, "versions of one loop: {versions:?}");
        assert_eq!(
            (
                versions.first().unwrap().as_str(),
                versions.last().unwrap().as_str()
            ),
            ("v1", "v2")
        );
        total += seen.len();
    }
    assert!(total > 20, "only {total} requests");
}

#[tokio::test]
async fn a_kept_alive_connection_sends_its_next_request_to_the_new_upstream() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("switch-keepalive").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(5)).await;
    let mut conn = RawConn::open(addr).await;
    conn.send(&raw_get("/")).await;
    assert_eq!(conn.response().await.text(), "v1");
    proxy.switch("web", v2.addr, Duration::from_secs(5)).await;
    conn.send(&raw_get("/")).await;
    assert_eq!(conn.response().await.text(), "v2");
}

#[tokio::test]
async fn a_slow_request_in_flight_finishes_on_the_old_upstream() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("switch-slow").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(10)).await;

    let slow = tokio::spawn(async move { get(addr, "/slow?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.switch("web", v2.addr, Duration::from_secs(10)).await;

    let status = within(WAIT, "status", proxy.client.status_of(&name("web")))
        .await
        .unwrap();
    assert_eq!(status.upstream, Some(v2.addr));
    assert_eq!(status.draining.len(), 1, "{status:?}");
    assert_eq!(
        (status.draining[0].upstream, status.draining[0].connections),
        (v1.addr, 1)
    );

    let started = Instant::now();
    assert_eq!(get(addr, "/").await.1, "v2");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a new request waited for the old one"
    );
    let (status, body) = within(WAIT, "slow request", slow).await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "v1"));

    within(WAIT, "drain ends", async {
        while !proxy
            .client
            .status_of(&name("web"))
            .await
            .unwrap()
            .draining
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Reads a streamed body frame by frame: the chunks, then how it ended.
async fn read_stream(
    body: &mut hyper::body::Incoming,
    until: Duration,
    mut each: impl FnMut(&str),
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + until;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err("still streaming".into()),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(format!("broken: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    std::str::from_utf8(data)
                        .unwrap()
                        .lines()
                        .for_each(&mut each);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_stream_from_the_old_upstream_continues_after_the_switch_until_it_ends() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("switch-stream").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(10)).await;

    let uri = format!("http://{addr}/stream?n=10&ms=150").parse().unwrap();
    let response = within(WAIT, "stream", http_client().get(uri))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = within(WAIT, "first chunk", body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"v1:0\n");

    proxy.switch("web", v2.addr, Duration::from_secs(10)).await;
    assert_eq!(get(addr, "/").await.1, "v2");
    let mut chunks = vec!["v1:0".to_string()];
    read_stream(&mut body, WAIT, |line| chunks.push(line.to_string()))
        .await
        .expect("the stream ends cleanly");
    let wanted: Vec<String> = (0..10).map(|i| format!("v1:{i}")).collect();
    assert_eq!(chunks, wanted);
}

#[tokio::test]
async fn drain_expiry_closes_a_long_stream() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("switch-expiry").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(10)).await;

    let uri = format!("http://{addr}/stream?n=0&ms=100").parse().unwrap();
    let response = within(WAIT, "stream", http_client().get(uri))
        .await
        .unwrap();
    let mut body = response.into_body();
    within(WAIT, "first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();

    proxy
        .switch("web", v2.addr, Duration::from_millis(600))
        .await;
    let switched = Instant::now();
    let mut after = 0;
    let ended = read_stream(&mut body, Duration::from_secs(5), |line| {
        assert!(line.starts_with("v1:"), "{line}");
        after += 1;
    })
    .await;
    let elapsed = switched.elapsed();
    assert!(
        matches!(&ended, Err(e) if e.starts_with("broken")),
        "the stream was not cut: {ended:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "cut after {elapsed:?}"
    );
    assert!(
        after >= 3,
        "the stream went on during the drain ({after} chunks)"
    );
    let status = within(WAIT, "status", proxy.client.status_of(&name("web")))
        .await
        .unwrap();
    assert!(status.draining.is_empty(), "{status:?}");
    assert_eq!(get(addr, "/").await.1, "v2");
}
