//! The administrator's policy: what the strict default refuses, each allowance accepts, and
//! nothing more.

use moat_pipelines::{Policy, parse_with};

const SANDBOX_ESCAPES: &str = r#"
version: 1
stages:
  - name: dind
    kind: test
    image: docker:dind
    privileged: true
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - /srv/cache:/cache:ro
"#;

fn messages(policy: &Policy) -> Vec<String> {
    match parse_with(SANDBOX_ESCAPES.as_bytes(), policy) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|d| format!("{}: {}", d.pos, d.message))
            .collect(),
    }
}

#[test]
fn strict_default_refuses_everything() {
    assert_eq!(
        messages(&Policy::default()),
        [
            "7:17: privileged containers are refused by policy",
            "9:9: the Docker socket is refused by policy",
            "10:9: host mounts are refused by policy",
        ]
    );
}

#[test]
fn each_allowance_lifts_only_its_own_refusal() {
    let privileged = Policy {
        allow_privileged: true,
        ..Policy::default()
    };
    assert_eq!(messages(&privileged).len(), 2);
    let hosts = Policy {
        allow_host_mounts: true,
        ..Policy::default()
    };
    assert_eq!(
        messages(&hosts),
        [
            "7:17: privileged containers are refused by policy",
            "9:9: the Docker socket is refused by policy",
        ]
    );
    let everything = Policy {
        allow_privileged: true,
        allow_host_mounts: true,
        allow_docker_socket: true,
    };
    let p = parse_with(SANDBOX_ESCAPES.as_bytes(), &everything).unwrap();
    let stage = &p.stages[0];
    assert!(stage.privileged);
    assert_eq!(stage.mounts.len(), 2);
    assert!(stage.mounts[1].read_only);
    assert_eq!(stage.mounts[1].source, "/srv/cache");
}
