//! Secret masking for everything a stage prints. Each secret value is searched for as written,
//! line by line when it spans lines, and in the encodings a script is likely to print it in:
//! base64 (standard and URL-safe, at each of the three byte alignments it can have inside a
//! longer encoded text), URL-encoded, hex and JSON-escaped. Every occurrence becomes `***`.
//!
//! The masker works on a byte stream and keeps back just enough bytes that an occurrence split
//! across two reads is still found; nothing a secret could hide in leaves before it was checked.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// What replaces a secret.
pub const MASK: &str = "***";

/// The shortest secret Moat accepts; shorter ones would mask ordinary words.
pub const MIN_SECRET_LEN: usize = 4;

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

/// Every form of `value` the masker looks for.
pub fn forms(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if s.len() >= MIN_SECRET_LEN && !out.contains(&s) {
            out.push(s);
        }
    };
    let trimmed = value.trim_end_matches(['\r', '\n']);
    add(trimmed.to_string());
    // A multi-line value (a PEM key) is printed line by line: each line is masked on its own.
    if trimmed.contains('\n') {
        for line in trimmed.lines() {
            add(line.trim_end_matches('\r').trim().to_string());
        }
    }
    for v in [value, trimmed] {
        let bytes = v.as_bytes();
        for offset in 0..3 {
            for url_safe in [false, true] {
                if let Some(core) = base64_core(bytes, offset, url_safe) {
                    add(core);
                }
            }
        }
        add(url_encode(bytes, false));
        add(url_encode(bytes, true));
        add(hex::encode(bytes));
        add(hex::encode_upper(bytes));
        if let Ok(json) = serde_json::to_string(v) {
            add(json[1..json.len() - 1].to_string());
        }
    }
    out
}

/// A compiled set of secrets.
#[derive(Clone)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
    longest: usize,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the patterns: they are the secrets.
        f.debug_struct("Masker")
            .field("active", &self.matcher.is_some())
            .finish()
    }
}

impl Masker {
    /// Values shorter than [`MIN_SECRET_LEN`] are ignored (and refused where secrets are set).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for s in secrets {
            let s = s.as_ref();
            if s.trim().len() < MIN_SECRET_LEN {
                continue;
            }
            for f in forms(s) {
                if !patterns.contains(&f) {
                    patterns.push(f);
                }
            }
        }
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("literal patterns always compile")
        });
        Masker { matcher, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Masks a complete text (a message, a line known to be whole).
    pub fn mask_str(&self, text: &str) -> String {
        match &self.matcher {
            None => text.to_string(),
            Some(m) => m.replace_all(text, &vec![MASK; m.patterns_len()]),
        }
    }

    /// A masker for one byte stream.
    pub fn stream(&self) -> MaskStream {
        MaskStream {
            masker: self.clone(),
            held: Vec::new(),
        }
    }
}

/// Masks a byte stream read in chunks; [`MaskStream::push`] returns what is safe to pass on.
pub struct MaskStream {
    masker: Masker,
    held: Vec<u8>,
}

impl MaskStream {
    /// Feeds a chunk; returns the masked bytes that can no longer be part of a secret.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(m) = self.masker.matcher.clone() else {
            return chunk.to_vec();
        };
        self.held.extend_from_slice(chunk);
        // Any occurrence starting before `safe` ends inside what we hold, so it is found now;
        // later bytes may be the start of one that continues in the next chunk.
        let keep = self.masker.longest.saturating_sub(1);
        let safe = self.held.len().saturating_sub(keep);
        let mut out = Vec::with_capacity(self.held.len());
        let mut pos = 0;
        for mat in m.find_iter(&self.held) {
            if mat.start() >= safe {
                break;
            }
            out.extend_from_slice(&self.held[pos..mat.start()]);
            out.extend_from_slice(MASK.as_bytes());
            pos = mat.end();
        }
        let cut = pos.max(safe);
        out.extend_from_slice(&self.held[pos..cut]);
        self.held.drain(..cut);
        out
    }

    /// The stream ended: masks and returns what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        match &self.masker.matcher {
            None => rest,
            Some(m) => {
                let mut out = Vec::with_capacity(rest.len());
                m.replace_all_with_bytes(&rest, &mut out, |_, _, dst| {
                    dst.extend_from_slice(MASK.as_bytes());
                    true
                });
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-Sup3r$ecret/with+chars";

    fn masked_stream(m: &Masker, chunks: &[&[u8]]) -> String {
        let mut s = m.stream();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn plain_and_encoded_forms_are_masked() {
        let m = Masker::new(&[SECRET]);
        let b64 = STANDARD_NO_PAD.encode(SECRET);
        for text in [
            format!("token={SECRET}!"),
            format!("b64: {b64}"),
            format!(
                "b64 padded: {}",
                base64::engine::general_purpose::STANDARD.encode(SECRET)
            ),
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
    fn multi_line_values_are_masked_line_by_line() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDx1p6Yc0lz\n-----END OPENSSH PRIVATE KEY-----\n";
        let m = Masker::new(&[key]);
        let printed = format!("cat key:\n{key}done");
        let out = masked_stream(&m, &[printed.as_bytes()]);
        assert!(
            !out.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
            "{out}"
        );
        assert!(!out.contains("QyNTUxOQAAACDx1p6Yc0lz"), "{out}");
        assert_eq!(out, "cat key:\n***\ndone");
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
        // One byte at a time.
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            masked_stream(&m, &chunks),
            "before *** middle *** after ***"
        );
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
