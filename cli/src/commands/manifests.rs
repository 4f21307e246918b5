//! `moat scan manifests DIR [--format table|json|sarif]`: the Kubernetes manifest policy on its
//! own (Pod Security Standards baseline and restricted, plus hygiene checks). Exit 0 when
//! nothing (not ignored) is found, 1 when something is, 2 when the input is unusable (missing
//! path, a file that is not YAML or JSON, a file over the size limit). The report goes to
//! standard output, unusable files to standard error, each as `file:line:col: message`.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use moat_manifests::{self as manifests, ScanOptions};

use super::scan::FormatArg;

#[derive(Debug, Args)]
pub struct ScanManifestsArgs {
    /// The directory of manifests (`*.yaml`, `*.yml`, `*.json`, searched recursively), or one
    /// manifest file.
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
}

pub fn execute_manifests(args: ScanManifestsArgs) -> u8 {
    let report = match manifests::scan_path(&args.dir, &ScanOptions::default()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    };
    for e in &report.errors {
        eprintln!("moat: {e}");
    }
    // The report is printed even when some files were unusable, so that what could be judged
    // is seen; the exit code still says the input was not all usable. A closed pipe (`| head`)
    // is not worth a panic.
    let rendered = manifests::report::render(&report, args.format.into());
    let _ = std::io::stdout().lock().write_all(rendered.as_bytes());
    report.exit_code()
}
