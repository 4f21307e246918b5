//! `moat scan image REF [--input FILE] [--sbom FILE]`: an image's packages matched against the
//! vulnerability database, as a table, JSON or SARIF. Exit 0 when clean (or, with `--fail-on`,
//! when nothing reaches it), 1 when findings fail, 2 on unusable input.

use std::path::PathBuf;

use clap::Args;
use moat_pipelines::Severity;
use moat_vuln::db::Database;
use moat_vuln::scan::{self, ScanPolicy};

use super::scan::FormatArg;

#[derive(Debug, Args)]
pub struct ScanImageArgs {
    /// An image the Docker engine knows (tag, ID or digest). Omit with --input.
    pub reference: Option<String>,
    /// A `docker save` tarball instead of the engine.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The vulnerability database directory (OSV records; see `moat db update`).
    #[arg(long, default_value = "./moat-data/vulndb")]
    pub db: PathBuf,
    /// Write the CycloneDX 1.5 SBOM here.
    #[arg(long)]
    pub sbom: Option<PathBuf>,
    /// Fail only on findings at this severity or above (critical, high, medium, low); without
    /// it, any finding fails.
    #[arg(long)]
    pub fail_on: Option<String>,
    /// Count only findings that have a fixed version.
    #[arg(long)]
    pub only_fixed: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
}

pub fn execute_image(args: ScanImageArgs) -> u8 {
    let fail_on = match args.fail_on.as_deref() {
        None => Severity::Low,
        Some(s) => match Severity::parse(s) {
            Some(v) => v,
            None => {
                eprintln!("moat scan image: --fail-on: critical, high, medium or low");
                return 2;
            }
        },
    };
    let db = match Database::load(&args.db) {
        Ok(db) => db,
        Err(e) => {
            eprintln!(
                "moat scan image: no usable vulnerability database at {} ({e}); run `moat db update` or pass --db DIR",
                args.db.display()
            );
            return 2;
        }
    };
    let result = match (&args.input, &args.reference) {
        (Some(file), select) => scan::scan_saved(file, select.as_deref(), &db),
        (None, Some(reference)) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("moat scan image: {e}");
                    return 2;
                }
            };
            rt.block_on(async {
                let docker = moat_runner::docker::connect()
                    .await
                    .map_err(|e| scan::VulnScanError::Task(e.to_string()))?;
                scan::scan_image(&docker, reference, &db).await
            })
        }
        (None, None) => {
            eprintln!("moat scan image: name an image, or pass --input FILE");
            return 2;
        }
    };
    let image = match result {
        Ok(i) => i,
        Err(e) => {
            eprintln!("moat scan image: {e}");
            return 2;
        }
    };
    if let Some(path) = &args.sbom {
        let sbom = serde_json::to_string_pretty(&image.sbom()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, sbom) {
            eprintln!("moat scan image: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    let verdict = scan::judge(
        &image.findings,
        &ScanPolicy {
            fail_on,
            ignores: Vec::new(),
            only_fixed: args.only_fixed,
            today: scan::today(),
        },
    );
    let digest = image.digest();
    let target = image
        .meta
        .reference
        .clone()
        .unwrap_or_else(|| image.meta.id.clone());
    let out = match args.format {
        FormatArg::Table => scan::table(&target, &digest, &verdict),
        FormatArg::Json => {
            serde_json::to_string_pretty(&scan::json_report(Some(&image.meta), &digest, &verdict))
                .unwrap_or_default()
                + "\n"
        }
        FormatArg::Sarif => {
            serde_json::to_string_pretty(&scan::sarif(&verdict)).unwrap_or_default() + "\n"
        }
    };
    print!("{out}");
    for w in &image.warnings {
        eprintln!("moat scan image: warning: {w}");
    }
    if verdict.passed { 0 } else { 1 }
}
