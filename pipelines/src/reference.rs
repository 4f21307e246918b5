//! Image references: the grammar Docker accepts (distribution/reference), checked before a
//! pipeline runs so `image: --privileged`, spaces, line breaks, bidi characters or a 5 000
//! character name get a located error instead of a raw Docker error at run time.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path              (at most 255 bytes)
//! domain     := host [ ":" port ]                host: DNS name or [IPv6]
//! path       := component ( "/" component )*     component: [a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex{32,}           algorithm: [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```

use std::sync::LazyLock;

use regex::Regex;

/// Longest name (domain and path, without tag or digest) Docker accepts.
pub const MAX_NAME_BYTES: usize = 255;

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain =
        format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let name = format!(r"(?:{domain}/)?{component}(?:/{component})*");
    let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!(r"^(?P<name>{name})(?::{tag})?(?:@{digest})?$")).unwrap()
});

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("an image reference must not be empty")]
    Empty,
    #[error("an image reference must not start with \"-\" (it would read as an option)")]
    Option,
    #[error("an image reference is plain ASCII without spaces, line breaks or control characters")]
    Characters,
    #[error("the image name is {0} bytes long; at most 255 are accepted")]
    TooLong(usize),
    #[error(
        "not an image reference; expected [registry/]name[:tag][@digest] with a lower-case \
         name and a tag of at most 128 letters, digits, \"_\", \".\" or \"-\""
    )]
    Grammar,
}

/// Checks `s` against the reference grammar.
pub fn check(s: &str) -> Result<(), ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if s.starts_with('-') {
        return Err(ReferenceError::Option);
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ReferenceError::Characters);
    }
    let caps = REFERENCE.captures(s).ok_or(ReferenceError::Grammar)?;
    let name = caps.name("name").map_or(0, |m| m.len());
    if name > MAX_NAME_BYTES {
        return Err(ReferenceError::TooLong(name));
    }
    Ok(())
}

/// `s` made safe to quote in a message: non-ASCII and control characters escaped (a bidi
/// override must not reorder the error it is quoted in), long values cut.
pub fn quote(s: &str) -> String {
    let escaped: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().count() > 80 {
        format!("\"{escaped}...\"")
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule table: each input and whether Docker accepts it.
    const RULES: &[(&str, bool)] = &[
        ("alpine", true),
        ("alpine:3.20", true),
        ("library/alpine", true),
        ("docker.io/library/alpine:latest", true),
        ("localhost:5000/app", true),
        ("localhost:5000/app:v1", true),
        (
            "registry.example.com:443/team/app_x/web-ui:1.0.0-rc.1",
            true,
        ),
        ("[::1]:5000/app", true),
        ("a__b/c.d/e---f", true),
        ("Registry.Example.com/app", true),
        ("_tag/x", false),
        ("app:_x", true),
        ("app:TAG_with.dots-1", true),
        (
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            true,
        ),
        (
            "app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            true,
        ),
        ("app@sha256:0123", false),
        ("app@:0123456789abcdef0123456789abcdef", false),
        ("App", false),
        ("team/App", false),
        ("app:", false),
        ("app:.x", false),
        ("app:-x", false),
        ("app::x", false),
        ("app:a/b", false),
        ("/app", false),
        ("app/", false),
        ("app//x", false),
        ("a..b", false),
        ("a._b", false),
        ("-app", false),
        ("--privileged", false),
        ("alpine --privileged", false),
        ("alpine\nFROM x", false),
        ("alpine\t", false),
        ("alpine\u{202e}", false),
        ("álpine", false),
        ("", false),
        ("app:feature/x", false),
        ("exa mple/app", false),
        ("host:port/app", false),
    ];

    #[test]
    fn rule_table() {
        for (input, ok) in RULES {
            assert_eq!(check(input).is_ok(), *ok, "{input:?}: {:?}", check(input));
        }
    }

    #[test]
    fn named_errors() {
        assert_eq!(check(""), Err(ReferenceError::Empty));
        assert_eq!(check("--privileged"), Err(ReferenceError::Option));
        assert_eq!(check("a b"), Err(ReferenceError::Characters));
        assert_eq!(check("a\u{202e}b"), Err(ReferenceError::Characters));
        assert_eq!(check("App"), Err(ReferenceError::Grammar));
    }

    #[test]
    fn lengths() {
        let name = "a".repeat(MAX_NAME_BYTES);
        assert!(check(&name).is_ok());
        assert_eq!(
            check(&format!("{name}a")),
            Err(ReferenceError::TooLong(MAX_NAME_BYTES + 1))
        );
        assert_eq!(check(&"a".repeat(5000)), Err(ReferenceError::TooLong(5000)));
        // The tag and digest do not count towards the name.
        assert!(check(&format!("{name}:{}", "t".repeat(128))).is_ok());
        assert_eq!(
            check(&format!("app:{}", "t".repeat(129))),
            Err(ReferenceError::Grammar)
        );
    }

    #[test]
    fn quoting_escapes_and_cuts() {
        assert_eq!(quote("a\u{202e}b\n"), "\"a\\u{202e}b\\n\"");
        assert!(quote(&"x".repeat(5000)).len() < 100);
    }
}
