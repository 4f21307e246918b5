//! `moat scan secrets DIR [--format table|json|sarif] [--baseline FILE] [--diff FILE]`: the
//! secret scanner on its own. Exit 0 when nothing (not allow-listed) is found, 1 when something
//! is, 2 when the input is unusable (missing directory, malformed allow file, bad baseline or
//! diff). The report goes to standard output, errors to standard error; no output format ever
//! contains a raw secret.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use moat_secrets::{self as secrets, Format, ScanOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Table,
    Json,
    Sarif,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Sarif => Format::Sarif,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScanSecretsArgs {
    /// The directory to scan (its `.moat/secrets.allow` is honoured).
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// A previous JSON report: the findings it lists are accepted.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// A unified diff (e.g. `git diff BASE...HEAD`): judge only the lines it adds.
    #[arg(long, value_name = "FILE")]
    pub diff: Option<PathBuf>,
}

pub fn execute_secrets(args: ScanSecretsArgs) -> u8 {
    let mut options = ScanOptions {
        baseline: args.baseline,
        ..ScanOptions::default()
    };
    if let Some(diff) = &args.diff {
        let text = match std::fs::read(diff) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                eprintln!("moat: cannot read {}: {e}", diff.display());
                return 2;
            }
        };
        match secrets::parse_unified_diff(&text) {
            Ok(added) => options.added_lines = Some(added),
            Err(e) => {
                eprintln!("moat: {}: {e}", diff.display());
                return 2;
            }
        }
    }
    let report = match secrets::scan_tree(&args.dir, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    };
    print!("{}", secrets::report::render(&report, args.format.into()));
    if report.is_clean() { 0 } else { 1 }
}
