//! The vulnerability database: every advisory under a directory (`--db DIR`), loaded once and
//! indexed by (ecosystem, normalised package name), and `moat db update`, which fills that
//! directory with OSV's per-ecosystem exports.
//!
//! A directory may hold, at any depth: OSV records as `*.json`, `*.yaml` / `*.yml`; OSV
//! export archives (`*.zip` of JSON records, as `db update` stores them); and the Debian
//! Security Tracker's advisory lists (files named `DSA-list` / `DLA-list`, or `list` inside a
//! `DSA` / `DLA` directory as in the tracker's own repository). A file that cannot be read as
//! an advisory is reported in [`LoadStats::errors`] and skipped; the rest still loads.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use super::Ecosystem;
use super::osv::{
    Advisory, Affected, CompileNotes, Event, OsvError, OsvRecord, Range, canonical_release,
    normalize_name,
};
use super::severity::Rating;
use super::version::{Scheme, Version};

/// Where `db update` downloads from.
pub const OSV_EXPORT_BASE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("vulnerability database directory {0} does not exist")]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloaded {url} is not a usable OSV archive: {reason}")]
    BadArchive { url: String, reason: String },
}

/// A file (or archive member) that was skipped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub path: String,
    pub message: String,
}

/// What a load read and what it left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStats {
    pub files: usize,
    pub records: usize,
    pub withdrawn: usize,
    /// Records whose id was already loaded (the same advisory from two sources).
    pub duplicates: usize,
    pub notes: CompileNotes,
    pub errors: Vec<LoadError>,
}

/// All advisories, with an index from (ecosystem, package) to the entries that name it.
#[derive(Debug, Default)]
pub struct Database {
    advisories: Vec<Advisory>,
    by_id: HashMap<String, u32>,
    /// (ecosystem, normalised name) → (advisory, affected entry) indices.
    index: HashMap<(Ecosystem, String), Vec<(u32, u32)>>,
    stats: LoadStats,
}

impl Database {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every advisory under `dir` (see the module docs for what is read).
    ///
    /// Files are read and parsed on several threads (reading thousands of small files is
    /// latency-bound, parsing CPU-bound); advisories are then indexed in file order, so the
    /// result does not depend on thread timing.
    pub fn load(dir: &Path) -> Result<Database, DbError> {
        if !dir.is_dir() {
            return Err(DbError::NotFound(dir.to_path_buf()));
        }
        let mut files = Vec::new();
        collect_files(dir, &mut files)?;
        files.sort();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers * 32);
        let job_rx = Mutex::new(job_rx);
        let (out_tx, out_rx) = mpsc::channel::<Output>();
        let mut outputs = Vec::new();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let out_tx = out_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || {
                    loop {
                        let job = job_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(job)) = job else { break };
                        if out_tx.send(job.run()).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(out_tx);
            let mut seq = 0;
            for path in &files {
                for job in jobs_for(path, &mut seq, &mut outputs) {
                    if job_tx.send(job).is_err() {
                        break;
                    }
                }
            }
            drop(job_tx);
            outputs.extend(out_rx.iter());
        });
        outputs.sort_by_key(|o| o.seq);
        let mut db = Database::new();
        for o in outputs {
            db.merge(o);
        }
        Ok(db)
    }

    fn merge(&mut self, o: Output) {
        self.stats.files += o.files;
        self.stats.records += o.records;
        self.stats.withdrawn += o.withdrawn;
        self.stats.notes.other_ecosystems += o.notes.other_ecosystems;
        self.stats.notes.bad_versions += o.notes.bad_versions;
        self.stats.errors.extend(o.errors);
        for a in o.advisories {
            if self.by_id.contains_key(&a.id) {
                self.stats.duplicates += 1;
            } else {
                self.insert(a);
            }
        }
    }

    fn error(&mut self, path: &str, message: String) {
        self.stats.errors.push(LoadError {
            path: path.to_string(),
            message,
        });
    }

    /// Adds one OSV record in JSON; `origin` names it in errors.
    pub fn add_json(&mut self, text: &[u8], origin: &str) {
        match OsvRecord::from_json(text) {
            Ok(r) => self.add_record(r),
            Err(e) => self.error(origin, e.to_string()),
        }
    }

    /// Adds one OSV record in YAML; `origin` names it in errors.
    pub fn add_yaml(&mut self, text: &str, origin: &str) {
        match OsvRecord::from_yaml(text) {
            Ok(r) => self.add_record(r),
            Err(e) => self.error(origin, e.to_string()),
        }
    }

    /// Adds one OSV record (withdrawn ones are counted and skipped; a second record with an
    /// id already loaded is skipped).
    pub fn add_record(&mut self, record: OsvRecord) {
        self.stats.records += 1;
        if self.by_id.contains_key(&record.id) {
            self.stats.duplicates += 1;
            return;
        }
        match Advisory::compile(record, &mut self.stats.notes) {
            Some(a) => self.insert(a),
            None => self.stats.withdrawn += 1,
        }
    }

    fn insert(&mut self, advisory: Advisory) {
        if advisory.affected.is_empty() {
            return;
        }
        let n = u32::try_from(self.advisories.len()).expect("fewer than 2^32 advisories");
        for (i, a) in advisory.affected.iter().enumerate() {
            self.index
                .entry((a.ecosystem, a.name.clone()))
                .or_default()
                .push((n, i as u32));
        }
        self.by_id.insert(advisory.id.clone(), n);
        self.advisories.push(advisory);
    }

    /// Adds a Debian Security Tracker list (`DSA/list` or `DLA/list`): each advisory becomes
    /// an advisory on the source packages it names, per release, fixed at the version given
    /// (`<unfixed>` and `<end-of-life>`: affected with no fix; `<not-affected>`: nothing).
    pub fn add_debian_tracker(&mut self, text: &str, kind: TrackerList) {
        for entry in parse_tracker(text, kind) {
            self.stats.records += 1;
            if self.by_id.contains_key(&entry.id) {
                self.stats.duplicates += 1;
                continue;
            }
            self.insert(entry);
        }
    }

    /// The affected entries naming this package (name normalised here).
    pub fn lookup(
        &self,
        ecosystem: Ecosystem,
        name: &str,
    ) -> impl Iterator<Item = (&Advisory, &Affected)> {
        let key = (ecosystem, normalize_name(ecosystem, name));
        self.index
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|(a, i)| {
                let adv = &self.advisories[*a as usize];
                (adv, &adv.affected[*i as usize])
            })
    }

    /// The advisory with this id.
    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.by_id.get(id).map(|i| &self.advisories[*i as usize])
    }

    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }
}

/// One unit of loading work: a file to read and parse, or an archive member already read.
enum Job {
    File(usize, PathBuf, FileKind),
    Member(usize, String, Vec<u8>),
}

#[derive(Clone, Copy)]
enum FileKind {
    Json,
    Yaml,
    Tracker(TrackerList),
}

/// What one job produced, merged into the database in `seq` order.
#[derive(Default)]
struct Output {
    seq: usize,
    files: usize,
    records: usize,
    withdrawn: usize,
    notes: CompileNotes,
    advisories: Vec<Advisory>,
    errors: Vec<LoadError>,
}

impl Output {
    fn error(seq: usize, path: &str, message: String) -> Output {
        Output {
            seq,
            errors: vec![LoadError {
                path: path.to_string(),
                message,
            }],
            ..Output::default()
        }
    }

    fn record(&mut self, parsed: Result<OsvRecord, OsvError>, origin: &str) {
        self.records += 1;
        match parsed {
            Ok(r) => match Advisory::compile(r, &mut self.notes) {
                Some(a) => self.advisories.push(a),
                None => self.withdrawn += 1,
            },
            Err(e) => self.errors.push(LoadError {
                path: origin.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

impl Job {
    fn run(self) -> Output {
        match self {
            Job::Member(seq, origin, bytes) => {
                let mut out = Output {
                    seq,
                    ..Output::default()
                };
                out.record(OsvRecord::from_json(&bytes), &origin);
                out
            }
            Job::File(seq, path, kind) => {
                let shown = path.display().to_string();
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => return Output::error(seq, &shown, e.to_string()),
                };
                let mut out = Output {
                    seq,
                    files: 1,
                    ..Output::default()
                };
                match kind {
                    FileKind::Json => out.record(OsvRecord::from_json(&bytes), &shown),
                    FileKind::Yaml => match std::str::from_utf8(&bytes) {
                        Ok(t) => out.record(OsvRecord::from_yaml(t), &shown),
                        Err(_) => out.errors.push(LoadError {
                            path: shown,
                            message: "not UTF-8".into(),
                        }),
                    },
                    FileKind::Tracker(list) => {
                        let advisories = parse_tracker(&String::from_utf8_lossy(&bytes), list);
                        out.records += advisories.len();
                        out.advisories = advisories;
                    }
                }
                out
            }
        }
    }
}

/// The jobs for one file: itself, or each JSON member of an archive (read here, on the
/// producing thread, because an archive reads sequentially). Problems with an archive as a
/// whole become outputs directly.
fn jobs_for(path: &Path, seq: &mut usize, outputs: &mut Vec<Output>) -> Vec<Job> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let mut next = || {
        *seq += 1;
        *seq
    };
    let kind = if let Some(list) = tracker_kind(name, parent) {
        FileKind::Tracker(list)
    } else if name.ends_with(".json") {
        FileKind::Json
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        FileKind::Yaml
    } else if name.ends_with(".zip") {
        let shown = path.display().to_string();
        let mut opened = Output {
            seq: next(),
            files: 1,
            ..Output::default()
        };
        let archive = std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                zip::ZipArchive::new(std::io::BufReader::new(f))
                    .map_err(|e| format!("not a zip archive: {e}"))
            });
        let mut archive = match archive {
            Ok(a) => a,
            Err(e) => {
                opened.errors.push(LoadError {
                    path: shown,
                    message: e,
                });
                outputs.push(opened);
                return Vec::new();
            }
        };
        outputs.push(opened);
        let mut jobs = Vec::new();
        for i in 0..archive.len() {
            let member = archive.by_index(i);
            let mut member = match member {
                Ok(m) => m,
                Err(e) => {
                    outputs.push(Output::error(next(), &shown, format!("member {i}: {e}")));
                    continue;
                }
            };
            if !member.is_file() || !member.name().ends_with(".json") {
                continue;
            }
            let origin = format!("{shown}!{}", member.name());
            let mut bytes = Vec::with_capacity(member.size() as usize);
            match member.read_to_end(&mut bytes) {
                Ok(_) => jobs.push(Job::Member(next(), origin, bytes)),
                Err(e) => outputs.push(Output::error(next(), &origin, e.to_string())),
            }
        }
        return jobs;
    } else {
        return Vec::new();
    };
    vec![Job::File(next(), path.to_path_buf(), kind)]
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DbError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DbError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| DbError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        // Hidden entries are version-control metadata or partial downloads.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type().map_err(|source| DbError::Io {
            path: path.clone(),
            source,
        })?;
        if ty.is_dir() {
            collect_files(&path, out)?;
        } else if ty.is_file() || (ty.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Debian Security Tracker lists

/// Which tracker list a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerList {
    /// Debian Security Advisories (stable releases).
    Dsa,
    /// Debian LTS Advisories.
    Dla,
}

fn tracker_kind(name: &str, parent: &str) -> Option<TrackerList> {
    match (name, parent) {
        ("DSA-list", _) | ("list", "DSA") => Some(TrackerList::Dsa),
        ("DLA-list", _) | ("list", "DLA") => Some(TrackerList::Dla),
        _ => None,
    }
}

/// Parses a tracker list:
///
/// ```text
/// [29 Mar 2023] DSA-5380-1 xorg-server - security update
///     {CVE-2023-1393}
///     [bullseye] - xorg-server 2:1.20.11-1+deb11u6
///     NOTE: ...
/// ```
///
/// A fixed-version line may end in a note in parentheses; an urgency there (`(medium)`) is
/// the advisory's severity for that release.
pub fn parse_tracker(text: &str, _kind: TrackerList) -> Vec<Advisory> {
    let mut out = Vec::new();
    let mut current: Option<Advisory> = None;
    for line in text.lines() {
        if line.starts_with('[') {
            if let Some(a) = current.take() {
                out.push(a);
            }
            current = parse_tracker_header(line);
            continue;
        }
        let Some(adv) = current.as_mut() else {
            continue;
        };
        let t = line.trim();
        if let Some(ids) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            adv.aliases
                .extend(ids.split_whitespace().map(str::to_string));
        } else if t.starts_with('[') {
            adv.affected.extend(parse_tracker_fix(t));
        }
    }
    if let Some(a) = current.take() {
        out.push(a);
    }
    out
}

/// `[29 Mar 2023] DSA-5380-1 xorg-server - security update`
fn parse_tracker_header(line: &str) -> Option<Advisory> {
    let (_, rest) = line.split_once(']')?;
    let rest = rest.trim();
    let (id, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !(id.starts_with("DSA-") || id.starts_with("DLA-")) {
        return None;
    }
    Some(Advisory {
        id: id.to_string(),
        aliases: Vec::new(),
        summary: rest.split_whitespace().collect::<Vec<_>>().join(" "),
        affected: Vec::new(),
    })
}

/// `[bullseye] - xorg-server 2:1.20.11-1+deb11u6 (medium)`
fn parse_tracker_fix(line: &str) -> Option<Affected> {
    let (release, rest) = line.strip_prefix('[')?.split_once(']')?;
    let rest = rest.trim().strip_prefix('-')?.trim();
    let mut words = rest.split_whitespace();
    let package = words.next()?;
    let fixed = words.next()?;
    let note = rest
        .split_once('(')
        .map(|(_, n)| n.trim_end_matches(')'))
        .unwrap_or("");
    let urgency = note
        .split([';', ' '])
        .find_map(|w| Rating::from_label(w.trim()));
    let events = match fixed {
        "<not-affected>" => return None,
        "<unfixed>" | "<end-of-life>" => vec![Event::Introduced(None)],
        v if v.starts_with('<') => return None,
        v => {
            let parsed = Version::parse(Scheme::Dpkg, v).ok()?;
            vec![Event::Introduced(None), Event::Fixed(parsed, v.to_string())]
        }
    };
    Some(Affected::new(
        Ecosystem::Debian,
        canonical_release(Ecosystem::Debian, release),
        package,
        vec![Range {
            scheme: Scheme::Dpkg,
            events,
        }],
        Vec::new(),
        urgency.unwrap_or_default(),
    ))
}

#[cfg(feature = "fetch")]
pub use crate::fetch::{UpdateReport, update, update_from};

#[cfg(test)]
mod tests {
    use super::*;

    const TRACKER: &str = "\
[29 Mar 2023] DSA-5380-1 xorg-server - security update
\t{CVE-2023-1393}
\t[bullseye] - xorg-server 2:1.20.11-1+deb11u6
[18 Apr 2018] DSA-4205-1 jessie end-of-life
[01 Jan 2005] DSA-600-1 sudo - several vulnerabilities
\t{CVE-2005-0001 CVE-2005-0002}
\t[woody] - sudo 1.6.6-1.3woody1 (medium)
\t[sarge] - sudo <not-affected> (Vulnerable code not present)
\t[sid] - sudo <unfixed>
\tNOTE: fixed in testing at time of DSA
";

    #[test]
    fn tracker_lists() {
        let list = parse_tracker(TRACKER, TrackerList::Dsa);
        assert_eq!(list.len(), 3);
        let x = &list[0];
        assert_eq!(x.id, "DSA-5380-1");
        assert_eq!(x.aliases, ["CVE-2023-1393"]);
        assert_eq!(x.summary, "xorg-server - security update");
        assert_eq!(x.affected.len(), 1);
        assert_eq!(x.affected[0].release.as_deref(), Some("11"));
        assert_eq!(x.affected[0].name, "xorg-server");
        assert!(list[1].affected.is_empty());
        let sudo = &list[2];
        assert_eq!(sudo.affected.len(), 2);
        assert_eq!(sudo.affected[0].release.as_deref(), Some("3.0"));
        assert_eq!(
            sudo.affected[0].rating.severity,
            Some(moat_pipelines::Severity::Medium)
        );
        assert_eq!(sudo.affected[1].release.as_deref(), Some("sid"));
        let mut db = Database::new();
        db.add_debian_tracker(TRACKER, TrackerList::Dsa);
        // The advisory without packages is not indexed.
        assert_eq!(db.len(), 2);
        assert_eq!(db.lookup(Ecosystem::Debian, "sudo").count(), 2);
    }
}
