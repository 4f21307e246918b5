//! The stage kinds that do not run the user's commands in a container: `build` (an image built
//! from the workspace through the engine's build API, optionally pushed) and `scan` (the image
//! built earlier in the run, the workspace's lock files and Kubernetes manifests, judged by the
//! stage's `fail_on` and ignores). Their results go into the stage's outputs, so a later scan
//! scans exactly the image a build produced and the coordinator can tie a deploy to a digest.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use futures_util::StreamExt;
use moat_pipelines::PlannedStage;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Engine, RunHandle};
use crate::docker::{ensure_image, server_message};
use crate::error::EngineError;
use crate::logs::{LineSplitter, StreamKind};
use crate::outcome::{Observer, Outcome, StageInput, StageStatus};
use crate::scratch::TempDir;
use moat_secrets::mask::Masker;
use moat_vuln::scan::{self as vscan, ScanPolicy};

/// The entries of a workspace archive under `dir` (`.` for all), re-rooted at `dir`.
fn subtree(workspace: &[u8], dir: &str) -> Result<Vec<u8>, EngineError> {
    let dir = dir.trim_matches('/');
    let prefix = if dir.is_empty() || dir == "." {
        String::new()
    } else {
        format!("{dir}/")
    };
    let err = |e: std::io::Error| EngineError::Workspace(format!("reading the workspace: {e}"));
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(workspace);
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let path = entry.path().map_err(err)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        let Some(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        if rel.is_empty() {
            continue;
        }
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(err)?;
        out.append_data(&mut header, rel, &data[..]).map_err(err)?;
    }
    out.into_inner().map_err(err)
}

fn env<'a>(stage: &'a PlannedStage, name: &str) -> Option<&'a str> {
    stage
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Splits `registry/name:tag` into the name and the tag (`latest` when none).
fn split_tag(image: &str) -> (String, String) {
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Prints a stream of build or push text through the masker, line by line.
struct TextLog<'a> {
    stage: &'a PlannedStage,
    observer: &'a dyn Observer,
    lines: LineSplitter,
    mask: moat_secrets::mask::MaskStream,
}

impl<'a> TextLog<'a> {
    fn new(stage: &'a PlannedStage, observer: &'a dyn Observer, masker: &Masker) -> Self {
        TextLog {
            stage,
            observer,
            lines: LineSplitter::new(64 << 10),
            mask: masker.stream(),
        }
    }

    fn push(&mut self, text: &str) {
        let (stage, observer) = (self.stage, self.observer);
        let masked = self.mask.push(text.as_bytes());
        self.lines.push(&masked, |l| {
            observer.log_line(stage, StreamKind::Stdout, &String::from_utf8_lossy(l))
        });
    }

    fn finish(&mut self) {
        let (stage, observer) = (self.stage, self.observer);
        let rest = self.mask.finish();
        self.lines.push(&rest, |l| {
            observer.log_line(stage, StreamKind::Stdout, &String::from_utf8_lossy(l))
        });
        self.lines
            .finish(|l| observer.log_line(stage, StreamKind::Stdout, &String::from_utf8_lossy(l)));
    }
}

/// `kind: build`: builds the image from the workspace's `context` with its `dockerfile`,
/// labels it with the run, commit and stage, and pushes it when asked (credentials from the
/// granted secrets `REGISTRY_USERNAME` and `REGISTRY_PASSWORD`).
pub(crate) async fn build(
    engine: &Engine,
    run: &RunHandle,
    stage: &PlannedStage,
    input: &StageInput,
    masker: &Masker,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    let Some(spec) = stage.build.as_ref() else {
        return Ok(Outcome::failed("a build stage needs a build block"));
    };
    let docker = engine.docker();
    let workspace = engine.export_workspace(run).await?;
    let context = subtree(&workspace, &spec.context)?;
    if context.len() <= 1024 {
        return Ok(Outcome::failed(format!(
            "the build context {} is empty or missing in the workspace",
            spec.context
        )));
    }
    let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert("moat.run".into(), run.run_id.clone());
    labels.insert("moat.stage".into(), stage.name.clone());
    if let Some(commit) = env(stage, "MOAT_COMMIT") {
        labels.insert("moat.commit".into(), commit.to_string());
    }
    if let Some(repo) = env(stage, "MOAT_REPO") {
        labels.insert("moat.repo".into(), repo.to_string());
    }
    let buildargs: HashMap<String, String> = spec.args.iter().cloned().collect();
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(&spec.dockerfile)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .buildargs(&buildargs);
    if let Some(tag) = &spec.tag {
        options = options.t(tag);
    }
    if let Some(target) = &spec.target {
        options = options.target(target);
    }
    observer.log_line(
        stage,
        StreamKind::System,
        &format!(
            "building {} with {}{}",
            spec.context,
            spec.dockerfile,
            spec.tag
                .as_deref()
                .map(|t| format!(" as {t}"))
                .unwrap_or_default()
        ),
    );
    let timeout = stage.timeout.unwrap_or(engine.config().default_timeout);
    let mut log = TextLog::new(stage, observer, masker);
    let mut image_id: Option<String> = None;
    let mut failure: Option<String> = None;
    {
        let mut stream = docker.build_image(
            options.build(),
            None,
            Some(bollard::body_full(context.into())),
        );
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            // Dropping the stream closes the connection, which makes the engine stop the build.
            let item = tokio::select! {
                i = stream.next() => i,
                _ = cancel.cancelled() => {
                    log.finish();
                    return Ok(Outcome::new(StageStatus::Cancelled, None, Some("cancelled".into())));
                }
                _ = &mut deadline => {
                    log.finish();
                    return Ok(Outcome::failed(format!(
                        "timed out after {}",
                        crate::logs::fmt_duration(timeout)
                    )));
                }
            };
            let Some(item) = item else { break };
            match item {
                Ok(info) => {
                    if let Some(text) = &info.stream {
                        log.push(text);
                    }
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(msg);
                    }
                    if let Some(id) = info.aux.and_then(|a| a.id) {
                        image_id = Some(id);
                    }
                }
                Err(e) => {
                    failure = Some(server_message(&e));
                    break;
                }
            }
        }
    }
    log.finish();
    if let Some(msg) = failure {
        let msg = masker.mask_str(&msg);
        observer.log_line(stage, StreamKind::System, &format!("build failed: {msg}"));
        return Ok(Outcome::failed(format!("build failed: {msg}")));
    }
    let reference = spec.tag.clone().or(image_id.clone());
    let Some(reference) = reference else {
        return Ok(Outcome::failed("the engine reported no image"));
    };
    let inspect = docker.inspect_image(&reference).await?;
    let id = inspect.id.unwrap_or_default();
    let mut outputs = json!({ "image": { "id": id, "tag": spec.tag } });
    observer.log_line(
        stage,
        StreamKind::System,
        &format!("built {reference} ({id})"),
    );

    if spec.push {
        let Some(tag) = spec.tag.as_deref() else {
            return Ok(Outcome::failed("push: true needs a tag in the build block"));
        };
        let (name, tag_part) = split_tag(tag);
        let secret = |n: &str| {
            input
                .secrets
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let credentials =
            secret("REGISTRY_PASSWORD").map(|password| bollard::auth::DockerCredentials {
                username: secret("REGISTRY_USERNAME"),
                password: Some(password),
                ..Default::default()
            });
        observer.log_line(stage, StreamKind::System, &format!("pushing {tag}"));
        let mut stream = docker.push_image(
            &name,
            Some(PushImageOptionsBuilder::default().tag(&tag_part).build()),
            credentials,
        );
        let mut digest = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(msg) = info.error_detail.and_then(|d| d.message) {
                        let msg = masker.mask_str(&msg);
                        return Ok(Outcome::failed(format!("push of {tag} failed: {msg}")));
                    }
                    if let Some(status) = info.status
                        && let Some(rest) = status.split("digest: ").nth(1)
                    {
                        digest = rest.split_whitespace().next().map(str::to_string);
                        observer.log_line(stage, StreamKind::Stdout, &status);
                    }
                }
                Err(e) => {
                    let msg = masker.mask_str(&server_message(&e));
                    return Ok(Outcome::failed(format!("push of {tag} failed: {msg}")));
                }
            }
        }
        if let Some(d) = &digest {
            outputs["image"]["digest"] = json!(d);
            outputs["image"]["repo_digest"] = json!(format!("{name}@{d}"));
            observer.log_line(stage, StreamKind::System, &format!("pushed {name}@{d}"));
        }
    }
    let mut outcome = Outcome::new(StageStatus::Passed, Some(0), None);
    outcome.outputs = outputs;
    Ok(outcome)
}

/// The image a scan names, as built earlier in this run when a build produced it: its ID, so
/// the scan covers exactly that image even if the tag has moved since.
fn built_image(input: &StageInput, reference: &str) -> Option<String> {
    input.upstream.iter().find_map(|(_, out)| {
        let image = out.get("image")?;
        let tag = image.get("tag").and_then(Value::as_str);
        let id = image.get("id").and_then(Value::as_str)?;
        (tag == Some(reference) || id == reference).then(|| id.to_string())
    })
}

fn compact(verdict: &vscan::Verdict) -> Value {
    json!({
        "passed": verdict.passed,
        "fail_on": verdict.fail_on,
        "summary": verdict.summary(),
        "expired_ignores": verdict.expired_ignores,
        "findings": verdict.findings.iter().map(|j| json!({
            "id": j.finding.id,
            "aliases": j.finding.aliases,
            "package": j.finding.package,
            "ecosystem": j.finding.ecosystem.osv_name(),
            "installed_version": j.finding.installed_version,
            "fixed_version": j.finding.fixed_version,
            "severity": j.finding.severity.map(|s| s.as_str()),
            "layer": j.finding.layer,
            "verdict": j.verdict,
            "note": j.note,
        })).collect::<Vec<_>>(),
    })
}

fn print(stage: &PlannedStage, observer: &dyn Observer, text: &str) {
    for line in text.lines() {
        observer.log_line(stage, StreamKind::Stdout, line);
    }
}

/// `kind: scan`: the named image (exactly the one built in this run when it was), the
/// workspace's dependencies, its Kubernetes manifests — each judged by `fail_on`, ignores and
/// `only_fixed`.
pub(crate) async fn scan(
    engine: &Engine,
    run: &RunHandle,
    stage: &PlannedStage,
    input: &StageInput,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> Result<Outcome, EngineError> {
    let Some(spec) = stage.scan.as_ref() else {
        return Ok(Outcome::failed("a scan stage needs a scan block"));
    };
    if cancel.is_cancelled() {
        return Ok(Outcome::new(
            StageStatus::Cancelled,
            None,
            Some("cancelled".into()),
        ));
    }
    let policy = ScanPolicy {
        fail_on: spec.fail_on,
        ignores: spec.ignore.clone(),
        only_fixed: spec.only_fixed,
        today: vscan::today(),
    };
    let mut outputs = json!({});
    let mut failures: Vec<String> = Vec::new();
    let needs_db = spec.image.is_some() || spec.dependencies;
    let db = if needs_db {
        match engine.vuln_db().await {
            Ok(db) => Some(db),
            Err(msg) => return Ok(Outcome::failed(msg)),
        }
    } else {
        None
    };

    if let (Some(reference), Some(db)) = (&spec.image, &db) {
        let target = built_image(input, reference).unwrap_or_else(|| reference.clone());
        ensure_image(engine.docker(), &target).await?;
        observer.log_line(
            stage,
            StreamKind::System,
            &format!("scanning image {reference}"),
        );
        let scanned = match vscan::scan_image(engine.docker(), &target, db).await {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::failed(format!("cannot scan {reference}: {e}"))),
        };
        let verdict = vscan::judge(&scanned.findings, &policy);
        let digest = scanned.digest();
        print(stage, observer, &vscan::table(reference, &digest, &verdict));
        for w in &scanned.warnings {
            observer.log_line(stage, StreamKind::System, &format!("warning: {w}"));
        }
        if !verdict.passed {
            failures.push(format!("image {reference}: {}", verdict.summary()));
        }
        let mut image = compact(&verdict);
        image["reference"] = json!(reference);
        image["id"] = json!(scanned.meta.id);
        image["digest"] = json!(digest);
        image["repo_digests"] = json!(scanned.meta.repo_digests);
        outputs["image"] = image;
    }

    if spec.dependencies || spec.manifests.is_some() {
        let workspace = engine.export_workspace(run).await?;
        let scratch = TempDir::new("scan")
            .map_err(|e| EngineError::Workspace(format!("scan scratch directory: {e}")))?;
        let root = scratch.path().to_path_buf();
        tokio::task::spawn_blocking(move || tar::Archive::new(&workspace[..]).unpack(&root))
            .await
            .map_err(|e| EngineError::Workspace(e.to_string()))?
            .map_err(|e| EngineError::Workspace(format!("unpacking the workspace: {e}")))?;

        if spec.dependencies
            && let Some(db) = &db
        {
            observer.log_line(
                stage,
                StreamKind::System,
                "scanning the workspace's dependencies",
            );
            let (root, db) = (scratch.path().to_path_buf(), db.clone());
            let found = tokio::task::spawn_blocking(move || vscan::scan_source(&root, &db))
                .await
                .map_err(|e| EngineError::Workspace(e.to_string()))?;
            match found {
                Ok((packages, findings)) => {
                    let verdict = vscan::judge(&findings, &policy);
                    print(
                        stage,
                        observer,
                        &vscan::table("dependencies", "workspace", &verdict),
                    );
                    if !verdict.passed {
                        failures.push(format!("dependencies: {}", verdict.summary()));
                    }
                    let mut deps = compact(&verdict);
                    deps["packages"] = json!(packages.len());
                    outputs["dependencies"] = deps;
                }
                Err(e) => failures.push(format!("dependencies: {e}")),
            }
        }

        if let Some(dir) = &spec.manifests {
            observer.log_line(
                stage,
                StreamKind::System,
                &format!("checking Kubernetes manifests in {dir}"),
            );
            let path: PathBuf = scratch.path().join(dir);
            let report = tokio::task::spawn_blocking(move || {
                moat_manifests::scan_path(&path, &moat_manifests::ScanOptions::default())
            })
            .await
            .map_err(|e| EngineError::Workspace(e.to_string()))?;
            match report {
                Ok(report) => {
                    print(stage, observer, &moat_manifests::report::table(&report));
                    let failing = report
                        .findings
                        .iter()
                        .filter(|f| f.severity >= spec.fail_on)
                        .count();
                    if failing > 0 {
                        failures.push(format!(
                            "manifests: {failing} finding{} at {} or above",
                            if failing == 1 { "" } else { "s" },
                            spec.fail_on.as_str()
                        ));
                    }
                    for e in &report.errors {
                        failures.push(format!("manifests: {e}"));
                    }
                    outputs["manifests"] = json!({
                        "findings": moat_manifests::report::json_findings(&report),
                        "failing": failing,
                    });
                }
                Err(e) => failures.push(format!("manifests: {e}")),
            }
        }
    }

    let passed = failures.is_empty();
    outputs["passed"] = json!(passed);
    if passed {
        observer.log_line(stage, StreamKind::System, "scan passed");
        let mut o = Outcome::new(StageStatus::Passed, Some(0), None);
        o.outputs = outputs;
        Ok(o)
    } else {
        let reason = failures.join("; ");
        let mut o = Outcome::failed(reason);
        o.outputs = outputs;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(split_tag("app"), ("app".into(), "latest".into()));
        assert_eq!(
            split_tag("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app".into(), "v1".into())
        );
    }

    #[test]
    fn subtrees() {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [
            ("./Dockerfile", "FROM x"),
            ("./app/Dockerfile", "FROM y"),
            ("./app/src/a", "a"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, d.as_bytes()).unwrap();
        }
        let ws = b.into_inner().unwrap();
        let names = |t: Vec<u8>| -> Vec<String> {
            tar::Archive::new(&t[..])
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(subtree(&ws, "app").unwrap()), ["Dockerfile", "src/a"]);
        assert_eq!(names(subtree(&ws, ".").unwrap()).len(), 3);
    }
}
