//! The masker's unit tests: every form, both views, escapes, wrapping, streaming splits.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};

use super::forms::*;
use super::*;

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
fn wrap_masked(encoded: &str, width: usize, a: usize, b: usize, indent: &str, eol: &str) -> String {
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
