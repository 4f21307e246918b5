//! The control socket and the state file: permissions, message bounds, refusals, status,
//! removal, and a restart that serves the previous upstream at once.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use moat_deploy::proxy::{self, ControlRequest, ProxyError, ProxyState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Sends raw bytes on a fresh control connection; the first reply line, or `None` if closed.
async fn raw_control(proxy: &TestProxy, bytes: &[u8]) -> (Option<serde_json::Value>, UnixStream) {
    let stream = within(
        WAIT,
        "control connect",
        UnixStream::connect(&proxy.config.control_socket),
    )
    .await
    .unwrap();
    let mut reader = BufReader::new(stream);
    // The write may fail once the proxy has stopped reading an oversize line.
    let _ = within(WAIT, "control write", reader.get_mut().write_all(bytes)).await;
    let mut line = String::new();
    let n = within(WAIT, "control reply", reader.read_line(&mut line))
        .await
        .unwrap_or(0);
    let reply = (n > 0).then(|| serde_json::from_str(&line).unwrap());
    (reply, reader.into_inner())
}

#[tokio::test]
async fn the_control_socket_is_owner_only() {
    let proxy = TestProxy::start("control-mode").await;
    let meta = std::fs::symlink_metadata(&proxy.config.control_socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&proxy.dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["control.sock"],
        "no temporary socket is left behind"
    );
}

#[tokio::test]
async fn missing_directories_are_created_owner_only() {
    let dir = Scratch::new("control-dirs");
    let mut config = TestProxy::config(&dir.0);
    config.control_socket = dir.0.join("run/moat/control.sock");
    config.state_file = dir.0.join("lib/moat/state.json");
    let proxy = TestProxy::start_in(dir, config).await;
    proxy.add("web").await;
    for file in [&proxy.config.control_socket, &proxy.config.state_file] {
        let parent = std::fs::metadata(file.parent().unwrap()).unwrap();
        assert_eq!(
            parent.permissions().mode() & 0o777,
            0o700,
            "{}",
            file.display()
        );
        assert!(file.exists(), "{}", file.display());
    }
}

#[tokio::test]
async fn an_oversize_control_message_is_refused_and_its_connection_closed() {
    let proxy = TestProxy::start("control-oversize").await;
    let mut huge = br#"{"op":"add","name":"x","listen":"127.0.0.1:0","pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(
        b'a',
        proxy.config.limits.max_control_message + 10,
    ));
    huge.extend_from_slice(b"\"}\n");
    let (reply, mut stream) = raw_control(&proxy, &huge).await;
    let reply = reply.expect("a refusal before closing");
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"].as_str().unwrap().contains("larger than"),
        "{reply}"
    );
    let mut rest = Vec::new();
    let read = within(WAIT, "closed", stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_err() || rest.is_empty(),
        "the connection stays open: {rest:?}"
    );

    assert!(
        within(WAIT, "status", proxy.client.status())
            .await
            .unwrap()
            .is_empty(),
        "nothing was added"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let proxy = TestProxy::start("control-refusals").await;
    let addr = proxy.add("web").await;

    let (reply, _) = raw_control(&proxy, b"{not json}\n").await;
    assert_eq!(reply.unwrap()["ok"], false);
    let (reply, _) = raw_control(
        &proxy,
        b"{\"op\":\"add\",\"name\":\"../etc\",\"listen\":\"127.0.0.1:0\"}\n",
    )
    .await;
    assert_eq!(reply.unwrap()["ok"], false);

    let refused = |r: Result<_, ProxyError>| match r {
        Err(ProxyError::Refused(why)) => why,
        other => panic!("not refused: {other:?}"),
    };
    let why = refused(
        within(
            WAIT,
            "unknown",
            proxy.client.set_upstream(&name("nope"), Some(addr), None),
        )
        .await,
    );
    assert!(why.contains("no environment named nope"), "{why}");
    let remote = "192.0.2.1:80".parse().unwrap();
    let why = refused(
        within(
            WAIT,
            "remote",
            proxy.client.set_upstream(&name("web"), Some(remote), None),
        )
        .await,
    );
    assert!(why.contains("not a loopback"), "{why}");
    let why = refused(within(WAIT, "same listen", proxy.client.add(&name("other"), addr)).await);
    assert!(
        why.contains("already the address of environment web"),
        "{why}"
    );
    let long = within(
        WAIT,
        "long drain",
        proxy
            .client
            .set_upstream(&name("web"), Some(addr), Some(Duration::from_secs(7200))),
    )
    .await;
    assert!(refused(long).contains("longer than"));

    let again = within(WAIT, "add again", proxy.client.add(&name("web"), addr))
        .await
        .expect("adding the same is a no-op");
    assert_eq!(again.listen, addr);
    let all = within(WAIT, "status", proxy.client.status()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].listen, all[0].upstream), (addr, None));
}

#[tokio::test]
async fn several_requests_share_one_control_connection() {
    let proxy = TestProxy::start("control-lines").await;
    let (reply, mut stream) = raw_control(
        &proxy,
        b"{\"op\":\"add\",\"name\":\"a\",\"listen\":\"127.0.0.1:0\"}\n\n",
    )
    .await;
    assert_eq!(reply.unwrap()["ok"], true);
    within(WAIT, "second", stream.write_all(b"{\"op\":\"status\"}\n"))
        .await
        .unwrap();
    let mut line = String::new();
    within(
        WAIT,
        "second reply",
        BufReader::new(&mut stream).read_line(&mut line),
    )
    .await
    .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["environments"][0]["name"], "a");
}

#[tokio::test]
async fn removing_an_environment_frees_its_address_and_forgets_it() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start("control-remove").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", backend.addr, Duration::ZERO).await;
    assert_eq!(get(addr, "/").await.1, "v1");

    within(
        WAIT,
        "remove",
        proxy.client.remove(&name("web"), Some(Duration::ZERO)),
    )
    .await
    .unwrap();
    within(WAIT, "listener closed", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let saved: ProxyState =
        serde_json::from_slice(&std::fs::read(&proxy.config.state_file).unwrap()).unwrap();
    assert!(saved.environments.is_empty());
    let back = within(WAIT, "re-add", proxy.client.add(&name("web"), addr))
        .await
        .unwrap();
    assert_eq!(back.listen, addr, "the address is free again");
}

#[tokio::test]
async fn a_restarted_proxy_serves_the_previous_upstream_at_once() {
    let backend = Backend::start("v1").await;
    let proxy = TestProxy::start("restart").await;
    let addr = proxy.add("web").await;
    proxy.switch("web", backend.addr, Duration::ZERO).await;
    assert_eq!(get(addr, "/").await.1, "v1");

    let saved: ProxyState =
        serde_json::from_slice(&std::fs::read(&proxy.config.state_file).unwrap()).unwrap();
    let env = &saved.environments[&name("web")];
    assert_eq!((env.listen, env.upstream), (addr, Some(backend.addr)));

    let (dir, config) = proxy.stop().await;
    assert!(
        !config.control_socket.exists(),
        "the control socket is removed on stop"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the stopped proxy still listens"
    );

    let started = Instant::now();
    let proxy = TestProxy::start_in(dir, config).await;
    let (status, body) = get(addr, "/").await;
    let elapsed = started.elapsed();
    assert_eq!((status.as_u16(), body.as_str()), (200, "v1"));
    assert!(elapsed < Duration::from_secs(1), "serving took {elapsed:?}");
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let all = within(WAIT, "status", proxy.client.status()).await.unwrap();
    assert_eq!((all[0].listen, all[0].upstream), (addr, Some(backend.addr)));
}

#[tokio::test]
async fn a_second_proxy_on_the_same_socket_is_refused() {
    let proxy = TestProxy::start("control-twice").await;
    let second = proxy::start(proxy.config.clone(), CancellationToken::new()).await;
    assert!(
        matches!(second, Err(ProxyError::ControlSocketInUse { .. })),
        "{second:?}"
    );
    within(
        WAIT,
        "first still answers",
        proxy.client.request(&ControlRequest::Status { name: None }),
    )
    .await
    .unwrap();
}
