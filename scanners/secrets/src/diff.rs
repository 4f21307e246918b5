//! The lines a change adds, so that a pull request is judged on what it brings and not on
//! what its target branch already had. Read from a unified diff (`git diff`), or built
//! directly by a caller that knows them.

use std::collections::{BTreeMap, BTreeSet};

use super::ScanError;

/// Added line numbers (1-based, in the new version) per `/`-separated file path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedLines {
    files: BTreeMap<String, BTreeSet<u32>>,
}

impl AddedLines {
    pub fn new() -> Self {
        AddedLines::default()
    }

    pub fn insert(&mut self, file: &str, line: u32) {
        self.files.entry(file.to_string()).or_default().insert(line);
    }

    /// The files with at least one added line.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn lines(&self, file: &str) -> Option<&BTreeSet<u32>> {
        self.files.get(file)
    }

    pub fn contains(&self, file: &str, line: u32) -> bool {
        self.files.get(file).is_some_and(|l| l.contains(&line))
    }

    /// Whether any line of `first..=last` was added (a multi-line key counts when any of
    /// its lines is new).
    pub fn touches(&self, file: &str, first: u32, last: u32) -> bool {
        self.files
            .get(file)
            .is_some_and(|l| l.range(first..=last.max(first)).next().is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Reads the added lines of a unified diff. Deleted files add nothing; hunk line counts are
/// followed, so added content that looks like a header (`+++ x`) is still content.
pub fn parse_unified_diff(text: &str) -> Result<AddedLines, ScanError> {
    let mut added = AddedLines::new();
    let mut file: Option<String> = None;
    // Remaining old and new lines of the current hunk, and the next new line number.
    let (mut old_left, mut new_left, mut new_line) = (0u32, 0u32, 0u32);
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if old_left > 0 || new_left > 0 {
            match raw.as_bytes().first() {
                Some(b'+') => {
                    if let Some(f) = &file {
                        added.insert(f, new_line);
                    }
                    new_line += 1;
                    new_left = new_left.saturating_sub(1);
                }
                Some(b'-') => old_left = old_left.saturating_sub(1),
                Some(b'\\') => {}
                // A context line (some tools drop the space of an empty one).
                Some(b' ') | None => {
                    new_line += 1;
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                }
                Some(_) => {
                    return Err(ScanError::Diff {
                        line: number,
                        message: "hunk ends before its line counts say".into(),
                    });
                }
            }
            continue;
        }
        if let Some(rest) = raw.strip_prefix("+++ ") {
            file = new_path(rest);
        } else if raw.starts_with("@@") {
            let (old, new, start) = hunk_header(raw).ok_or_else(|| ScanError::Diff {
                line: number,
                message: "malformed hunk header".into(),
            })?;
            (old_left, new_left, new_line) = (old, new, start);
        }
    }
    Ok(added)
}

/// `b/src/x.rs\t2024-01-01` → `src/x.rs`; `/dev/null` → none.
fn new_path(rest: &str) -> Option<String> {
    let path = rest.split('\t').next().unwrap_or(rest).trim_end();
    let path = path
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or(path);
    if path == "/dev/null" {
        return None;
    }
    Some(path.strip_prefix("b/").unwrap_or(path).to_string())
}

/// `@@ -a[,b] +c[,d] @@ ...` → (b, d, c); counts default to 1.
fn hunk_header(line: &str) -> Option<(u32, u32, u32)> {
    let mut parts = line.strip_prefix("@@ ")?.split(' ');
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let range = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (_, old_count) = range(old)?;
    let (new_start, new_count) = range(new)?;
    Some((old_count, new_count, new_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_hunks_and_headers() {
        let diff = "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,4 @@\n one\n-two\n+2\n+++ not a header\n three\n@@ -10 +11,2 @@\n ten\n+eleven\n";
        let added = parse_unified_diff(diff).unwrap();
        assert_eq!(
            added
                .lines("a.txt")
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [2, 3, 12]
        );
        assert!(added.touches("a.txt", 1, 2) && !added.touches("a.txt", 4, 11));
    }

    #[test]
    fn deleted_files_add_nothing_and_bad_headers_are_located() {
        let diff = "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n";
        assert!(parse_unified_diff(diff).unwrap().is_empty());
        let err = parse_unified_diff("+++ b/x\n@@ nonsense @@\n").unwrap_err();
        assert_eq!(err.to_string(), "diff:2: malformed hunk header");
    }
}
