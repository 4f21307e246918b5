//! Throughput and latency of the edge proxy against the same backend reached directly, and
//! failures while switching colours under load. Loopback only.
//!
//! `cargo run --release -p moat-deploy --example proxy_bench [SECONDS] [CONNECTIONS]`
//! (defaults: 3 s per phase, 16 concurrent keep-alive clients).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat_deploy::proxy::{self, EnvName, ProxyConfig};
use tokio_util::sync::CancellationToken;

/// A backend answering `name` to everything.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        name.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Outcome {
    latencies: Vec<Duration>,
    failures: usize,
    versions: Vec<Bytes>,
}

/// `conns` loops of GET / to `addr` for `secs`.
async fn load(addr: SocketAddr, secs: u64, conns: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..conns {
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let uri: hyper::Uri = format!("http://{addr}/").parse().unwrap();
            let mut out = Outcome {
                latencies: Vec::new(),
                failures: 0,
                versions: Vec::new(),
            };
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(5), async {
                    let response = client.get(uri.clone()).await.ok()?;
                    let ok = response.status().is_success();
                    let body = response.into_body().collect().await.ok()?.to_bytes();
                    ok.then_some(body)
                })
                .await;
                match answer {
                    Ok(Some(body)) => {
                        out.latencies.push(started.elapsed());
                        if out.versions.last() != Some(&body) {
                            out.versions.push(body);
                        }
                    }
                    _ => out.failures += 1,
                }
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcome {
        latencies: Vec::new(),
        failures: 0,
        versions: Vec::new(),
    };
    for handle in loops {
        let out = handle.await.unwrap();
        all.latencies.extend(out.latencies);
        all.failures += out.failures;
        all.versions.extend(out.versions);
    }
    all.latencies.sort();
    all
}

fn report(label: &str, secs: u64, out: &Outcome) {
    let n = out.latencies.len();
    let pct = |p: f64| {
        out.latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label:<28} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   failures {}",
        n as f64 / secs as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        out.failures
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(3, |a| a.parse().expect("SECONDS"));
    let conns: usize = args.next().map_or(16, |a| a.parse().expect("CONNECTIONS"));

    let (blue, green) = (backend("blue").await, backend("green").await);
    let dir = std::env::temp_dir().join(format!("moat-proxy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let shutdown = CancellationToken::new();
    let running = proxy::start(
        ProxyConfig::new(dir.join("control.sock"), dir.join("state.json")),
        shutdown.clone(),
    )
    .await
    .expect("the proxy starts");
    let control = running.client();
    let env = EnvName::new("bench").unwrap();
    let listen = control
        .add(&env, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .listen;
    control
        .set_upstream(&env, Some(blue), Some(Duration::ZERO))
        .await
        .unwrap();

    report(
        "direct to the backend",
        secs,
        &load(blue, secs, conns).await,
    );
    report("through the proxy", secs, &load(listen, secs, conns).await);

    let switching = CancellationToken::new();
    let switcher = {
        let (control, env, switching) = (control.clone(), env.clone(), switching.clone());
        tokio::spawn(async move {
            let mut switches = 0usize;
            let mut to = green;
            while !switching.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let started = Instant::now();
                control
                    .set_upstream(&env, Some(to), Some(Duration::from_secs(5)))
                    .await
                    .unwrap();
                if switches == 0 {
                    println!(
                        "{:<28} {:>9.3} ms per switch (control round trip)",
                        "switch",
                        started.elapsed().as_secs_f64() * 1e3
                    );
                }
                switches += 1;
                to = if to == green { blue } else { green };
            }
            switches
        })
    };
    let out = load(listen, secs, conns).await;
    switching.cancel();
    let switches = switcher.await.unwrap();
    report(
        &format!("through the proxy, {switches} switches"),
        secs,
        &out,
    );

    shutdown.cancel();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if out.failures > 0 {
        eprintln!("{} requests failed during switches", out.failures);
        std::process::exit(1);
    }
}
