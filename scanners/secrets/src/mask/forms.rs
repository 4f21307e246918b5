//! The forms a secret value is searched in besides itself: base64 (standard and URL-safe, at
//! each byte alignment), URL-encoded, hex and JSON-escaped. Pure string building; it must not
//! search (the masker does).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::{MIN_SECRET_LEN, MIN_WRAPPED_PLAIN};

/// The characters of the base64 encoding of `value` that do not depend on the bytes around it,
/// when `value` starts `offset` bytes (0, 1 or 2) into a 3-byte group.
pub(super) fn base64_core(value: &[u8], offset: usize, url_safe: bool) -> Option<String> {
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

pub(super) fn url_encode(value: &[u8], space_as_plus: bool) -> String {
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

pub(super) fn is_base64_char(b: u8) -> bool {
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
