//! What the docker target tests share: bounded waits, test images built from Debian's static
//! busybox (`FROM scratch`; no registry is reachable), an in-process edge proxy, a fixture
//! that removes every container, network and image it made (also when a test panics), a
//! load loop over the proxy's address, and the deploy stage the tests ask for. Traffic goes
//! to 127.0.0.1 only, and to containers the tests created.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use moat_deploy::docker::{self, App, DockerTarget, Environment, PhaseLog, Recorder, ReleaseRef};
use moat_deploy::driver;
use moat_deploy::plan;
use moat_deploy::proxy::{self, ControlClient, EnvName, ProxyConfig};
use moat_deploy::release::{Outcome, Phase};
use moat_pipelines::{DeploySpec, DeployTarget, HealthCheck, Resources, Rollback, Strategy};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The usual bound of one await.
pub const WAIT: Duration = Duration::from_secs(30);
/// The bound of one whole release.
pub const RELEASE: Duration = Duration::from_secs(90);

/// `fut`, or a panic naming `what` after `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// `docker ARGS…`; its stdout. Panics with the CLI's words when `must` and it fails.
pub fn docker_cli(args: &[&str], must: bool) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    if must && !out.status.success() {
        panic!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test's own environment, proxy, images and Docker resources; all removed on drop.
pub struct Fixture {
    pub docker: Docker,
    pub env: Environment,
    pub proxy: ControlClient,
    dir: PathBuf,
    images: Mutex<Vec<String>>,
    _proxy_guard: DropGuard,
}

impl Fixture {
    pub async fn new(case: &str) -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("dt{}-{n}-{case}", std::process::id());
        let dir = std::env::temp_dir().join(format!("moat-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = ProxyConfig::new(dir.join("control.sock"), dir.join("state.json"));
        config.shutdown_grace = Duration::from_secs(1);
        let shutdown = CancellationToken::new();
        let running = within(WAIT, "proxy start", proxy::start(config, shutdown.clone()))
            .await
            .expect("the proxy starts");
        let proxy = running.client();
        let docker = within(WAIT, "docker", docker::connect())
            .await
            .expect("the Docker engine answers (scripts/ensure-deps starts it)");
        Fixture {
            docker,
            env: Environment {
                name: EnvName::new(tag).unwrap(),
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            proxy,
            dir,
            images: Mutex::new(Vec::new()),
            _proxy_guard: shutdown.drop_guard(),
        }
    }

    /// Builds a test image serving `files` under `/www` with busybox httpd on port 8080;
    /// returns its id (`sha256:…`). Each image carries a marker of its own, so no two tests
    /// share an image id.
    pub async fn image(&self, name: &str, files: Vec<(&str, String)>) -> String {
        let tag = format!("moat-deploy-test/{}:{name}", self.env.name);
        let mut all = files;
        all.push(("marker", format!("{tag}\n")));
        let context = context(&all);
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .build();
        self.images.lock().unwrap().push(tag.clone());
        let build = async {
            let mut stream =
                self.docker
                    .build_image(options, None, Some(bollard::body_full(context.into())));
            while let Some(item) = stream.next().await {
                let info = item.expect("the build streams");
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    panic!("building {tag}: {e}");
                }
            }
        };
        within(WAIT * 2, "image build", build).await;
        let inspect = self.docker.inspect_image(&tag).await.expect("built");
        inspect.id.expect("an image id")
    }

    /// The application as the tests deploy it: port 8080, `/healthz`, small limits.
    pub fn app(&self) -> App {
        let spec = spec(Duration::from_secs(10), Duration::from_millis(1500));
        let resources = Resources {
            cpus: Some(0.5),
            memory: Some(64 << 20),
            pids: Some(64),
        };
        let mut app =
            plan::docker_app(&spec, vec![("GREETING".into(), "hello".into())], &resources)
                .expect("a docker deploy");
        app.sandbox.stop_timeout = Duration::from_secs(2);
        app
    }

    pub async fn target<R: Recorder>(
        &self,
        release: &str,
        image: &str,
        recorder: R,
    ) -> DockerTarget<R> {
        within(
            WAIT,
            "prepare",
            DockerTarget::prepare(
                self.docker.clone(),
                self.proxy.clone(),
                self.env.clone(),
                ReleaseRef {
                    id: release.into(),
                    image: image.into(),
                },
                self.app(),
                recorder,
            ),
        )
        .await
        .expect("prepare")
    }

    /// Deploys `image` as `release` through [`driver::drive`] with `spec`.
    pub async fn deploy_with<R: Recorder>(
        &self,
        release: &str,
        image: &str,
        spec: &DeploySpec,
        recorder: R,
    ) -> (Outcome, DockerTarget<R>) {
        let mut target = self.target(release, image, recorder).await;
        let plan = plan::release_plan(spec, target.has_previous()).expect("a blue-green plan");
        let outcome = within(
            RELEASE,
            "the release",
            driver::drive(&mut target, plan, &CancellationToken::new()),
        )
        .await;
        (outcome, target)
    }

    /// Deploys with the usual stage (10 s verify deadline, 1.5 s observe, 1 s drain).
    pub async fn deploy(&self, release: &str, image: &str) -> (Outcome, PhaseLog) {
        let log = PhaseLog::default();
        let spec = spec(Duration::from_secs(10), Duration::from_millis(1500));
        let (outcome, _) = self.deploy_with(release, image, &spec, log.clone()).await;
        (outcome, log)
    }

    /// The proxy's address for the environment (once a release added it).
    pub async fn address(&self) -> SocketAddr {
        self.proxy
            .status_of(&self.env.name)
            .await
            .expect("the route")
            .listen
    }

    /// The proxy's live upstream for the environment.
    pub async fn upstream(&self) -> Option<SocketAddr> {
        self.proxy
            .status_of(&self.env.name)
            .await
            .expect("the route")
            .upstream
    }

    pub fn container(&self, colour: docker::Colour) -> String {
        docker::container_name(&self.env.name, colour)
    }

    /// Whether a container of that name exists (running or not).
    pub fn exists(&self, name: &str) -> bool {
        !docker_cli(&["ps", "-aq", "--filter", &format!("name=^/{name}$")], true).is_empty()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let label = format!("label={}={}", docker::LABEL_ENVIRONMENT, self.env.name);
        let ids = docker_cli(&["ps", "-aq", "--filter", &label], false);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            docker_cli(&["rm", "-f", "-v", id], false);
        }
        docker_cli(
            &["network", "rm", &docker::network_name(&self.env.name)],
            false,
        );
        for image in self.images.lock().unwrap().iter() {
            docker_cli(&["rmi", "-f", image], false);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The deploy stage the tests ask for: blue-green to docker on port 8080, `GET /healthz` every
/// 100 ms (1 s per try, 2 successes), automatic rollback, a 1 s drain.
pub fn spec(deadline: Duration, observe: Duration) -> DeploySpec {
    DeploySpec {
        target: DeployTarget::Docker,
        strategy: Strategy::BlueGreen,
        image: "app".into(),
        port: 8080,
        health: HealthCheck {
            path: "/healthz".into(),
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(100),
            status: None,
            successes: 2,
            deadline,
        },
        rollback: Rollback::Auto,
        namespace: None,
        app: None,
        observe,
        drain: Duration::from_secs(1),
        probe: None,
    }
}

/// The usual files of a version: `/version` and `/healthz`.
pub fn healthy(version: &str) -> Vec<(&'static str, String)> {
    vec![
        ("version", format!("{version}\n")),
        ("healthz", "ok\n".into()),
    ]
}

/// A build context: the Dockerfile and a root with busybox and `/www`.
fn context(files: &[(&str, String)]) -> Vec<u8> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (scripts/ensure-deps)");
    let busybox = std::fs::read(busybox).unwrap();
    let dockerfile = "FROM scratch\nCOPY rootfs/ /\nEXPOSE 8080\n\
        CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644);
    add("rootfs/bin/busybox", &busybox, 0o755);
    for (name, content) in files {
        add(&format!("rootfs/www/{name}"), content.as_bytes(), 0o644);
    }
    tar.into_inner().unwrap()
}

/// Requests `GET /version` through the proxy in a loop until stopped, on kept-alive
/// connections; records every answer in order.
pub struct Load {
    stop: CancellationToken,
    task: JoinHandle<Answers>,
    seen: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
pub struct Answers {
    /// The bodies of the 200 answers, in order.
    pub versions: Vec<String>,
    /// Everything else, in words.
    pub failures: Vec<String>,
}

impl Answers {
    /// The versions with repeats collapsed: `[v1, v2]` is exactly one flip.
    pub fn flips(&self) -> Vec<String> {
        let mut v = self.versions.clone();
        v.dedup();
        v
    }
}

impl Load {
    pub fn start(addr: SocketAddr) -> Load {
        let stop = CancellationToken::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let uri: http::Uri = format!("http://{addr}/version").parse().unwrap();
            let mut answers = Answers::default();
            while !stop2.is_cancelled() {
                let got = tokio::time::timeout(Duration::from_secs(5), async {
                    let response = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    let text = String::from_utf8_lossy(&body).trim().to_string();
                    if status == 200 {
                        Ok(text)
                    } else {
                        Err(format!("status {status}: {text}"))
                    }
                })
                .await
                .unwrap_or_else(|_| Err("no answer within 5 s".into()));
                match got {
                    Ok(v) => answers.versions.push(v),
                    Err(e) => answers.failures.push(e),
                }
                seen2.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        });
        Load { stop, task, seen }
    }

    /// Waits until `n` more answers came.
    pub async fn more(&self, n: usize) {
        let target = self.seen.load(Ordering::Relaxed) + n;
        within(WAIT, "load answers", async {
            while self.seen.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    pub async fn finish(self) -> Answers {
        self.stop.cancel();
        within(WAIT, "the load loop", self.task).await.unwrap()
    }
}

/// One `GET path` through `addr` on a fresh connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let response = within(WAIT, "GET", client.get(uri))
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).trim().to_string())
}

/// A recorder that keeps the phases and also announces each one.
pub struct Announcing {
    pub log: PhaseLog,
    pub tx: tokio::sync::mpsc::UnboundedSender<Phase>,
}

impl Recorder for Announcing {
    async fn record(&mut self, phase: Phase) -> Result<(), String> {
        self.log.record(phase).await?;
        let _ = self.tx.send(phase);
        Ok(())
    }
}
