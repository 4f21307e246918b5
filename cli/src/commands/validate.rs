//! `moat validate [FILE]`: exit 0 and `OK` for a valid file, 1 with every located error for
//! an invalid one, 2 when the file cannot be read.

use std::io::Read;
use std::path::{Path, PathBuf};

use moat_pipelines::{MAX_FILE_SIZE, Pipeline, Policy};

/// Reads at most one byte more than the limit, so a huge file is refused without loading it.
pub fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

pub enum Loaded {
    Valid(Pipeline),
    /// Rendered `file:line:col: message` lines.
    Invalid(String),
    Unreadable(String),
}

pub fn load(path: &Path, policy: &Policy) -> Loaded {
    let display = path.display().to_string();
    let bytes = match read_limited(path) {
        Ok(b) => b,
        Err(e) => return Loaded::Unreadable(format!("moat: cannot read {display}: {e}")),
    };
    match moat_pipelines::parse_with(&bytes, policy) {
        Ok(p) => Loaded::Valid(p),
        Err(diags) => Loaded::Invalid(diags.render(&display)),
    }
}

pub fn execute(file: Option<PathBuf>) -> u8 {
    let path = file.unwrap_or_else(|| PathBuf::from(".moat.yml"));
    match load(&path, &Policy::default()) {
        Loaded::Valid(p) => {
            println!(
                "{}: OK ({} stage{})",
                path.display(),
                p.stages.len(),
                if p.stages.len() == 1 { "" } else { "s" }
            );
            0
        }
        Loaded::Invalid(text) => {
            eprint!("{text}");
            1
        }
        Loaded::Unreadable(msg) => {
            eprintln!("{msg}");
            2
        }
    }
}
