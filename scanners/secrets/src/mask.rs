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
//!
//! - `forms`: the encoded forms of a value.
//! - `view`: the plain and wrapped views and their maps back to the original bytes.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

mod forms;
#[cfg(test)]
mod tests;
mod view;

pub use forms::{Forms, forms};
use view::*;

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
