//! Moat's hygiene checks: what the Pod Security Standards leave out but reviews keep asking
//! for (resources, probes, pinned images, no credentials in plain env values, no
//! service-account token by default, a namespace of one's own).

use moat_pipelines::yaml::Node;

use super::Sink;
use super::objects::{Container, ContainerKind, Workload, containers, entry};
use super::rules::{
    DEFAULT_NAMESPACE, IMAGE_DIGEST, LATEST_TAG, LIVENESS_PROBE, READINESS_PROBE, RESOURCE_LIMITS,
    RESOURCE_REQUESTS, SA_TOKEN_AUTOMOUNT, SECRET_IN_ENV,
};

pub(crate) fn check(w: &Workload<'_>, sink: &mut Sink<'_>) {
    for c in &containers(w.spec) {
        // Ephemeral containers may not have resources or probes.
        if c.kind != ContainerKind::Ephemeral {
            resources(c, sink);
        }
        if c.kind == ContainerKind::Regular && !w.runs_to_completion() {
            probes(c, sink);
        }
        image(c, sink);
        env(c, sink);
    }
    automount(w, sink);
    namespace(w, sink);
}

fn resources(c: &Container<'_>, sink: &mut Sink<'_>) {
    let res = entry(c.node, "resources");
    let pos = res.map_or(c.node.pos, |(k, _)| k.pos);
    let set = |section: &str, resource: &str| {
        res.and_then(|(_, r)| r.get(section))
            .and_then(|s| s.get(resource))
            .is_some_and(|v| !v.is_null())
    };
    let missing_limits: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|r| !set("limits", r))
        .collect();
    // A request left out defaults to the limit, so only a resource with neither is missing.
    let missing_requests: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|r| !set("requests", r) && !set("limits", r))
        .collect();
    for (check, section, missing) in [
        (RESOURCE_LIMITS, "limits", missing_limits),
        (RESOURCE_REQUESTS, "requests", missing_requests),
    ] {
        if !missing.is_empty() {
            let fields: Vec<String> = missing
                .iter()
                .map(|r| format!("resources.{section}.{r}"))
                .collect();
            sink.push(
                check,
                pos,
                Some(&c.name),
                format!("container \"{}\" sets no {}", c.name, fields.join(" or ")),
            );
        }
    }
}

fn probes(c: &Container<'_>, sink: &mut Sink<'_>) {
    for (check, key) in [
        (LIVENESS_PROBE, "livenessProbe"),
        (READINESS_PROBE, "readinessProbe"),
    ] {
        if c.node.get(key).is_none_or(Node::is_null) {
            sink.push(
                check,
                c.node.pos,
                Some(&c.name),
                format!("container \"{}\" has no {key}", c.name),
            );
        }
    }
}

/// The parts of an image reference that matter here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ImageRef<'a> {
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// `[registry[:port]/]repository[:tag][@algorithm:hex]`: a `:` after the last `/` starts
    /// the tag (one before it is a registry port).
    pub fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest).filter(|d| !d.is_empty())),
            None => (image, None),
        };
        let last = name.rfind('/').map_or(0, |i| i + 1);
        let tag = name[last..]
            .rfind(':')
            .map(|i| &name[last + i + 1..])
            .filter(|t| !t.is_empty());
        ImageRef { tag, digest }
    }
}

fn image(c: &Container<'_>, sink: &mut Sink<'_>) {
    let Some((k, v)) = entry(c.node, "image") else {
        return;
    };
    let Some(image) = v.as_str().map(str::trim).filter(|s| !s.is_empty()) else {
        return;
    };
    let r = ImageRef::parse(image);
    if r.digest.is_some() {
        // A digest decides what runs; the tag beside it is only a label.
        return;
    }
    match r.tag {
        None => sink.push(
            LATEST_TAG,
            k.pos,
            Some(&c.name),
            format!("image {image} has no tag, so it pulls :latest"),
        ),
        Some("latest") => sink.push(
            LATEST_TAG,
            k.pos,
            Some(&c.name),
            format!("image {image} uses the :latest tag"),
        ),
        Some(_) => {}
    }
    sink.push(
        IMAGE_DIGEST,
        k.pos,
        Some(&c.name),
        format!("image {image} is not pinned by digest"),
    );
}

/// The words of an environment variable name, upper-cased: `dbPassword` and `DB_PASSWORD`
/// both give `DB`, `PASSWORD`.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_ascii_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        word.push(ch.to_ascii_uppercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A name that says its value is a credential. The last word decides against it when it
/// says the value only points at one (`SECRET_NAME`, `PASSWORD_FILE`, `API_KEY_ID`).
pub(crate) fn looks_secret(name: &str) -> bool {
    const SECRET_WORDS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "SECRET",
        "TOKEN",
        "KEY",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
    ];
    const POINTER_WORDS: &[&str] = &[
        "FILE", "PATH", "DIR", "NAME", "URL", "URI", "REF", "ID", "REGION", "TYPE", "ENABLED",
        "HEADER", "LENGTH", "SIZE", "TTL", "MODE", "VERSION", "COUNT",
    ];
    let words = words(name);
    match words.last() {
        Some(last) if POINTER_WORDS.contains(&last.as_str()) => false,
        _ => words.iter().any(|w| SECRET_WORDS.contains(&w.as_str())),
    }
}

/// A value that is a literal credential rather than a flag, a number or a `$(VAR)` reference.
fn literal_value(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty()
        || only_references(v)
        || v.eq_ignore_ascii_case("true")
        || v.eq_ignore_ascii_case("false")
        || v.chars().all(|c| c.is_ascii_digit()))
}

/// True for a value made of `$(VAR)` references only, which Kubernetes expands from other
/// variables.
fn only_references(mut v: &str) -> bool {
    while let Some(rest) = v.strip_prefix("$(") {
        match rest.find(')') {
            Some(end) => v = &rest[end + 1..],
            None => return false,
        }
    }
    v.is_empty()
}

fn env(c: &Container<'_>, sink: &mut Sink<'_>) {
    for var in c.node.get("env").and_then(Node::as_seq).unwrap_or(&[]) {
        let Some(name) = var.get("name").and_then(Node::as_str) else {
            continue;
        };
        if let Some((k, v)) = entry(var, "value")
            && v.as_str().is_some_and(literal_value)
            && looks_secret(name)
        {
            // The value itself never goes into a finding.
            sink.push(
                SECRET_IN_ENV,
                k.pos,
                Some(&c.name),
                format!("container \"{}\" sets {name} to a literal value", c.name),
            );
        }
    }
}

fn automount(w: &Workload<'_>, sink: &mut Sink<'_>) {
    match entry(w.spec, "automountServiceAccountToken") {
        Some((_, v)) if v.as_bool() == Some(false) => {}
        Some((k, _)) => sink.push(
            SA_TOKEN_AUTOMOUNT,
            k.pos,
            None,
            "the pod sets automountServiceAccountToken to something other than false",
        ),
        None => sink.push(
            SA_TOKEN_AUTOMOUNT,
            w.spec_key,
            None,
            "the pod does not set automountServiceAccountToken: false, so it gets a service-account token",
        ),
    }
}

fn namespace(w: &Workload<'_>, sink: &mut Sink<'_>) {
    let field = w.metadata.and_then(|m| entry(m, "namespace"));
    match field {
        Some((_, v))
            if v.as_str()
                .is_some_and(|ns| !ns.is_empty() && ns != "default") => {}
        Some((k, v)) if v.as_str() == Some("default") => sink.push(
            DEFAULT_NAMESPACE,
            k.pos,
            None,
            "the object is in the default namespace",
        ),
        _ => {
            let pos = field
                .map(|(k, _)| k.pos)
                .or_else(|| entry(w.object, "metadata").map(|(k, _)| k.pos))
                .unwrap_or(w.object.pos);
            sink.push(
                DEFAULT_NAMESPACE,
                pos,
                None,
                "no metadata.namespace: the object lands in the default namespace unless one is given when applied",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let p = ImageRef::parse;
        assert_eq!(
            p("nginx"),
            ImageRef {
                tag: None,
                digest: None
            }
        );
        assert_eq!(
            p("nginx:1.25"),
            ImageRef {
                tag: Some("1.25"),
                digest: None
            }
        );
        assert_eq!(p("localhost:5000/app").tag, None);
        assert_eq!(p("localhost:5000/app:latest").tag, Some("latest"));
        assert_eq!(p("ghcr.io/o/app@sha256:abc").digest, Some("sha256:abc"));
        assert_eq!(p("app:1@sha256:abc").tag, Some("1"));
        assert_eq!(p("app:").tag, None);
    }

    #[test]
    fn secret_names() {
        for yes in [
            "DB_PASSWORD",
            "dbPassword",
            "API_KEY",
            "GITHUB_TOKEN",
            "SECRET_KEY_BASE",
            "aws-secret-access-key",
            "PASSWORD",
            "CLIENT_SECRET",
        ] {
            assert!(looks_secret(yes), "{yes}");
        }
        for no in [
            "KEYCLOAK_URL",
            "PASSWORD_FILE",
            "SECRET_NAME",
            "AWS_ACCESS_KEY_ID",
            "TOKEN_TTL",
            "MONKEY",
            "PATH",
            "LOG_LEVEL",
            "PWD",
        ] {
            assert!(!looks_secret(no), "{no}");
        }
    }

    #[test]
    fn literal_values() {
        assert!(literal_value("hunter2-but-longer"));
        assert!(!literal_value(""));
        assert!(!literal_value("$(DB_PASSWORD)"));
        assert!(!literal_value("true"));
        assert!(!literal_value("3600"));
        assert!(!literal_value("$(A)$(B)"));
        assert!(literal_value("$(A)x"));
    }
}
