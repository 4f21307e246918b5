//! The matching engine: compiles the rules once, then scans one file's bytes in one pass.
//!
//! The pass is an Aho-Corasick search (ASCII case-insensitive) for every rule keyword at once.
//! Only rules whose keywords occur are tried, and only in windows around the hits (the hit's
//! line, or a few kilobytes after it for multi-line formats), so the cost of the regexes
//! follows the number of hits rather than the size of the tree. Candidates then go through the
//! rule's filters (entropy, allow regexes, placeholders), overlapping candidates are resolved in
//! favour of the more specific rule, and each survivor becomes a [`Finding`] with a fingerprint
//! and a masked excerpt. The raw secret is dropped here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use memchr::{memchr, memchr_iter, memmem, memrchr};
use regex::RegexSet;
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::allow::has_inline_marker;
use super::rules::{RuleSpec, Span, builtin_rules};
use super::{Finding, ScanError};

/// How far a window reaches from a hit on a very long line (minified code, data).
const LINE_CAP: usize = 2048;
/// The longest excerpt, in characters.
const EXCERPT_MAX: usize = 160;
/// How much of a line around a finding the excerpt is made from, in bytes.
const EXCERPT_REACH: usize = 1024;
/// Masks starting this far before an excerpt may still cover it (the longest multi-line span).
const MASK_LOOKBACK: usize = 512 * 1024;
/// Candidates gathered per file: past this a file is one big leak and more adds nothing.
const MAX_CANDIDATES_PER_FILE: usize = 10_000;
/// Findings reported per file.
pub const MAX_FINDINGS_PER_FILE: usize = 1_000;

/// Secrets containing this are documentation samples (AWS's `AKIAIOSFODNN7EXAMPLE` and the
/// like), whatever the rule.
const GLOBAL_ALLOW: &str = r"(?i)example";

/// The compiled rule set. Build it once ([`Scanner::builtin`]) and share it between threads.
pub struct Scanner {
    rules: Vec<Compiled>,
    ac: AhoCorasick,
    /// For each Aho-Corasick pattern, the rules it triggers or satisfies.
    targets: Vec<Vec<Target>>,
    /// Rules without keywords: they run over whole files whose path they accept.
    path_only: Vec<usize>,
    global_allow: Regex,
}

struct Compiled {
    spec: &'static RuleSpec,
    regex: Regex,
    paths: Option<RegexSet>,
    allow: Vec<Regex>,
    secret: usize,
    /// A leading part of the secret that is not sensitive (a PEM armour line).
    head: Option<usize>,
    key: Option<usize>,
    quote: Option<usize>,
    user: Option<usize>,
    /// All bits of `requires`, one per required literal.
    requires_mask: u32,
}

#[derive(Clone, Copy)]
struct Target {
    rule: usize,
    role: Role,
    /// For case-sensitive keywords, the exact bytes the hit must have.
    exact: Option<&'static [u8]>,
}

#[derive(Clone, Copy)]
enum Role {
    Trigger,
    Require(u32),
}

/// A finding as the engine produces it, before allow files and diffs are applied.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub finding: Finding,
    /// The line carries `moat:allow` (or a compatible marker).
    pub inline_allowed: bool,
}

#[derive(Clone, Copy)]
struct Candidate {
    rule: usize,
    start: usize,
    end: usize,
    /// End of the public head of the secret (the `head` group), shown in excerpts.
    head_end: usize,
}

/// Per-thread buffers, reused from file to file.
pub(crate) struct Scratch {
    hits: Vec<Vec<usize>>,
    required: Vec<u32>,
    touched: Vec<usize>,
    is_touched: Vec<bool>,
    /// Per rule: 0 not yet known for this file, 1 path accepted, 2 refused.
    path_state: Vec<u8>,
    locs: Vec<CaptureLocations>,
    windows: Vec<(usize, usize)>,
    candidates: Vec<Candidate>,
}

impl Scratch {
    pub(crate) fn new(scanner: &Scanner) -> Self {
        let n = scanner.rules.len();
        Scratch {
            hits: vec![Vec::new(); n],
            required: vec![0; n],
            touched: Vec::new(),
            is_touched: vec![false; n],
            path_state: vec![0; n],
            locs: scanner
                .rules
                .iter()
                .map(|r| r.regex.capture_locations())
                .collect(),
            windows: Vec::new(),
            candidates: Vec::new(),
        }
    }

    fn reset(&mut self) {
        for &r in &self.touched {
            self.hits[r].clear();
            self.required[r] = 0;
            self.is_touched[r] = false;
        }
        self.touched.clear();
        self.path_state.iter_mut().for_each(|s| *s = 0);
        self.candidates.clear();
    }

    fn touch(&mut self, rule: usize) {
        if !self.is_touched[rule] {
            self.is_touched[rule] = true;
            self.touched.push(rule);
        }
    }
}

static BUILTIN: OnceLock<Result<Scanner, (&'static str, String)>> = OnceLock::new();

impl Scanner {
    /// The built-in rules, compiled on first use.
    pub fn builtin() -> Result<&'static Scanner, ScanError> {
        match BUILTIN.get_or_init(|| Scanner::compile(builtin_rules())) {
            Ok(scanner) => Ok(scanner),
            Err((id, message)) => Err(ScanError::Rule {
                id,
                message: message.clone(),
            }),
        }
    }

    /// Compiles a rule table (the built-in one, or a subset of it for tests).
    pub fn new(rules: &'static [RuleSpec]) -> Result<Scanner, ScanError> {
        Scanner::compile(rules).map_err(|(id, message)| ScanError::Rule { id, message })
    }

    fn compile(specs: &'static [RuleSpec]) -> Result<Scanner, (&'static str, String)> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut patterns: Vec<String> = Vec::new();
        let mut targets: Vec<Vec<Target>> = Vec::new();
        let mut path_only = Vec::new();
        let mut add_pattern = |literal: &'static str, target: Target| {
            let lower = literal.to_ascii_lowercase();
            let index = match patterns.iter().position(|p| *p == lower) {
                Some(i) => i,
                None => {
                    patterns.push(lower);
                    targets.push(Vec::new());
                    patterns.len() - 1
                }
            };
            targets[index].push(target);
        };
        for (index, spec) in specs.iter().enumerate() {
            let fail = |message: String| (spec.id, message);
            let regex = RegexBuilder::new(&format!("(?-u){}", spec.regex))
                .size_limit(64 * 1024 * 1024)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let group = |name: &str| regex.capture_names().position(|n| n == Some(name));
            let secret = group("secret").ok_or_else(|| fail("no `secret` group".into()))?;
            let (key, quote, user, head) = (group("key"), group("q"), group("user"), group("head"));
            let paths = if spec.paths.is_empty() {
                None
            } else {
                Some(RegexSet::new(spec.paths).map_err(|e| fail(e.to_string()))?)
            };
            let allow = spec
                .allow
                .iter()
                .map(|a| Regex::new(&format!("(?-u){a}")).map_err(|e| fail(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            if spec.requires.len() > 32 {
                return Err(fail("more than 32 required literals".into()));
            }
            if spec.keywords.is_empty() {
                if paths.is_none() {
                    return Err(fail("a rule needs keywords or paths".into()));
                }
                path_only.push(index);
            }
            for &keyword in spec.keywords {
                let exact = spec.case_sensitive_keywords.then_some(keyword.as_bytes());
                add_pattern(
                    keyword,
                    Target {
                        rule: index,
                        role: Role::Trigger,
                        exact,
                    },
                );
            }
            for (bit, &literal) in spec.requires.iter().enumerate() {
                add_pattern(
                    literal,
                    Target {
                        rule: index,
                        role: Role::Require(1 << bit),
                        exact: None,
                    },
                );
            }
            let requires_mask = if spec.requires.is_empty() {
                0
            } else {
                u32::MAX >> (32 - spec.requires.len())
            };
            rules.push(Compiled {
                spec,
                regex,
                paths,
                allow,
                secret,
                key,
                quote,
                head,
                user,
                requires_mask,
            });
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| ("(keywords)", e.to_string()))?;
        let global_allow = Regex::new(&format!("(?-u){GLOBAL_ALLOW}"))
            .map_err(|e| ("(global allow)", e.to_string()))?;
        Ok(Scanner {
            rules,
            ac,
            targets,
            path_only,
            global_allow,
        })
    }

    /// The rules, in table order.
    pub fn rules(&self) -> impl Iterator<Item = &'static RuleSpec> + '_ {
        self.rules.iter().map(|r| r.spec)
    }

    /// Scans one file's content. `path` is the file's `/`-separated path relative to the
    /// scanned directory (it is part of the fingerprint and decides path-filtered rules).
    /// Findings on lines with an inline allow comment are left out.
    pub fn scan_bytes(&self, path: &str, bytes: &[u8]) -> Vec<Finding> {
        let mut scratch = Scratch::new(self);
        self.scan_file(path, bytes, &mut scratch)
            .into_iter()
            .filter(|s| !s.inline_allowed)
            .map(|s| s.finding)
            .collect()
    }

    pub(crate) fn scan_file(&self, path: &str, hay: &[u8], s: &mut Scratch) -> Vec<Scanned> {
        s.reset();
        for m in self.ac.find_overlapping_iter(hay) {
            for target in &self.targets[m.pattern().as_usize()] {
                if let Some(exact) = target.exact
                    && &hay[m.start()..m.end()] != exact
                {
                    continue;
                }
                if !self.path_allows(target.rule, path, s) {
                    continue;
                }
                s.touch(target.rule);
                match target.role {
                    Role::Trigger => s.hits[target.rule].push(m.start()),
                    Role::Require(bit) => s.required[target.rule] |= bit,
                }
            }
        }
        let mut candidates = std::mem::take(&mut s.candidates);
        for &rule in &self.path_only {
            if self.path_allows(rule, path, s) {
                s.windows.clear();
                s.windows.push((0, hay.len()));
                self.run_rule(rule, path, hay, s, &mut candidates);
            }
        }
        let touched = std::mem::take(&mut s.touched);
        for &rule in &touched {
            let compiled = &self.rules[rule];
            if s.hits[rule].is_empty() || s.required[rule] != compiled.requires_mask {
                continue;
            }
            let mut hits = std::mem::take(&mut s.hits[rule]);
            hits.sort_unstable();
            windows(hay, &hits, compiled.spec.span, &mut s.windows);
            s.hits[rule] = hits;
            self.run_rule(rule, path, hay, s, &mut candidates);
        }
        s.touched = touched;
        let scanned = self.finish(path, hay, &mut candidates);
        candidates.clear();
        s.candidates = candidates;
        scanned
    }

    fn path_allows(&self, rule: usize, path: &str, s: &mut Scratch) -> bool {
        let Some(paths) = &self.rules[rule].paths else {
            return true;
        };
        if s.path_state[rule] == 0 {
            s.path_state[rule] = if paths.is_match(path) { 1 } else { 2 };
        }
        s.path_state[rule] == 1
    }

    fn run_rule(
        &self,
        rule: usize,
        path: &str,
        hay: &[u8],
        s: &mut Scratch,
        out: &mut Vec<Candidate>,
    ) {
        let compiled = &self.rules[rule];
        let locs = &mut s.locs[rule];
        for &(start, end) in &s.windows {
            if out.len() >= MAX_CANDIDATES_PER_FILE {
                return;
            }
            // The haystack ends at the window, but starts at the file's beginning: `\b` and
            // `^` at the window's start see the real preceding byte.
            let window = &hay[..end];
            let mut at = start;
            while at <= end {
                let Some(m) = compiled.regex.captures_read_at(locs, window, at) else {
                    break;
                };
                if let Some((ss, se)) = locs.get(compiled.secret)
                    && se > ss
                    && self.accept(compiled, path, hay, locs, ss, se)
                {
                    let head_end = compiled
                        .head
                        .and_then(|g| locs.get(g))
                        .filter(|&(hs, he)| hs == ss && he <= se)
                        .map_or(ss, |(_, he)| he);
                    out.push(Candidate {
                        rule,
                        start: ss,
                        end: se,
                        head_end,
                    });
                }
                at = if m.end() > m.start() {
                    m.end()
                } else {
                    m.end() + 1
                };
            }
        }
    }

    fn accept(
        &self,
        rule: &Compiled,
        path: &str,
        hay: &[u8],
        locs: &CaptureLocations,
        start: usize,
        end: usize,
    ) -> bool {
        let secret = &hay[start..end];
        let spec = rule.spec;
        if spec.min_entropy > 0.0 && entropy(secret) < spec.min_entropy {
            return false;
        }
        if self.global_allow.is_match(secret) || rule.allow.iter().any(|a| a.is_match(secret)) {
            return false;
        }
        if !spec.generic {
            return true;
        }
        if is_placeholder(secret) || is_identifier_words(secret) {
            return false;
        }
        let group = |g: Option<usize>| g.and_then(|g| locs.get(g));
        if let Some((ks, ke)) = group(rule.key)
            && name_is_not_secret(&hay[ks..ke])
        {
            return false;
        }
        if rule.quote.is_some() {
            // A literal in code or configuration: plain lowercase words are names and modes
            // (`token_type: "bearer"`). Unquoted, it is an expression in a program's source
            // (`token: TokenKind2`), and in configuration only when it reads as an identifier.
            let quoted = group(rule.quote).is_some_and(|(qs, qe)| qe > qs);
            if is_lowercase_words(secret)
                || (!quoted && (is_program_source(path) || looks_like_code(secret)))
            {
                return false;
            }
        }
        if let Some((us, ue)) = group(rule.user) {
            // `postgres://app:app@db` and the like: development defaults.
            if hay[us..ue].eq_ignore_ascii_case(secret) {
                return false;
            }
        }
        true
    }

    /// Resolves overlaps, then turns candidates into findings. Every step is linear or
    /// `n log n` in the candidates (a megabyte-long line full of tokens must not stall a gate).
    fn finish(&self, path: &str, hay: &[u8], candidates: &mut [Candidate]) -> Vec<Scanned> {
        if candidates.is_empty() {
            return Vec::new();
        }
        // Specific rules first, then table order: the first claim on a byte range wins.
        candidates.sort_by_key(|c| (self.rules[c.rule].spec.generic, c.rule, c.start));
        // Kept ranges never overlap, so only the last one starting before a candidate's end
        // can overlap it.
        let mut claimed: BTreeMap<usize, usize> = BTreeMap::new();
        let mut kept: Vec<Candidate> = Vec::new();
        for c in candidates.iter() {
            let overlaps = claimed
                .range(..c.end)
                .next_back()
                .is_some_and(|(_, &end)| end > c.start);
            if !overlaps {
                claimed.insert(c.start, c.end);
                kept.push(*c);
            }
        }
        kept.sort_by_key(|c| (c.start, c.rule));
        kept.truncate(MAX_FINDINGS_PER_FILE);
        // Every candidate range is masked in every excerpt, including overlapped ones.
        let mut masks: Vec<(usize, usize, usize)> = candidates
            .iter()
            .map(|c| (c.start, c.end, c.head_end))
            .collect();
        masks.sort_unstable();

        let mut out = Vec::with_capacity(kept.len());
        // Position bookkeeping moves forward only: line, its start and end, the column.
        let (mut line, mut counted_to, mut line_start) = (1u32, 0usize, 0usize);
        let (mut col_at, mut col) = (0usize, 0u32);
        let mut line_end: Option<usize> = None;
        let mut inline: Option<bool> = None;
        for c in kept {
            let seg = &hay[counted_to..c.start];
            let newlines = memchr_iter(b'\n', seg).count();
            if newlines > 0 {
                line += newlines as u32;
                line_start = counted_to + memrchr(b'\n', seg).map_or(0, |i| i + 1);
                (col_at, col, line_end, inline) = (line_start, 0, None, None);
            }
            counted_to = c.start;
            col += chars(&hay[col_at..c.start]);
            col_at = c.start;
            let end = *line_end.get_or_insert_with(|| {
                memchr(b'\n', &hay[c.start..]).map_or(hay.len(), |i| c.start + i)
            });
            let allowed = *inline.get_or_insert_with(|| has_inline_marker(&hay[line_start..end]));
            let from = line_start.max(c.start.saturating_sub(EXCERPT_REACH));
            let to = end.min(c.end.max(c.start) + EXCERPT_REACH);
            let lo = masks.partition_point(|m| m.0 < from.saturating_sub(MASK_LOOKBACK));
            let hi = masks.partition_point(|m| m.0 < to);
            let end_line = line + memchr_iter(b'\n', &hay[c.start..c.end]).count() as u32;
            let spec = self.rules[c.rule].spec;
            out.push(Scanned {
                finding: Finding {
                    rule: spec.id,
                    description: spec.description,
                    severity: spec.severity,
                    file: path.to_string(),
                    line,
                    column: col + 1,
                    end_line,
                    fingerprint: fingerprint(spec.id, path, &hay[c.start..c.end]),
                    excerpt: excerpt(
                        hay,
                        (from, to),
                        (from > line_start, to < end),
                        c.start,
                        &masks[lo..hi],
                    ),
                },
                inline_allowed: allowed,
            });
        }
        out
    }
}

/// Characters in UTF-8 text (continuation bytes are not counted).
fn chars(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u32
}

/// Merges the windows around sorted hit positions.
fn windows(hay: &[u8], hits: &[usize], span: Span, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let len = hay.len();
    for &p in hits {
        let low = p.saturating_sub(LINE_CAP);
        let start = memrchr(b'\n', &hay[low..p]).map_or(low, |i| low + i + 1);
        let reach = match span {
            Span::Line => p,
            Span::Following(bytes) => (start + bytes).min(len),
        };
        let high = (reach + LINE_CAP).min(len);
        let end = memchr(b'\n', &hay[reach..high]).map_or(high, |i| reach + i);
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// `sha256(rule \n file \n secret)`, hex. Carriage returns are left out of the secret so a
/// multi-line key keeps its fingerprint across line-ending conversions.
fn fingerprint(rule: &str, file: &str, secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule.as_bytes());
    hasher.update(b"\n");
    hasher.update(file.as_bytes());
    hasher.update(b"\n");
    for chunk in secret.split(|&b| b == b'\r') {
        hasher.update(chunk);
    }
    hex::encode(hasher.finalize())
}

/// The first and last characters of a secret around `***`: at most an eighth of it on each
/// side (four characters at most), nothing at all for short secrets.
pub(crate) fn mask(secret: &[u8]) -> String {
    let keep = (secret.len() / 8).min(4);
    let printable = |b: &[u8]| -> String {
        b.iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { '*' })
            .collect()
    };
    if keep == 0 {
        return "***".to_string();
    }
    format!(
        "{}***{}",
        printable(&secret[..keep]),
        printable(&secret[secret.len() - keep..])
    )
}

/// The line part `[start, end)` with every masked range replaced, trimmed and cut to
/// [`EXCERPT_MAX`] characters around the finding at `at`; `…` marks a cut.
fn excerpt(
    hay: &[u8],
    (start, end): (usize, usize),
    (clipped_left, clipped_right): (bool, bool),
    at: usize,
    masks: &[(usize, usize, usize)],
) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(end - start + 8);
    let mut cursor = start;
    let mut focus = 0;
    for &(ms, me, head_end) in masks {
        if me <= start || ms >= end || me <= cursor {
            continue;
        }
        let from = ms.max(cursor);
        out.extend_from_slice(&hay[cursor..from]);
        if ms == at {
            focus = out.len();
        }
        if ms >= start && ms >= cursor && head_end > ms {
            out.extend_from_slice(&hay[ms..head_end.min(end)]);
            out.extend_from_slice(b"***");
        } else if ms >= start && ms >= cursor {
            out.extend_from_slice(mask(&hay[ms..me]).as_bytes());
        } else {
            out.extend_from_slice(b"***");
        }
        cursor = me.min(end);
    }
    if cursor < end {
        out.extend_from_slice(&hay[cursor..end]);
    }
    let out = mask_random_tokens(&out, &mut focus);
    let text = String::from_utf8_lossy(&out);
    let focus_char = String::from_utf8_lossy(&out[..focus.min(out.len())])
        .chars()
        .count();
    let chars: Vec<char> = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let total = chars.len();
    let (mut from, mut to) = (0, total);
    if total > EXCERPT_MAX {
        from = focus_char.saturating_sub(EXCERPT_MAX / 3);
        to = (from + EXCERPT_MAX).min(total);
        from = to.saturating_sub(EXCERPT_MAX);
    }
    let mut s: String = chars[from..to].iter().collect();
    s = s.trim().to_string();
    if from > 0 || clipped_left {
        s.insert(0, '…');
    }
    if to < total || clipped_right {
        s.push('…');
    }
    s
}

/// Masks every other random-looking token of an excerpt (16+ characters of letters and
/// digits with some entropy): a second credential on the line that no rule reported must not be
/// printed either. `focus` follows the edits.
fn mask_random_tokens(line: &[u8], focus: &mut usize) -> Vec<u8> {
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"+/=_-.~".contains(&b);
    let old_focus = *focus;
    let mut new_focus = None;
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let start = i;
        if !is_token(line[i]) {
            i += 1;
        } else {
            while i < line.len() && is_token(line[i]) {
                i += 1;
            }
        }
        if new_focus.is_none() && old_focus < i {
            new_focus = Some(out.len());
        }
        let piece = &line[start..i];
        let random = piece.len() >= 16
            && piece.iter().any(u8::is_ascii_digit)
            && piece.iter().any(u8::is_ascii_alphabetic)
            && entropy(piece) >= 3.0;
        if random {
            out.extend_from_slice(mask(piece).as_bytes());
        } else {
            out.extend_from_slice(piece);
        }
    }
    *focus = new_focus.unwrap_or(out.len());
    out
}

/// Values that stand for a secret rather than being one: references to variables or
/// vaults, template placeholders, documentation words, sequences, file paths.
fn is_placeholder(value: &[u8]) -> bool {
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
fn is_program_source(path: &str) -> bool {
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
fn looks_like_code(value: &[u8]) -> bool {
    !value.iter().any(u8::is_ascii_digit)
        && value
            .iter()
            .all(|&b| b.is_ascii_alphabetic() || b"_$.:->".contains(&b))
}

/// `bearer`, `client_credentials`, `read-only`: lowercase words and separators only.
fn is_lowercase_words(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b"_-.".contains(&b))
}

/// `some_setting_name`, `CLIENT_TRAFFIC_SECRET_0`: names of things, whatever rule found them.
fn is_identifier_words(value: &[u8]) -> bool {
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
fn name_is_not_secret(name: &[u8]) -> bool {
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
fn split_words(name: &[u8]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn scan(path: &str, text: &str) -> Vec<Finding> {
        Scanner::builtin()
            .unwrap()
            .scan_bytes(path, text.as_bytes())
    }

    fn rules_of(path: &str, text: &str) -> Vec<&'static str> {
        scan(path, text).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn builtin_rules_compile_and_are_many() {
        let scanner = Scanner::builtin().unwrap();
        let ids: Vec<_> = scanner.rules().map(|r| r.id).collect();
        assert!(ids.len() >= 60, "only {} rules", ids.len());
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "duplicate rule ids");
        for rule in scanner.rules() {
            assert!(!rule.description.is_empty(), "{}", rule.id);
        }
    }

    #[test]
    fn every_example_is_found_by_its_rule() {
        let scanner = Scanner::builtin().unwrap();
        for rule in scanner.rules() {
            for example in rule.examples {
                // The examples carry no marker themselves (the marker is on the source line).
                let found = scanner.scan_bytes("example.txt", example.as_bytes());
                assert!(
                    found.iter().any(|f| f.rule == rule.id),
                    "{}: example not found (got {:?})",
                    rule.id,
                    found.iter().map(|f| f.rule).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn keywords_are_literal_parts_of_the_examples() {
        // A keyword that does not occur in a match would hide the rule behind the prefilter.
        for rule in builtin_rules() {
            for example in rule.examples {
                let hay = if rule.case_sensitive_keywords {
                    example.to_string()
                } else {
                    example.to_ascii_lowercase()
                };
                assert!(
                    rule.keywords.iter().any(|k| {
                        let k = if rule.case_sensitive_keywords {
                            k.to_string()
                        } else {
                            k.to_ascii_lowercase()
                        };
                        hay.contains(&k)
                    }),
                    "{}: no keyword in example",
                    rule.id
                );
            }
        }
    }

    #[test]
    fn finding_has_location_fingerprint_and_masked_excerpt() {
        let text = "first line\n  let t = \"ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\";\n"; // moat:allow
        let found = scan("src/a.rs", text);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(
            (f.rule, f.line, f.column, f.end_line),
            ("github-pat", 2, 12, 2)
        );
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.fingerprint.len(), 64);
        assert_eq!(f.excerpt, "let t = \"ghp_***EbOA\";");
        assert!(!f.excerpt.contains("fwA94hJ9"));
    }

    #[test]
    fn every_secret_on_the_line_is_masked_in_each_excerpt() {
        let text = "a=AKIAUJZDE8GXD6NCF10E b=ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\n"; // moat:allow
        let found = scan("x.env.txt", text);
        assert_eq!(found.len(), 2);
        for f in &found {
            assert!(!f.excerpt.contains("UJZDE8GXD6NCF1"), "{}", f.excerpt);
            assert!(!f.excerpt.contains("fwA94hJ9Wnyw"), "{}", f.excerpt);
        }
    }

    #[test]
    fn fingerprint_ignores_position_but_not_file_or_rule() {
        let key = "AKIAUJZDE8GXD6NCF10E"; // moat:allow
        let a = scan("a.txt", &format!("k={key}\n"));
        let b = scan("a.txt", &format!("\n\n// moved\nk = {key}\n"));
        let c = scan("b.txt", &format!("k={key}\n"));
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        assert_ne!(a[0].fingerprint, c[0].fingerprint);
        assert_eq!(b[0].line, 4);
    }

    #[test]
    fn specific_rule_wins_over_generic_on_the_same_bytes() {
        let text = "token = \"ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\"\n"; // moat:allow
        let found = scan("a.py", text);
        assert_eq!(
            found.iter().map(|f| f.rule).collect::<Vec<_>>(),
            ["github-pat"]
        );
    }

    #[test]
    fn word_boundaries_keep_wrapped_tokens_out() {
        assert!(rules_of("a", "Sogho_ICANVASRENDERINGVIACONTEXT2D3D5D7D8D\n").is_empty());
        assert!(rules_of("a", "ask_live_superlive1\nabcdexoxb-1234567890\n").is_empty());
        assert!(
            rules_of(
                "a",
                "_call_hf_processorz1DeepseekOCRMultiModalProcessor._call_hf\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn generic_rule_filters_placeholders_and_code() {
        for line in [
            "password = \"${DB_PASSWORD}\"",
            "password: changeme123",
            "secret=\"othervalue\"",
            "password: \"123456789\"",
            "password = self.password",
            "fn new(secret: SecretKey) -> Self",
            "token: ${{ secrets.GITHUB_TOKEN }}",
            "password_hash = \"c2VjcmV0IG1lc3NhZ2Ugc28g\"",
            "secretName: my-app-credentials-2",
            "DB_PASSWORD: { sealed: \"moat:v1:AGE-ENCRYPTED-abcdef0123\" }",
            "private_key: ./keys/deploy_rsa.pem",
            "api_key = os.environ[\"API_KEY\"]",
            "token::Token2Kind",
            "token_type: \"client_credentials\"",
            "secret_backend = 'kubernetes'",
            "ClientTrafficSecret => \"CLIENT_TRAFFIC_SECRET_0\",",
            "postgres://app:app@localhost/app",
            "mongodb://user:${MONGO_PASSWORD}@db/x",
        ] {
            assert!(
                rules_of("a.py", line).is_empty(),
                "{line}: {:?}",
                rules_of("a.py", line)
            );
        }
    }

    #[test]
    fn generic_rule_finds_assigned_literals() {
        for (path, line) in [
            ("a.ini", "password = 123456789a1234"),
            ("a.php", "secret = 'notHighEnoughEntropy'"), // moat:allow
            ("a.ts", "const dbPassword = \"Sup3r-S3cret!2024\";"),
            (
                "a.yaml",
                "SECRET_KEY: vh987tyw9ehy8ghis7vwyhiwbwitefy7w3ASDG",
            ),
            ("a.sh", "export API_TOKEN=Xk9vQ2mZr7LpW4tB"),
        ] {
            assert_eq!(
                rules_of(path, line),
                ["generic-secret-assignment"],
                "{line}"
            );
        }
        // In a program's source, an unquoted value is an expression.
        for line in [
            "frag_token: c_uint32,",
            "let tokens = quote_spanned! {",
            "x = Token2Kind9",
        ] {
            assert!(rules_of("src/lib.rs", line).is_empty(), "{line}");
        }
    }

    #[test]
    fn block_rule_finds_values_under_a_secret_name() {
        let yaml = "deploy:\n    password:\n        secure: thequickbrownfoxjumpsoverthelazydog\n";
        let found = scan("a.yml", yaml);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].rule, found[0].line), ("generic-secret-block", 3));
        let ini = "[s]\nsecrets_for_no_one =\n    hunter2\n    BEEF0123456789a\n";
        let found = scan("a.ini", ini);
        assert_eq!((found[0].rule, found[0].line), ("generic-secret-block", 4));
        let words = "secrets:\n  api:\n    secret: \"permission_address_stack\"\n";
        assert!(scan("a.yml", words).is_empty());
        // Kubernetes references are not values.
        let k8s = "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-credentials\n        key: password\n";
        assert!(scan("deploy.yaml", k8s).is_empty());
    }

    #[test]
    fn path_rules_apply_to_their_files_only() {
        let env = "APP=demo\nSIGNING=qtCEpKeWKqXJiIBCNmUkUcjpPBa6r5Jh\n"; // moat:allow
        assert_eq!(rules_of("svc/.env", env), ["dotenv-high-entropy"]);
        assert_eq!(rules_of("config.env", env), ["dotenv-high-entropy"]);
        assert!(rules_of("notes.txt", env).is_empty());
        let netrc = "machine git.internal login ci password Xk9vQ2mZr7LpW4tB\n"; // moat:allow
        assert_eq!(rules_of(".netrc", netrc), ["netrc-password"]);
        let master = "<settingsSecurity>\n<master>plainMaster</master>\n</settingsSecurity>\n";
        assert_eq!(
            rules_of("settings-security.xml", master),
            ["maven-master-password"]
        );
        assert!(rules_of("other.xml", master).is_empty());
    }

    #[test]
    fn required_context_gates_a_rule() {
        let pem = "-----BEGIN PRIVATE KEY-----\\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r366yRyoZvKyjc4zzHzLcciTA1bHT\\n-----END PRIVATE KEY-----\\n"; // moat:allow
        let sa = format!(
            "{{\"type\": \"service_account\", \"client_email\": \"a@b\", \"private_key\": \"{pem}\"}}"
        );
        assert_eq!(rules_of("sa.json", &sa), ["gcp-service-account-key"]);
        let plain = format!("{{\"private_key\": \"{pem}\"}}");
        assert_eq!(rules_of("k.json", &plain), ["private-key"]);
    }

    #[test]
    fn multi_line_key_reports_its_begin_line_and_span() {
        let text = "x\n-----BEGIN EC PRIVATE KEY-----\r\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r\r\n366yRyoZvKyjc4zzHzLcciTA1bHT\r\n-----END EC PRIVATE KEY-----\r\n"; // moat:allow
        let found = scan("k.pem", text);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].end_line), (2, 5));
        assert_eq!(found[0].excerpt, "-----BEGIN EC PRIVATE KEY-----***");
        let lf = text.replace("\r\n", "\n");
        assert_eq!(scan("k.pem", &lf)[0].fingerprint, found[0].fingerprint);
    }

    #[test]
    fn long_lines_are_searched_around_the_hits() {
        let mut text = "x".repeat(100_000);
        text.push_str(" key=ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA "); // moat:allow
        text.push_str(&"y".repeat(100_000));
        let found = scan("min.js", &text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].column, 100_006);
        assert!(found[0].excerpt.chars().count() <= EXCERPT_MAX + 2);
    }

    #[test]
    fn a_line_full_of_tokens_stays_linear() {
        let token = "ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA"; // moat:allow
        let line = format!("{token} ").repeat(50_000);
        let started = std::time::Instant::now();
        let found = scan("dump.txt", &line);
        assert_eq!(found.len(), MAX_FINDINGS_PER_FILE);
        assert_eq!(found[1].column, 42);
        assert!(found[999].excerpt.starts_with('…') && found[999].excerpt.ends_with('…'));
        // Generous even for an unoptimised build; quadratic work would take minutes.
        assert!(started.elapsed().as_secs() < 20);
    }

    #[test]
    fn inline_markers_suppress_their_line_only() {
        let text = "a = 'AKIAUJZDE8GXD6NCF10E' # moat:allow\nb = 'AKIAUJZDE8GXD6NCF10F'\n"; // moat:allow
        let scanner = Scanner::builtin().unwrap();
        let mut scratch = Scratch::new(scanner);
        let all = scanner.scan_file("a.py", text.as_bytes(), &mut scratch);
        assert_eq!(all.len(), 2);
        assert!(all[0].inline_allowed && !all[1].inline_allowed);
        assert_eq!(scan("a.py", text).len(), 1);
    }

    #[test]
    fn masks_never_show_more_than_an_eighth() {
        assert_eq!(mask(b"short"), "***");
        assert_eq!(mask(b"0123456789abcdef"), "01***ef");
        assert_eq!(mask(&[b'a'; 100]), "aaaa***aaaa");
    }

    #[test]
    fn entropy_and_names() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"ab") - 1.0).abs() < 1e-9);
        assert_eq!(split_words(b"dbPasswordHash"), ["db", "password", "hash"]);
        assert_eq!(split_words(b"SECRET_KEY_ID"), ["secret", "key", "id"]);
        assert!(name_is_not_secret(b"foreign_key_id"));
        assert!(!name_is_not_secret(b"admin_password"));
        assert!(!name_is_not_secret(b"real_secret_which_isnt_an_i_d"));
    }
}
