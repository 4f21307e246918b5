//! Webhooks from the forges: signature checks on the raw body (constant time, before any
//! parsing), delivery ids, and the translation of GitHub, Gitea/Forgejo and GitLab payloads
//! into the few events Moat acts on. Clone URLs are never taken from a payload.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use moat_pipelines::EventKind;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::Forge;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A field that git (or the terminal showing it later) would not accept.
    #[error("invalid {field} in the payload: {value}: {reason}")]
    Invalid {
        field: &'static str,
        /// The value, escaped and shortened for the message.
        value: String,
        reason: &'static str,
    },
}

/// The longest ref name accepted (git has no limit; forges and file systems do).
pub const MAX_REF_LEN: usize = 255;

/// Why a ref name breaks `git check-ref-format`'s rules (or our length and Unicode rules).
/// `one_level`: a branch name as pull requests carry it (`main`), not a full ref
/// (`refs/heads/main`), as with `--allow-onelevel`.
pub fn check_ref_format(name: &str, one_level: bool) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_REF_LEN {
        return Err("is longer than 255 bytes");
    }
    if name == "@" {
        return Err("is the single character @");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err("begins or ends with / or has an empty component");
    }
    if name.ends_with('.') {
        return Err("ends with .");
    }
    if name.contains("..") {
        return Err("contains ..");
    }
    if name.contains("@{") {
        return Err("contains @{");
    }
    // Stricter than git: no Unicode control or bidirectional-override characters either, so
    // that a name cannot rewrite the terminal that prints it.
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err("contains control characters");
    }
    if name
        .chars()
        .any(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err("contains a space or one of ~ ^ : ? * [ \\");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Err("has a component beginning with .");
        }
        if component.ends_with(".lock") {
            return Err("has a component ending with .lock");
        }
    }
    if !one_level && !name.contains('/') {
        return Err("has a single component");
    }
    Ok(())
}

/// Characters that reorder how text is shown (Trojan Source): refused in names, escaped when
/// printed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// A value as an error message may show it: escaped (no control characters) and short.
fn shown(value: &str) -> String {
    let escaped = format!("{:?}", value.chars().take(80).collect::<String>());
    if value.chars().count() > 80 {
        format!("{escaped}…")
    } else {
        escaped
    }
}

fn valid_ref(field: &'static str, name: &str, one_level: bool) -> Result<(), WebhookError> {
    check_ref_format(name, one_level).map_err(|reason| WebhookError::Invalid {
        field,
        value: shown(name),
        reason,
    })
}

/// A branch name as pull requests carry it.
fn branch(field: &'static str, name: &str) -> Result<String, WebhookError> {
    valid_ref(field, name, true)?;
    Ok(name.to_string())
}

/// Who pushed: a forge user name, shown in tables and the audit trail.
fn actor_name(name: Option<&str>) -> Result<Option<String>, WebhookError> {
    match name {
        Some(n)
            if n.chars().count() > 255
                || n.chars().any(|c| c.is_control() || is_bidi_control(c)) =>
        {
            Err(WebhookError::Invalid {
                field: "user name",
                value: shown(n),
                reason: "is longer than 255 characters or contains control characters",
            })
        }
        other => Ok(other.map(str::to_string)),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn hmac_matches(secret: &str, body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return false,
    };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// The header carrying the delivery's signature (GitLab: the shared secret), if the forge's
/// header is there at all. Checked before the body is read: without it nothing can be
/// verified, so the body is not worth receiving.
pub fn signature_header(forge: Forge, headers: &HeaderMap) -> Result<&str, WebhookError> {
    let found = match forge {
        Forge::Github => header(headers, "x-hub-signature-256"),
        Forge::Gitea => header(headers, "x-gitea-signature")
            .or_else(|| header(headers, "x-forgejo-signature"))
            .or_else(|| header(headers, "x-gogs-signature")),
        Forge::Gitlab => header(headers, "x-gitlab-token"),
    };
    found.ok_or(WebhookError::MissingSignature)
}

/// Checks the delivery's signature with the repository's secret, on the raw body.
pub fn verify(
    forge: Forge,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    let sig = signature_header(forge, headers)?;
    let ok = match forge {
        Forge::Github => match sig.strip_prefix("sha256=") {
            Some(hex) => hmac_matches(secret, body, hex),
            None => false,
        },
        Forge::Gitea => hmac_matches(secret, body, sig.strip_prefix("sha256=").unwrap_or(sig)),
        // GitLab sends the shared secret itself; compare it in constant time.
        Forge::Gitlab => bool::from(sig.as_bytes().ct_eq(secret.as_bytes())),
    };
    ok.then_some(()).ok_or(WebhookError::BadSignature)
}

/// The forge's unique id of this delivery (redeliveries of the same event keep it).
pub fn delivery_id(forge: Forge, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match forge {
        Forge::Github => &["x-github-delivery"],
        Forge::Gitea => &["x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery"],
        Forge::Gitlab => &[
            "x-gitlab-event-uuid",
            "x-gitlab-webhook-uuid",
            "idempotency-key",
        ],
    };
    names
        .iter()
        .find_map(|n| header(headers, n))
        .map(|s| s.chars().take(200).collect())
}

/// The event name as the forge calls it (`push`, `pull_request`, `Push Hook`, …).
pub fn event_name(forge: Forge, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match forge {
        Forge::Github => &["x-github-event"],
        Forge::Gitea => &["x-gitea-event", "x-forgejo-event", "x-gogs-event"],
        Forge::Gitlab => &["x-gitlab-event"],
    };
    names
        .iter()
        .find_map(|n| header(headers, n))
        .map(|s| s.chars().take(100).collect())
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Ping,
    /// Valid, but starts nothing (branch deletion, closed pull request, other events).
    Ignored(String),
    Trigger(Trigger),
}

/// An event that may start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: EventKind,
    /// Pushed branch, or the source branch of a pull request.
    pub branch: Option<String>,
    /// Pull requests: the branch the change targets.
    pub target_branch: Option<String>,
    pub tag: Option<String>,
    pub commit: String,
    /// False for pull requests whose head lives in another repository (a fork).
    pub trusted: bool,
    pub actor: Option<String>,
    /// Pull requests: the ref the forge keeps for the head commit (fetched when the commit is
    /// not in the repository itself, as with forks).
    pub fetch_ref: Option<String>,
    /// Pull requests: the target branch's commit the change is based on (the secret gate
    /// judges only what the change adds to it).
    pub base_commit: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn require<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, WebhookError> {
    str_at(v, path).ok_or_else(|| WebhookError::Malformed(format!("missing {}", path.join("."))))
}

/// A full commit id: 40 hex digits (SHA-1) or 64 (SHA-256). Abbreviations are refused: they
/// name different commits as a repository grows.
fn is_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A full commit id, lower-cased, or why not (shared with manual runs).
pub fn full_commit(s: &str) -> Result<String, WebhookError> {
    commit(s)
}

fn commit(s: &str) -> Result<String, WebhookError> {
    if is_sha(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(WebhookError::Invalid {
            field: "commit",
            value: shown(s),
            reason: "is not a full commit id (40 or 64 hex digits)",
        })
    }
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A push of `git_ref` to `after` (shared by GitHub and Gitea, and GitLab's push hooks).
fn push(git_ref: &str, after: &str, actor: Option<&str>) -> Result<Parsed, WebhookError> {
    valid_ref("ref", git_ref, false)?;
    let actor = actor_name(actor)?;
    if is_sha(after) && after.chars().all(|c| c == '0') {
        return Ok(Parsed::Ignored(format!("{git_ref} was deleted")));
    }
    let commit = commit(after)?;
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        Ok(Parsed::Trigger(Trigger {
            kind: EventKind::Push,
            branch: Some(branch.to_string()),
            target_branch: None,
            tag: None,
            commit,
            trusted: true,
            actor,
            fetch_ref: None,
            base_commit: None,
        }))
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        Ok(Parsed::Trigger(Trigger {
            kind: EventKind::Tag,
            branch: None,
            target_branch: None,
            tag: Some(tag.to_string()),
            commit,
            trusted: true,
            actor,
            fetch_ref: None,
            base_commit: None,
        }))
    } else {
        Ok(Parsed::Ignored(format!("push to {git_ref}")))
    }
}

/// Reads a delivery's JSON body into what Moat acts on.
pub fn parse(forge: Forge, event: &str, body: &[u8]) -> Result<Parsed, WebhookError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if !v.is_object() {
        return Err(WebhookError::Malformed("expected a JSON object".into()));
    }
    match forge {
        Forge::Github | Forge::Gitea => parse_github_like(forge, event, &v),
        Forge::Gitlab => parse_gitlab(event, &v),
    }
}

fn parse_github_like(forge: Forge, event: &str, v: &Value) -> Result<Parsed, WebhookError> {
    match event {
        "ping" => Ok(Parsed::Ping),
        "push" => {
            let actor = str_at(v, &["pusher", "name"])
                .or_else(|| str_at(v, &["pusher", "login"]))
                .or_else(|| str_at(v, &["sender", "login"]));
            if v.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(Parsed::Ignored("branch or tag deleted".into()));
            }
            push(require(v, &["ref"])?, require(v, &["after"])?, actor)
        }
        "pull_request" => {
            let action = require(v, &["action"])?;
            let starts = match forge {
                Forge::Github => matches!(action, "opened" | "synchronize" | "reopened"),
                _ => matches!(
                    action,
                    "opened" | "synchronize" | "synchronized" | "reopened"
                ),
            };
            if !starts {
                return Ok(Parsed::Ignored(format!("pull request {action}")));
            }
            let pr = v
                .get("pull_request")
                .ok_or_else(|| WebhookError::Malformed("missing pull_request".into()))?;
            let head_repo = pr.get("head").and_then(|h| h.get("repo"));
            let base_repo = pr.get("base").and_then(|b| b.get("repo"));
            // A head in another repository (or one that no longer exists) is a fork.
            let same_repo = match (head_repo, base_repo) {
                (Some(h), Some(b)) if !h.is_null() && !b.is_null() => {
                    h.get("id").is_some() && h.get("id") == b.get("id")
                        || (h.get("id").is_none()
                            && h.get("full_name").is_some()
                            && h.get("full_name") == b.get("full_name"))
                }
                _ => false,
            };
            let number = v
                .get("number")
                .and_then(Value::as_i64)
                .or_else(|| pr.get("number").and_then(Value::as_i64));
            Ok(Parsed::Trigger(Trigger {
                kind: EventKind::PullRequest,
                branch: Some(branch("head branch", require(pr, &["head", "ref"])?)?),
                target_branch: Some(branch("base branch", require(pr, &["base", "ref"])?)?),
                tag: None,
                commit: commit(require(pr, &["head", "sha"])?)?,
                trusted: same_repo,
                actor: actor_name(str_at(v, &["sender", "login"]))?,
                fetch_ref: number.map(|n| format!("refs/pull/{n}/head")),
                base_commit: str_at(pr, &["base", "sha"])
                    .filter(|s| is_sha(s))
                    .map(str::to_ascii_lowercase),
            }))
        }
        other => Ok(Parsed::Ignored(format!("{other} events start nothing"))),
    }
}

fn parse_gitlab(event: &str, v: &Value) -> Result<Parsed, WebhookError> {
    let kind = str_at(v, &["object_kind"]).unwrap_or(match event {
        "Push Hook" => "push",
        "Tag Push Hook" => "tag_push",
        "Merge Request Hook" => "merge_request",
        _ => "",
    });
    let actor = str_at(v, &["user_username"]).or_else(|| str_at(v, &["user", "username"]));
    match kind {
        "push" | "tag_push" => {
            let after = str_at(v, &["checkout_sha"])
                .filter(|s| !s.is_empty())
                .or_else(|| str_at(v, &["after"]))
                .unwrap_or(ZERO_SHA);
            push(require(v, &["ref"])?, after, actor)
        }
        "merge_request" => {
            let attrs = v
                .get("object_attributes")
                .ok_or_else(|| WebhookError::Malformed("missing object_attributes".into()))?;
            let action = str_at(attrs, &["action"]).unwrap_or("");
            // An update without new commits (title, labels) starts nothing.
            let new_commits = attrs.get("oldrev").is_some_and(|o| !o.is_null());
            let starts = matches!(action, "open" | "reopen") || (action == "update" && new_commits);
            if !starts {
                return Ok(Parsed::Ignored(format!("merge request {action}")));
            }
            let source = attrs.get("source_project_id").and_then(Value::as_i64);
            let target = attrs.get("target_project_id").and_then(Value::as_i64);
            let iid = attrs.get("iid").and_then(Value::as_i64);
            Ok(Parsed::Trigger(Trigger {
                kind: EventKind::PullRequest,
                branch: Some(branch(
                    "source branch",
                    require(attrs, &["source_branch"])?,
                )?),
                target_branch: Some(branch(
                    "target branch",
                    require(attrs, &["target_branch"])?,
                )?),
                tag: None,
                commit: commit(require(attrs, &["last_commit", "id"])?)?,
                trusted: source.is_some() && source == target,
                actor: actor_name(actor)?,
                fetch_ref: iid.map(|n| format!("refs/merge-requests/{n}/head")),
                base_commit: str_at(attrs, &["diff_refs", "base_sha"])
                    .filter(|s| is_sha(s))
                    .map(str::to_ascii_lowercase),
            }))
        }
        "" => Err(WebhookError::Malformed("missing object_kind".into())),
        other => Ok(Parsed::Ignored(format!("{other} events start nothing"))),
    }
}

/// The signature GitHub would send for `body` (tests and tools use it to sign deliveries).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_signatures() {
        let body = br#"{"zen":"x"}"#;
        let sig = github_signature("s3cret", body);
        let h = headers(&[("x-hub-signature-256", &sig)]);
        assert_eq!(verify(Forge::Github, &h, body, "s3cret"), Ok(()));
        assert_eq!(
            verify(Forge::Github, &h, body, "other"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(Forge::Github, &h, b"{\"zen\":\"y\"}", "s3cret"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(Forge::Github, &HeaderMap::new(), body, "s3cret"),
            Err(WebhookError::MissingSignature)
        );
        let bare = headers(&[("x-hub-signature-256", sig.trim_start_matches("sha256="))]);
        assert_eq!(
            verify(Forge::Github, &bare, body, "s3cret"),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn gitea_and_gitlab_signatures() {
        let body = b"{}";
        let sig = github_signature("k", body);
        let hex = sig.trim_start_matches("sha256=");
        assert_eq!(
            verify(
                Forge::Gitea,
                &headers(&[("x-gitea-signature", hex)]),
                body,
                "k"
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Forge::Gitea,
                &headers(&[("x-forgejo-signature", hex)]),
                body,
                "k"
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Forge::Gitlab,
                &headers(&[("x-gitlab-token", "k")]),
                body,
                "k"
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Forge::Gitlab,
                &headers(&[("x-gitlab-token", "kk")]),
                body,
                "k"
            ),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn gitlab_events() {
        let push = br#"{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","user_username":"jsmith"}"#;
        match parse(Forge::Gitlab, "Push Hook", push).unwrap() {
            Parsed::Trigger(t) => {
                assert_eq!(t.kind, EventKind::Push);
                assert_eq!(t.branch.as_deref(), Some("main"));
                assert_eq!(t.actor.as_deref(), Some("jsmith"));
            }
            other => panic!("{other:?}"),
        }
        let deleted = br#"{"object_kind":"push","ref":"refs/heads/x","before":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","after":"0000000000000000000000000000000000000000","checkout_sha":null}"#;
        assert!(matches!(
            parse(Forge::Gitlab, "Push Hook", deleted).unwrap(),
            Parsed::Ignored(_)
        ));
        let mr = br#"{"object_kind":"merge_request","object_attributes":{"iid":3,"action":"open","source_branch":"feature","target_branch":"main","source_project_id":2,"target_project_id":1,"last_commit":{"id":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}}}"#;
        match parse(Forge::Gitlab, "Merge Request Hook", mr).unwrap() {
            Parsed::Trigger(t) => {
                assert_eq!(t.kind, EventKind::PullRequest);
                assert!(!t.trusted, "a merge request from another project is a fork");
                assert_eq!(t.fetch_ref.as_deref(), Some("refs/merge-requests/3/head"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(
            parse(Forge::Github, "push", b"not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse(Forge::Github, "push", b"[]"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse(Forge::Github, "push", br#"{"ref":"refs/heads/main"}"#),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse(
                Forge::Github,
                "push",
                br#"{"ref":"refs/heads/main","after":"zzz"}"#
            ),
            Err(WebhookError::Invalid {
                field: "commit",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod field_rules {
    use super::*;

    /// `git check-ref-format` rules, one example each (full refs unless `one_level`).
    #[test]
    fn ref_format_rule_table() {
        let table: &[(&str, bool, bool)] = &[
            // (name, one_level, accepted)
            ("refs/heads/main", false, true),
            ("refs/heads/feature/x-1_2", false, true),
            ("refs/tags/v1.2.3", false, true),
            ("refs/heads/ünïcode", false, true),
            ("main", true, true),
            ("main", false, false),            // a single component
            ("", true, false),                 // empty
            ("@", true, false),                // the single character @
            ("refs/heads/a..b", false, false), // ..
            ("refs/heads/../x", false, false),
            ("refs/heads/.hidden", false, false), // component begins with .
            ("refs/heads/x.lock", false, false),  // component ends with .lock
            ("refs/heads/x.lock/y", false, false),
            ("refs/heads/x.", false, false),  // ends with .
            ("refs/heads/x/", false, false),  // ends with /
            ("/refs/heads/x", false, false),  // begins with /
            ("refs//heads/x", false, false),  // empty component
            ("refs/heads/a b", false, false), // space
            ("refs/heads/a~1", false, false),
            ("refs/heads/a^", false, false),
            ("refs/heads/a:b", false, false),
            ("refs/heads/a?", false, false),
            ("refs/heads/a*", false, false),
            ("refs/heads/a[b", false, false),
            ("refs/heads/a\\b", false, false),
            ("refs/heads/a@{1}", false, false),
            ("refs/heads/a@b", false, true), // @ alone in a name is fine
            ("refs/heads/a\nb", false, false), // control characters
            ("refs/heads/\u{1b}[31mred", false, false),
            ("refs/heads/a\u{7f}", false, false),
            ("refs/heads/a\u{9b}b", false, false), // C1 control (CSI)
            ("refs/heads/a\u{202e}b", false, false), // bidi override
        ];
        for (name, one_level, accepted) in table {
            assert_eq!(
                check_ref_format(name, *one_level).is_ok(),
                *accepted,
                "{name:?} (one level: {one_level}): {:?}",
                check_ref_format(name, *one_level)
            );
        }
        let long = format!("refs/heads/{}", "a".repeat(MAX_REF_LEN));
        assert!(check_ref_format(&long, false).is_err());
        let at_limit = format!("refs/heads/{}", "a".repeat(MAX_REF_LEN - 11));
        assert!(check_ref_format(&at_limit, false).is_ok());
    }

    fn push_body(git_ref: &str, after: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"ref": git_ref, "after": after})).unwrap()
    }

    const SHA1: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    #[test]
    fn commits_are_full_ids() {
        let sha256 = "a".repeat(64);
        for good in [SHA1, sha256.as_str()] {
            assert!(matches!(
                parse(Forge::Github, "push", &push_body("refs/heads/main", good)),
                Ok(Parsed::Trigger(_))
            ));
        }
        for bad in ["6113728", &SHA1[..39], &format!("{SHA1}0"), &"g".repeat(40)] {
            let e = parse(Forge::Github, "push", &push_body("refs/heads/main", bad)).unwrap_err();
            assert!(
                matches!(
                    e,
                    WebhookError::Invalid {
                        field: "commit",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn bad_names_are_refused_with_an_escaped_message() {
        let e = parse(
            Forge::Github,
            "push",
            &push_body("refs/heads/x\u{1b}]0;owned\u{7}\nline", SHA1),
        )
        .unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("invalid ref in the payload"),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control), "{message}");
        let long = format!("refs/heads/{}", "b".repeat(5000));
        let message = parse(Forge::Github, "push", &push_body(&long, SHA1))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 300, "{message}");

        let mr = serde_json::json!({"object_kind":"merge_request","object_attributes":{
            "iid":3,"action":"open","source_branch":"a..b","target_branch":"main",
            "source_project_id":1,"target_project_id":1,"last_commit":{"id":SHA1}}});
        let e = parse(
            Forge::Gitlab,
            "Merge Request Hook",
            &serde_json::to_vec(&mr).unwrap(),
        );
        assert!(
            matches!(
                e,
                Err(WebhookError::Invalid {
                    field: "source branch",
                    ..
                })
            ),
            "{e:?}"
        );
    }
}

#[cfg(test)]
mod github_payloads {
    //! The real GitHub payloads in tests/fixtures/webhooks/github.

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/webhooks/github")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn trigger(event: &str, name: &str) -> Trigger {
        match parse(Forge::Github, event, &fixture(name)).unwrap() {
            Parsed::Trigger(t) => t,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn push_creating_a_branch() {
        let t = trigger("push", "push/with-new-branch.payload.json");
        assert_eq!(t.kind, EventKind::Push);
        assert_eq!(t.branch.as_deref(), Some("master"));
        assert_eq!(t.commit, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert!(t.trusted);
        assert_eq!(t.actor.as_deref(), Some("Codertocat"));
    }

    #[test]
    fn tag_deletion_starts_nothing() {
        // push/payload.json is the push GitHub sends when a tag is deleted.
        assert!(matches!(
            parse(Forge::Github, "push", &fixture("push/payload.json")).unwrap(),
            Parsed::Ignored(_)
        ));
    }

    #[test]
    fn tag_push() {
        let mut v: Value =
            serde_json::from_slice(&fixture("push/with-new-branch.payload.json")).unwrap();
        v["ref"] = Value::from("refs/tags/v1.2.3");
        let t = match parse(Forge::Github, "push", &serde_json::to_vec(&v).unwrap()).unwrap() {
            Parsed::Trigger(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(t.kind, EventKind::Tag);
        assert_eq!(t.tag.as_deref(), Some("v1.2.3"));
        assert_eq!(t.branch, None);
    }

    #[test]
    fn pull_requests() {
        for name in [
            "pull_request/opened.payload.json",
            "pull_request/synchronize.payload.json",
        ] {
            let t = trigger("pull_request", name);
            assert_eq!(t.kind, EventKind::PullRequest);
            assert_eq!(t.branch.as_deref(), Some("changes"));
            assert_eq!(t.target_branch.as_deref(), Some("master"));
            assert!(t.trusted, "same repository: not a fork");
            assert_eq!(t.fetch_ref.as_deref(), Some("refs/pull/2/head"));
        }
        assert!(matches!(
            parse(
                Forge::Github,
                "pull_request",
                &fixture("pull_request/closed.payload.json")
            )
            .unwrap(),
            Parsed::Ignored(_)
        ));
    }

    #[test]
    fn forks_are_untrusted() {
        let mut v: Value =
            serde_json::from_slice(&fixture("pull_request/opened.payload.json")).unwrap();
        v["pull_request"]["head"]["repo"]["id"] = Value::from(999_999);
        v["pull_request"]["head"]["repo"]["full_name"] = Value::from("mallory/Hello-World");
        let t = match parse(
            Forge::Github,
            "pull_request",
            &serde_json::to_vec(&v).unwrap(),
        )
        .unwrap()
        {
            Parsed::Trigger(t) => t,
            other => panic!("{other:?}"),
        };
        assert!(!t.trusted);
    }

    #[test]
    fn ping_create_delete() {
        assert_eq!(
            parse(Forge::Github, "ping", &fixture("ping/payload.json")).unwrap(),
            Parsed::Ping
        );
        assert!(matches!(
            parse(Forge::Github, "create", &fixture("create/payload.json")).unwrap(),
            Parsed::Ignored(_)
        ));
        assert!(matches!(
            parse(Forge::Github, "delete", &fixture("delete/payload.json")).unwrap(),
            Parsed::Ignored(_)
        ));
    }
}
