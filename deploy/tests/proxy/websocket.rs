//! WebSocket through the proxy: the upgrade passes, frames echo both ways, the connection stays
//! on its upstream across a switch and is closed when that upstream's drain expires.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a WebSocket on `/ws` through `addr`; checks the handshake.
async fn open(addr: std::net::SocketAddr) -> RawConn {
    let mut conn = RawConn::open(addr).await;
    conn.send(
        format!(
            "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let answer = conn.response().await;
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("upgrade"), Some("websocket"));
    assert!(
        answer
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade"))
    );
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some(ws_accept(KEY.as_bytes()).as_str())
    );
    conn
}

async fn echo(conn: &mut RawConn, text: &str) -> String {
    within(
        WAIT,
        "ws write",
        ws_write(&mut conn.stream, 0x1, text.as_bytes(), true),
    )
    .await
    .unwrap();
    let (opcode, payload) = within(WAIT, "ws read", ws_read(&mut conn.stream))
        .await
        .unwrap();
    assert_eq!(opcode, 0x1);
    String::from_utf8(payload).unwrap()
}

#[test]
fn the_accept_key_follows_rfc_6455() {
    assert_eq!(ws_accept(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[tokio::test]
async fn a_websocket_echoes_through_the_proxy_and_stays_on_its_upstream_across_a_switch() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("ws-switch").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(10)).await;

    let mut ws = open(addr).await;
    assert_eq!(echo(&mut ws, "hello").await, "v1:hello");

    proxy.switch("web", v2.addr, Duration::from_secs(10)).await;
    assert_eq!(
        get(addr, "/").await.1,
        "v2",
        "new requests go to the new upstream"
    );
    assert_eq!(echo(&mut ws, "still there").await, "v1:still there");
    let status = within(WAIT, "status", proxy.client.status_of(&name("web")))
        .await
        .unwrap();
    assert_eq!(
        (status.draining.len(), status.draining[0].connections),
        (1, 1),
        "{status:?}"
    );

    let mut fresh = open(addr).await;
    assert_eq!(echo(&mut fresh, "new").await, "v2:new");

    within(WAIT, "ws close", ws_write(&mut ws.stream, 0x8, b"", true))
        .await
        .unwrap();
    let (opcode, _) = within(WAIT, "close reply", ws_read(&mut ws.stream))
        .await
        .unwrap();
    assert_eq!(opcode, 0x8);
    let mut byte = [0u8; 1];
    let read = within(
        WAIT,
        "the backend's close reaches the client",
        ws.stream.read(&mut byte),
    )
    .await;
    assert!(matches!(read, Ok(0)), "{read:?}");
    drop(ws);
    within(WAIT, "drained", async {
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

#[tokio::test]
async fn drain_expiry_closes_an_open_websocket() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let proxy = TestProxy::start("ws-expiry").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", v1.addr, Duration::from_secs(10)).await;
    let mut ws = open(addr).await;
    assert_eq!(echo(&mut ws, "a").await, "v1:a");

    proxy
        .switch("web", v2.addr, Duration::from_millis(700))
        .await;
    let switched = Instant::now();
    assert_eq!(echo(&mut ws, "b").await, "v1:b", "open during the drain");
    let mut byte = [0u8; 1];
    let read = within(WAIT, "closed at the deadline", ws.stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let elapsed = switched.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
}
