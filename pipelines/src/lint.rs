//! The pipeline lint gate: plaintext credentials in `env` and build arguments, and the sandbox
//! escapes (privileged mode, host mounts, the Docker socket) that only the administrator's
//! policy may allow. The credential detectors are a table, so adding one is adding a row.

use std::sync::LazyLock;

use regex::Regex;

use crate::Policy;

/// One kind of credential, recognised by its value and, for generic shapes, by the name it is
/// stored under.
struct Detector {
    id: &'static str,
    description: &'static str,
    /// Matched anywhere in the value. A capture group named `secret`, when present, must not
    /// be a variable reference for the value to be flagged.
    value: &'static str,
    /// When given, the variable name must match too (case-insensitive).
    name: Option<&'static str>,
    /// When given, the matched text must carry at least this many bits per character.
    min_entropy: Option<f64>,
}

const SECRET_NAME: &str =
    r"(?i)PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL";

const DETECTORS: &[Detector] = &[
    Detector {
        id: "aws-access-key-id",
        description: "AWS access key ID",
        value: r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "aws-secret-access-key",
        description: "AWS secret access key",
        value: r"^[A-Za-z0-9/+=]{40}$",
        name: Some(r"(?i)SECRET|KEY"),
        min_entropy: Some(3.5),
    },
    Detector {
        id: "private-key",
        description: "private key",
        value: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "github-token",
        description: "GitHub token",
        value: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "gitlab-token",
        description: "GitLab personal access token",
        value: r"\bglpat-[A-Za-z0-9_-]{20,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "slack-token",
        description: "Slack token",
        value: r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "stripe-key",
        description: "Stripe live key",
        value: r"\b[sr]k_live_[A-Za-z0-9]{16,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "sendgrid-key",
        description: "SendGrid API key",
        value: r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "npm-token",
        description: "npm access token",
        value: r"\bnpm_[A-Za-z0-9]{36}\b",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "pypi-token",
        description: "PyPI API token",
        value: r"\bpypi-AgEI[A-Za-z0-9_-]{50,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "google-api-key",
        description: "Google API key",
        value: r"\bAIza[0-9A-Za-z_-]{35}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "jwt",
        description: "JSON Web Token",
        value: r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "url-password",
        description: "password in a URL",
        value: r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:(?P<secret>[^/\s@]+)@",
        name: None,
        min_entropy: None,
    },
    Detector {
        id: "generic-secret",
        description: "high-entropy value under a secret-looking name",
        value: r"^\S{12,}$",
        name: Some(SECRET_NAME),
        min_entropy: Some(3.5),
    },
];

struct Compiled {
    detector: &'static Detector,
    value: Regex,
    name: Option<Regex>,
}

static COMPILED: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
    DETECTORS
        .iter()
        .map(|d| Compiled {
            detector: d,
            value: Regex::new(d.value).expect("detector regex"),
            name: d.name.map(|n| Regex::new(n).expect("detector name regex")),
        })
        .collect()
});

static VAR_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$").unwrap()
});

/// Bits of information per character of `s`, by character frequency.
pub(crate) fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut total = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

/// What kind of credential `value` (stored as `name`) looks like, if any. References to other
/// variables (`${TOKEN}`) are never credentials: the value is not in the file.
pub(crate) fn credential_kind(name: &str, value: &str) -> Option<&'static str> {
    if VAR_REF.is_match(value.trim()) {
        return None;
    }
    COMPILED.iter().find_map(|c| {
        if c.name.as_ref().is_some_and(|n| !n.is_match(name)) {
            return None;
        }
        let found = c.value.captures_iter(value).any(|caps| {
            let whole = caps.get(0).map_or("", |m| m.as_str());
            if let Some(secret) = caps.name("secret") {
                let s = secret.as_str();
                if VAR_REF.is_match(s) || s.contains("${") {
                    return false;
                }
            }
            if c.detector.id == "generic-secret" && whole.contains("${") {
                return false;
            }
            c.detector
                .min_entropy
                .is_none_or(|min| shannon_entropy(whole) >= min)
        });
        found.then_some(c.detector.description)
    })
}

/// The policy decision on `privileged: true`.
pub(crate) fn check_privileged(policy: &Policy) -> Result<(), String> {
    if policy.allow_privileged {
        Ok(())
    } else {
        Err("privileged containers are refused by policy".to_string())
    }
}

/// A parsed `volumes:` entry, `source:target[:ro|rw]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Volume {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Parses a `volumes:` entry and applies the policy to its source. The Docker socket is checked
/// before host mounts: it is a host path, but allowing host mounts must not quietly hand out
/// control of the Docker engine.
pub(crate) fn check_volume(spec: &str, policy: &Policy) -> Result<Volume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => {
            return Err(format!(
                "invalid volume \"{spec}\"; expected \"source:target\" or \"source:target:ro\""
            ));
        }
    };
    if source.is_empty() || target.is_empty() {
        return Err(format!(
            "invalid volume \"{spec}\"; expected \"source:target\" or \"source:target:ro\""
        ));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => {
            return Err(format!(
                "invalid volume mode \"{m}\" in \"{spec}\"; expected ro or rw"
            ));
        }
    };
    if !target.starts_with('/') {
        return Err(format!(
            "volume target \"{target}\" must be an absolute path in the container"
        ));
    }
    let normalized = source.trim_end_matches('/');
    if matches!(normalized, "/var/run/docker.sock" | "/run/docker.sock") {
        if !policy.allow_docker_socket {
            return Err("the Docker socket is refused by policy".to_string());
        }
    } else if source.starts_with(['/', '.', '~']) {
        if !policy.allow_host_mounts {
            return Err("host mounts are refused by policy".to_string());
        }
    } else {
        return Err(
            "named volumes are not supported; stages share the workspace at /workspace".to_string(),
        );
    }
    Ok(Volume {
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str, value: &str) -> Option<&'static str> {
        credential_kind(name, value)
    }

    #[test]
    fn every_detector_compiles_and_has_an_id() {
        assert_eq!(COMPILED.len(), DETECTORS.len());
        let mut ids: Vec<&str> = DETECTORS.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), DETECTORS.len());
    }

    #[test]
    fn flags_known_credential_shapes() {
        let cases = [
            ("AWS_KEY", "AKIAIOSFODNN7EXAMPLE", "AWS access key ID"),
            ("X", "ASIAY34FZKBOKMUTVV7A", "AWS access key ID"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AWS secret access key",
            ),
            (
                "K",
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
                "private key",
            ),
            ("K", "-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            ("K", "-----BEGIN PGP PRIVATE KEY BLOCK-----", "private key"),
            ("K", "-----BEGIN PRIVATE KEY-----", "private key"),
            (
                "GH",
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "GitHub token",
            ),
            (
                "GH",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
                "GitHub token",
            ),
            (
                "GL",
                "glpat-xxxxxxxxxxxxxxxxxxxx",
                "GitLab personal access token",
            ),
            ("HOOK", "xoxb-123456789012-abcdefghijkl", "Slack token"),
            ("PAY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Stripe live key"),
            (
                "MAIL",
                "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",
                "SendGrid API key",
            ),
            (
                "NPMRC",
                "npm_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                "npm access token",
            ),
            (
                "TWINE",
                "pypi-AgEIcHlwaS5vcmcCJGQ4ZTU3OTA4LTFlYTQtNDhkNi05OGUwLWYzNGQ4ZjQ5MzE3YgACKlsz",
                "PyPI API token",
            ),
            (
                "MAPS",
                "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
                "Google API key",
            ),
            (
                "AUTH",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "JSON Web Token",
            ),
            (
                "DATABASE_URL",
                "postgres://app:hunter2@db:5432/app",
                "password in a URL",
            ),
            (
                "API_TOKEN",
                "9f8Kq2LmZx7PwR4t",
                "high-entropy value under a secret-looking name",
            ),
            (
                "db_password",
                "Tr0ub4dor&3-horse",
                "high-entropy value under a secret-looking name",
            ),
        ];
        for (name, value, want) in cases {
            assert_eq!(kind(name, value), Some(want), "{name}={value}");
        }
    }

    #[test]
    fn leaves_ordinary_values_alone() {
        let cases = [
            ("POSTGRES_PASSWORD", "test"),
            ("CARGO_TERM_COLOR", "always"),
            ("DB_PASSWORD", "${DB_PASSWORD}"),
            ("TOKEN", "$TOKEN"),
            ("DATABASE_URL", "postgres://db:5432/app"),
            ("DATABASE_URL", "postgres://app@db:5432/app"),
            ("DATABASE_URL", "postgres://app:${DB_PASSWORD}@db:5432/app"),
            ("HOME_URL", "https://example.com/a:b@c"),
            ("RUST_LOG", "info,moat=debug,hyper=warn"),
            ("SECRET_PATH", "/run/secrets/x"),
            ("TOKEN_FILE", "aaaaaaaaaaaaaaaaaaaa"),
            ("PATH_ENTRY", "AKIAIOSFODNN7EXAMPL"),
            ("IMAGE_TAG", "registry.local/app:${MOAT_COMMIT}"),
            ("MESSAGE", "deploying the API key rotation service today"),
            ("KEY_ALGORITHM", "ed25519"),
        ];
        for (name, value) in cases {
            assert_eq!(kind(name, value), None, "{name}={value}");
        }
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn volumes_and_policy() {
        let strict = Policy::default();
        let e = |s: &str| check_volume(s, &strict).unwrap_err();
        assert_eq!(
            e("/var/run/docker.sock:/var/run/docker.sock"),
            "the Docker socket is refused by policy"
        );
        assert_eq!(
            e("/run/docker.sock:/x"),
            "the Docker socket is refused by policy"
        );
        assert_eq!(e("/srv/data:/data:ro"), "host mounts are refused by policy");
        assert_eq!(e("./cache:/cache"), "host mounts are refused by policy");
        assert_eq!(e("~/x:/x"), "host mounts are refused by policy");
        assert_eq!(
            e("cache:/cache"),
            "named volumes are not supported; stages share the workspace at /workspace"
        );
        assert!(e("/a").starts_with("invalid volume"));
        assert!(e("/a:/b:rx").starts_with("invalid volume mode \"rx\""));
        assert!(e("/a:b").starts_with("volume target \"b\""));

        let hosts = Policy {
            allow_host_mounts: true,
            ..Policy::default()
        };
        assert_eq!(
            check_volume("/srv/data:/data:ro", &hosts).unwrap(),
            Volume {
                source: "/srv/data".into(),
                target: "/data".into(),
                read_only: true
            }
        );
        // Allowing host mounts does not allow the socket.
        assert!(check_volume("/var/run/docker.sock:/s", &hosts).is_err());
        let socket = Policy {
            allow_docker_socket: true,
            ..Policy::default()
        };
        assert!(check_volume("/var/run/docker.sock:/var/run/docker.sock", &socket).is_ok());
        assert!(check_privileged(&strict).is_err());
        assert!(
            check_privileged(&Policy {
                allow_privileged: true,
                ..Policy::default()
            })
            .is_ok()
        );
    }
}
