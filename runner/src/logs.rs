//! Turning a container's output chunks into lines: partial lines are carried across chunks,
//! over-long lines are cut, and a stage's total output is capped so one noisy stage cannot
//! exhaust memory or disk.

use std::time::Duration;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
    /// Messages from Moat itself about the stage (pulls, timeouts, limits).
    System,
}

/// Splits a byte stream into lines.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Feeds a chunk; calls `out` for every complete line (without its newline).
    pub fn push(&mut self, mut chunk: &[u8], mut out: impl FnMut(&[u8])) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = chunk.split_at(nl);
            if self.partial.is_empty() {
                emit(line, self.max_line, &mut out);
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                emit(&full, self.max_line, &mut out);
            }
            chunk = &rest[1..];
        }
        self.partial.extend_from_slice(chunk);
        while self.partial.len() >= self.max_line {
            let rest = self.partial.split_off(self.max_line);
            let full = std::mem::replace(&mut self.partial, rest);
            out(&full);
        }
    }

    /// Emits what is left after the stream ended without a final newline.
    pub fn finish(&mut self, mut out: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let full = std::mem::take(&mut self.partial);
            emit(&full, self.max_line, &mut out);
        }
    }
}

fn emit(line: &[u8], max: usize, out: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for part in line.chunks(max) {
        out(part);
    }
    if line.is_empty() {
        out(line);
    }
}

/// `1.2s`, `45s`, `2m05s`, `1h02m` — short and exact enough for summaries and messages.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 10_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `16 MiB`, `2 GiB`, `512 KiB`.
pub fn fmt_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {name}", bytes / size)
            } else {
                format!("{:.1} {name}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut lines = Vec::new();
        for c in chunks {
            s.push(c, |l| lines.push(String::from_utf8_lossy(l).into_owned()));
        }
        s.finish(|l| lines.push(String::from_utf8_lossy(l).into_owned()));
        lines
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(split(&[b"ab", b"c\nde", b"f\n"], 100), ["abc", "def"]);
        assert_eq!(split(&[b"a\r\n\nb"], 100), ["a", "", "b"]);
        assert_eq!(split(&[b"abcdefg\n"], 3), ["abc", "def", "g"]);
        assert_eq!(split(&[b"abcd", b"efg"], 3), ["abc", "def", "g"]);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(fmt_size(16 << 20), "16 MiB");
        assert_eq!(fmt_size(1536 << 20), "1.5 GiB");
    }
}
