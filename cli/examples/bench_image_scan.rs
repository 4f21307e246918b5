//! Benchmark (not a test): how long a whole image vulnerability scan takes next to the time to
//! merely read the exported image (the I/O floor), for a large real image.
//!
//! For the image named by `--image` (the Debian 12 image `scripts/bench-image-scan` builds
//! with debootstrap), it:
//!
//! 1. exports the image once through the engine into the `--save` file (`docker save`
//!    format), and loads the vulnerability database from `--db` (timed, reported apart: the
//!    scans below get the loaded database);
//! 2. times, each beside its floor, with floor and scan alternating round by round so that
//!    both see the same load on a busy machine (each line gives the ratio of the medians and
//!    the range of the per-round ratios; target, issue 5: at most 2x the floor and under 5 s):
//!    * `scan_saved` on that file, beside the file floor: a plain sequential read of the whole
//!      file (warm page cache) — "merely reading the exported image tarball";
//!    * `scan_image` of the engine's image, beside the same file floor. As root on an overlay2
//!      engine it reads the layer directories in place (said in the output);
//!    * the scan through the engine's export (`read_image_exported`), beside the export floor:
//!      draining `export_image` without looking at the bytes (Docker makes the archive at
//!      about 140 MiB/s, so this path cannot beat it);
//! 3. breaks the saved-file scan into `read_saved` (the layer walk), `inventory_image` and
//!    `match_packages`, beside a bare tar walk of the same archive (outer and layer headers,
//!    contents skipped by the `tar` crate) to show what walking the tar format alone costs.
//!
//! Every time is the median of `--runs` rounds (default 5, after one untimed warm-up), with
//! the minimum and maximum beside it. `--no-engine` skips the engine scans and the export
//! floor (the slow part, for profiling the rest). Usage: `scripts/bench-image-scan [--runs N]
//! [--no-engine]` (builds the image once, then this example in release mode), or directly:
//! `bench_image_scan --image moat-bench/debian12:1 --db tests/fixtures/advisories --save FILE`.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::StreamExt;
use moat_vuln::db::Database;
use moat_vuln::image::{read_image_exported, read_image_layers, read_saved};
use moat_vuln::inventory::inventory_image;
use moat_vuln::matcher::match_packages;
use moat_vuln::scan::{ImageScan, scan_image, scan_saved};
use support::{arg, flag};

/// The targets.
const MAX_RATIO: f64 = 2.0;
const MAX_SCAN: Duration = Duration::from_secs(5);

/// Median, minimum and maximum of a set of runs.
#[derive(Debug, Clone, Copy)]
struct Timing {
    median: Duration,
    min: Duration,
    max: Duration,
}

impl Timing {
    fn of(mut runs: Vec<Duration>) -> Timing {
        runs.sort();
        Timing {
            median: runs[runs.len() / 2],
            min: runs[0],
            max: runs[runs.len() - 1],
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.3} s  ({:.3}–{:.3})",
            self.median.as_secs_f64(),
            self.min.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

/// Runs `f` once untimed, then `runs` times timed; returns the timing and the last result.
fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut last = f();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed());
    }
    (Timing::of(times), last)
}

/// A floor and a scan measured in alternation (floor, scan, floor, scan, …, after one untimed
/// round), so that both see the same load on a busy machine.
struct Paired<T> {
    floor: Timing,
    scan: Timing,
    /// scan / floor of each round: (min, max).
    ratios: (f64, f64),
    last: T,
}

fn measure_pair<T>(runs: usize, mut floor: impl FnMut(), mut scan: impl FnMut() -> T) -> Paired<T> {
    floor();
    let mut last = scan();
    let (mut floors, mut scans, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        floor();
        let f = start.elapsed();
        let start = Instant::now();
        last = scan();
        let s = start.elapsed();
        floors.push(f);
        scans.push(s);
        ratios.push(s.as_secs_f64() / f.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    Paired {
        floor: Timing::of(floors),
        scan: Timing::of(scans),
        ratios: (ratios[0], ratios[ratios.len() - 1]),
        last,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Exports the image through the engine into `path` (written whole, then synced so that
/// writeback does not disturb the timings). Returns the size.
async fn export_to(docker: &Docker, id: &str, path: &Path) -> io::Result<u64> {
    let tmp = path.with_extension("partial");
    let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut n = 0u64;
    let stream = docker.export_image(id);
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        n += chunk.len() as u64;
        out.write_all(&chunk)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(n)
}

/// The file floor: a plain sequential read of the whole file into one reused 1 MiB buffer.
fn read_file(path: &Path) -> u64 {
    let mut f = File::open(path).expect("open the saved image");
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
}

/// The engine floor: every byte of `export_image`, counted and dropped.
async fn drain_export(docker: &Docker, id: &str) -> u64 {
    let stream = docker.export_image(id);
    futures_util::pin_mut!(stream);
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.expect("export the image").len() as u64;
    }
    n
}

/// A bare walk of the archive: outer entries, and for each layer tar its entries' headers,
/// contents skipped (what the tar format alone costs). Returns (layers, layer entries).
fn tar_walk(path: &Path) -> (usize, u64) {
    let file = io::BufReader::with_capacity(1 << 20, File::open(path).expect("open"));
    let mut outer = tar::Archive::new(file);
    let (mut layers, mut entries) = (0, 0u64);
    for entry in outer.entries().expect("outer tar") {
        let entry = entry.expect("outer entry");
        let path = entry.path_bytes().into_owned();
        if !path.ends_with(b"layer.tar") || !entry.header().entry_type().is_file() {
            continue;
        }
        layers += 1;
        let mut inner = tar::Archive::new(entry);
        for e in inner.entries().expect("layer tar") {
            let e = e.expect("layer entry");
            std::hint::black_box(e.path_bytes());
            entries += 1;
        }
    }
    (layers, entries)
}

fn packages_by_ecosystem(scan: &ImageScan) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &scan.packages {
        *counts.entry(p.ecosystem.osv_name()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(e, n)| format!("{e} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report<T>(what: &str, floor: &str, p: &Paired<T>) {
    let ratio = p.scan.median.as_secs_f64() / p.floor.median.as_secs_f64();
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "  {what}         {}   {ratio:.2}x the {floor} floor (per round {:.2}–{:.2}x): ratio {}, time {}",
        p.scan,
        p.ratios.0,
        p.ratios.1,
        verdict(ratio <= MAX_RATIO),
        verdict(p.scan.median < MAX_SCAN),
    );
}

fn main() {
    let image = arg("--image", "moat-bench/debian12:1");
    let db_dir = PathBuf::from(arg("--db", "tests/fixtures/advisories"));
    let save = PathBuf::from(arg(
        "--save",
        &std::env::temp_dir()
            .join("moat-bench-image.save.tar")
            .to_string_lossy(),
    ));
    let runs: usize = arg("--runs", "5").parse().expect("--runs N");
    assert!(runs >= 1, "--runs must be at least 1");
    let with_engine = !flag("--no-engine");

    // The same kind of runtime `moat scan image` uses.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let docker = rt
        .block_on(moat_runner::docker::connect())
        .expect("a running Docker engine");
    let inspect = rt
        .block_on(docker.inspect_image(&image))
        .unwrap_or_else(|e| panic!("image {image}: {e} (scripts/bench-image-scan builds it)"));
    let id = inspect.id.clone().expect("image ID");

    println!("image-scan benchmark: {image} ({id})");
    let start = Instant::now();
    let size = rt
        .block_on(export_to(&docker, &id, &save))
        .unwrap_or_else(|e| panic!("exporting to {}: {e}", save.display()));
    println!(
        "  exported to {} in {:.1} s: {:.0} MiB; {runs} timed runs each, median (min–max)",
        save.display(),
        start.elapsed().as_secs_f64(),
        mib(size)
    );

    // 1. The database, loaded before (and timed apart from) the scans.
    let (load, db) = measure(runs.min(3), || {
        Database::load(&db_dir).unwrap_or_else(|e| panic!("database {}: {e}", db_dir.display()))
    });

    // 2. Each scan beside its floor.
    let saved = measure_pair(
        runs,
        || assert_eq!(read_file(&save), size),
        || scan_saved(&save, None, &db).expect("scan_saved"),
    );
    let saved_scan = &saved.last;
    // `scan_image` reads the engine's layer directories in place when it can (root, overlay2,
    // same host); its I/O floor is then the issue's: reading the exported tarball. The export
    // path is measured apart, beside draining the export.
    let in_place = with_engine
        && rt
            .block_on(read_image_layers(&docker, &image))
            .expect("read_image_layers")
            .is_some();
    let engine = with_engine.then(|| {
        let engine = measure_pair(
            runs,
            || assert_eq!(read_file(&save), size),
            || {
                rt.block_on(scan_image(&docker, &image, &db))
                    .expect("scan_image")
            },
        );
        assert_eq!(saved_scan.packages, engine.last.packages);
        assert_eq!(saved_scan.findings, engine.last.findings);
        engine
    });
    let exported = with_engine.then(|| {
        let exported = measure_pair(
            runs,
            || {
                let n = rt.block_on(drain_export(&docker, &id));
                assert_eq!(n, size, "the engine exported a different archive size");
            },
            || {
                let tree = rt
                    .block_on(read_image_exported(&docker, &image))
                    .expect("read_image_exported");
                ImageScan::from_tree(tree, &db)
            },
        );
        assert_eq!(saved_scan.packages, exported.last.packages);
        assert_eq!(saved_scan.findings, exported.last.findings);
        exported
    });

    // 3. Phases of the saved-file scan.
    let (walk, (layers, entries)) = measure(runs, || tar_walk(&save));
    let (read, tree) = measure(runs, || read_saved(&save, None).expect("read_saved"));
    let (inv_t, inv) = measure(runs, || inventory_image(&tree));
    let (match_t, findings) = measure(runs, || match_packages(&db, &inv.packages));
    let os = saved_scan
        .os
        .as_ref()
        .and_then(|o| o.pretty_name.clone())
        .unwrap_or_else(|| "unknown".into());
    println!(
        "  image: {:.0} MiB, {layers} layer(s), {entries} tar entries, {} kept paths; {os}",
        mib(size),
        tree.files.len()
    );
    println!(
        "  found: {} packages ({}), {} findings, {} warnings",
        saved_scan.packages.len(),
        packages_by_ecosystem(saved_scan),
        saved_scan.findings.len(),
        saved_scan.warnings.len()
    );
    for w in saved_scan.warnings.iter().take(5) {
        println!("    warning: {w}");
    }
    println!(
        "  database: {} advisories from {} ({} files), loaded in {load}",
        db.len(),
        db_dir.display(),
        db.stats().files
    );
    println!();
    println!(
        "  floor, read the saved file  {}   {:.0} MiB/s",
        saved.floor,
        mib(size) / saved.floor.median.as_secs_f64()
    );
    if let Some(e) = &exported {
        println!(
            "  floor, drain engine export  {}   {:.0} MiB/s",
            e.floor,
            mib(size) / e.floor.median.as_secs_f64()
        );
    }
    println!("  phases of scan_saved:");
    println!("    bare tar walk (headers)   {walk}");
    println!("    read_saved (layer walk)   {read}");
    println!("    inventory_image           {inv_t}");
    println!(
        "    match_packages            {match_t}   ({} findings)",
        findings.len()
    );
    println!();
    report("scan_saved (file)  ", "file", &saved);
    if let Some(e) = &engine {
        let how = if in_place {
            "layer directories in place"
        } else {
            "through the export: not root, or not overlay2"
        };
        report("scan_image (engine)", "file", e);
        println!("    (scan_image read the image's {how})");
    }
    println!(
        "  target: <= {MAX_RATIO:.1}x the floor and under {} s",
        MAX_SCAN.as_secs()
    );
    if let Some(e) = &exported {
        // Not judged against the target: Docker's export alone is the bound on this path.
        println!(
            "  for comparison, the scan through Docker's export (what an engine without readable layer directories gets):"
        );
        println!(
            "    scan via export             {}   {:.2}x draining the export ({}), which is Docker's own speed",
            e.scan,
            e.scan.median.as_secs_f64() / e.floor.median.as_secs_f64(),
            e.floor
        );
    }
}
