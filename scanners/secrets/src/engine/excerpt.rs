//! What a finding shows of its secret: the fingerprint (stable across runs, never the
//! secret), the masked value and the masked excerpt of its line, and the entropy the rules'
//! filters use. Everything here works on one candidate; it must not decide what is a secret.

use sha2::{Digest, Sha256};

use super::EXCERPT_MAX;

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
pub(super) fn fingerprint(rule: &str, file: &str, secret: &[u8]) -> String {
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
pub(super) fn excerpt(
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
pub(super) fn mask_random_tokens(line: &[u8], focus: &mut usize) -> Vec<u8> {
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
