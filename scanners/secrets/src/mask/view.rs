//! The two normalised views of printed text the masker matches over, each with its map back to
//! the original bytes: the *plain* view (no `\r`, no terminal escape sequences) and the
//! *wrapped* view (plain, without line breaks and their indentation). It must not match or
//! mask; it only builds views.

use super::{BREAK, ESC, MAX_CSI, MAX_GAP, MAX_INDENT, MAX_NF, MAX_STRING};

/// A normalised view of a text: its bytes, and the pieces they were copied from, as (offset in
/// the view, offset in the text it views). One piece per run between removed bytes, so
/// building a view is a few copies, and only the ends of matches are looked up.
#[derive(Default)]
pub(super) struct View {
    pub(super) text: Vec<u8>,
    pub(super) pieces: Vec<(usize, usize)>,
}

impl View {
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.pieces.clear();
    }

    pub(super) fn copy(&mut self, from: &[u8], start: usize, end: usize) {
        if start < end {
            self.pieces.push((self.text.len(), start));
            self.text.extend_from_slice(&from[start..end]);
        }
    }

    /// A byte of the view's own (a [`BREAK`]) standing at `at`.
    pub(super) fn mark(&mut self, b: u8, at: usize) {
        self.pieces.push((self.text.len(), at));
        self.text.push(b);
    }
}

/// Where byte `i` of a view came from (`pieces` of a non-empty view start at 0).
pub(super) fn lookup(pieces: Option<&[(usize, usize)]>, i: usize) -> usize {
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
pub(super) struct Scratch {
    pub(super) plain: View,
    pub(super) wrapped: View,
    pub(super) spans: Vec<(usize, usize)>,
}

pub(super) enum Escape {
    /// A whole sequence of this many bytes.
    Complete(usize),
    /// A sequence that may still end in the next read.
    Incomplete,
    /// Not a sequence: the `ESC` is printed text.
    Literal,
}

/// The escape sequence at the start of `s` (`s[0]` is `ESC`).
pub(super) fn escape(s: &[u8]) -> Escape {
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
pub(super) fn plain_view(src: &[u8], fin: bool, out: &mut View) {
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

pub(super) fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Where the run of blanks ending `t` starts when a line break there may still join the next
/// read's text to what came before (at most one line break, at most [`MAX_INDENT`] blanks on
/// each side of it).
pub(super) fn joinable_tail(t: &[u8]) -> Option<usize> {
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
pub(super) fn wrapped_view(t: &[u8], fin: bool, out: &mut View) -> bool {
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
