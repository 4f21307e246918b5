//! Secret masking for everything a stage prints. Each secret value is searched for as written,
//! line by line when it spans lines, and in the encodings a script is likely to print it in:
//! base64 (standard and URL-safe, at each of the three byte alignments it can have inside a
//! longer encoded text, and wrapped at any width), URL-encoded, hex and JSON-escaped. Every
//! occurrence becomes `***`.
//!
//! ## Two normalised views
//!
//! What a program prints is not always the bytes of the value: a progress bar puts a `\r` in
//! it, a colour or hyperlink escape sequence cuts it in two, `base64` wraps at 76 columns and
//! PEM at 64, often indented inside YAML. The masker therefore matches over two views of the
//! text, each with a map from its bytes back to the original ones:
//!
//! - the *plain* view drops `\r` and terminal escape sequences (CSI `ESC [ … final`; OSC, DCS,
//!   APC, PM and SOS strings up to BEL or ST; two- and three-byte escapes such as `ESC ( B`). The
//!   value, its lines, and its URL, hex and JSON forms are searched here.
//! - the *wrapped* view is the plain view without line breaks: a single `\n` with the blanks
//!   around it (the indentation of a wrapped block) is removed, a blank line or a long run of
//!   blanks is kept and so still separates. The base64 forms are searched here, so base64 of a
//!   secret wrapped at any width is one run again, and so is a PEM value's body re-wrapped.
//!
//! A match masks every original byte from its first to its last byte (the escape sequences and
//! `\r` inside it too) except the line breaks and their indentation: a masked text keeps its
//! lines, each piece between them reads `***`. Nothing else is changed: text without a match
//! passes byte for byte, escape sequences included.
//!
//! ## Streaming
//!
//! The masker works on a byte stream and keeps back just enough that an occurrence split
//! across reads is still found: the original bytes of the last `longest pattern − 1` characters
//! of the wrapped view (the shortest view, so the bound holds for both), plus an unfinished
//! escape sequence or a run of blanks a line break may still follow. Stripped bytes between two
//! visible characters count at most [`MAX_GAP`]; beyond that they separate like a visible byte,
//! so what is held back stays bounded whatever a stage prints.
//!
//! ## What masking cannot catch
//!
//! Masking recognises the forms above and nothing else. A value printed reversed, in rot13,
//! one character per line, with characters in between, compressed, encrypted, hashed, in an
//! encoding not listed (base32, octal dumps, `xxd` columns), or transformed in any other way
//! reaches the log — as it does on GitHub Actions and GitLab, which have the same limit. A
//! stage that is given a secret can always disclose it; masking guards against accidents, the
//! grants (which stages get which secrets, no secrets for forks) are the security boundary.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// What replaces a secret.
pub const MASK: &str = "***";

/// The shortest secret Moat accepts; shorter ones would mask ordinary words.
pub const MIN_SECRET_LEN: usize = 4;

/// Stripped bytes (`\r`, escape sequences) between two visible characters beyond which they
/// stop joining them: keeps what a stream holds back bounded.
pub const MAX_GAP: usize = 256;
/// Longest CSI sequence recognised (longer ones are printed text).
const MAX_CSI: usize = 64;
/// Longest OSC/DCS/APC/PM/SOS string recognised.
const MAX_STRING: usize = 1024;
/// Longest nF escape (`ESC`, intermediates, final byte).
const MAX_NF: usize = 8;
/// Blanks on each side of a line break that still join the lines in the wrapped view
/// (indentation of a wrapped block in YAML or JSON).
const MAX_INDENT: usize = 64;
/// The shortest plain value also searched for in the wrapped view when it is made of base64
/// characters (a token printed folded); shorter ones would join ordinary words across lines.
const MIN_WRAPPED_PLAIN: usize = 16;
/// Marks where stripped bytes were too many to join: never in a pattern (patterns are UTF-8).
const BREAK: u8 = 0xFF;
const ESC: u8 = 0x1b;

/// The characters of the base64 encoding of `value` that do not depend on the bytes around it,
/// when `value` starts `offset` bytes (0, 1 or 2) into a 3-byte group.
fn base64_core(value: &[u8], offset: usize, url_safe: bool) -> Option<String> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    padded.extend_from_slice(&[0, 0]);
    let encoded = if url_safe {
        URL_SAFE_NO_PAD.encode(&padded)
    } else {
        STANDARD_NO_PAD.encode(&padded)
    };
    let (start_bit, end_bit) = (8 * offset, 8 * (offset + value.len()));
    // Character j holds bits [6j, 6j + 6): keep those entirely inside the value.
    let first = start_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive
    (last > first).then(|| encoded[first..last].to_string())
}

fn url_encode(value: &[u8], space_as_plus: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' if space_as_plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The forms of one value the masker looks for, by the view they are searched in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forms {
    /// Searched in the plain view: the value, its lines, URL, hex and JSON forms.
    pub plain: Vec<String>,
    /// Searched in the wrapped view (line breaks removed): the base64 forms, a multi-line
    /// value's lines joined, a long base64-like value itself.
    pub wrapped: Vec<String>,
}

/// Every form of `value` the masker looks for.
pub fn forms(value: &str) -> Forms {
    fn add(list: &mut Vec<String>, s: String) {
        if s.len() >= MIN_SECRET_LEN && !list.contains(&s) {
            list.push(s);
        }
    }
    let mut f = Forms::default();
    let trimmed = value.trim_end_matches(['\r', '\n']);
    add(&mut f.plain, trimmed.to_string());
    // A multi-line value (a PEM key) is printed line by line: each line is masked on its own,
    // and re-wrapped at another width it reads the same once line breaks are gone.
    if trimmed.contains('\n') {
        let lines: Vec<&str> = trimmed
            .lines()
            .map(|l| l.trim_end_matches('\r').trim())
            .collect();
        for line in &lines {
            add(&mut f.plain, line.to_string());
        }
        add(&mut f.wrapped, lines.concat());
    }
    if trimmed.len() >= MIN_WRAPPED_PLAIN && trimmed.bytes().all(is_base64_char) {
        add(&mut f.wrapped, trimmed.to_string());
    }
    for v in [value, trimmed] {
        let bytes = v.as_bytes();
        for offset in 0..3 {
            for url_safe in [false, true] {
                if let Some(core) = base64_core(bytes, offset, url_safe) {
                    add(&mut f.wrapped, core);
                }
            }
        }
        add(&mut f.plain, url_encode(bytes, false));
        add(&mut f.plain, url_encode(bytes, true));
        add(&mut f.plain, hex::encode(bytes));
        add(&mut f.plain, hex::encode_upper(bytes));
        if let Ok(json) = serde_json::to_string(v) {
            add(&mut f.plain, json[1..json.len() - 1].to_string());
        }
    }
    f
}

/// A compiled set of secrets. Cloning is cheap (the automata are shared).
#[derive(Clone, Default)]
pub struct Masker {
    inner: Option<Arc<Compiled>>,
}

struct Compiled {
    /// Over the plain view.
    plain: Option<Finder>,
    /// Over the wrapped view.
    wrapped: Option<Finder>,
    /// Characters of the wrapped view a stream keeps back: the longest pattern less one.
    keep: usize,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the patterns: they are the secrets.
        f.debug_struct("Masker")
            .field("active", &self.inner.is_some())
            .finish()
    }
}

/// A multi-pattern searcher with leftmost-longest semantics: Teddy (SIMD) when the patterns
/// are few enough, else Aho-Corasick without a prefilter: for these pattern sets (hex and
/// base64 forms) it picks two "rare" bytes that ordinary output is full of, and runs at a
/// third of the automaton's own speed.
enum Finder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Finder {
    fn new(patterns: &[Vec<u8>]) -> Option<Finder> {
        if patterns.is_empty() {
            return None;
        }
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(patterns)
            .build();
        Some(match packed {
            Some(p) => Finder::Packed(p),
            None => Finder::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .prefilter(false)
                    .build(patterns)
                    .expect("literal patterns always compile"),
            ),
        })
    }

    /// Each match in `hay` as (start, end), in order.
    fn each(&self, hay: &[u8], mut f: impl FnMut(usize, usize)) {
        match self {
            Finder::Packed(p) => p.find_iter(hay).for_each(|m| f(m.start(), m.end())),
            Finder::Automaton(a) => a.find_iter(hay).for_each(|m| f(m.start(), m.end())),
        }
    }
}

impl Masker {
    /// Values shorter than [`MIN_SECRET_LEN`] are ignored (and refused where secrets are set).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Self {
        let mut plain: Vec<Vec<u8>> = Vec::new();
        let mut wrapped: Vec<Vec<u8>> = Vec::new();
        let mut view = View::default();
        for s in secrets {
            let s = s.as_ref();
            if s.trim().len() < MIN_SECRET_LEN {
                continue;
            }
            let f = forms(s);
            for p in f.plain {
                // Patterns are searched in the plain view, so they are normalised the same way
                // (a value with a `\r` inside).
                plain_view(p.as_bytes(), true, &mut view);
                let n = std::mem::take(&mut view.text);
                if n.len() >= MIN_SECRET_LEN && !n.contains(&BREAK) && !plain.contains(&n) {
                    plain.push(n);
                }
            }
            for w in f.wrapped {
                let w = w.into_bytes();
                if !wrapped.contains(&w) {
                    wrapped.push(w);
                }
            }
        }
        let longest = plain
            .iter()
            .chain(&wrapped)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        if longest == 0 {
            return Masker { inner: None };
        }
        Masker {
            inner: Some(Arc::new(Compiled {
                plain: Finder::new(&plain),
                wrapped: Finder::new(&wrapped),
                keep: longest - 1,
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Masks a complete text (a message, a line known to be whole).
    pub fn mask_str(&self, text: &str) -> String {
        let Some(c) = &self.inner else {
            return text.to_string();
        };
        let mut out = Vec::with_capacity(text.len());
        c.mask(text.as_bytes(), true, &mut Scratch::default(), &mut out);
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// A masker for one byte stream.
    pub fn stream(&self) -> MaskStream {
        MaskStream {
            masker: self.clone(),
            held: Vec::new(),
            scratch: Scratch::default(),
        }
    }
}

/// A normalised view of a text: its bytes, and the pieces they were copied from, as (offset in
/// the view, offset in the text it views). One piece per run between removed bytes, so
/// building a view is a few copies, and only the ends of matches are looked up.
#[derive(Default)]
struct View {
    text: Vec<u8>,
    pieces: Vec<(usize, usize)>,
}

impl View {
    fn clear(&mut self) {
        self.text.clear();
        self.pieces.clear();
    }

    fn copy(&mut self, from: &[u8], start: usize, end: usize) {
        if start < end {
            self.pieces.push((self.text.len(), start));
            self.text.extend_from_slice(&from[start..end]);
        }
    }

    /// A byte of the view's own (a [`BREAK`]) standing at `at`.
    fn mark(&mut self, b: u8, at: usize) {
        self.pieces.push((self.text.len(), at));
        self.text.push(b);
    }
}

/// Where byte `i` of a view came from (`pieces` of a non-empty view start at 0).
fn lookup(pieces: Option<&[(usize, usize)]>, i: usize) -> usize {
    match pieces {
        None => i,
        Some(p) => {
            let k = p.partition_point(|&(v, _)| v <= i) - 1;
            p[k].1 + (i - p[k].0)
        }
    }
}

/// Buffers reused between the reads of a stream.
#[derive(Default)]
struct Scratch {
    plain: View,
    wrapped: View,
    spans: Vec<(usize, usize)>,
}

enum Escape {
    /// A whole sequence of this many bytes.
    Complete(usize),
    /// A sequence that may still end in the next read.
    Incomplete,
    /// Not a sequence: the `ESC` is printed text.
    Literal,
}

/// The escape sequence at the start of `s` (`s[0]` is `ESC`).
fn escape(s: &[u8]) -> Escape {
    use Escape::*;
    let Some(&kind) = s.get(1) else {
        return Incomplete;
    };
    match kind {
        // CSI: parameters, intermediates, a final byte.
        b'[' => {
            let mut j = 2;
            while j < s.len() && j < MAX_CSI && (0x30..=0x3f).contains(&s[j]) {
                j += 1;
            }
            while j < s.len() && j < MAX_CSI && (0x20..=0x2f).contains(&s[j]) {
                j += 1;
            }
            if j >= MAX_CSI {
                Literal
            } else if j == s.len() {
                Incomplete
            } else if (0x40..=0x7e).contains(&s[j]) {
                Complete(j + 1)
            } else {
                Literal
            }
        }
        // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (`ESC \`).
        b']' | b'P' | b'X' | b'^' | b'_' => {
            let end = s.len().min(MAX_STRING);
            match memchr::memchr2(0x07, ESC, &s[2..end]) {
                Some(k) => {
                    let k = k + 2;
                    if s[k] == 0x07 {
                        Complete(k + 1)
                    } else if k + 1 == s.len() {
                        Incomplete
                    } else if s[k + 1] == b'\\' {
                        Complete(k + 2)
                    } else {
                        // Another escape aborts the string; it is read on its own.
                        Complete(k)
                    }
                }
                None if end == s.len() => Incomplete,
                None => Literal,
            }
        }
        // nF: intermediates, then a final byte (`ESC ( B`).
        0x20..=0x2f => {
            let mut j = 2;
            while j < s.len() && j < MAX_NF && (0x20..=0x2f).contains(&s[j]) {
                j += 1;
            }
            if j >= MAX_NF {
                Literal
            } else if j == s.len() {
                Incomplete
            } else if (0x30..=0x7e).contains(&s[j]) {
                Complete(j + 1)
            } else {
                Literal
            }
        }
        // Fp, Fe, Fs: two bytes (`ESC 7`, `ESC M`, `ESC c`).
        0x30..=0x7e => Complete(2),
        _ => Literal,
    }
}

/// The plain view of `src` into `out`: without `\r` and escape sequences. Unless `fin`, an
/// escape sequence unfinished at the end is left out (the next read completes it).
fn plain_view(src: &[u8], fin: bool, out: &mut View) {
    out.clear();
    let mut i = 0;
    let mut gap = 0;
    while i < src.len() {
        let Some(k) = memchr::memchr2(b'\r', ESC, &src[i..]) else {
            out.copy(src, i, src.len());
            return;
        };
        if k > 0 {
            out.copy(src, i, i + k);
            gap = 0;
            i += k;
        }
        let n = if src[i] == b'\r' {
            1
        } else {
            match escape(&src[i..]) {
                Escape::Complete(n) => n,
                Escape::Incomplete if !fin => return,
                _ => {
                    out.copy(src, i, i + 1);
                    gap = 0;
                    i += 1;
                    continue;
                }
            }
        };
        i += n;
        gap += n;
        if gap > MAX_GAP {
            out.mark(BREAK, i);
            gap = 0;
        }
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Where the run of blanks ending `t` starts when a line break there may still join the next
/// read's text to what came before (at most one line break, at most [`MAX_INDENT`] blanks on
/// each side of it).
fn joinable_tail(t: &[u8]) -> Option<usize> {
    let mut start = t.len();
    // Blanks after the line break (all of them while none was seen), and before it.
    let (mut after, mut before) = (0, 0);
    let mut newline = false;
    while start > 0 {
        match t[start - 1] {
            b'\n' if newline => return None,
            b'\n' => newline = true,
            b' ' | b'\t' if newline => before += 1,
            b' ' | b'\t' => after += 1,
            _ => break,
        }
        if after > MAX_INDENT || before > MAX_INDENT {
            return None;
        }
        start -= 1;
    }
    (start < t.len()).then_some(start)
}

/// The wrapped view of the plain text `t` into `out`: a line break with the blanks around it
/// is left out when it is the only one in its run of blanks and at most [`MAX_INDENT`] blanks
/// stand on each side. Unless `fin`, a run of blanks at the end that may still join is left
/// out too. Returns false (and leaves `out` alone) when the view would be `t` itself.
fn wrapped_view(t: &[u8], fin: bool, out: &mut View) -> bool {
    let end = if fin { None } else { joinable_tail(t) };
    let view_end = end.unwrap_or(t.len());
    let mut copied = 0;
    let mut from = 0;
    let mut started = false;
    while let Some(k) = memchr::memchr(b'\n', &t[from..view_end]) {
        let nl = from + k;
        from = nl + 1;
        let mut a = nl;
        while a > 0 && nl - a <= MAX_INDENT && is_space(t[a - 1]) {
            a -= 1;
        }
        if nl - a > MAX_INDENT || (a > 0 && t[a - 1] == b'\n') {
            continue;
        }
        let mut b = nl + 1;
        while b < view_end && b - nl - 1 <= MAX_INDENT && is_space(t[b]) {
            b += 1;
        }
        if b - nl - 1 > MAX_INDENT || (b < view_end && t[b] == b'\n') {
            continue;
        }
        if !started {
            out.clear();
            started = true;
        }
        out.copy(t, copied, a);
        copied = b;
    }
    if !started {
        if end.is_none() {
            return false;
        }
        out.clear();
    }
    out.copy(t, copied, view_end);
    true
}

/// Writes `r` (a matched range) masked: every piece between line breaks becomes one `***`, the
/// line breaks and the blanks around them stay.
fn mask_range(r: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < r.len() {
        let Some(k) = memchr::memchr(b'\n', &r[i..]) else {
            out.extend_from_slice(MASK.as_bytes());
            return;
        };
        let nl = i + k;
        let mut a = nl;
        while a > i && matches!(r[a - 1], b' ' | b'\t' | b'\r') {
            a -= 1;
        }
        let mut b = nl + 1;
        while b < r.len() && matches!(r[b], b' ' | b'\t' | b'\r' | b'\n') {
            b += 1;
        }
        if a > i {
            out.extend_from_slice(MASK.as_bytes());
        }
        out.extend_from_slice(&r[a..b]);
        i = b;
    }
}

impl Compiled {
    /// Masks `src` into `out` and returns how many of its bytes were consumed: all when `fin`,
    /// otherwise those that can no longer be part of an occurrence.
    fn mask(&self, src: &[u8], fin: bool, scratch: &mut Scratch, out: &mut Vec<u8>) -> usize {
        let Scratch {
            plain,
            wrapped,
            spans,
        } = scratch;
        let (p, p_map) = if memchr::memchr2(b'\r', ESC, src).is_none() {
            (src, None)
        } else {
            plain_view(src, fin, plain);
            (&plain.text[..], Some(&plain.pieces[..]))
        };
        let (w, w_map) = if wrapped_view(p, fin, wrapped) {
            (&wrapped.text[..], Some(&wrapped.pieces[..]))
        } else {
            (p, None)
        };
        let p_orig = |i: usize| lookup(p_map, i);
        let w_orig = |i: usize| p_orig(lookup(w_map, i));
        // Every occurrence that starts before `safe` ends inside what we hold, so it is found
        // now; later bytes may start one that continues in the next read.
        let safe = if fin {
            src.len()
        } else if w.len() > self.keep {
            w_orig(w.len() - self.keep)
        } else {
            return 0;
        };
        spans.clear();
        if let Some(f) = &self.plain {
            f.each(p, |s, e| spans.push((p_orig(s), p_orig(e - 1) + 1)));
        }
        let from_plain = spans.len();
        if let Some(f) = &self.wrapped {
            f.each(w, |s, e| spans.push((w_orig(s), w_orig(e - 1) + 1)));
        }
        if from_plain > 0 && from_plain < spans.len() {
            spans.sort_unstable();
        }
        // Overlapping occurrences (of both views) are masked as one.
        let mut merged = 0;
        for i in 0..spans.len() {
            let (s, e) = spans[i];
            if merged > 0 && s < spans[merged - 1].1 {
                spans[merged - 1].1 = spans[merged - 1].1.max(e);
            } else {
                spans[merged] = (s, e);
                merged += 1;
            }
        }
        spans.truncate(merged);
        let mut cut = safe;
        let mut pos = 0;
        for &(s, e) in spans.iter() {
            if s >= cut {
                break;
            }
            out.extend_from_slice(&src[pos..s]);
            mask_range(&src[s..e], out);
            pos = e;
            cut = cut.max(e);
        }
        out.extend_from_slice(&src[pos..cut]);
        cut
    }
}

/// Masks a byte stream read in chunks; [`MaskStream::push`] returns what is safe to pass on.
pub struct MaskStream {
    masker: Masker,
    held: Vec<u8>,
    scratch: Scratch,
}

impl MaskStream {
    /// Feeds a chunk; returns the masked bytes that can no longer be part of a secret.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(c) = &self.masker.inner else {
            return chunk.to_vec();
        };
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let cut = c.mask(&self.held, false, &mut self.scratch, &mut out);
        self.held.drain(..cut);
        out
    }

    /// The stream ended: masks and returns what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        match &self.masker.inner {
            None => rest,
            Some(c) => {
                let mut out = Vec::with_capacity(rest.len());
                c.mask(&rest, true, &mut self.scratch, &mut out);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &str = "hunter2-Sup3r$ecret/with+chars";
    const PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIOaJ3kqZ9sLwGvQk1s2U5yOeV7PqRtZxoAoGCCqGSM49AwEHoUQDQgAE\nx9Yp0bB1nT3wKz8mV2cR7uLq4eN6sD1fH0jWgT5yB3nM9aQ2kX7vC8pZ1rS4tU6w\nE2hJ==\n-----END EC PRIVATE KEY-----\n";

    fn stream_bytes(m: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = m.stream();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        out
    }

    fn masked_stream(m: &Masker, chunks: &[&[u8]]) -> String {
        String::from_utf8_lossy(&stream_bytes(m, chunks)).into_owned()
    }

    /// Checks that `text` streamed in two reads split at every position, in one-byte reads and
    /// in 7-byte reads gives `expected`, as does masking it whole.
    fn assert_every_split(m: &Masker, text: &str, expected: &str) {
        assert_eq!(m.mask_str(text), expected, "whole: {text:?}");
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            assert_eq!(
                masked_stream(m, &[&bytes[..split], &bytes[split..]]),
                expected,
                "split at {split} of {text:?}"
            );
        }
        for size in [1, 7] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(masked_stream(m, &chunks), expected, "{size}-byte reads");
        }
    }

    /// `encoded` wrapped at `width`, each line starting with `indent` and ending with `eol`.
    fn wrap(encoded: &str, width: usize, indent: &str, eol: &str) -> String {
        let b = encoded.as_bytes();
        b.chunks(width)
            .map(|l| format!("{indent}{}{eol}", std::str::from_utf8(l).unwrap()))
            .collect()
    }

    /// What the masker must print for [`wrap`]: the characters `[a, b)` of `encoded` are the
    /// secret's; each piece of them on a line becomes one `***`.
    fn wrap_masked(
        encoded: &str,
        width: usize,
        a: usize,
        b: usize,
        indent: &str,
        eol: &str,
    ) -> String {
        let mut out = String::new();
        for (n, line) in encoded.as_bytes().chunks(width).enumerate() {
            out.push_str(indent);
            let mut in_mask = false;
            for (i, &c) in line.iter().enumerate() {
                let at = n * width + i;
                if (a..b).contains(&at) {
                    if !in_mask {
                        out.push_str(MASK);
                    }
                    in_mask = true;
                } else {
                    out.push(c as char);
                    in_mask = false;
                }
            }
            out.push_str(eol);
        }
        out
    }

    /// The characters of base64(`prefix` bytes + SECRET + suffix) that only the secret decides.
    fn core_range(prefix: usize, len: usize) -> (usize, usize) {
        ((8 * prefix).div_ceil(6), 8 * (prefix + len) / 6)
    }

    #[test]
    fn plain_and_encoded_forms_are_masked() {
        let m = Masker::new(&[SECRET]);
        let b64 = STANDARD_NO_PAD.encode(SECRET);
        for text in [
            format!("token={SECRET}!"),
            format!("b64: {b64}"),
            format!("b64 padded: {}", STANDARD.encode(SECRET)),
            format!("url: {}", url_encode(SECRET.as_bytes(), false)),
            format!("hex: {}", hex::encode(SECRET)),
            format!("HEX: {}", hex::encode_upper(SECRET)),
            format!("json: {}", serde_json::to_string(SECRET).unwrap()),
        ] {
            let out = m.mask_str(&text);
            assert!(out.contains(MASK), "{text} -> {out}");
            assert!(!out.contains(SECRET), "{out}");
            assert!(!out.contains(&b64[2..b64.len() - 2]), "{out}");
        }
    }

    #[test]
    fn base64_inside_longer_text_at_every_alignment() {
        let m = Masker::new(&[SECRET]);
        for prefix in ["", "a", "ab", "abc", "user:", "x"] {
            let encoded = STANDARD_NO_PAD.encode(format!("{prefix}{SECRET}trailer"));
            let out = m.mask_str(&encoded);
            assert!(out.contains(MASK), "prefix {prefix:?}: {encoded} -> {out}");
            // What is left around the mask cannot be decoded back to the secret.
            let left: String = out.replace(MASK, "");
            assert!(left.len() < encoded.len() - 20, "{out}");
        }
    }

    #[test]
    fn base64_wrapped_at_every_width_and_alignment() {
        let m = Masker::new(&[SECRET]);
        for width in 1..=76 {
            // Every byte alignment (prefix mod 3) at every column the secret can start in.
            for prefix in 0..3 * width + 3 {
                let plain = format!("{}{SECRET}tail!", "p".repeat(prefix));
                let encoded = STANDARD.encode(&plain);
                let (a, b) = core_range(prefix, SECRET.len());
                let text = wrap(&encoded, width, "", "\n");
                assert_eq!(
                    m.mask_str(&text),
                    wrap_masked(&encoded, width, a, b, "", "\n"),
                    "width {width}, prefix {prefix}"
                );
            }
        }
    }

    #[test]
    fn base64_wrapped_like_base64_and_pem_indented_and_with_crlf() {
        let m = Masker::new(&[SECRET]);
        for (width, indent, eol) in [
            (76, "", "\n"),
            (64, "", "\n"),
            (64, "    ", "\n"),
            (76, "\t\t", "\r\n"),
            (64, "  ", " \r\n"),
        ] {
            for prefix in [0, 1, 2, 7, 40, 47, 48, 56, 57] {
                let plain = format!("{}{SECRET}{}", "k".repeat(prefix), "z".repeat(30));
                for url_safe in [false, true] {
                    let encoded = if url_safe {
                        URL_SAFE.encode(&plain)
                    } else {
                        STANDARD.encode(&plain)
                    };
                    let (a, b) = core_range(prefix, SECRET.len());
                    let text = format!("data: |\n{}done\n", wrap(&encoded, width, indent, eol));
                    let expected = format!(
                        "data: |\n{}done\n",
                        wrap_masked(&encoded, width, a, b, indent, eol)
                    );
                    assert_eq!(m.mask_str(&text), expected, "{width} {indent:?} {prefix}");
                }
            }
        }
    }

    #[test]
    fn wrapped_base64_split_across_reads_at_every_position() {
        let m = Masker::new(&[SECRET]);
        for (width, prefix, indent) in [(76, 0, ""), (76, 50, ""), (64, 1, "    "), (5, 2, "")] {
            let plain = format!("{}{SECRET}!!", "q".repeat(prefix));
            let encoded = STANDARD.encode(&plain);
            let (a, b) = core_range(prefix, SECRET.len());
            let text = format!(
                "$ base64 f\n{}$ echo ok\n",
                wrap(&encoded, width, indent, "\n")
            );
            let expected = format!(
                "$ base64 f\n{}$ echo ok\n",
                wrap_masked(&encoded, width, a, b, indent, "\n")
            );
            assert_every_split(&m, &text, &expected);
        }
    }

    #[test]
    fn a_pem_value_re_wrapped_or_base64_wrapped_is_masked() {
        let m = Masker::new(&[PEM]);
        // The body re-wrapped at 76 instead of 64.
        let lines: Vec<&str> = PEM.lines().collect();
        let body: String = lines[1..lines.len() - 1].concat();
        let rewrapped = format!(
            "{}\n{}{}\n",
            lines[0],
            wrap(&body, 76, "", "\n"),
            lines[lines.len() - 1]
        );
        let out = m.mask_str(&rewrapped);
        assert!(out.lines().all(|l| l == MASK), "{out}");
        // `base64 key.pem`: the whole key, encoded and wrapped at 76.
        let encoded = STANDARD.encode(PEM);
        let text = wrap(&encoded, 76, "", "\n");
        let (a, b) = core_range(0, PEM.len());
        assert_eq!(m.mask_str(&text), wrap_masked(&encoded, 76, a, b, "", "\n"));
        // A kubeconfig carries it base64-encoded on one indented line.
        let kubeconfig = format!("users:\n- name: ci\n  user:\n    client-key-data: {encoded}\n");
        let out = m.mask_str(&kubeconfig);
        assert!(!out.contains(&encoded[8..encoded.len() - 8]), "{out}");
        assert!(out.contains("client-key-data: ***"), "{out}");
    }

    #[test]
    fn a_long_base64_like_token_folded_is_masked() {
        let token = "ghp_Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNm";
        let m = Masker::new(&[token]);
        let text = format!("{}\n{}\n", &token[..20], &token[20..]);
        assert_eq!(m.mask_str(&text), "***\n***\n");
    }

    #[test]
    fn carriage_returns_and_escape_sequences_inside_a_value() {
        let m = Masker::new(&[SECRET]);
        let (head, tail) = SECRET.split_at(7);
        for cut in [
            "\r",
            "\r\r",
            "\x1b[31m",
            "\x1b[0m\x1b[1;32m",
            "\x1b[2K\r",
            "\x1b[38;2;255;100;0m",
            "\x1b]8;;https://example.invalid/x\x1b\\",
            "\x1b]0;title\x07",
            "\x1b(B\x1b[m",
            "\x1b7",
        ] {
            assert_every_split(
                &m,
                &format!("token={head}{cut}{tail} end\n"),
                "token=*** end\n",
            );
        }
        // At every position inside the value.
        for i in 1..SECRET.len() {
            let (h, t) = SECRET.split_at(i);
            assert_eq!(m.mask_str(&format!("[{h}\x1b[1m{t}]")), "[***]");
            assert_eq!(m.mask_str(&format!("[{h}\r{t}]")), "[***]");
        }
        // Coloured base64, wrapped.
        let encoded = STANDARD.encode(SECRET);
        let coloured = format!(
            "\x1b[33m{}\x1b[0m\n\x1b[33m{}\x1b[0m\n",
            &encoded[..20],
            &encoded[20..]
        );
        assert_every_split(&m, &coloured, "\x1b[33m***\n***\x1b[0m\n");
        // A value that itself holds a `\r` (as CRLF text does).
        let crlf = "line-one-abc\r\nline-two-def";
        let m = Masker::new(&[crlf]);
        assert_eq!(
            m.mask_str("x line-one-abc\r\nline-two-def y"),
            "x ***\r\n*** y"
        );
    }

    #[test]
    fn unrelated_text_passes_byte_for_byte() {
        let m = Masker::new(&[SECRET, "k3y!", PEM]);
        let other = STANDARD
            .encode("some other data that is not secret at all, long enough to wrap twice over");
        let near = &SECRET[..SECRET.len() - 1];
        let text = format!(
            "\x1b[1;32m   Compiling\x1b[0m moat v0.1.0\r\n\
             [=====>    ] 50%\r[==========] 100%\n\
             \x1b]8;;https://example.invalid\x1b\\link\x1b]8;;\x1b\\\n\
             {}\
             key: |\n{}\
             almost: {near} and {}\n\
             \n\n    indented\tline\n\
             k3y and 3y! and the k 3y!\n\
             hunter2-Sup3r\n\n$ecret/with+chars\n\
             ESC alone \x1b and \x1b[ unfinished, \x1b]never ended\n",
            wrap(&other, 76, "", "\n"),
            wrap(&other, 64, "    ", "\n"),
            STANDARD.encode(near),
        );
        assert_every_split(&m, &text, &text);
    }

    #[test]
    fn multi_line_values_are_masked_line_by_line() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDx1p6Yc0lz\n-----END OPENSSH PRIVATE KEY-----\n";
        let m = Masker::new(&[key]);
        let printed = format!("cat key:\n{key}done");
        let out = masked_stream(&m, &[printed.as_bytes()]);
        // The lines stay; each becomes `***`.
        assert_eq!(out, "cat key:\n***\n***\n***\n***\ndone");
        // Lines printed apart from each other are masked one by one.
        let apart: String = key
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{i}: {l}\n"))
            .collect();
        let out = masked_stream(&m, &[apart.as_bytes()]);
        assert_eq!(out, "0: ***\n1: ***\n2: ***\n3: ***\n", "{out}");
    }

    #[test]
    fn occurrences_split_across_reads_are_found() {
        let m = Masker::new(&[SECRET, "abcd"]);
        let text = format!("before {SECRET} middle abcd after {SECRET}");
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            for split2 in [split, (split + 7).min(bytes.len())] {
                let out = masked_stream(
                    &m,
                    &[&bytes[..split], &bytes[split..split2], &bytes[split2..]],
                );
                assert_eq!(
                    out, "before *** middle *** after ***",
                    "split at {split}/{split2}"
                );
            }
        }
        assert_every_split(&m, &text, "before *** middle *** after ***");
    }

    #[test]
    fn what_a_stream_holds_back_stays_bounded() {
        let m = Masker::new(&[SECRET]);
        let bound = 64 * (MAX_GAP + MAX_STRING);
        for filler in [
            "\x1b[0m".repeat(1000),
            "\r".repeat(5000),
            " ".repeat(5000),
            "\n".repeat(5000),
            " \n".repeat(2500),
            "a\n".repeat(2500),
            "\x1b]0;t\x07\r\n".repeat(500),
        ] {
            let mut s = m.stream();
            let mut passed = 0;
            for _ in 0..20 {
                passed += s.push(filler.as_bytes()).len();
                assert!(s.held.len() < bound, "{} held", s.held.len());
            }
            passed += s.finish().len();
            assert_eq!(passed, 20 * filler.len(), "nothing lost, nothing added");
        }
    }

    #[test]
    fn short_values_are_ignored_and_empty_maskers_pass_through() {
        let m = Masker::new(&["abc", ""]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("abc abc"), "abc abc");
        assert_eq!(masked_stream(&m, &[b"abc", b"def"]), "abcdef");
        assert_eq!(
            format!("{:?}", Masker::new(&[SECRET])),
            "Masker { active: true }"
        );
    }

    #[test]
    fn four_characters_are_enough() {
        let m = Masker::new(&["k3y!"]);
        assert_eq!(m.mask_str("the k3y! is"), "the *** is");
    }
}
