//! The matching engine: compiles the rules once, then scans one file's bytes in one pass.
//!
//! The pass is an Aho-Corasick search (ASCII case-insensitive) for every rule keyword at once.
//! Only rules whose keywords occur are tried, and only in windows around the hits (the hit's
//! line, or a few kilobytes after it for multi-line formats), so the cost of the regexes
//! follows the number of hits rather than the size of the tree. Candidates then go through the
//! rule's filters (entropy, allow regexes, placeholders), overlapping candidates are resolved in
//! favour of the more specific rule, and each survivor becomes a [`Finding`] with a fingerprint
//! and a masked excerpt. The raw secret is dropped here.
//!
//! - `excerpt`: fingerprint, masked value and excerpt, entropy.
//! - `filters`: placeholders, code, names that are not secrets.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use memchr::{memchr, memchr_iter, memrchr};
use regex::RegexSet;
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::allow::has_inline_marker;
use super::rules::{RuleSpec, Span, builtin_rules};
use super::{Finding, ScanError};

mod excerpt;
mod filters;
#[cfg(test)]
mod tests;

use excerpt::{entropy, excerpt, fingerprint};
use filters::*;

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
