//! The docker target against the real Docker engine and an in-process edge proxy: releases
//! through `driver::drive` under load, a candidate that never passes, one that fails while
//! observed, recovery after a killed deploy, reconciliation of a removed live colour, and the
//! image rules. Every test has its own environment, proxy, images and containers, removes
//! them, and bounds every wait.

mod support;

use std::time::Duration;

use moat_deploy::docker::{self, Colour, Interrupted, PhaseLog, Reconciled};
use moat_deploy::driver::Target;
use moat_deploy::release::{Outcome, Phase};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_then_v2_switches_once_under_load_with_no_failed_request() {
    let fx = Fixture::new("switch").await;
    let v1 = fx.image("v1", healthy("v1")).await;
    let v2 = fx.image("v2", healthy("v2")).await;

    let (outcome, log) = fx.deploy("1", &v1).await;
    assert_eq!(outcome, Outcome::Live);
    assert_eq!(
        log.phases(),
        [
            Phase::Prepare,
            Phase::Verify,
            Phase::Switch,
            Phase::Observe,
            Phase::Retire
        ]
    );
    let addr = fx.address().await;
    assert!(addr.ip().is_loopback());
    assert_eq!(get(addr, "/version").await, (200, "v1".into()));
    let blue = fx.container(Colour::Blue);
    assert!(fx.exists(&blue));

    // The colour runs sandboxed and reachable on loopback only.
    let inspect = fx.docker.inspect_container(&blue, None).await.unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(
        host.network_mode.as_deref(),
        Some(docker::network_name(&fx.env.name).as_str())
    );
    let ports = inspect.network_settings.unwrap().ports.unwrap();
    let bindings = ports["8080/tcp"].as_ref().unwrap();
    assert!(
        bindings
            .iter()
            .all(|b| b.host_ip.as_deref() == Some("127.0.0.1")),
        "{bindings:?}"
    );
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels[docker::LABEL_RELEASE], "1");
    assert_eq!(labels[docker::LABEL_COLOUR], "blue");
    assert_eq!(labels[docker::LABEL_ROLE], "candidate");

    let load = Load::start(addr);
    load.more(20).await;
    let (outcome, log) = fx.deploy("2", &v2).await;
    assert_eq!(outcome, Outcome::Live);
    assert_eq!(log.phases().len(), 5);
    load.more(20).await;
    let answers = load.finish().await;

    assert!(answers.failures.is_empty(), "{:?}", answers.failures);
    assert_eq!(answers.flips(), ["v1", "v2"], "exactly one flip");
    assert!(answers.versions.len() >= 40);
    // The old colour is retired; its image stays for a rollback.
    assert!(!fx.exists(&blue), "blue retired");
    assert!(fx.exists(&fx.container(Colour::Green)));
    assert!(
        fx.docker.inspect_image(&v1).await.is_ok(),
        "v1's image kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_never_passes_gets_no_traffic_and_is_removed() {
    let fx = Fixture::new("never").await;
    let v1 = fx.image("v1", healthy("v1")).await;
    // No /healthz: busybox answers 404.
    let broken = fx.image("v2", vec![("version", "v2\n".into())]).await;
    assert_eq!(fx.deploy("1", &v1).await.0, Outcome::Live);
    let addr = fx.address().await;
    let before = fx.upstream().await;

    let load = Load::start(addr);
    load.more(10).await;
    let short = spec(Duration::from_secs(2), Duration::from_secs(1));
    let log = PhaseLog::default();
    let (outcome, target) = fx.deploy_with("2", &broken, &short, log.clone()).await;
    let answers = load.finish().await;

    let Outcome::Failed { phase, reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(phase, Phase::Verify);
    assert!(reason.contains("GET /healthz → 2xx"), "{reason}");
    assert!(reason.contains("status 404"), "{reason}");
    assert_eq!(log.phases(), [Phase::Prepare, Phase::Verify]);
    assert!(answers.failures.is_empty(), "{:?}", answers.failures);
    assert_eq!(answers.flips(), ["v1"], "the candidate never served");
    assert_eq!(fx.upstream().await, before);
    assert!(
        !fx.exists(&fx.container(target.candidate_colour())),
        "candidate removed"
    );
    assert!(fx.exists(&fx.container(Colour::Blue)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_unhealthy_while_observed_is_switched_back() {
    let fx = Fixture::new("observe").await;
    let v1 = fx.image("v1", healthy("v1")).await;
    let v2 = fx.image("v2", healthy("v2")).await;
    assert_eq!(fx.deploy("1", &v1).await.0, Outcome::Live);
    let addr = fx.address().await;
    let blue_upstream = fx.upstream().await;
    let green = fx.container(Colour::Green);

    // Once traffic is on v2 and it is observed, its health file goes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let breaker = {
        let green = green.clone();
        tokio::spawn(async move {
            while let Some(phase) = rx.recv().await {
                if phase == Phase::Observe {
                    let green = green.clone();
                    tokio::task::spawn_blocking(move || {
                        docker_cli(
                            &["exec", &green, "/bin/busybox", "rm", "/www/healthz"],
                            true,
                        )
                    })
                    .await
                    .unwrap();
                    return true;
                }
            }
            false
        })
    };
    let recorder = Announcing {
        log: PhaseLog::default(),
        tx,
    };
    let long = spec(Duration::from_secs(10), Duration::from_secs(30));
    let (outcome, target) = fx.deploy_with("2", &v2, &long, recorder).await;
    assert!(within(WAIT, "the breaker", breaker).await.unwrap());

    let Outcome::RolledBack { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("while observed"), "{reason}");
    assert!(reason.contains("status 404"), "{reason}");
    assert_eq!(
        target.recorder().log.phases(),
        [Phase::Prepare, Phase::Verify, Phase::Switch, Phase::Observe]
    );
    assert_eq!(fx.upstream().await, blue_upstream);
    assert_eq!(get(addr, "/version").await, (200, "v1".into()));
    assert!(!fx.exists(&green), "the unhealthy colour is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cleans_up_after_a_killed_deploy() {
    let fx = Fixture::new("recover").await;
    let v1 = fx.image("v1", healthy("v1")).await;
    let v2 = fx.image("v2", healthy("v2")).await;
    assert_eq!(fx.deploy("1", &v1).await.0, Outcome::Live);
    let addr = fx.address().await;
    let blue_upstream = fx.upstream().await;
    let green = fx.container(Colour::Green);
    let stop = Duration::from_secs(2);

    // Killed during verify: the candidate runs, traffic never moved.
    {
        let mut killed = fx.target("2", &v2, PhaseLog::default()).await;
        killed.record(Phase::Prepare).await.unwrap();
        within(WAIT, "start", killed.start_candidate())
            .await
            .unwrap();
        killed.record(Phase::Verify).await.unwrap();
    }
    assert!(fx.exists(&green));
    let interrupted = Interrupted {
        release: "2".into(),
        phase: Phase::Verify,
    };
    let r = within(
        WAIT,
        "recover",
        docker::recover(&fx.docker, &fx.proxy, &fx.env, Some(&interrupted), stop),
    )
    .await
    .unwrap();
    assert_eq!(r.live, Some(Colour::Blue));
    assert_eq!(r.live_release.as_deref(), Some("1"));
    assert!(!r.routed_back);
    assert_eq!(r.removed, vec![green.clone()]);
    assert!(!fx.exists(&green));
    assert_eq!(fx.upstream().await, blue_upstream);

    // Killed while observed: traffic had moved to the candidate; it goes back.
    {
        let mut killed = fx.target("3", &v2, PhaseLog::default()).await;
        within(WAIT, "start", killed.start_candidate())
            .await
            .unwrap();
        within(
            WAIT,
            "switch",
            killed.route_to_candidate(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    }
    assert_eq!(get(addr, "/version").await, (200, "v2".into()));
    let interrupted = Interrupted {
        release: "3".into(),
        phase: Phase::Observe,
    };
    let r = within(
        WAIT,
        "recover",
        docker::recover(&fx.docker, &fx.proxy, &fx.env, Some(&interrupted), stop),
    )
    .await
    .unwrap();
    assert!(r.routed_back);
    assert_eq!(r.live, Some(Colour::Blue));
    assert_eq!(r.removed, vec![green.clone()]);
    assert_eq!(fx.upstream().await, blue_upstream);
    assert_eq!(get(addr, "/version").await, (200, "v1".into()));

    // Nothing left to do.
    let r = docker::recover(&fx.docker, &fx.proxy, &fx.env, None, stop)
        .await
        .unwrap();
    assert!(r.removed.is_empty() && !r.routed_back, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_live_serves_the_same_release_after_its_container_was_removed() {
    let fx = Fixture::new("ensure").await;
    let v1 = fx.image("v1", healthy("v1")).await;
    assert_eq!(fx.deploy("1", &v1).await.0, Outcome::Live);
    let addr = fx.address().await;
    let blue = fx.container(Colour::Blue);

    docker_cli(&["rm", "-f", &blue], true);
    let (status, _) = get(addr, "/version").await;
    assert!(status >= 500, "the live colour is gone: {status}");

    let release = docker::ReleaseRef {
        id: "1".into(),
        image: v1.clone(),
    };
    let health = moat_deploy::plan::health_policy(&spec(WAIT, WAIT).health);
    // The restarted colour runs with a read-only root (busybox httpd only reads).
    let mut app = fx.app();
    app.sandbox.read_only_rootfs = true;
    let done = within(
        WAIT * 2,
        "ensure_live",
        docker::ensure_live(&fx.docker, &fx.proxy, &fx.env, &release, &app, &health),
    )
    .await
    .unwrap();
    let Reconciled::Restarted { colour, upstream } = done else {
        panic!("{done:?}");
    };
    assert_eq!(fx.upstream().await, Some(upstream));
    assert_eq!(get(addr, "/version").await, (200, "v1".into()));
    let inspect = fx
        .docker
        .inspect_container(&fx.container(colour), None)
        .await
        .unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels[docker::LABEL_RELEASE], "1");
    assert_eq!(labels[docker::LABEL_ROLE], "live");

    let again = docker::ensure_live(&fx.docker, &fx.proxy, &fx.env, &release, &app, &health)
        .await
        .unwrap();
    assert_eq!(
        again,
        Reconciled::Serving {
            colour: Some(colour)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_images_by_digest_are_deployed_and_a_missing_one_says_it_cannot_be_pulled() {
    let fx = Fixture::new("images").await;
    let zeros = "0".repeat(64);
    let cases = [
        ("busybox:latest".to_string(), "is not pinned by digest"),
        (
            format!("sha256:{zeros}"),
            "a bare image id cannot be pulled",
        ),
        (
            // Nothing listens there: the engine cannot pull.
            format!("127.0.0.1:1/moat-test/nothing@sha256:{zeros}"),
            "is not on this Docker host and cannot be pulled",
        ),
    ];
    for (image, expected) in cases {
        let spec = spec(Duration::from_secs(2), Duration::from_secs(1));
        let (outcome, target) = fx
            .deploy_with("1", &image, &spec, PhaseLog::default())
            .await;
        let Outcome::Failed { phase, reason } = outcome else {
            panic!("{image}: {outcome:?}");
        };
        assert_eq!(phase, Phase::Prepare, "{image}");
        assert!(reason.contains(expected), "{image}: {reason}");
        assert!(!fx.exists(&fx.container(target.candidate_colour())));
    }
}
