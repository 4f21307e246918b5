//! Schema and semantics of `.moat.yml` version 1: walks the located YAML tree into the typed
//! model, collecting every problem as a located diagnostic instead of stopping at the first.
//!
//! Conventions for messages: lower-case start, no trailing period, user values in double
//! quotes. A wrong or invalid value is reported at the value, an unknown key at the key, and a
//! missing key at the mapping that should have had it.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::diag::{Diagnostics, Pos};
use crate::lint;
use crate::model::{
    Approval, BuildSpec, Date, DeploySpec, DeployTarget, EventKind, HealthCheck, IgnoreRule, Mount,
    Pipeline, Resources, Rollback, ScanSpec, SecretDecl, SecretSource, Service, Severity, Stage,
    StageKind, StageSpans, Strategy, Triggers, When,
};
use crate::pattern::Pattern;
use crate::plan::BUILTIN_VARS;
use crate::units::{parse_duration, parse_size};
use crate::yaml::{self, Limits, Node, NodeKind};
use crate::{MAX_FILE_SIZE, Policy};

const TOP_KEYS: &[&str] = &["version", "on", "env", "secrets", "stages"];
const ON_KEYS: &[&str] = &["push", "pull_request", "tag", "manual"];
const SECRET_KEYS: &[&str] = &["sealed", "deploy_only"];
const STAGE_KEYS: &[&str] = &[
    "name",
    "kind",
    "image",
    "commands",
    "needs",
    "when",
    "env",
    "timeout",
    "no_output_timeout",
    "resources",
    "services",
    "secrets",
    "environment",
    "approval",
    "privileged",
    "volumes",
    "build",
    "scan",
    "deploy",
];
const WHEN_KEYS: &[&str] = &["branch", "event", "tag"];
const RESOURCE_KEYS: &[&str] = &["cpus", "memory", "pids"];
const SERVICE_KEYS: &[&str] = &["name", "image", "env", "command"];
const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "tag",
    "args",
    "target",
    "push",
    "labels",
];
const SCAN_KEYS: &[&str] = &[
    "image",
    "fail_on",
    "manifests",
    "dependencies",
    "only_fixed",
    "ignore",
];
const IGNORE_KEYS: &[&str] = &["id", "reason", "expires"];
const DEPLOY_KEYS: &[&str] = &[
    "target",
    "strategy",
    "image",
    "port",
    "health",
    "rollback",
    "namespace",
    "app",
];
const HEALTH_KEYS: &[&str] = &["path", "timeout", "interval"];

const KINDS: &[&str] = &["test", "build", "scan", "deploy"];
const EVENTS: &[&str] = &["push", "pull_request", "tag", "manual"];
const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];

/// Docker refuses smaller memory limits.
const MIN_MEMORY: u64 = 6 << 20;
/// Fewer PIDs than this and a shell with a couple of pipes already fails.
const MIN_PIDS: i64 = 16;
const MAX_CPUS: f64 = 256.0;
/// Work allowed for "did you mean" hints, in candidate characters compared. Hints are a
/// courtesy: a hostile file with thousands of misspellings must not make them quadratic.
const HINT_BUDGET: usize = 500_000;
/// Longest list of names quoted in one message.
const MAX_LISTED: usize = 10;

static VAR_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());
static STAGE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$").unwrap());
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$").unwrap());

/// Parses and validates raw bytes; see [`crate::parse_with`].
pub(crate) fn parse(src: &[u8], policy: &Policy) -> Result<Pipeline, Diagnostics> {
    let mut diags = Diagnostics::default();
    if src.len() > MAX_FILE_SIZE {
        diags.push(Pos::new(1, 1), "file is larger than 1 MiB");
        return Err(diags);
    }
    let text = match std::str::from_utf8(src) {
        Ok(text) => text,
        Err(e) => {
            diags.push(
                pos_of_byte(src, e.valid_up_to()),
                "invalid UTF-8; a pipeline file must be UTF-8 text",
            );
            return Err(diags);
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse_document(text, &Limits::default()) {
        Ok(root) => root,
        Err(d) => {
            diags.0.push(d);
            return Err(diags);
        }
    };
    let mut checker = Checker {
        diags,
        policy,
        top_env: Vec::new(),
        secrets: Vec::new(),
        secret_index: HashMap::new(),
        hint_budget: HINT_BUDGET,
    };
    let pipeline = checker.pipeline(&root);
    match pipeline {
        Some(p) if checker.diags.is_empty() => match crate::plan::check_expansion(&p) {
            Ok(()) => Ok(p),
            Err(e) => {
                checker.diags.push(e.pos(), e.message());
                Err(checker.diags)
            }
        },
        _ => {
            if checker.diags.is_empty() {
                checker.diags.push(root.pos, "invalid pipeline file");
            }
            Err(checker.diags.finish())
        }
    }
}

/// The positions of a mapping's values, in order.
fn value_positions(node: &Node) -> Vec<Pos> {
    node.as_map()
        .map(|m| m.iter().map(|(_, v)| v.pos).collect())
        .unwrap_or_default()
}

/// Where a stage's interpolated values are; only used for a valid stage, where every entry
/// was kept, so the positions line up with the model's lists.
fn stage_spans(f: &Fields<'_>) -> StageSpans {
    let pos = |n: Option<&Node>| n.map(|n| n.pos).unwrap_or_default();
    let build = f.get("build");
    StageSpans {
        env: f.get("env").map(value_positions).unwrap_or_default(),
        image: pos(f.get("image")),
        services: f
            .get("services")
            .and_then(Node::as_seq)
            .map(|items| items.iter().map(|i| pos(i.get("image"))).collect())
            .unwrap_or_default(),
        build_tag: pos(build.and_then(|b| b.get("tag"))),
        build_args: build
            .and_then(|b| b.get("args"))
            .map(value_positions)
            .unwrap_or_default(),
        scan_image: pos(f.get("scan").and_then(|b| b.get("image"))),
        deploy_image: pos(f.get("deploy").and_then(|b| b.get("image"))),
    }
}

/// Line and column of byte `index`, where everything before it is valid UTF-8.
fn pos_of_byte(src: &[u8], index: usize) -> Pos {
    let before = std::str::from_utf8(&src[..index]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Pos::new(
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// "a, b or c"
fn or_list(options: &[&str]) -> String {
    match options {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// `"a", "b"`, shortened to the first few names and a count of the rest.
fn quoted_list(items: &[&str]) -> String {
    let mut out = items
        .iter()
        .take(MAX_LISTED)
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        out.push_str(&format!(" and {} more", items.len() - MAX_LISTED));
    }
    out
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("imgae").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to a misspelt word, if one is close enough to be a useful hint.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.chars().count() > 64 {
        return None;
    }
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        let c = cand.to_lowercase();
        let mut score = edit_distance(&lower, &c);
        if score > 2 || score >= c.chars().count() {
            let common = lower
                .chars()
                .zip(c.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let clen = c.chars().count();
            let prefix = lower.len() >= 3 && (c.starts_with(&lower) || lower.starts_with(&c))
                || common >= 4 && common + 2 >= clen;
            if !prefix {
                continue;
            }
            score = 3;
        }
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, cand));
        }
    }
    best.map(|(_, c)| c)
}

fn hint(suggestion: Option<&str>) -> String {
    suggestion.map_or(String::new(), |s| format!("; did you mean \"{s}\"?"))
}

/// Splits a command line into words the way a shell would for simple cases: whitespace
/// separates, quotes group, a backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated quote in command \"{s}\"")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated quote in command \"{s}\"")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated quote in command \"{s}\"")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days {
        return None;
    }
    Some(Date {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
    })
}

/// A path that must stay inside the checked-out repository.
fn inside_workspace(p: &str) -> bool {
    let absolute = p.starts_with(['/', '\\'])
        || p.as_bytes().get(1) == Some(&b':') && p.as_bytes()[0].is_ascii_alphabetic();
    !absolute && !p.split(['/', '\\']).any(|c| c == "..")
}

/// The keys of one mapping, checked against the keys allowed there.
struct Fields<'n> {
    node: &'n Node,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    fn key(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }

    fn pos(&self) -> Pos {
        self.node.pos
    }
}

/// What cross-stage checks need to know about one entry of `stages:`, valid or not.
struct StageInfo {
    name: Option<(String, Pos)>,
    pos: Pos,
    /// Position of the `needs` key and the names listed.
    needs: Option<(Pos, Vec<(String, Pos)>)>,
    services: Vec<(String, Pos)>,
    stage: Option<Stage>,
}

struct Checker<'p> {
    diags: Diagnostics,
    policy: &'p Policy,
    top_env: Vec<String>,
    /// Declared secrets: name and whether it is deploy-only.
    secrets: Vec<(String, bool)>,
    /// Declared secret name to its index in `secrets`.
    secret_index: HashMap<String, usize>,
    hint_budget: usize,
}

impl Checker<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(pos, message);
    }

    /// A "did you mean" hint, while the hint budget lasts.
    fn hint(&mut self, word: &str, candidates: &[&str], exclude: Option<&str>) -> String {
        let cost = candidates.len().saturating_mul(word.len() + 1);
        if cost > self.hint_budget {
            self.hint_budget = 0;
            return String::new();
        }
        self.hint_budget -= cost;
        hint(suggest(
            word,
            candidates.iter().copied().filter(|c| Some(*c) != exclude),
        ))
    }

    fn expected(&mut self, node: &Node, what: &str) {
        self.err(
            node.pos,
            format!("expected {what}, found {}", node.describe()),
        );
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed`; `place` completes
    /// "unknown key "x" ...", like `in stage "build"`.
    fn fields<'n>(&mut self, node: &'n Node, allowed: &[&str], place: &str) -> Option<Fields<'n>> {
        let Some(map) = node.as_map() else {
            self.expected(node, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("expected a key name, found {}", k.describe()),
                );
                continue;
            };
            if allowed.contains(&key) {
                entries.push((key, k, v));
            } else {
                let h = self.hint(key, allowed, None);
                self.err(k.pos, format!("unknown key \"{key}\" {place}{h}"));
            }
        }
        Some(Fields { node, entries })
    }

    fn string(&mut self, node: &Node) -> Option<String> {
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.expected(node, "a string");
                None
            }
        }
    }

    /// A string that must not be empty; `what` names it in the message.
    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node)?;
        if s.trim().is_empty() {
            self.err(node.pos, format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, node: &Node) -> Option<bool> {
        let b = node.as_bool();
        if b.is_none() {
            self.expected(node, "true or false");
        }
        b
    }

    fn integer(&mut self, node: &Node) -> Option<i64> {
        let n = node.as_plain().and_then(|s| s.parse::<i64>().ok());
        if n.is_none() {
            self.expected(node, "an integer");
        }
        n
    }

    fn string_list(&mut self, node: &Node) -> Option<Vec<(String, Pos)>> {
        let Some(items) = node.as_seq() else {
            self.expected(node, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item) {
                out.push((s, item.pos));
            }
        }
        Some(out)
    }

    fn string_or_list(&mut self, node: &Node) -> Option<Vec<(String, Pos)>> {
        if let Some(s) = node.as_str() {
            return Some(vec![(s.to_string(), node.pos)]);
        }
        if node.as_seq().is_some() {
            return self.string_list(node);
        }
        self.expected(node, "a string or a list of strings");
        None
    }

    fn one_of<'o>(&mut self, node: &Node, what: &str, options: &[&'o str]) -> Option<&'o str> {
        let s = self.string(node)?;
        let found = options.iter().find(|o| **o == s).copied();
        if found.is_none() {
            self.err(
                node.pos,
                format!("unknown {what} \"{s}\"; expected {}", or_list(options)),
            );
        }
        found
    }

    fn duration(&mut self, node: &Node) -> Option<Duration> {
        let s = self.string(node)?;
        parse_duration(&s).map_err(|e| self.err(node.pos, e)).ok()
    }

    /// Patterns from a string or a list; `all` says what leaving the key out matches.
    fn patterns(&mut self, node: &Node, key: &str, all: &str) -> Option<Vec<Pattern>> {
        let items = self.string_or_list(node)?;
        if items.is_empty() {
            self.err(
                node.pos,
                format!("empty list; leave out \"{key}\" to match {all}"),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (s, pos) in items {
            match Pattern::new(&s) {
                Ok(p) => out.push(p),
                Err(e) => {
                    ok = false;
                    self.err(pos, format!("invalid pattern \"{s}\": {e}"));
                }
            }
        }
        ok.then_some(out)
    }

    /// A relative path that must stay inside the repository.
    fn workspace_path(&mut self, node: &Node, what: &str) -> Option<String> {
        let p = self.text(node, what)?;
        if !inside_workspace(&p) {
            self.err(
                node.pos,
                format!("{what} \"{p}\" must be a relative path inside the repository"),
            );
            return None;
        }
        Some(p)
    }

    /// Checks that a variable name is usable in `env` or `secrets`.
    fn var_name(&mut self, name: &str, pos: Pos, what: &str) -> bool {
        if !VAR_NAME.is_match(name) {
            self.err(
                pos,
                format!(
                    "invalid {what} name \"{name}\"; use letters, digits and \"_\", not \
                     starting with a digit"
                ),
            );
            false
        } else if name.starts_with("MOAT_") {
            self.err(
                pos,
                format!("{what} name \"{name}\" is reserved: MOAT_ names are set by Moat"),
            );
            false
        } else {
            true
        }
    }

    /// A mapping of variable names to plain values. `kind` names the entries in messages
    /// ("env", "build arg"); `reserved` applies the MOAT_ rule.
    fn variables(&mut self, node: &Node, kind: &str, reserved: bool) -> Vec<(String, String)> {
        let Some(map) = node.as_map() else {
            self.expected(node, "a mapping of names to values");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("expected a variable name, found {}", k.describe()),
                );
                continue;
            };
            let name_ok = if reserved {
                self.var_name(name, k.pos, "variable")
            } else if VAR_NAME.is_match(name) {
                true
            } else {
                self.err(
                    k.pos,
                    format!(
                        "invalid {kind} name \"{name}\"; use letters, digits and \"_\", not \
                         starting with a digit"
                    ),
                );
                false
            };
            let value = match &v.kind {
                NodeKind::Scalar { value, .. } => value.clone(),
                NodeKind::Null => {
                    self.err(
                        v.pos,
                        format!("{kind} \"{name}\" has no value; write \"\" for an empty one"),
                    );
                    continue;
                }
                _ => {
                    self.expected(v, "a string, number or boolean");
                    continue;
                }
            };
            if let Some(what) = lint::credential_kind(name, &value) {
                self.err(
                    v.pos,
                    format!(
                        "{kind} \"{name}\" looks like a credential ({what}); declare it under \
                         secrets and grant it to the stage"
                    ),
                );
            }
            if name_ok {
                out.push((name.to_string(), value));
            }
        }
        out
    }

    /// Checks every `${NAME}` in a value against the variables that will exist.
    fn references(&mut self, node: &Node, value: &str, known: &[String]) {
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.err(node.pos, format!("unterminated \"${{\" in \"{value}\""));
                return;
            };
            let name = &after[..end];
            if !VAR_NAME.is_match(name) {
                self.err(
                    node.pos,
                    format!("invalid variable reference \"${{{name}}}\""),
                );
            } else if !BUILTIN_VARS.contains(&name) && !known.iter().any(|k| k == name) {
                self.err(node.pos, format!("unknown variable ${{{name}}}"));
            }
            rest = &after[end + 1..];
        }
    }

    /// An image reference, with its variables checked.
    fn image(&mut self, node: &Node, known: &[String]) -> Option<String> {
        let image = self.text(node, "image")?;
        self.references(node, &image, known);
        self.reference_grammar(node, &image, "image");
        Some(image)
    }

    /// A literal image reference must follow Docker's grammar; one with `${...}` is checked
    /// by planning, once its variables have values.
    fn reference_grammar(&mut self, node: &Node, value: &str, what: &str) {
        if value.contains("${") {
            return;
        }
        if let Err(e) = crate::reference::check(value) {
            self.err(
                node.pos,
                format!("invalid {what} {}: {e}", crate::reference::quote(value)),
            );
        }
    }

    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        match &root.kind {
            NodeKind::Null => {
                self.err(Pos::new(1, 1), "empty pipeline file");
                return None;
            }
            NodeKind::Map(_) => {}
            _ => {
                self.err(
                    root.pos,
                    format!(
                        "expected a mapping with version and stages at the top level, found {}",
                        root.describe()
                    ),
                );
                return None;
            }
        }
        let f = self.fields(root, TOP_KEYS, "at the top level")?;
        let version = match f.get("version") {
            None => {
                self.err(f.pos(), "missing \"version: 1\" at the top level");
                None
            }
            Some(v) => match &v.kind {
                NodeKind::Scalar { value, .. } if value == "1" => Some(1),
                NodeKind::Scalar { value, .. } => {
                    self.err(
                        v.pos,
                        format!("unsupported version {value}; this Moat understands version 1"),
                    );
                    None
                }
                _ => {
                    self.expected(v, "a version number");
                    None
                }
            },
        };
        let on = match f.get("on") {
            None => Triggers::default_push(),
            Some(v) => self.triggers(v),
        };
        let env = match f.get("env") {
            None => Vec::new(),
            Some(v) => self.variables(v, "env", true),
        };
        self.top_env = env.iter().map(|(k, _)| k.clone()).collect();
        let secrets = match f.get("secrets") {
            None => Vec::new(),
            Some(v) => self.secret_decls(v),
        };
        self.secrets = secrets
            .iter()
            .map(|s| (s.name.clone(), s.deploy_only))
            .collect();
        self.secret_index = self
            .secrets
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        let stages = match f.get("stages") {
            None => {
                self.err(
                    f.pos(),
                    "missing \"stages\"; a pipeline needs at least one stage",
                );
                Vec::new()
            }
            Some(v) => self.stages(v),
        };
        Some(Pipeline {
            version: version?,
            on,
            env_pos: f.get("env").map(value_positions).unwrap_or_default(),
            env,
            secrets,
            stages,
        })
    }

    fn triggers(&mut self, node: &Node) -> Triggers {
        let mut t = Triggers::default();
        let Some(f) = self.fields(node, ON_KEYS, "in \"on\"") else {
            return t;
        };
        if let Some(v) = f.get("push") {
            t.push = self.trigger(v, "push", "branches", "any branch");
        }
        if let Some(v) = f.get("pull_request") {
            t.pull_request = self.trigger(v, "pull_request", "branches", "any branch");
        }
        if let Some(v) = f.get("tag") {
            t.tag = self.trigger(v, "tag", "pattern", "any tag");
        }
        if let Some(v) = f.get("manual") {
            t.manual = self.boolean(v).unwrap_or(false);
        }
        t
    }

    /// One event of `on:`: `true`, `{}` or null for "always", `false` for "never", or a
    /// mapping with the patterns under `key`.
    fn trigger(&mut self, node: &Node, event: &str, key: &str, all: &str) -> Option<Vec<Pattern>> {
        match &node.kind {
            NodeKind::Null => return Some(Vec::new()),
            NodeKind::Map(_) => {}
            _ => match node.as_bool() {
                Some(true) => return Some(Vec::new()),
                Some(false) => return None,
                None => {
                    self.expected(node, &format!("a mapping like {{ {key}: [...] }}, or true"));
                    return None;
                }
            },
        }
        let f = self.fields(node, &[key], &format!("in \"on.{event}\""))?;
        match f.get(key) {
            None => Some(Vec::new()),
            Some(v) => self.patterns(v, key, all),
        }
    }

    fn secret_decls(&mut self, node: &Node) -> Vec<SecretDecl> {
        let Some(map) = node.as_map() else {
            self.expected(node, "a mapping of secret names");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("expected a secret name, found {}", k.describe()),
                );
                continue;
            };
            let name_ok = self.var_name(name, k.pos, "secret");
            let mut decl = SecretDecl {
                name: name.to_string(),
                source: SecretSource::Store,
                deploy_only: false,
            };
            match &v.kind {
                NodeKind::Null => {}
                NodeKind::Map(_) => {
                    let place = format!("in secret \"{name}\"");
                    if let Some(f) = self.fields(v, SECRET_KEYS, &place) {
                        if let Some(sealed) = f.get("sealed").and_then(|n| self.sealed(n, name)) {
                            decl.source = sealed;
                        }
                        if let Some(d) = f.get("deploy_only") {
                            decl.deploy_only = self.boolean(d).unwrap_or(false);
                        }
                    }
                }
                NodeKind::Scalar { .. } => self.err(
                    v.pos,
                    format!(
                        "secret \"{name}\" must be {{}} or {{ sealed: \"moat:v1:...\" }}; a \
                         plaintext value does not belong in the file"
                    ),
                ),
                NodeKind::Seq(_) => self.expected(v, "a mapping"),
            }
            if name_ok {
                out.push(decl);
            }
        }
        out
    }

    /// A `moat seal` value; anything else would be a plaintext secret or a typo.
    fn sealed(&mut self, node: &Node, name: &str) -> Option<SecretSource> {
        let text = self.string(node)?;
        match text.strip_prefix("moat:v1:") {
            Some(rest) if !rest.is_empty() => Some(SecretSource::Sealed(text)),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "sealed value of secret \"{name}\" must start with \"moat:v1:\"; make it \
                         with moat seal"
                    ),
                );
                None
            }
        }
    }

    fn stages(&mut self, node: &Node) -> Vec<Stage> {
        let Some(items) = node.as_seq() else {
            self.expected(node, "a list of stages");
            return Vec::new();
        };
        if items.is_empty() {
            self.err(node.pos, "no stages; a pipeline needs at least one stage");
            return Vec::new();
        }
        let mut infos: Vec<StageInfo> = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.stage(item, i))
            .collect();
        self.cross_stage(&infos);
        infos.iter_mut().filter_map(|i| i.stage.take()).collect()
    }

    fn stage(&mut self, node: &Node, index: usize) -> StageInfo {
        let mut info = StageInfo {
            name: None,
            pos: node.pos,
            needs: None,
            services: Vec::new(),
            stage: None,
        };
        let label = match node.get("name").and_then(Node::as_str) {
            Some(n) => format!("stage \"{n}\""),
            None => format!("stage {}", index + 1),
        };
        let Some(f) = self.fields(node, STAGE_KEYS, &format!("in {label}")) else {
            return info;
        };

        match f.get("name") {
            None => self.err(f.pos(), format!("{label} has no name")),
            Some(v) => {
                if let Some(name) = self.string(v) {
                    if STAGE_NAME.is_match(&name) {
                        info.name = Some((name, v.pos));
                    } else {
                        self.err(
                            v.pos,
                            format!(
                                "invalid stage name \"{name}\"; use up to 63 letters, digits, \
                                 \".\", \"_\" or \"-\", starting with a letter or digit"
                            ),
                        );
                    }
                }
            }
        }
        let kind = match f.get("kind") {
            None => {
                self.err(
                    f.pos(),
                    format!("{label} has no kind; expected {}", or_list(KINDS)),
                );
                None
            }
            Some(v) => self.one_of(v, "kind", KINDS).map(|k| match k {
                "test" => StageKind::Test,
                "build" => StageKind::Build,
                "scan" => StageKind::Scan,
                _ => StageKind::Deploy,
            }),
        };

        let env = match f.get("env") {
            None => Vec::new(),
            Some(v) => self.variables(v, "env", true),
        };
        let mut known: Vec<String> = self.top_env.clone();
        known.extend(env.iter().map(|(k, _)| k.clone()));

        let image = f.get("image").and_then(|v| self.image(v, &known));
        let commands = match f.get("commands") {
            None => Vec::new(),
            Some(v) => self
                .string_or_list(v)
                .unwrap_or_default()
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        };
        if let (Some(key), Some(v)) = (f.key("needs"), f.get("needs")) {
            let names = self.string_list(v).unwrap_or_default();
            info.needs = Some((key.pos, names));
        }
        let when = f.get("when").map(|v| self.when(v, &label)).unwrap_or(None);
        let timeout = f.get("timeout").and_then(|v| self.duration(v));
        let no_output_timeout = f.get("no_output_timeout").and_then(|v| self.duration(v));
        let resources = f
            .get("resources")
            .map(|v| self.resources(v, &label))
            .unwrap_or_default();
        let services = match f.get("services") {
            None => Vec::new(),
            Some(v) => self.services(v, &label, &known, &mut info.services),
        };
        let secrets = match f.get("secrets") {
            None => Vec::new(),
            Some(v) => self.granted_secrets(v, &label, kind),
        };
        let environment = f.get("environment").and_then(|v| {
            let name = self.string(v)?;
            if STAGE_NAME.is_match(&name) {
                Some(name)
            } else {
                self.err(
                    v.pos,
                    format!(
                        "invalid environment name \"{name}\"; use up to 63 letters, digits, \
                         \".\", \"_\" or \"-\", starting with a letter or digit"
                    ),
                );
                None
            }
        });
        let approval = f
            .get("approval")
            .and_then(|v| self.one_of(v, "approval", &["required", "none"]))
            .map_or(Approval::None, |a| {
                if a == "required" {
                    Approval::Required
                } else {
                    Approval::None
                }
            });
        let mut privileged = false;
        if let Some(v) = f.get("privileged") {
            privileged = self.boolean(v).unwrap_or(false);
            if let (true, Err(e)) = (privileged, lint::check_privileged(self.policy)) {
                self.err(v.pos, e);
            }
        }
        let mut mounts = Vec::new();
        if let Some(v) = f.get("volumes") {
            for (spec, pos) in self.string_list(v).unwrap_or_default() {
                match lint::check_volume(&spec, self.policy) {
                    Ok(vol) => mounts.push(Mount {
                        source: vol.source,
                        target: vol.target,
                        read_only: vol.read_only,
                    }),
                    Err(e) => self.err(pos, e),
                }
            }
        }
        let build = f.get("build").and_then(|v| self.build(v, &label, &known));
        let scan = f.get("scan").and_then(|v| self.scan(v, &label, &known));
        let deploy = f.get("deploy").and_then(|v| self.deploy(v, &label, &known));

        if let Some(kind) = kind {
            self.kind_rules(&f, &label, kind);
        }

        if let (Some((name, _)), Some(kind)) = (&info.name, kind) {
            info.stage = Some(Stage {
                name: name.clone(),
                pos: node.pos,
                kind,
                image,
                commands,
                needs: info
                    .needs
                    .as_ref()
                    .map(|(_, n)| n.iter().map(|(s, _)| s.clone()).collect()),
                when,
                env,
                timeout,
                no_output_timeout,
                resources,
                services,
                secrets,
                environment,
                approval,
                privileged,
                mounts,
                build,
                scan,
                deploy,
                spans: stage_spans(&f),
            });
        }
        info
    }

    /// What a stage of each kind must have and must not have.
    fn kind_rules(&mut self, f: &Fields<'_>, label: &str, kind: StageKind) {
        let own_block = match kind {
            StageKind::Test => None,
            StageKind::Build => Some("build"),
            StageKind::Scan => Some("scan"),
            StageKind::Deploy => Some("deploy"),
        };
        for block in ["build", "scan", "deploy"] {
            if let Some(k) = f.key(block).filter(|_| Some(block) != own_block) {
                self.err(
                    k.pos,
                    format!("{label} has a {block} block but its kind is {kind}"),
                );
            }
        }
        match own_block {
            None => {
                if f.key("image").is_none() {
                    self.err(f.pos(), format!("{label} of kind test needs an image"));
                }
            }
            Some(block) => {
                if f.key(block).is_none() {
                    self.err(
                        f.pos(),
                        format!("{label} of kind {kind} needs a {block} block"),
                    );
                }
                for key in ["image", "commands", "services"] {
                    if let Some(k) = f.key(key) {
                        self.err(
                            k.pos,
                            format!(
                                "{label} of kind {kind} takes no {key}; its {block} block says \
                                 what to do"
                            ),
                        );
                    }
                }
            }
        }
        if kind != StageKind::Deploy {
            if let Some(k) = f.key("environment") {
                self.err(
                    k.pos,
                    format!("{label} has an environment but its kind is {kind}"),
                );
            }
            if let Some(k) = f.key("approval") {
                self.err(
                    k.pos,
                    format!("{label} has an approval setting but its kind is {kind}"),
                );
            }
        }
    }

    fn when(&mut self, node: &Node, label: &str) -> Option<When> {
        let f = self.fields(node, WHEN_KEYS, &format!("in \"when\" of {label}"))?;
        let mut when = When::default();
        if let Some(v) = f.get("branch") {
            when.branch = self.patterns(v, "branch", "any branch").unwrap_or_default();
        }
        if let Some(v) = f.get("tag") {
            when.tag = self.patterns(v, "tag", "any tag").unwrap_or_default();
        }
        if let Some(v) = f.get("event") {
            let items = self.string_or_list(v).unwrap_or_default();
            if items.is_empty() && v.as_seq().is_some() {
                self.err(v.pos, "empty list; leave out \"event\" to match any event");
            }
            for (s, pos) in items {
                match EventKind::parse(&s) {
                    Some(e) if !when.event.contains(&e) => when.event.push(e),
                    Some(_) => {}
                    None => self.err(
                        pos,
                        format!("unknown event \"{s}\"; expected {}", or_list(EVENTS)),
                    ),
                }
            }
        }
        Some(when)
    }

    fn resources(&mut self, node: &Node, label: &str) -> Resources {
        let mut r = Resources::default();
        let Some(f) = self.fields(node, RESOURCE_KEYS, &format!("in the resources of {label}"))
        else {
            return r;
        };
        if let Some(v) = f.get("cpus") {
            match v.as_plain().and_then(|s| s.parse::<f64>().ok()) {
                Some(c) if c.is_finite() && c > 0.0 && c <= MAX_CPUS => r.cpus = Some(c),
                Some(_) => self.err(
                    v.pos,
                    format!(
                        "cpus must be more than 0 and at most 256, found {}",
                        v.as_str().unwrap_or_default()
                    ),
                ),
                None => self.expected(v, "a number of CPUs"),
            }
        }
        if let Some(v) = f.get("memory") {
            match self.string(v).map(|s| (parse_size(&s), s)) {
                Some((Ok(bytes), s)) if bytes < MIN_MEMORY => self.err(
                    v.pos,
                    format!("memory \"{s}\" is too small; Docker's minimum is 6m"),
                ),
                Some((Ok(bytes), _)) => r.memory = Some(bytes),
                Some((Err(e), _)) => self.err(v.pos, e),
                None => {}
            }
        }
        if let Some(v) = f.get("pids") {
            match self.integer(v) {
                Some(n) if n >= MIN_PIDS => r.pids = u64::try_from(n).ok(),
                Some(n) => self.err(
                    v.pos,
                    format!("pids must be at least {MIN_PIDS}, found {n}"),
                ),
                None => {}
            }
        }
        r
    }

    fn services(
        &mut self,
        node: &Node,
        label: &str,
        known: &[String],
        names: &mut Vec<(String, Pos)>,
    ) -> Vec<Service> {
        let Some(items) = node.as_seq() else {
            self.expected(node, "a list of services");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let slabel = match item.get("name").and_then(Node::as_str) {
                Some(n) => format!("service \"{n}\" of {label}"),
                None => format!("service {} of {label}", i + 1),
            };
            let Some(f) = self.fields(item, SERVICE_KEYS, &format!("in {slabel}")) else {
                continue;
            };
            let name = match f.get("name") {
                None => {
                    self.err(f.pos(), format!("{slabel} has no name"));
                    None
                }
                Some(v) => self.string(v).and_then(|n| {
                    if !DNS_LABEL.is_match(&n) {
                        self.err(
                            v.pos,
                            format!(
                                "invalid service name \"{n}\"; use up to 63 lower-case letters, \
                                 digits and \"-\" (a DNS label)"
                            ),
                        );
                        return None;
                    }
                    if let Some(first) = seen.get(&n) {
                        self.err(
                            v.pos,
                            format!(
                                "duplicate service name \"{n}\" in {label} (first at line {})",
                                first.line
                            ),
                        );
                        return None;
                    }
                    seen.insert(n.clone(), v.pos);
                    names.push((n.clone(), v.pos));
                    Some(n)
                }),
            };
            let image = match f.get("image") {
                None => {
                    self.err(f.pos(), format!("{slabel} needs an image"));
                    None
                }
                Some(v) => self.image(v, known),
            };
            let env = f
                .get("env")
                .map(|v| self.variables(v, "env", true))
                .unwrap_or_default();
            let command = match f.get("command") {
                None => Vec::new(),
                Some(v) if v.as_str().is_some() => {
                    match split_words(v.as_str().unwrap_or_default()) {
                        Ok(words) if words.is_empty() => {
                            self.err(v.pos, "command must not be empty");
                            Vec::new()
                        }
                        Ok(words) => words,
                        Err(e) => {
                            self.err(v.pos, e);
                            Vec::new()
                        }
                    }
                }
                Some(v) => self
                    .string_or_list(v)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect(),
            };
            if let (Some(name), Some(image)) = (name, image) {
                out.push(Service {
                    name,
                    image,
                    env,
                    command,
                });
            }
        }
        out
    }

    fn granted_secrets(
        &mut self,
        node: &Node,
        label: &str,
        kind: Option<StageKind>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut granted = HashSet::new();
        let declared = quoted_list(
            &self
                .secrets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
        );
        for (name, pos) in self.string_list(node).unwrap_or_default() {
            match self.secret_index.get(&name).map(|&i| &self.secrets[i]) {
                None => {
                    let msg = if self.secrets.is_empty() {
                        format!(
                            "{label} is granted secret \"{name}\", which is not declared; this \
                             file declares no secrets"
                        )
                    } else {
                        format!(
                            "{label} is granted secret \"{name}\", which is not declared; \
                             declared: {declared}"
                        )
                    };
                    self.err(pos, msg);
                }
                Some((_, deploy_only)) => {
                    if *deploy_only && kind.is_some_and(|k| k != StageKind::Deploy) {
                        let kind = kind.map(StageKind::as_str).unwrap_or_default();
                        self.err(
                            pos,
                            format!(
                                "secret \"{name}\" is deploy_only and {label} is of kind {kind}"
                            ),
                        );
                    }
                    if granted.insert(name.clone()) {
                        out.push(name);
                    } else {
                        self.err(pos, format!("secret \"{name}\" is granted twice"));
                    }
                }
            }
        }
        out
    }

    fn build(&mut self, node: &Node, label: &str, known: &[String]) -> Option<BuildSpec> {
        let f = self.fields(node, BUILD_KEYS, &format!("in the build block of {label}"))?;
        let mut spec = BuildSpec {
            context: ".".to_string(),
            dockerfile: "Dockerfile".to_string(),
            tag: None,
            args: Vec::new(),
            target: None,
            push: false,
            labels: Vec::new(),
        };
        let mut ok = true;
        if let Some(v) = f.get("context") {
            match self.workspace_path(v, "context") {
                Some(c) => spec.context = c,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("dockerfile") {
            match self.workspace_path(v, "dockerfile") {
                Some(d) => spec.dockerfile = d,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("tag") {
            match self.text(v, "tag") {
                Some(tag) => {
                    self.references(v, &tag, known);
                    self.reference_grammar(v, &tag, "build tag");
                    spec.tag = Some(tag);
                }
                None => ok = false,
            }
        }
        if let Some(v) = f.get("args") {
            spec.args = self.variables(v, "build arg", false);
            if let Some(map) = v.as_map() {
                for (_, value) in map {
                    if let Some(s) = value.as_str() {
                        self.references(value, s, known);
                    }
                }
            }
        }
        if let Some(v) = f.get("target") {
            spec.target = self.text(v, "target");
            ok &= spec.target.is_some();
        }
        if let Some(v) = f.get("push") {
            match self.boolean(v) {
                Some(b) => spec.push = b,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("labels") {
            let Some(map) = v.as_map() else {
                self.expected(v, "a mapping of label names to values");
                return None;
            };
            for (k, val) in map {
                match (k.as_str(), val.as_str()) {
                    (Some(k), Some(val)) if !k.is_empty() => {
                        spec.labels.push((k.to_string(), val.to_string()));
                    }
                    (Some(_), Some(_)) => self.err(k.pos, "label name must not be empty"),
                    (None, _) => self.expected(k, "a label name"),
                    (_, None) => self.expected(val, "a string"),
                }
            }
        }
        ok.then_some(spec)
    }

    fn scan(&mut self, node: &Node, label: &str, known: &[String]) -> Option<ScanSpec> {
        let f = self.fields(node, SCAN_KEYS, &format!("in the scan block of {label}"))?;
        let image = f.get("image").and_then(|v| self.image(v, known));
        let fail_on = match f.get("fail_on") {
            None => Severity::High,
            Some(v) => self
                .one_of(v, "severity", SEVERITIES)
                .and_then(Severity::parse)
                .unwrap_or(Severity::High),
        };
        let manifests = f
            .get("manifests")
            .and_then(|v| self.workspace_path(v, "manifests"));
        let dependencies = f
            .get("dependencies")
            .and_then(|v| self.boolean(v))
            .unwrap_or(false);
        let only_fixed = f
            .get("only_fixed")
            .and_then(|v| self.boolean(v))
            .unwrap_or(false);
        let mut ignore = Vec::new();
        if let Some(v) = f.get("ignore") {
            match v.as_seq() {
                None => self.expected(v, "a list of ignore rules"),
                Some(items) => {
                    for item in items {
                        if let Some(rule) = self.ignore_rule(item, label) {
                            ignore.push(rule);
                        }
                    }
                }
            }
        }
        if f.key("image").is_none() && f.key("manifests").is_none() && !dependencies {
            self.err(
                f.pos(),
                format!(
                    "the scan block of {label} has nothing to scan; give image, manifests or \
                     dependencies: true"
                ),
            );
        }
        Some(ScanSpec {
            image,
            fail_on,
            manifests,
            dependencies,
            only_fixed,
            ignore,
        })
    }

    fn ignore_rule(&mut self, node: &Node, label: &str) -> Option<IgnoreRule> {
        let f = self.fields(node, IGNORE_KEYS, &format!("in an ignore rule of {label}"))?;
        let id = match f.get("id") {
            None => {
                self.err(f.pos(), format!("an ignore rule of {label} has no id"));
                None
            }
            Some(v) => self.text(v, "id"),
        };
        let rule = match &id {
            Some(id) => format!("ignore rule \"{id}\""),
            None => "the ignore rule".to_string(),
        };
        let reason = match f.get("reason") {
            Some(v) if v.as_str().is_some_and(|s| s.trim().is_empty()) || v.is_null() => {
                self.err(v.pos, format!("{rule} needs a reason"));
                None
            }
            Some(v) => self.string(v),
            None => {
                self.err(f.pos(), format!("{rule} needs a reason"));
                None
            }
        };
        let expires = match f.get("expires") {
            None => {
                self.err(
                    f.pos(),
                    format!("{rule} needs an expiry date (expires: YYYY-MM-DD)"),
                );
                None
            }
            Some(v) => {
                let s = self.string(v)?;
                let d = parse_date(&s);
                if d.is_none() {
                    self.err(
                        v.pos,
                        format!("invalid date \"{s}\"; expected a real date as YYYY-MM-DD"),
                    );
                }
                d
            }
        };
        Some(IgnoreRule {
            id: id?,
            reason: reason?,
            expires: expires?,
            pos: node.pos,
        })
    }

    fn deploy(&mut self, node: &Node, label: &str, known: &[String]) -> Option<DeploySpec> {
        let f = self.fields(
            node,
            DEPLOY_KEYS,
            &format!("in the deploy block of {label}"),
        )?;
        let block = format!("the deploy block of {label}");
        let target = match f.get("target") {
            None => {
                self.err(
                    f.pos(),
                    format!("{block} needs a target (docker or kubernetes)"),
                );
                None
            }
            Some(v) => self
                .one_of(v, "deploy target", &["docker", "kubernetes"])
                .map(|t| {
                    if t == "docker" {
                        DeployTarget::Docker
                    } else {
                        DeployTarget::Kubernetes
                    }
                }),
        };
        let strategy = match f.get("strategy") {
            None => Some(Strategy::BlueGreen),
            Some(v) => self
                .one_of(v, "strategy", &["blue-green", "recreate"])
                .map(|s| {
                    if s == "blue-green" {
                        Strategy::BlueGreen
                    } else {
                        Strategy::Recreate
                    }
                }),
        };
        let image = match f.get("image") {
            None => {
                self.err(f.pos(), format!("{block} needs an image"));
                None
            }
            Some(v) => self.image(v, known),
        };
        let port = match f.get("port") {
            None => {
                if target == Some(DeployTarget::Docker) {
                    self.err(f.pos(), format!("{block} needs a port for target docker"));
                }
                Some(0)
            }
            Some(v) => match self.integer(v) {
                Some(p) if (1..=65535).contains(&p) => u16::try_from(p).ok(),
                Some(p) => {
                    self.err(
                        v.pos,
                        format!("port must be between 1 and 65535, found {p}"),
                    );
                    None
                }
                None => None,
            },
        };
        let health = match f.get("health") {
            None => Some(HealthCheck {
                path: "/".to_string(),
                timeout: Duration::from_secs(60),
                interval: Duration::from_secs(2),
            }),
            Some(v) => self.health(v, label),
        };
        let rollback = match f.get("rollback") {
            None => Some(Rollback::Auto),
            Some(v) => self.one_of(v, "rollback", &["auto", "manual"]).map(|r| {
                if r == "auto" {
                    Rollback::Auto
                } else {
                    Rollback::Manual
                }
            }),
        };
        let namespace = f.get("namespace").and_then(|v| {
            let ns = self.string(v)?;
            if target == Some(DeployTarget::Docker) {
                let k = f.key("namespace").map_or(v.pos, |k| k.pos);
                self.err(
                    k,
                    format!("{block} has a namespace but its target is docker"),
                );
                return None;
            }
            if !DNS_LABEL.is_match(&ns) {
                self.err(
                    v.pos,
                    format!(
                        "invalid namespace \"{ns}\"; use up to 63 lower-case letters, digits \
                         and \"-\""
                    ),
                );
                return None;
            }
            Some(ns)
        });
        let app = f.get("app").and_then(|v| {
            let app = self.string(v)?;
            if !DNS_LABEL.is_match(&app) {
                self.err(
                    v.pos,
                    format!(
                        "invalid app name \"{app}\"; use up to 63 lower-case letters, digits \
                         and \"-\""
                    ),
                );
                return None;
            }
            Some(app)
        });
        Some(DeploySpec {
            target: target?,
            strategy: strategy?,
            image: image?,
            port: port?,
            health: health?,
            rollback: rollback?,
            namespace,
            app,
        })
    }

    fn health(&mut self, node: &Node, label: &str) -> Option<HealthCheck> {
        let f = self.fields(
            node,
            HEALTH_KEYS,
            &format!("in the health check of {label}"),
        )?;
        let mut h = HealthCheck {
            path: "/".to_string(),
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(2),
        };
        let mut ok = true;
        let mut timeout_ok = true;
        if let Some(v) = f.get("path") {
            match self.string(v) {
                Some(p) if p.starts_with('/') => h.path = p,
                Some(p) => {
                    ok = false;
                    self.err(
                        v.pos,
                        format!("health check path \"{p}\" must start with \"/\""),
                    );
                }
                None => ok = false,
            }
        }
        if let Some(v) = f.get("timeout") {
            match self.duration(v) {
                Some(d) => h.timeout = d,
                None => timeout_ok = false,
            }
        }
        if let Some(v) = f.get("interval") {
            match self.duration(v) {
                Some(d) if timeout_ok && d >= h.timeout => {
                    ok = false;
                    self.err(
                        v.pos,
                        "health check interval must be shorter than its timeout",
                    );
                }
                Some(d) => h.interval = d,
                None => ok = false,
            }
        }
        (ok && timeout_ok).then_some(h)
    }

    /// Duplicate names, `needs` that do not resolve, dependency cycles (explicit and implicit
    /// edges together) and service names that shadow stages.
    fn cross_stage(&mut self, infos: &[StageInfo]) {
        let mut first: HashMap<&str, (usize, Pos)> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            if let Some((name, pos)) = &info.name {
                match first.get(name.as_str()) {
                    Some((_, at)) => self.err(
                        *pos,
                        format!(
                            "duplicate stage name \"{name}\" (first defined at line {})",
                            at.line
                        ),
                    ),
                    None => {
                        first.insert(name, (i, *pos));
                    }
                }
            }
        }
        let label = |info: &StageInfo, i: usize| match &info.name {
            Some((n, _)) => format!("stage \"{n}\""),
            None => format!("stage {}", i + 1),
        };

        // deps[i]: the stages i waits for; `implicit[i]` when that is the previous stage only
        // because `needs` is absent.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); infos.len()];
        let mut implicit = vec![false; infos.len()];
        // Candidates for hints, in file order so that ties resolve the same way every time.
        let defined: Vec<&str> = infos
            .iter()
            .filter_map(|info| info.name.as_ref().map(|(n, _)| n.as_str()))
            .collect();
        for (i, info) in infos.iter().enumerate() {
            let Some((_, needs)) = &info.needs else {
                if i > 0 {
                    deps[i].push(i - 1);
                    implicit[i] = true;
                }
                continue;
            };
            let own = info.name.as_ref().map(|(n, _)| n.as_str());
            let mut listed = HashSet::new();
            for (n, pos) in needs {
                if Some(n.as_str()) == own {
                    self.err(*pos, format!("{} needs itself", label(info, i)));
                    continue;
                }
                match first.get(n.as_str()) {
                    Some((j, _)) if !listed.insert(*j) => self.err(
                        *pos,
                        format!("{} lists \"{n}\" twice in needs", label(info, i)),
                    ),
                    Some((j, _)) => deps[i].push(*j),
                    None => {
                        let h = self.hint(n, &defined, own);
                        self.err(
                            *pos,
                            format!("{} needs \"{n}\", which is not defined{h}", label(info, i)),
                        );
                    }
                }
            }
        }

        let name_of = |i: usize| match &infos[i].name {
            Some((n, _)) => n.clone(),
            None => format!("stage {}", i + 1),
        };
        let mut cycles: Vec<Vec<usize>> = strongly_connected(&deps)
            .into_iter()
            .filter(|c| c.len() > 1)
            .filter_map(|c| cycle_through(&deps, &c))
            .collect();
        cycles.sort();
        for cycle in cycles {
            let start = cycle[0];
            // A cycle through thousands of stages is shown by its ends.
            let path: Vec<String> = if cycle.len() > MAX_LISTED + 2 {
                let head = cycle[..MAX_LISTED].iter().map(|&i| name_of(i));
                let tail = cycle[cycle.len() - 2..].iter().map(|&i| name_of(i));
                head.chain([format!("... ({} stages)", cycle.len() - 1)])
                    .chain(tail)
                    .collect()
            } else {
                cycle.iter().map(|&i| name_of(i)).collect()
            };
            let mut msg = format!("dependency cycle: {}", path.join(" -> "));
            let implicit_edges: Vec<&[usize]> =
                cycle.windows(2).filter(|w| implicit[w[0]]).collect();
            let mut notes: Vec<String> = implicit_edges
                .iter()
                .take(3)
                .map(|w| {
                    format!(
                        "\"{}\" has no needs, so it waits for the stage before it, \"{}\"",
                        name_of(w[0]),
                        name_of(w[1])
                    )
                })
                .collect();
            if implicit_edges.len() > 3 {
                notes.push(format!(
                    "and {} more implicit dependencies",
                    implicit_edges.len() - 3
                ));
            }
            if !notes.is_empty() {
                msg.push_str(&format!(" ({})", notes.join("; ")));
            }
            let pos = infos[start]
                .needs
                .as_ref()
                .map_or(infos[start].pos, |(p, _)| *p);
            self.err(pos, msg);
        }

        for (i, info) in infos.iter().enumerate() {
            for (svc, pos) in &info.services {
                if first.contains_key(svc.as_str()) {
                    self.err(
                        *pos,
                        format!(
                            "service \"{svc}\" of {} has the same name as a stage",
                            label(info, i)
                        ),
                    );
                }
            }
        }
    }
}

/// Tarjan's algorithm without recursion: a file can hold thousands of stages.
fn strongly_connected(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, child)) = work.last() {
            if child < deps[v].len() {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                let w = deps[v][child];
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
    }
    out
}

/// A shortest cycle inside a strongly connected component, starting and ending at its
/// first stage in file order.
fn cycle_through(deps: &[Vec<usize>], component: &[usize]) -> Option<Vec<usize>> {
    let start = *component.iter().min()?;
    let mut inside = vec![false; deps.len()];
    for &i in component {
        inside[i] = true;
    }
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &w in &deps[u] {
            if w == start {
                let mut path = vec![start];
                let mut at = u;
                while at != start {
                    path.push(at);
                    at = parent[&at];
                }
                path[1..].reverse();
                path.push(start);
                return Some(path);
            }
            if inside[w] && !parent.contains_key(&w) {
                parent.insert(w, u);
                queue.push_back(w);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = STAGE_KEYS.iter().copied();
        assert_eq!(suggest("imgae", keys.clone()), Some("image"));
        assert_eq!(suggest("comands", keys.clone()), Some("commands"));
        assert_eq!(suggest("Image", keys.clone()), Some("image"));
        assert_eq!(suggest("need", keys.clone()), Some("needs"));
        assert_eq!(suggest("timeou", keys.clone()), Some("timeout"));
        assert_eq!(suggest("resource_limits", keys.clone()), Some("resources"));
        assert_eq!(suggest("zzz", keys.clone()), None);
        assert_eq!(suggest("x", TOP_KEYS.iter().copied()), None);
        assert_eq!(suggest("stage", TOP_KEYS.iter().copied()), Some("stages"));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2027-03-01"),
            Some(Date {
                year: 2027,
                month: 3,
                day: 1
            })
        );
        assert!(parse_date("2028-02-29").is_some());
        assert!(parse_date("2000-02-29").is_some());
        assert!(parse_date("2100-02-29").is_none());
        assert!(parse_date("2027-02-29").is_none());
        assert!(parse_date("2027-13-01").is_none());
        assert!(parse_date("2027-04-31").is_none());
        assert!(parse_date("2027-4-1").is_none());
        assert!(parse_date("27-04-01xx").is_none());
        assert!(parse_date("2027-0a-01").is_none());
        assert!(parse_date("2027-+1-01").is_none());
        assert!(parse_date("0000-01-01").is_none());
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words("postgres -c 'fsync=off' \"a b\" c\\ d").unwrap(),
            ["postgres", "-c", "fsync=off", "a b", "c d"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("a 'b").is_err());
    }

    #[test]
    fn workspace_paths() {
        assert!(inside_workspace("."));
        assert!(inside_workspace("deploy/k8s"));
        assert!(inside_workspace("./a/b..c"));
        assert!(!inside_workspace("/etc"));
        assert!(!inside_workspace("../x"));
        assert!(!inside_workspace("a/../../x"));
        assert!(!inside_workspace("C:\\x"));
    }

    #[test]
    fn invalid_utf8_is_located() {
        let e = parse(b"version: 1\nenv:\n  A: \"caf\xe9\"\n", &Policy::default()).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].pos, Pos::new(3, 10));
    }

    #[test]
    fn too_large() {
        let big = vec![b'#'; MAX_FILE_SIZE + 1];
        let e = parse(&big, &Policy::default()).unwrap_err();
        assert_eq!(e.to_string(), "1:1: file is larger than 1 MiB\n");
    }

    #[test]
    fn sccs_and_cycles() {
        // 0 <- 1 <- 2 <- 0 is a cycle; 3 waits on it but is not in it.
        let deps = vec![vec![2], vec![0], vec![1], vec![2]];
        let mut sccs: Vec<Vec<usize>> = strongly_connected(&deps)
            .into_iter()
            .map(|mut c| {
                c.sort();
                c
            })
            .collect();
        sccs.sort();
        assert_eq!(sccs, vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(cycle_through(&deps, &[0, 1, 2]), Some(vec![0, 2, 1, 0]));
        // A long chain does not recurse.
        let chain: Vec<Vec<usize>> = (0..100_000)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        assert_eq!(strongly_connected(&chain).len(), 100_000);
    }
}
