//! The Kubernetes manifest scanner end to end, through its library API: Kyverno's Pod Security
//! Standards fixtures (every bad document flagged by its folder's check, no good one), each
//! hygiene check, the ignore annotation, the walk over a directory, unusable input, and the
//! output shapes (table, JSON, SARIF).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use moat_manifests::{
    Format, ManifestError, ManifestReport, ScanOptions, report, rules, scan_path, scan_source,
};
use moat_pipelines::yaml::{self, Node};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/k8s/kyverno")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moat-manifests-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scan(src: &str) -> ManifestReport {
    let report = scan_source("test.yaml", src, &ScanOptions::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
}

/// The check IDs found, in order.
fn ids(report: &ManifestReport) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.id).collect()
}

fn has(report: &ManifestReport, id: &str) -> bool {
    report.findings.iter().any(|f| f.id == id)
}

/// `(kind, name)` of every non-empty document of a file, in order.
fn documents(src: &str) -> Vec<(String, String)> {
    let docs = yaml::parse_documents(src, &yaml::Limits::default()).unwrap();
    docs.iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            let text = |n: Option<&Node>| n.and_then(Node::as_str).unwrap().to_string();
            (
                text(d.get("kind")),
                text(d.get("metadata").and_then(|m| m.get("name"))),
            )
        })
        .collect()
}

/// The check each fixture folder is about, and the options its policy implies.
fn folder_check(profile: &str, folder: &str) -> (&'static str, ScanOptions) {
    let id = match (profile, folder) {
        ("baseline", "disallow-capabilities") => rules::CAPABILITIES.id,
        ("baseline", "disallow-host-namespaces") => rules::HOST_NAMESPACES.id,
        ("baseline", "disallow-host-path") => rules::HOST_PATH.id,
        ("baseline", "disallow-host-ports" | "disallow-host-ports-range") => rules::HOST_PORTS.id,
        ("baseline", "disallow-host-process") => rules::HOST_PROCESS.id,
        ("baseline", "disallow-privileged-containers") => rules::PRIVILEGED.id,
        ("baseline", "disallow-proc-mount") => rules::PROC_MOUNT.id,
        ("baseline", "disallow-selinux") => rules::SELINUX.id,
        ("baseline", "restrict-apparmor-profiles") => rules::APPARMOR.id,
        ("baseline", "restrict-seccomp") => rules::SECCOMP.id,
        ("baseline", "restrict-sysctls") => rules::SYSCTLS.id,
        ("restricted", "disallow-capabilities-strict") => rules::RESTRICTED_CAPABILITIES.id,
        ("restricted", "disallow-privilege-escalation") => rules::PRIVILEGE_ESCALATION.id,
        ("restricted", "require-run-as-nonroot") => rules::RUN_AS_NON_ROOT.id,
        ("restricted", "require-run-as-non-root-user") => rules::RUN_AS_USER.id,
        ("restricted", "restrict-seccomp-strict") => rules::RESTRICTED_SECCOMP.id,
        ("restricted", "restrict-volume-types") => rules::VOLUME_TYPES.id,
        other => panic!("fixture folder {other:?} has no check: map it"),
    };
    let mut options = ScanOptions::default();
    if folder == "disallow-host-ports-range" {
        // Kyverno's variant allows 5000-6000: the standard's "known list".
        options.allowed_host_ports = vec![5000..=6000];
    }
    (id, options)
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn kyverno_pod_security_fixtures() {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for profile in ["baseline", "restricted"] {
        for folder in sorted_dir(&fixtures().join(profile)) {
            let folder_name = folder.file_name().unwrap().to_str().unwrap().to_string();
            let (id, options) = folder_check(profile, &folder_name);
            *counts.entry("folders").or_default() += 1;
            for file in sorted_dir(&folder) {
                let name = file.file_name().unwrap().to_str().unwrap().to_string();
                let src = fs::read_to_string(&file).unwrap();
                let report = scan_source(&name, &src, &options);
                assert!(
                    report.errors.is_empty(),
                    "{profile}/{folder_name}/{name}: {:?}",
                    report.errors
                );
                let flagged: BTreeSet<(&str, &str)> = report
                    .findings
                    .iter()
                    .filter(|f| f.id == id)
                    .map(|f| (f.kind.as_str(), f.name.as_str()))
                    .collect();
                let docs = documents(&src);
                let unique: BTreeSet<&(String, String)> = docs.iter().collect();
                assert_eq!(
                    unique.len(),
                    docs.len(),
                    "{name}: objects must be told apart by kind and name"
                );
                if name.ends_with("-bad.yaml") {
                    *counts.entry("bad files").or_default() += 1;
                    for (kind, obj) in &docs {
                        *counts.entry("bad documents").or_default() += 1;
                        if !flagged.contains(&(kind.as_str(), obj.as_str())) {
                            failures.push(format!(
                                "{profile}/{folder_name}/{name}: {kind}/{obj} not flagged by {id}"
                            ));
                        }
                    }
                } else if name.ends_with("-good.yaml") {
                    *counts.entry("good files").or_default() += 1;
                    *counts.entry("good documents").or_default() += docs.len();
                    for f in report.findings.iter().filter(|f| f.id == id) {
                        failures.push(format!(
                            "{profile}/{folder_name}/{name}:{}: {}/{} flagged by {id}: {}",
                            f.line, f.kind, f.name, f.message
                        ));
                    }
                } else {
                    panic!("unexpected fixture {name}");
                }
            }
        }
    }
    eprintln!("kyverno fixtures: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(counts["folders"], 18);
    assert_eq!(counts["bad files"], 36);
    assert_eq!(counts["good files"], 36);
    assert!(counts["bad documents"] > 300, "{counts:?}");
}

/// Kyverno's "whole restricted profile" case: each bad document fails some Pod Security
/// Standards check, no good one fails any.
#[test]
fn kyverno_whole_restricted_profile() {
    let dir = fixtures().join("subrule/restricted");
    let mut checked = 0;
    for file in sorted_dir(&dir) {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let src = fs::read_to_string(&file).unwrap();
        let report = scan_source(&name, &src, &ScanOptions::default());
        assert!(report.errors.is_empty());
        let pss: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.check().unwrap().is_pss())
            .collect();
        let flagged: BTreeSet<(&str, &str)> = pss
            .iter()
            .map(|f| (f.kind.as_str(), f.name.as_str()))
            .collect();
        for (kind, obj) in documents(&src) {
            checked += 1;
            if name.ends_with("-bad.yaml") {
                assert!(
                    flagged.contains(&(kind.as_str(), obj.as_str())),
                    "{name}: {kind}/{obj}"
                );
            }
        }
        if name.ends_with("-good.yaml") {
            assert!(pss.is_empty(), "{name}: {pss:#?}");
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn every_workload_kind_and_list_items() {
    let pod = "{containers: [{name: c, image: x:1, securityContext: {privileged: true}}]}";
    let mut src = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: pod}}\nspec: {pod}\n");
    for kind in [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "ReplicaSet",
        "ReplicationController",
    ] {
        src.push_str(&format!(
            "---\nkind: {kind}\nmetadata: {{name: {kind}}}\nspec: {{template: {{spec: {pod}}}}}\n"
        ));
    }
    src.push_str(&format!(
        "---\nkind: CronJob\nmetadata: {{name: cron}}\nspec: {{jobTemplate: {{spec: {{template: {{spec: {pod}}}}}}}}}\n"
    ));
    src.push_str(&format!(
        "---\nkind: List\nitems:\n- kind: Pod\n  metadata: {{name: listed}}\n  spec: {pod}\n- kind: Service\n  metadata: {{name: svc}}\n"
    ));
    src.push_str(
        "---\nkind: ConfigMap\nmetadata: {name: cm}\n---\n# only a comment\n---\nnot: kubernetes\n",
    );
    let r = scan(&src);
    let privileged: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == rules::PRIVILEGED.id)
        .map(|f| f.kind.as_str())
        .collect();
    assert_eq!(
        privileged,
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicaSet",
            "ReplicationController",
            "CronJob",
            "Pod"
        ]
    );
    assert_eq!(r.stats.workloads, 9);
    assert_eq!(r.stats.objects, 12);
    assert_eq!(r.stats.documents, 11);
}

#[test]
fn findings_are_located_and_name_their_container() {
    let src = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  hostNetwork: true
  ephemeralContainers:
  - name: debug
    image: busybox:1.36
    securityContext:
      privileged: true
  containers:
  - name: app
    image: app:1.0
";
    let r = scan(src);
    let f = r
        .findings
        .iter()
        .find(|f| f.id == rules::PRIVILEGED.id)
        .unwrap();
    assert_eq!((f.line, f.column), (12, 7));
    assert_eq!(f.container.as_deref(), Some("debug"));
    assert_eq!(
        (f.kind.as_str(), f.namespace.as_deref(), f.name.as_str()),
        ("Pod", Some("shop"), "web")
    );
    assert_eq!(f.file, "test.yaml");
    assert_eq!(f.remediation, rules::PRIVILEGED.remediation);
    let f = r
        .findings
        .iter()
        .find(|f| f.id == rules::HOST_NAMESPACES.id)
        .unwrap();
    assert_eq!((f.line, f.container.as_deref()), (7, None));
    // Sorted by position.
    let lines: Vec<u32> = r.findings.iter().map(|f| f.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn pss_subtleties() {
    // Pod-level runAsNonRoot and seccomp cover every container; a container's own value
    // overrides the pod's.
    let r = scan(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - {name: a, image: a:1}\n  - {name: b, image: b:1, securityContext: {runAsNonRoot: false, seccompProfile: {type: Unconfined}}}\n",
    );
    let on = |id: &str| -> Vec<Option<&str>> {
        r.findings
            .iter()
            .filter(|f| f.id == id)
            .map(|f| f.container.as_deref())
            .collect()
    };
    assert_eq!(on(rules::RUN_AS_NON_ROOT.id), [Some("b")]);
    assert_eq!(on(rules::RESTRICTED_SECCOMP.id), [Some("b")]);
    assert_eq!(on(rules::SECCOMP.id), [Some("b")]);
    // Without a pod-level value, every container must set its own.
    let r = scan(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: a:1, securityContext: {runAsNonRoot: true}}\n  - {name: b, image: b:1}\n",
    );
    let nonroot: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.id == rules::RUN_AS_NON_ROOT.id)
        .collect();
    assert_eq!(nonroot.len(), 1);
    assert_eq!(nonroot[0].container.as_deref(), Some("b"));
    // drop ALL is read case-insensitively, as the runtimes do; added capabilities exactly.
    let r = scan(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: a:1, securityContext: {capabilities: {drop: [all], add: [chown]}}}\n",
    );
    let caps: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == rules::RESTRICTED_CAPABILITIES.id)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        caps,
        ["container \"a\" adds capabilities other than NET_BIND_SERVICE: chown"]
    );
    assert!(has(&r, rules::CAPABILITIES.id));
    // Windows pods are exempt from the Linux-only restricted controls.
    let r = scan(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  os: {name: windows}\n  containers:\n  - {name: a, image: a:1}\n",
    );
    assert!(!has(&r, rules::PRIVILEGE_ESCALATION.id));
    assert!(!has(&r, rules::RESTRICTED_CAPABILITIES.id));
    assert!(!has(&r, rules::RESTRICTED_SECCOMP.id));
    assert!(has(&r, rules::RUN_AS_NON_ROOT.id));
    // container_engine_t is opt-in; AppArmor fields as well as annotations.
    let src = "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {seLinuxOptions: {type: container_engine_t}, appArmorProfile: {type: Unconfined}}\n  containers: [{name: a, image: a:1}]\n";
    assert!(has(&scan(src), rules::SELINUX.id));
    assert!(has(&scan(src), rules::APPARMOR.id));
    let options = ScanOptions {
        allow_selinux_container_engine_t: true,
        ..ScanOptions::default()
    };
    assert!(!has(
        &scan_source("x.yaml", src, &options),
        rules::SELINUX.id
    ));
    // A fully restricted pod passes every Pod Security Standards check.
    let r = scan(
        "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}, sysctls: [{name: net.ipv4.ping_group_range, value: '0 1'}]}\n  volumes: [{name: v, emptyDir: {}}, {name: s, secret: {secretName: s}}]\n  containers:\n  - name: a\n    image: a:1\n    ports: [{containerPort: 80, hostPort: 0}]\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n",
    );
    let pss: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.check().unwrap().is_pss())
        .collect();
    assert!(pss.is_empty(), "{pss:#?}");
}

/// A pod that passes every check, for the hygiene tests to break one thing at a time.
const CLEAN: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  template:
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      containers:
      - name: app
        image: registry.example:5000/shop/api:1.4.2@sha256:0123456789abcdef
        env:
        - name: DB_PASSWORD
          valueFrom:
            secretKeyRef: {name: db, key: password}
        - name: LOG_LEVEL
          value: debug
        resources:
          limits: {cpu: 500m, memory: 256Mi}
          requests: {cpu: 100m, memory: 128Mi}
        livenessProbe:
          httpGet: {path: /healthz, port: 8080}
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop: [ALL]
";

fn clean_with(from: &str, to: &str) -> ManifestReport {
    assert!(CLEAN.contains(from), "{from}");
    scan(&CLEAN.replacen(from, to, 1))
}

#[test]
fn clean_workload_has_no_findings() {
    let r = scan(CLEAN);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.is_clean());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn hygiene_resources() {
    let r = clean_with("          limits: {cpu: 500m, memory: 256Mi}\n", "");
    assert_eq!(ids(&r), [rules::RESOURCE_LIMITS.id]);
    assert!(
        r.findings[0]
            .message
            .contains("resources.limits.cpu or resources.limits.memory")
    );
    assert_eq!(r.findings[0].line, 23, "points at resources:");
    // A missing request defaults to the limit.
    let r = clean_with("          requests: {cpu: 100m, memory: 128Mi}\n", "");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let r = clean_with(
        "requests: {cpu: 100m, memory: 128Mi}",
        "requests: {cpu: 100m}",
    );
    assert!(r.findings.is_empty());
    let r = clean_with(
        "limits: {cpu: 500m, memory: 256Mi}",
        "limits: {memory: 256Mi}",
    );
    assert_eq!(ids(&r), [rules::RESOURCE_LIMITS.id]);
    let r = clean_with(
        "          limits: {cpu: 500m, memory: 256Mi}\n          requests: {cpu: 100m, memory: 128Mi}\n",
        "          {}\n",
    );
    assert_eq!(
        ids(&r),
        [rules::RESOURCE_LIMITS.id, rules::RESOURCE_REQUESTS.id]
    );
}

#[test]
fn hygiene_probes() {
    let r = clean_with(
        "        livenessProbe:\n          httpGet: {path: /healthz, port: 8080}\n",
        "",
    );
    assert_eq!(ids(&r), [rules::LIVENESS_PROBE.id]);
    assert_eq!(r.findings[0].container.as_deref(), Some("app"));
    let r = clean_with(
        "        readinessProbe:\n          httpGet: {path: /ready, port: 8080}\n",
        "",
    );
    assert_eq!(ids(&r), [rules::READINESS_PROBE.id]);
    // Jobs and CronJobs run to completion: no probes expected.
    let no_probes = CLEAN
        .replace(
            "        livenessProbe:\n          httpGet: {path: /healthz, port: 8080}\n",
            "",
        )
        .replace(
            "        readinessProbe:\n          httpGet: {path: /ready, port: 8080}\n",
            "",
        );
    let job = no_probes.replace("apps/v1\nkind: Deployment", "batch/v1\nkind: Job");
    assert!(scan(&job).findings.is_empty(), "{:#?}", scan(&job).findings);
    let cron = no_probes
        .replace("apps/v1\nkind: Deployment", "batch/v1\nkind: CronJob")
        .replace(
            "spec:\n  template:\n",
            "spec:\n  jobTemplate:\n   spec:\n    template:\n",
        )
        .replace(
            "\n    spec:\n      automount",
            "\n     spec:\n      automount",
        );
    let r = scan(&cron);
    assert_eq!(r.stats.workloads, 1, "{cron}");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // Init containers are not expected to have probes either.
    let with_init = CLEAN.replace(
        "      containers:\n",
        "      initContainers:\n      - name: migrate\n        image: m:1@sha256:ab\n        resources: {limits: {cpu: 1, memory: 1Gi}}\n        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n      containers:\n",
    );
    assert!(
        scan(&with_init).findings.is_empty(),
        "{:#?}",
        scan(&with_init).findings
    );
}

#[test]
fn hygiene_images() {
    let image = "registry.example:5000/shop/api:1.4.2@sha256:0123456789abcdef";
    let r = clean_with(image, "registry.example:5000/shop/api:1.4.2");
    assert_eq!(ids(&r), [rules::IMAGE_DIGEST.id]);
    assert_eq!(r.findings[0].severity.as_str(), "low");
    assert_eq!(r.findings[0].line, 16);
    let r = clean_with(image, "registry.example:5000/shop/api:latest");
    assert_eq!(ids(&r), [rules::IMAGE_DIGEST.id, rules::LATEST_TAG.id]);
    let r = clean_with(image, "registry.example:5000/shop/api");
    assert_eq!(ids(&r), [rules::IMAGE_DIGEST.id, rules::LATEST_TAG.id]);
    assert!(r.findings[1].message.contains("has no tag"));
    // A digest pins the image whatever the tag says.
    let r = clean_with(image, "api:latest@sha256:0123");
    assert!(r.findings.is_empty());
}

#[test]
fn hygiene_secrets_in_env() {
    let r = clean_with(
        "          valueFrom:\n            secretKeyRef: {name: db, key: password}\n",
        "          value: hunter2hunter2\n",
    );
    assert_eq!(ids(&r), [rules::SECRET_IN_ENV.id]);
    let f = &r.findings[0];
    assert_eq!((f.line, f.container.as_deref()), (19, Some("app")));
    assert!(f.message.contains("DB_PASSWORD"));
    // The value never appears in any output.
    for format in [Format::Table, Format::Json, Format::Sarif] {
        assert!(!report::render(&r, format).contains("hunter2"));
    }
    for (name, value, flagged) in [
        ("apiToken", "abc123abc123", true),
        ("STRIPE_SECRET_KEY", "sk_test_x", true),
        ("TOKEN_TTL", "3600s", false),
        ("PASSWORD_FILE", "/run/secrets/db", false),
        ("DB_PASSWORD", "$(FROM_OTHER_VAR)", false),
        ("DB_PASSWORD", "", false),
        ("LOG_LEVEL", "hunter2", false),
    ] {
        let r = clean_with(
            "name: LOG_LEVEL\n          value: debug",
            &format!("name: {name}\n          value: \"{value}\""),
        );
        assert_eq!(has(&r, rules::SECRET_IN_ENV.id), flagged, "{name}={value}");
    }
}

#[test]
fn hygiene_service_account_token() {
    let r = clean_with("      automountServiceAccountToken: false\n", "");
    assert_eq!(ids(&r), [rules::SA_TOKEN_AUTOMOUNT.id]);
    assert_eq!(
        (r.findings[0].line, r.findings[0].container.as_deref()),
        (8, None),
        "at the pod spec"
    );
    let r = clean_with(
        "automountServiceAccountToken: false",
        "automountServiceAccountToken: true",
    );
    assert_eq!(ids(&r), [rules::SA_TOKEN_AUTOMOUNT.id]);
    assert_eq!(r.findings[0].line, 9);
}

#[test]
fn hygiene_default_namespace() {
    let r = clean_with("  namespace: shop\n", "");
    assert_eq!(ids(&r), [rules::DEFAULT_NAMESPACE.id]);
    assert_eq!(r.findings[0].namespace, None);
    assert_eq!(r.findings[0].line, 3, "at metadata");
    let r = clean_with("namespace: shop", "namespace: default");
    assert_eq!(ids(&r), [rules::DEFAULT_NAMESPACE.id]);
    assert_eq!(r.findings[0].namespace.as_deref(), Some("default"));
    assert_eq!(r.findings[0].line, 5);
}

#[test]
fn ignore_annotation() {
    let bad = CLEAN
        .replace("namespace: shop\n", "namespace: shop\n  annotations:\n    moat.dev/ignore: \"PSS-BASELINE-PRIVILEGED=needs /dev/kvm, MOAT-K8S-IMAGE-DIGEST=internal registry\"\n")
        .replace("allowPrivilegeEscalation: false\n", "allowPrivilegeEscalation: false\n          privileged: true\n")
        .replace("@sha256:0123456789abcdef", "");
    let r = scan(&bad);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let suppressed: Vec<(&str, &str)> = r
        .suppressed
        .iter()
        .map(|s| (s.finding.id, s.reason.as_str()))
        .collect();
    assert_eq!(
        suppressed,
        [
            ("MOAT-K8S-IMAGE-DIGEST", "internal registry"),
            ("PSS-BASELINE-PRIVILEGED", "needs /dev/kvm")
        ]
    );
    assert_eq!(r.exit_code(), 0);

    // Without a reason the entry is not honoured, and that is a finding of its own.
    let no_reason = bad.replace(
        "PSS-BASELINE-PRIVILEGED=needs /dev/kvm",
        "PSS-BASELINE-PRIVILEGED",
    );
    let r = scan(&no_reason);
    assert_eq!(ids(&r), [rules::IGNORE_INVALID.id, rules::PRIVILEGED.id]);
    assert!(
        r.findings[0]
            .message
            .contains("no reason for PSS-BASELINE-PRIVILEGED")
    );
    assert_eq!(r.findings[0].line, 7);
    assert_eq!(r.suppressed.len(), 1);
    assert_eq!(r.exit_code(), 1);

    // An unknown ID is reported too (a typo must not look like a suppression).
    let typo = bad.replace("PSS-BASELINE-PRIVILEGED=", "PSS-BASELINE-PRIVILEDGED=");
    let r = scan(&typo);
    assert_eq!(ids(&r), [rules::IGNORE_INVALID.id, rules::PRIVILEGED.id]);

    // On the pod template, it works the same.
    let template = CLEAN
        .replace("    spec:\n      automount", "    metadata:\n      annotations:\n        moat.dev/ignore: MOAT-K8S-SA-TOKEN-AUTOMOUNT=talks to the API\n    spec:\n      automount")
        .replace("      automountServiceAccountToken: false\n", "");
    let r = scan(&template);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.suppressed[0].finding.id, rules::SA_TOKEN_AUTOMOUNT.id);
}

fn sample_report() -> ManifestReport {
    let src = CLEAN
        .replace("namespace: shop\n", "namespace: shop\n  annotations:\n    moat.dev/ignore: MOAT-K8S-IMAGE-DIGEST=internal\n")
        .replace("allowPrivilegeEscalation: false\n", "privileged: true\n")
        .replace("@sha256:0123456789abcdef", "");
    scan_source("deploy/api file.yaml", &src, &ScanOptions::default())
}

#[test]
fn json_output() {
    let r = sample_report();
    let v: Value = serde_json::from_str(&report::render(&r, Format::Json)).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), r.findings.len());
    let keys: BTreeSet<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "severity",
            "kind",
            "namespace",
            "name",
            "container",
            "file",
            "line",
            "message",
            "remediation"
        ])
    );
    let privileged = items
        .iter()
        .find(|i| i["id"] == "PSS-BASELINE-PRIVILEGED")
        .unwrap();
    assert_eq!(privileged["severity"], "critical");
    assert_eq!(privileged["kind"], "Deployment");
    assert_eq!(privileged["namespace"], "shop");
    assert_eq!(privileged["name"], "api");
    assert_eq!(privileged["container"], "app");
    assert_eq!(privileged["file"], "deploy/api file.yaml");
    assert!(privileged["line"].as_u64().unwrap() > 0);
    let automount = scan(
        &CLEAN
            .replace("      automountServiceAccountToken: false\n", "")
            .replace("  namespace: shop\n", ""),
    );
    let v: Value = serde_json::from_str(&report::render(&automount, Format::Json)).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|i| i["container"].is_null() && i["namespace"].is_null())
    );
    let empty = scan(CLEAN);
    assert_eq!(report::render(&empty, Format::Json).trim(), "[]");
}

#[test]
fn sarif_output() {
    let r = sample_report();
    let v: Value = serde_json::from_str(&report::render(&r, Format::Sarif)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "moat");
    let rules_json = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules_json.len(), rules::ALL.len());
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), r.findings.len() + r.suppressed.len());
    for res in results {
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules_json[index]["id"], res["ruleId"]);
        assert!(["error", "warning", "note"].contains(&res["level"].as_str().unwrap()));
        let loc = &res["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "deploy/api%20file.yaml");
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert!(loc["region"]["startLine"].as_u64().unwrap() > 0);
        assert!(loc["region"]["startColumn"].as_u64().unwrap() > 0);
        assert_eq!(
            res["partialFingerprints"]["moatManifest/v1"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
    }
    let privileged = results
        .iter()
        .find(|r| r["ruleId"] == "PSS-BASELINE-PRIVILEGED")
        .unwrap();
    assert_eq!(privileged["level"], "error");
    assert_eq!(
        privileged["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "shop/Deployment/api/app"
    );
    let suppressed: Vec<&Value> = results
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["ruleId"], "MOAT-K8S-IMAGE-DIGEST");
    assert_eq!(suppressed[0]["suppressions"][0]["kind"], "inSource");
    assert_eq!(
        suppressed[0]["suppressions"][0]["justification"],
        "internal"
    );
    let pss_rule = rules_json
        .iter()
        .find(|r| r["id"] == "PSS-RESTRICTED-SECCOMP")
        .unwrap();
    assert!(
        pss_rule["helpUri"]
            .as_str()
            .unwrap()
            .contains("pod-security-standards")
    );
    assert!(pss_rule["properties"]["security-severity"].is_string());

    // Unusable files become tool notifications.
    let broken = scan_source("bad.yaml", "a: [1, 2\n", &ScanOptions::default());
    let v: Value = serde_json::from_str(&report::render(&broken, Format::Sarif)).unwrap();
    assert_eq!(v["runs"][0]["invocations"][0]["executionSuccessful"], false);
    let note = &v["runs"][0]["invocations"][0]["toolExecutionNotifications"][0];
    assert_eq!(note["level"], "error");
    assert!(
        note["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("bad.yaml:")
    );
}

#[test]
fn table_output() {
    let r = sample_report();
    let table = report::render(&r, Format::Table);
    let first = table.lines().next().unwrap();
    for column in [
        "SEVERITY",
        "ID",
        "LOCATION",
        "NAMESPACE",
        "OBJECT",
        "CONTAINER",
        "MESSAGE",
    ] {
        assert!(first.contains(column), "{first}");
    }
    assert!(
        table.contains("critical  PSS-BASELINE-PRIVILEGED"),
        "{table}"
    );
    assert!(table.contains("Deployment/api"));
    assert!(table.contains("\nRemediation:\n"));
    assert!(table.contains(rules::PRIVILEGED.remediation));
    let last = table.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "{} findings in 1 object (1 suppressed; 1 workload in 1 file",
            r.findings.len()
        )),
        "{last}"
    );
    assert_eq!(
        report::render(&scan(CLEAN), Format::Table),
        "No findings (0 suppressed; 1 workload in 1 file).\n"
    );
}

#[test]
fn directory_walk() {
    let dir = TempDir::new();
    let privileged = "kind: Pod\nmetadata: {name: NAME}\nspec: {containers: [{name: c, image: x, securityContext: {privileged: true}}]}\n";
    dir.write("a.yaml", privileged.replace("NAME", "a"));
    dir.write("nested/deeper/b.YML", privileged.replace("NAME", "b"));
    // JSON is YAML: tabs, CRLF and a BOM included.
    dir.write(
        "c.json",
        "\u{feff}{\r\n\t\"kind\": \"Pod\",\r\n\t\"metadata\": {\"name\": \"c\"},\r\n\t\"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"x\",\r\n\t\t\"securityContext\": {\"privileged\": true}}]}\r\n}\r\n",
    );
    dir.write("README.md", privileged.replace("NAME", "not-a-manifest"));
    dir.write(
        "node_modules/x/d.yaml",
        privileged.replace("NAME", "vendored"),
    );
    dir.write(".git/e.yaml", privileged.replace("NAME", "vcs"));
    dir.write("package-lock.json", "{\"lockfileVersion\": 3}");
    dir.write("values.yaml", "replicas: 3\nimage: {tag: latest}\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.0.join("a.yaml"), dir.0.join("link.yaml")).unwrap();
    let r = scan_path(&dir.0, &ScanOptions::default()).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let hits: Vec<(&str, &str, u32)> = r
        .findings
        .iter()
        .filter(|f| f.id == rules::PRIVILEGED.id)
        .map(|f| (f.file.as_str(), f.name.as_str(), f.line))
        .collect();
    assert_eq!(
        hits,
        [
            ("a.yaml", "a", 3),
            ("c.json", "c", 5),
            ("nested/deeper/b.YML", "b", 3)
        ]
    );
    assert_eq!(r.stats.files_scanned, 4);
    assert_eq!(r.exit_code(), 1);

    // A single file can be scanned too.
    let single = scan_path(&dir.0.join("a.yaml"), &ScanOptions::default()).unwrap();
    assert_eq!(single.stats.workloads, 1);
    assert!(single.findings[0].file.ends_with("a.yaml"));
}

#[test]
fn unusable_input_is_a_located_error() {
    let dir = TempDir::new();
    dir.write(
        "good.yaml",
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n",
    );
    dir.write("broken.yaml", "kind: Pod\nmetadata:\n  name: [unclosed\n");
    dir.write("chart/templates/deploy.yaml", "kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n  labels: {{ include \"x\" . }}\n");
    dir.write("binary.yaml", [0xff, 0xfe, 0x00, 0x41]);
    dir.write("dup.yaml", "kind: Pod\nkind: Pod\n");
    dir.write("huge.yaml", "a: 1\n".repeat(100));
    let options = ScanOptions {
        max_file_size: 400,
        ..ScanOptions::default()
    };
    let r = scan_path(&dir.0, &options).unwrap();
    assert_eq!(r.exit_code(), 2);
    let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        errors[0].starts_with("binary.yaml: not UTF-8"),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("broken.yaml:4:1: "), "{errors:?}");
    assert!(errors[2].contains("helm template"), "{errors:?}");
    assert!(
        errors[2].starts_with("chart/templates/deploy.yaml:"),
        "{errors:?}"
    );
    assert!(
        errors[3].starts_with("dup.yaml:2:1: duplicate key"),
        "{errors:?}"
    );
    assert!(matches!(
        r.errors[4],
        ManifestError::TooLarge {
            size: 500,
            limit: 400,
            ..
        }
    ));
    // The usable file was still judged.
    assert_eq!(r.stats.workloads, 1);
    assert!(!r.findings.is_empty());

    assert!(matches!(
        scan_path(&dir.0.join("missing"), &options),
        Err(ManifestError::NotFound { .. })
    ));
    let too_many = ScanOptions {
        max_files: 2,
        ..ScanOptions::default()
    };
    assert!(matches!(
        scan_path(&dir.0, &too_many),
        Err(ManifestError::TooManyFiles { limit: 2, .. })
    ));
}

#[test]
fn hostile_input_never_panics() {
    // An alias bomb stops at the node limit.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let r = scan_source("bomb.yaml", &bomb, &ScanOptions::default());
    assert_eq!(r.errors.len(), 1);
    // Deep nesting stops at a depth limit instead of overflowing the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = scan_source("deep.yaml", &deep, &ScanOptions::default());
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].to_string().starts_with("deep.yaml:1:"),
        "{:?}",
        r.errors
    );
    // Every prefix of a real manifest file (cut anywhere) is either judged or an error.
    let src = fs::read_to_string(
        fixtures().join("restricted/disallow-capabilities-strict/podcontroller-bad.yaml"),
    )
    .unwrap();
    let mut cut = 0;
    while cut < src.len() {
        if src.is_char_boundary(cut) {
            let _ = scan_source("cut.yaml", &src[..cut], &ScanOptions::default());
        }
        cut += 211;
    }
    // Wrong shapes everywhere are ignored, not trusted and not fatal.
    let odd = "kind: Pod\nmetadata: [1]\nspec:\n  containers: {a: b}\n  initContainers: [1, [2], {securityContext: 3, ports: x, env: [1, {name: [x]}]}]\n  volumes: [1, {name: {x: y}}]\n  securityContext: [x]\n---\nkind: Deployment\nspec: {template: [1]}\n---\n[1, 2]\n---\nkind: {a: b}\n";
    let r = scan_source("odd.yaml", odd, &ScanOptions::default());
    assert!(r.errors.is_empty());
    assert_eq!(r.stats.workloads, 1);
}
