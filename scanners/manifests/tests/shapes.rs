//! Workloads Moat cannot read: a field the checks read with the wrong YAML shape (containers
//! as a mapping, spec as a list, securityContext as a string), or no pod spec at all, is a
//! `MOAT-K8S-MALFORMED-WORKLOAD` finding, never a silent pass.

use moat_manifests::{ManifestReport, ScanOptions, rules, scan_source};

fn scan(src: &str) -> ManifestReport {
    let report = scan_source("test.yaml", src, &ScanOptions::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
}

/// The check IDs found, in order.
fn ids(report: &ManifestReport) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.id).collect()
}

/// The findings as `(check ID, line)`.
fn ids_lines(report: &ManifestReport) -> Vec<(&'static str, u32)> {
    report.findings.iter().map(|f| (f.id, f.line)).collect()
}

#[test]
fn containers_as_a_mapping_is_a_finding_not_a_pass() {
    // Before: `containers` as a mapping was skipped, and the privileged container with it.
    let src = "kind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  automountServiceAccountToken: false\n  containers:\n    app:\n      image: a:1\n      securityContext: {privileged: true}\n";
    let r = scan(src);
    assert_eq!(ids_lines(&r), [(rules::MALFORMED_WORKLOAD.id, 5)]);
    assert!(
        r.findings[0]
            .message
            .contains("`spec.containers` is a mapping, expected a list"),
        "{}",
        r.findings[0].message
    );
    assert_eq!(r.findings[0].severity, moat_manifests::Severity::Critical);
    assert_eq!(r.exit_code(), 1);

    // The same in the other container lists and on a Deployment's template.
    for list in ["initContainers", "ephemeralContainers"] {
        let r = scan(&src.replace("containers:", &format!("{list}:")));
        assert!(ids(&r).contains(&rules::MALFORMED_WORKLOAD.id), "{list}");
    }
    let deployment = "kind: Deployment\nmetadata: {name: d, namespace: shop}\nspec:\n  template:\n    spec:\n      automountServiceAccountToken: false\n      containers: {app: {image: a:1, securityContext: {privileged: true}}}\n";
    let r = scan(deployment);
    assert_eq!(ids_lines(&r), [(rules::MALFORMED_WORKLOAD.id, 7)]);
    assert!(
        r.findings[0]
            .message
            .contains("`spec.template.spec.containers`")
    );
}

#[test]
fn shape_confusions_never_pass_silently() {
    let malformed = |src: &str| -> Vec<String> {
        let r = scan(src);
        r.findings
            .iter()
            .filter(|f| f.id == rules::MALFORMED_WORKLOAD.id)
            .map(|f| format!("{}:{}: {}", f.line, f.column, f.message))
            .collect()
    };
    let cases: &[(&str, &str)] = &[
        // The pod spec as a list, missing, or a string.
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n- containers: [{name: a, image: a:1, securityContext: {privileged: true}}]\n",
            "`spec` is a list",
        ),
        ("kind: Pod\nmetadata: {name: p}\n", "`spec` is missing"),
        (
            "kind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n",
            "`spec.template` is missing",
        ),
        (
            "kind: Deployment\nmetadata: {name: d}\nspec: {template: [{spec: {}}]}\n",
            "`spec.template` is a list",
        ),
        (
            "kind: Deployment\nmetadata: {name: d}\nspec: {template: {metadata: {}}}\n",
            "`spec.template.spec` is missing",
        ),
        (
            "kind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {spec: {template: privileged}}}\n",
            "`spec.jobTemplate.spec.template` is a string",
        ),
        // Security contexts and their parts of the wrong shape.
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a:1, securityContext: privileged}]\n",
            "`spec.containers[0].securityContext` is a string",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: [runAsNonRoot]\n  containers: [{name: a, image: a:1}]\n",
            "`spec.securityContext` is a list",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a:1, securityContext: {capabilities: {add: SYS_ADMIN}}}]\n",
            "`spec.containers[0].securityContext.capabilities.add` is a string",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a:1, securityContext: {seccompProfile: Unconfined}}]\n",
            "`spec.containers[0].securityContext.seccompProfile` is a string",
        ),
        // Lists of the wrong shape, and items that are not mappings.
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  volumes: {host: {hostPath: {path: /}}}\n  containers: [{name: a, image: a:1}]\n",
            "`spec.volumes` is a mapping",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [privileged]\n",
            "`spec.containers[0]` is a string",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a:1, ports: {hostPort: 22}}]\n",
            "`spec.containers[0].ports` is a mapping",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a:1, env: {TOKEN: x}}]\n",
            "`spec.containers[0].env` is a mapping",
        ),
        // Metadata (where ignore annotations and AppArmor profiles live), and List items.
        (
            "kind: Pod\nmetadata: [name]\nspec:\n  containers: [{name: a, image: a:1}]\n",
            "`metadata` is a list",
        ),
        (
            "kind: List\nitems: {kind: Pod, spec: {containers: [{name: a, securityContext: {privileged: true}}]}}\n",
            "`items` is a mapping",
        ),
        (
            "kind: List\nitems: [privileged]\n",
            "`items` holds a string",
        ),
    ];
    for (src, expected) in cases {
        let found = malformed(src);
        assert!(
            found.iter().any(|m| m.contains(expected)),
            "{src:?}: expected {expected:?}, found {found:?}"
        );
    }
    // A null field is an absent one (as for the API server), not a shape problem.
    let null = "kind: Pod\nmetadata: {name: p}\nspec:\n  initContainers: ~\n  containers: [{name: a, image: a:1, securityContext: ~}]\n";
    assert!(malformed(null).is_empty(), "{:?}", malformed(null));
}
