//! The false-positive filters shared by all rules: values that are placeholders, code rather
//! than a credential, or assigned to names that are not secrets. Each is a pure predicate over
//! bytes; it must not know about rules or files beyond the path's language.

use memchr::memmem;

/// Values that stand for a secret rather than being one: references to variables or
/// vaults, template placeholders, documentation words, sequences, file paths.
pub(super) fn is_placeholder(value: &[u8]) -> bool {
    const EXACT: &[&str] = &[
        "password",
        "passwd",
        "pass",
        "secret",
        "changeme",
        "changeit",
        "example",
        "test",
        "testing",
        "dummy",
        "sample",
        "placeholder",
        "redacted",
        "token",
        "apikey",
        "api_key",
        "null",
        "none",
        "nil",
        "undefined",
        "empty",
        "default",
        "admin",
        "administrator",
        "root",
        "guest",
        "user",
        "username",
        "postgres",
        "postgresql",
        "mysql",
        "redis",
        "mongo",
        "mongodb",
        "rabbitmq",
        "hunter2",
        "letmein",
        "foobar",
        "qwerty",
        "abc123",
        "true",
        "false",
        "foo",
        "bar",
        "baz",
        "qux",
        "opensesame",
    ];
    const PREFIXES: &[&str] = &[
        "$", "%", "<", "{{", "#{", "your", "my-", "my_", "env:", "env.", "secret:", "secrets.",
        "vault:", "ref+", "moat:v1:", "enc(", "enc[", "{cipher}", "/", "./", "../", "~/", "file:",
        "arn:", "sha256:", "sha512-", "sha384-", "sha1-",
    ];
    const CONTAINS: &[&str] = &[
        "example",
        "changeme",
        "change_me",
        "change-me",
        "changeit",
        "placeholder",
        "xxxx",
        "****",
        "....",
        "replace",
        "insert",
        "redacted",
        "notreal",
        "not_real",
        "not-real",
        "fake",
        "dummy",
        "sample",
        "todo",
        "fixme",
        "value",
        "test",
        "${",
        "{{",
    ];
    const SUFFIXES: &[&str] = &[
        ".pem", ".key", ".json", ".txt", ".crt", ".cer", ".p12", ".pfx", ".jks", ".yaml", ".yml",
        ".env", ".gpg", ".asc", ".enc",
    ];
    // Runs of keyboard and alphabet sequences: `123456789`, `abcdefgh`, `qwertyui`.
    const SEQUENCES: &[&str] = &[
        "01234567890123456789012345678901234567890",
        "0123456789abcdefghijklmnopqrstuvwxyz",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
        "9876543210987654321098765432109876543210",
        "zyxwvutsrqponmlkjihgfedcba",
        "qwertyuiopasdfghjklzxcvbnm",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    ];
    // A placeholder word with a short suffix: `secret123`, `password1!`, `admin2024`.
    const WORD_STEMS: &[&str] = &[
        "secret", "password", "passwd", "pass", "pwd", "token", "changeme", "test", "admin",
        "root", "user", "guest", "demo", "foo", "bar", "qwerty", "letmein",
    ];
    let lower = value.to_ascii_lowercase();
    let lower = lower.as_slice();
    let stem = lower
        .strip_prefix(b"my")
        .filter(|rest| !rest.is_empty())
        .unwrap_or(lower);
    let suffix = stem
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit() || b"!._-".contains(b))
        .count();
    let stem = &stem[..stem.len() - suffix];
    if suffix <= 4 && WORD_STEMS.iter().any(|w| stem == w.as_bytes()) {
        return true;
    }
    // Made of sequences only: `abcd1234`, `qwerty123456` (runs of 3 or more).
    let mut runs = lower.chunk_by(|a, b| a.is_ascii_digit() == b.is_ascii_digit());
    if lower.len() >= 6
        && runs.all(|run| {
            run.len() >= 3
                && SEQUENCES
                    .iter()
                    .any(|s| memmem::find(s.as_bytes(), run).is_some())
        })
    {
        return true;
    }
    EXACT.iter().any(|w| lower == w.as_bytes())
        || PREFIXES.iter().any(|p| lower.starts_with(p.as_bytes()))
        || SUFFIXES.iter().any(|p| lower.ends_with(p.as_bytes()))
        || CONTAINS
            .iter()
            .any(|w| memmem::find(lower, w.as_bytes()).is_some())
}

/// Files in a programming language, where an unquoted value is an expression, never a
/// literal secret (configuration formats and shell scripts are not in the list).
pub(super) fn is_program_source(path: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "rs", "go", "py", "pyi", "js", "jsx", "mjs", "cjs", "ts", "tsx", "java", "kt", "kts",
        "scala", "groovy", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "cs", "fs", "swift", "m",
        "mm", "rb", "php", "pl", "pm", "lua", "dart", "ex", "exs", "erl", "hs", "ml", "clj", "zig",
        "nim", "jl", "vue", "svelte", "sol",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// An unquoted value without digits made of identifier characters is code (`self.password`,
/// `SecretKey`, `None`), not a literal.
pub(super) fn looks_like_code(value: &[u8]) -> bool {
    !value.iter().any(u8::is_ascii_digit)
        && value
            .iter()
            .all(|&b| b.is_ascii_alphabetic() || b"_$.:->".contains(&b))
}

/// `bearer`, `client_credentials`, `read-only`: lowercase words and separators only.
pub(super) fn is_lowercase_words(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b"_-.".contains(&b))
}

/// `some_setting_name`, `CLIENT_TRAFFIC_SECRET_0`: names of things, whatever rule found them.
pub(super) fn is_identifier_words(value: &[u8]) -> bool {
    let separated = value.iter().any(|b| b"_-.".contains(b));
    let upper_snake = value.first().is_some_and(u8::is_ascii_uppercase)
        && value.contains(&b'_')
        && value
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    (separated && is_lowercase_words(value)) || upper_snake
}

/// Names that mention a secret but hold something else: its hash, id, name, path, type, a
/// public half, a test value.
pub(super) fn name_is_not_secret(name: &[u8]) -> bool {
    const WORDS: &[&str] = &[
        "hash",
        "hashed",
        "digest",
        "checksum",
        "fingerprint",
        "id",
        "ids",
        "uuid",
        "guid",
        "public",
        "publishable",
        "foreign",
        "primary",
        "partition",
        "sort",
        "format",
        "type",
        "name",
        "names",
        "file",
        "filename",
        "path",
        "dir",
        "url",
        "uri",
        "endpoint",
        "length",
        "len",
        "size",
        "ttl",
        "timeout",
        "expiry",
        "expires",
        "expiration",
        "header",
        "field",
        "label",
        "regex",
        "pattern",
        "policy",
        "version",
        "enabled",
        "enable",
        "limit",
        "ref",
        "placeholder",
        "description",
        "hint",
        "example",
        "examples",
        "sample",
        "mock",
        "fake",
        "dummy",
        "test",
        "tests",
        "env",
        "var",
        "prefix",
        "suffix",
        "count",
        "min",
        "max",
        "rotation",
        "arn",
        "kms",
        "algorithm",
        "alg",
        "bits",
        "template",
        "rule",
        "rules",
        "validation",
        "validator",
        "strength",
    ];
    split_words(name)
        .iter()
        .any(|w| WORDS.contains(&w.as_str()))
}

/// `dbPasswordHash` → `db`, `password`, `hash`; `SECRET_KEY_ID` → `secret`, `key`, `id`.
pub(super) fn split_words(name: &[u8]) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for &b in name {
        if !b.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if b.is_ascii_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
        current.push(b.to_ascii_lowercase() as char);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}
