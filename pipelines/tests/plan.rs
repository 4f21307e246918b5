//! Planning on parsed pipelines: DAG edges (explicit and implicit), environment layering,
//! interpolation, `when` decisions, `on` triggers and stage selection.

use moat_pipelines::{Event, EventKind, Pipeline, Plan, parse, plan};

fn pipeline(src: &str) -> Pipeline {
    parse(src).unwrap_or_else(|e| panic!("{e}"))
}

fn push(branch: &str) -> Event {
    Event {
        kind: EventKind::Push,
        branch: Some(branch.into()),
        target_branch: None,
        tag: None,
        commit: "c0ffee".into(),
        repo: "acme/shop".into(),
        run_id: "42".into(),
    }
}

fn pull_request(from: &str, into: &str) -> Event {
    Event {
        kind: EventKind::PullRequest,
        branch: Some(from.into()),
        target_branch: Some(into.into()),
        ..push(from)
    }
}

fn tag(name: &str) -> Event {
    Event {
        kind: EventKind::Tag,
        branch: None,
        tag: Some(name.into()),
        ..push("main")
    }
}

fn needs(plan: &Plan, name: &str) -> Vec<String> {
    let s = plan.stages.iter().find(|s| s.name == name).unwrap();
    s.needs
        .iter()
        .map(|&i| plan.stages[i].name.clone())
        .collect()
}

const DAG: &str = r#"
version: 1
env:
  REGISTRY: registry.local
  LEVEL: file
stages:
  - { name: prepare, kind: test, image: "rust:1.82" }
  - { name: fmt, kind: test, image: "rust:1.82", needs: [prepare] }
  - { name: unit, kind: test, image: "rust:1.82", needs: [prepare], env: { LEVEL: stage } }
  - { name: docs, kind: test, image: "alpine", needs: [] }
  - name: image
    kind: build
    needs: [fmt, unit]
    build: { tag: "${REGISTRY}/app:${MOAT_COMMIT}", args: { FROM_BRANCH: "${MOAT_BRANCH}" } }
  - name: scan
    kind: scan
    scan: { image: "${REGISTRY}/app:${MOAT_COMMIT}" }
  - name: deploy
    kind: deploy
    needs: [scan]
    when: { branch: main, event: push }
    deploy: { target: docker, image: "${REGISTRY}/app:${MOAT_COMMIT}", port: 8080 }
"#;

#[test]
fn dag_edges_explicit_and_implicit() {
    let p = plan(&pipeline(DAG), &push("main")).unwrap();
    assert!(needs(&p, "prepare").is_empty());
    assert_eq!(needs(&p, "fmt"), ["prepare"]);
    assert_eq!(needs(&p, "unit"), ["prepare"]);
    assert!(needs(&p, "docs").is_empty());
    assert_eq!(needs(&p, "image"), ["fmt", "unit"]);
    // No `needs`: waits for the stage before it.
    assert_eq!(needs(&p, "scan"), ["image"]);
    assert_eq!(needs(&p, "deploy"), ["scan"]);

    let order = p.topological_order();
    assert_eq!(order.len(), p.stages.len());
    let at = |name: &str| {
        order
            .iter()
            .position(|&i| p.stages[i].name == name)
            .unwrap()
    };
    assert!(at("prepare") < at("fmt") && at("prepare") < at("unit"));
    assert!(at("fmt") < at("image") && at("unit") < at("image"));
    assert!(at("image") < at("scan") && at("scan") < at("deploy"));
}

#[test]
fn env_layers_and_interpolation() {
    let p = plan(&pipeline(DAG), &push("main")).unwrap();
    let unit = &p.stages[2];
    let get = |k: &str| {
        unit.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("MOAT_STAGE"), Some("unit"));
    assert_eq!(get("MOAT_COMMIT"), Some("c0ffee"));
    assert_eq!(get("MOAT_REPO"), Some("acme/shop"));
    assert_eq!(get("MOAT_EVENT"), Some("push"));
    assert_eq!(get("LEVEL"), Some("stage"));
    assert_eq!(unit.env.iter().filter(|(n, _)| n == "LEVEL").count(), 1);

    let image = &p.stages[4];
    let build = image.build.as_ref().unwrap();
    assert_eq!(build.tag.as_deref(), Some("registry.local/app:c0ffee"));
    assert_eq!(
        build.args,
        [("FROM_BRANCH".to_string(), "main".to_string())]
    );
    assert_eq!(
        p.stages[5].scan.as_ref().unwrap().image.as_deref(),
        Some("registry.local/app:c0ffee")
    );
    assert_eq!(
        p.stages[6].deploy.as_ref().unwrap().image,
        "registry.local/app:c0ffee"
    );
}

#[test]
fn when_decides_skips() {
    let pl = pipeline(DAG);
    let deploy_skip = |e: &Event| plan(&pl, e).unwrap().stages[6].skip.clone();
    assert_eq!(deploy_skip(&push("main")), None);
    assert_eq!(
        deploy_skip(&push("feature/x")),
        Some("when: branch feature/x does not match".to_string())
    );
    assert_eq!(
        deploy_skip(&pull_request("feature/x", "main")),
        Some("when: event is pull_request".to_string())
    );
    assert_eq!(
        deploy_skip(&tag("v1.0.0")),
        Some("when: event is tag".to_string())
    );
    // Stages without `when` always run.
    assert!(
        plan(&pl, &tag("v1"))
            .unwrap()
            .stages
            .iter()
            .take(6)
            .all(|s| s.skip.is_none())
    );

    let tagged = pipeline(
        r#"
version: 1
stages:
  - { name: release, kind: test, image: alpine, when: { tag: "v*" } }
  - { name: pr, kind: test, image: alpine, when: { branch: "main", event: pull_request } }
"#,
    );
    let p = plan(&tagged, &tag("v2.0.0")).unwrap();
    assert_eq!(p.stages[0].skip, None);
    assert_eq!(p.stages[1].skip.as_deref(), Some("when: event is tag"));
    let p = plan(&tagged, &push("main")).unwrap();
    assert_eq!(
        p.stages[0].skip.as_deref(),
        Some("when: the event has no tag")
    );
    // For pull requests, `branch` is matched against the target branch.
    let p = plan(&tagged, &pull_request("feature/y", "main")).unwrap();
    assert_eq!(p.stages[1].skip, None);
}

#[test]
fn triggers() {
    let absent = pipeline("version: 1\nstages: [{ name: a, kind: test, image: x }]\n");
    assert!(absent.triggered_by(&push("anything")));
    assert!(!absent.triggered_by(&pull_request("a", "main")));
    assert!(!absent.triggered_by(&tag("v1")));

    let on = pipeline(
        r#"
version: 1
on:
  push: { branches: [main, "release/*"] }
  pull_request: { branches: main }
  tag: { pattern: "v*" }
  manual: true
stages: [{ name: a, kind: test, image: x }]
"#,
    );
    assert!(on.triggered_by(&push("main")));
    assert!(on.triggered_by(&push("release/1.0")));
    assert!(!on.triggered_by(&push("release/1.0/hotfix")));
    assert!(!on.triggered_by(&push("feature/a")));
    assert!(on.triggered_by(&pull_request("feature/a", "main")));
    assert!(!on.triggered_by(&pull_request("feature/a", "develop")));
    assert!(on.triggered_by(&tag("v1.2.3")));
    assert!(!on.triggered_by(&tag("nightly")));
    assert!(on.triggered_by(&Event {
        kind: EventKind::Manual,
        ..push("main")
    }));

    let off = pipeline(
        "version: 1\non: { push: false, tag: true }\nstages: [{ name: a, kind: test, image: x }]\n",
    );
    assert!(!off.triggered_by(&push("main")));
    assert!(off.triggered_by(&tag("anything")));
    assert!(!off.triggered_by(&Event {
        kind: EventKind::Manual,
        ..push("main")
    }));
}

#[test]
fn select_keeps_what_is_needed() {
    let pl = pipeline(DAG);
    let mut p = plan(&pl, &push("main")).unwrap();
    p.select(&["image".to_string()]).unwrap();
    let kept: Vec<&str> = p
        .stages
        .iter()
        .filter(|s| s.skip.is_none())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(kept, ["prepare", "fmt", "unit", "image"]);
    assert_eq!(p.stages[3].skip.as_deref(), Some("not selected"));

    // A `when` skip is kept as the reason, not overwritten.
    let mut p = plan(&pl, &push("feature/x")).unwrap();
    p.select(&["scan".to_string()]).unwrap();
    assert_eq!(
        p.stages[6].skip.as_deref(),
        Some("when: branch feature/x does not match")
    );

    let mut p = plan(&pl, &push("main")).unwrap();
    assert_eq!(
        p.select(&["image".to_string(), "nope".to_string()]),
        Err(vec!["nope".to_string()])
    );
}
