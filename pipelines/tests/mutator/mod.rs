//! The pipeline-file mutator of the fuzz test, shared with the end-to-end hostile-pipelines
//! test (which includes this file by path): line deletions, duplications and swaps, random
//! bytes, YAML-significant tokens, indentation changes and lines from other files.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ALPHABET: &[u8] = b":-[]{}&*!|>'\"#%@\t\n ,?~$.<0aZ\\";

const TOKENS: &[&str] = &[
    "*a",
    "&a",
    "<<",
    "<<: *a",
    "[",
    "]",
    "{",
    "}",
    "null",
    "~",
    "true",
    "false",
    "-1",
    "0",
    "99999999999999999999",
    "1.5e300",
    "${X}",
    "${",
    "${MOAT_COMMIT}",
    "..",
    "/",
    "\"",
    "'",
    "|",
    ">",
    "!!str",
    "!!binary",
    "!tag",
    "? ",
    "---",
    "...",
    "\t",
    "- ",
    ": ",
    "kind: deploy",
    "kind: build",
    "needs: [test]",
    "needs: []",
    "when: {}",
    "é",
    "\u{feff}",
    "0x1F",
    "%YAML 1.2",
];

fn lines(src: &[u8]) -> Vec<Vec<u8>> {
    src.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.join(&b'\n')
}

pub fn mutate(rng: &mut StdRng, src: &[u8], donors: &[Vec<u8>]) -> Vec<u8> {
    let mut out = src.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let mut ls = lines(&out);
        let n = ls.len();
        match rng.random_range(0..10) {
            0 if n > 1 => {
                ls.remove(rng.random_range(0..n));
                out = join(&ls);
            }
            1 => {
                let i = rng.random_range(0..n);
                let copy = ls[i].clone();
                ls.insert(i, copy);
                out = join(&ls);
            }
            2 => {
                let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                ls.swap(i, j);
                out = join(&ls);
            }
            3 => {
                let at = rng.random_range(0..=out.len());
                let bytes: Vec<u8> = (0..rng.random_range(1..6))
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect();
                out.splice(at..at, bytes);
            }
            4 if !out.is_empty() => out.truncate(rng.random_range(0..out.len())),
            5 => {
                let i = rng.random_range(0..n);
                if rng.random_bool(0.5) {
                    let spaces = rng.random_range(1..5);
                    ls[i].splice(0..0, std::iter::repeat_n(b' ', spaces));
                } else {
                    let strip = ls[i].iter().take_while(|&&b| b == b' ').count();
                    let k = rng.random_range(0..=strip);
                    ls[i].drain(..k);
                }
                out = join(&ls);
            }
            6 => {
                // Replace one whitespace-separated word with a YAML-significant token.
                let i = rng.random_range(0..n);
                let text = String::from_utf8_lossy(&ls[i]).into_owned();
                let mut words: Vec<&str> = text.split(' ').collect();
                let w = rng.random_range(0..words.len());
                words[w] = TOKENS[rng.random_range(0..TOKENS.len())];
                ls[i] = words.join(" ").into_bytes();
                out = join(&ls);
            }
            7 if !out.is_empty() => {
                let at = rng.random_range(0..out.len());
                out[at] = rng.random();
            }
            8 => {
                let donor = lines(&donors[rng.random_range(0..donors.len())]);
                let from = rng.random_range(0..donor.len());
                let len = rng.random_range(1..=(donor.len() - from).min(8));
                let at = rng.random_range(0..=n);
                ls.splice(at..at, donor[from..from + len].iter().cloned());
                out = join(&ls);
            }
            _ => {
                let at = rng.random_range(0..=out.len());
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
        }
    }
    out
}

/// `n` mutants of `sources` (round robin), the same for the same `seed`: what the end-to-end
/// test pushes through the coordinator.
pub fn mutants(seed: u64, sources: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| mutate(&mut rng, &sources[i % sources.len()], sources))
        .collect()
}
