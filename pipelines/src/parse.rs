//! Schema and semantics of `.moat.yml` version 1: walks the located YAML tree into the typed
//! model, collecting every problem as a located diagnostic instead of stopping at the first.
//!
//! Conventions for messages: lower-case start, no trailing period, user values in double
//! quotes. A wrong or invalid value is reported at the value, an unknown key at the key, and a
//! missing key at the mapping that should have had it.
//!
//! This module owns the entry point, the `Checker` with its typed readers (strings, lists,
//! durations, patterns, variables, references) and the top level of the file; one submodule
//! per section reads the rest:
//! - `triggers`: `on:`.
//! - `secrets`: `secrets:` and the stages' grants.
//! - `stage`: one stage (`when:`, resources, services).
//! - `build`, `scan`, `deploy`: the kind blocks.
//! - `graph`: `needs:` and the checks across stages.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::diag::{Diagnostics, Pos};
use crate::lint;
use crate::model::{
    Approval, BuildSpec, Date, DeploySpec, DeployTarget, EventKind, HealthCheck, IgnoreRule,
    MAX_DEPLOY_WAIT, Mount, Pipeline, ProbeSpec, Resources, Rollback, ScanSpec, SecretDecl,
    SecretSource, Service, Severity, Stage, StageKind, StageSpans, Strategy, Triggers, When,
};
use crate::pattern::Pattern;
use crate::plan::BUILTIN_VARS;
use crate::units::{parse_duration, parse_size};
use crate::yaml::{self, Limits, Node, NodeKind};
use crate::{MAX_FILE_SIZE, Policy};

mod build;
mod deploy;
mod graph;
mod scan;
mod secrets;
mod stage;
mod triggers;

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
    "observe",
    "drain",
    "probe",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "status",
    "interval",
    "timeout",
    "successes",
    "deadline",
];
const PROBE_KEYS: &[&str] = &["paths", "fail_on"];

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
}

#[cfg(test)]
mod tests {
    use super::graph::*;
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
