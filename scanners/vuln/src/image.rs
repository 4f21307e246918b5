//! Image reader: turns a container image (from the Docker engine, or a `docker save` tarball)
//! into the final file tree the inventory analyzers need — without writing anything to disk.
//!
//! The save format lists layers in no useful order (Docker tars its export directory
//! lexically, so `<v1-id>/layer.tar` entries come in hash order and `manifest.json` near the
//! end). Rather than spooling layers to disk or exporting twice, each layer is read once, as
//! it streams by, into a small `LayerDelta`: the files the analyzers want (by path, see
//! [`inventory::wanted`](super::inventory::wanted)), the build information of Go executables,
//! its whiteouts and opaque directories, and 64-bit hashes of every path it writes. When the
//! manifest and config have been seen, the deltas are merged bottom-up in manifest order with
//! overlay semantics: `.wh.<name>` deletes `<name>` (and everything below it) from lower
//! layers, `.wh..wh..opq` hides all lower content of its directory, and an entry that is not a
//! directory hides lower content at and below its path. File contents that are not wanted are
//! never buffered: the tar reader skips them in fixed-size chunks.
//!
//! Each kept file records the layer (config `rootfs.diff_ids` entry) that last wrote it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::inventory::{self, GoBuildInfo};
use super::read_full;

#[cfg(feature = "docker")]
mod engine;
#[cfg(feature = "docker")]
mod overlay;
#[cfg(feature = "docker")]
pub use engine::{read_image, read_image_exported, read_image_layers};

/// Largest wanted text file (package database, lock file, metadata) that is kept.
const MAX_KEPT_FILE: u64 = 64 << 20;
/// Largest Go executable that is read whole (larger ones are only scanned as they stream by).
const MAX_WHOLE_EXECUTABLE: u64 = 512 << 20;
/// Largest JSON document (manifest, config, index) of a save that is kept.
const MAX_JSON: u64 = 16 << 20;
/// Symlinks this shallow are kept whatever their name, so that paths through merged-/usr
/// links (`lib -> usr/lib`) resolve.
const SHALLOW_SYMLINK_DEPTH: usize = 2;

/// Reading or understanding an image failed.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("image {reference:?} not found on the Docker engine")]
    NotFound { reference: String },
    #[cfg(feature = "docker")]
    #[error("Docker engine error for image {reference:?}: {source}")]
    Docker {
        reference: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("reading the image archive: {0}")]
    Io(#[from] io::Error),
    #[error("not a usable image archive: {0}")]
    Format(String),
    #[error("the archive holds several images ({}); name one", images.join(", "))]
    Ambiguous { images: Vec<String> },
    #[error("the archive has no image {0:?}")]
    NoSuchImage(String),
    #[error("image ID mismatch: the engine reported {expected}, the exported config is {actual}")]
    IdMismatch { expected: String, actual: String },
}

/// What identifies an image and its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// What the user named (tag, ID or digest reference), if anything.
    pub reference: Option<String>,
    /// The image ID: `sha256:` of the config JSON.
    pub id: String,
    pub repo_tags: Vec<String>,
    /// `name@sha256:…` of the pushed or pulled manifest (engine only; a save has none).
    pub repo_digests: Vec<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    /// Bottom to top.
    pub layers: Vec<LayerMeta>,
}

/// One layer of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// `sha256:` of the uncompressed layer tar (config `rootfs.diff_ids`).
    pub diff_id: String,
    /// The Dockerfile step that made it, from the config's history.
    pub created_by: Option<String>,
}

/// An image: identity plus the analyzers' view of its final file tree.
#[derive(Debug, Clone, Default)]
pub struct ImageTree {
    pub meta: ImageMeta,
    pub files: FileTree,
}

/// The kept part of a file tree, keyed by path relative to the root (`etc/os-release`, no
/// leading slash).
#[derive(Debug, Clone, Default)]
pub struct FileTree {
    entries: BTreeMap<String, TreeEntry>,
}

/// One kept path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// The diff ID of the layer that last wrote it (none outside images).
    pub layer: Option<Arc<str>>,
    pub node: Node,
}

/// What a kept path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A wanted file's content (hard links are resolved to their target's content).
    File(Vec<u8>),
    /// A symbolic link and its target as stored.
    Symlink(String),
    /// A Go executable: only its build information is kept.
    GoBinary(GoBuildInfo),
}

impl FileTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a path (normalised: no leading `/` or `./`).
    pub fn insert(&mut self, path: &str, layer: Option<Arc<str>>, node: Node) {
        self.entries
            .insert(normalize(path).to_string(), TreeEntry { layer, node });
    }

    pub fn get(&self, path: &str) -> Option<&TreeEntry> {
        self.entries.get(normalize(path))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All kept paths in lexical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TreeEntry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Looks a path up following kept symlinks, in the path and its directories (at most 40,
    /// like the kernel). Returns the resolved path and its entry, which is never a symlink.
    pub fn resolve(&self, path: &str) -> Option<(String, &TreeEntry)> {
        let mut current = clean(normalize(path));
        'hops: for _ in 0..40 {
            if let Some(e) = self.entries.get(&current) {
                match &e.node {
                    Node::Symlink(target) => {
                        current = join_link(&current, target, "");
                        continue 'hops;
                    }
                    _ => return Some((current, e)),
                }
            }
            // A symlinked directory on the way?
            for (i, _) in current.match_indices('/') {
                if let Some(TreeEntry {
                    node: Node::Symlink(target),
                    ..
                }) = self.entries.get(&current[..i])
                {
                    current = join_link(&current[..i], target, &current[i + 1..]);
                    continue 'hops;
                }
            }
            return None;
        }
        None
    }

    /// The content of a file, following symlinks.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        match self.resolve(path)?.1 {
            TreeEntry {
                node: Node::File(b),
                ..
            } => Some(b),
            _ => None,
        }
    }

    fn remove_under(&mut self, dir: &str) {
        if dir.is_empty() {
            self.entries.clear();
            return;
        }
        let start = format!("{dir}/");
        // '0' is the character after '/': the range holds exactly the paths under `dir/`.
        let end = format!("{dir}0");
        let doomed: Vec<String> = self
            .entries
            .range(start..end)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }
}

/// `link` (a symlink at path `at`) followed by `rest`, as a clean root-relative path.
fn join_link(at: &str, target: &str, rest: &str) -> String {
    let mut joined = if target.starts_with('/') {
        target.to_string()
    } else {
        match at.rfind('/') {
            Some(i) => format!("{}/{target}", &at[..i]),
            None => target.to_string(),
        }
    };
    if !rest.is_empty() {
        joined.push('/');
        joined.push_str(rest);
    }
    clean(&joined)
}

/// Resolves `.` and `..` lexically; `..` at the root stays at the root.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Tar paths come as `usr/bin/x`, `./usr/bin/x` or `/usr/bin/x`, directories with a trailing
/// slash; the tree uses `usr/bin/x`.
fn normalize(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p == "." { "" } else { p }
}

/// FNV-1a, 64 bits: cheap, allocation-free identity for every path a layer writes.
fn path_hash(path: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What one layer contributes, independent of the layers below it.
#[derive(Debug, Default)]
struct LayerDelta {
    /// Kept entries in archive order (a later entry for the same path wins).
    files: Vec<(String, Node)>,
    /// Wanted hard links whose target was not kept in this layer: (path, target).
    hardlinks: Vec<(String, String)>,
    /// Paths deleted from lower layers (`.wh.<name>`).
    whiteouts: Vec<String>,
    /// Directories whose lower content is hidden (`.wh..wh..opq`).
    opaque: Vec<String>,
    /// Hashes of every non-directory path written (hides lower content at and below it).
    nondirs: HashSet<u64>,
    /// Hashes of every directory written (hides a lower non-directory at that path).
    dirs: HashSet<u64>,
}

impl LayerDelta {
    /// Whether this layer hides a lower layer's entry at `path`.
    fn hides(&self, path: &str) -> bool {
        let h = path_hash(path.as_bytes());
        if self.nondirs.contains(&h) || self.dirs.contains(&h) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| self.nondirs.contains(&path_hash(&path.as_bytes()[..i])))
    }
}

/// Reads one layer tar (plain or gzip) entry by entry, from a stream.
fn read_layer<R: Read>(
    reader: R,
    scratch: &mut inventory::ExecScratch,
) -> Result<LayerDelta, ImageError> {
    let mut delta = LayerDelta::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        match entry_step(&entry, &mut delta) {
            Step::Next => {}
            Step::Keep(path) => keep(&mut entry, path, &mut delta)?,
            Step::Sniff(path) => {
                let size = entry.size();
                sniff(&mut entry, path, size, scratch, &mut delta)?;
            }
        }
    }
    Ok(delta)
}

/// Reads one uncompressed layer tar lying at `start..start + len` of `file`, seeking over
/// every content the analyzers do not need: only headers, wanted files and the parts of
/// executables [`inventory::sniff_executable`] looks at are read.
fn read_layer_at(
    file: &File,
    start: u64,
    len: u64,
    scratch: &mut inventory::ExecScratch,
) -> Result<LayerDelta, ImageError> {
    let mut delta = LayerDelta::default();
    let mut archive = tar::Archive::new(FileWindow::read_ahead(file, start, len, READ_AHEAD));
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        // Seeking past the end reads as a clean end of archive: catch truncation here.
        check_extent(entry.raw_file_position(), entry.size(), len)?;
        match entry_step(&entry, &mut delta) {
            Step::Next => {}
            Step::Keep(path) => keep(&mut entry, path, &mut delta)?,
            Step::Sniff(path) => {
                let size = entry.size();
                if entry.header().entry_type().is_gnu_sparse() {
                    // Its bytes are not one contiguous run of the archive.
                    sniff(&mut entry, path, size, scratch, &mut delta)?;
                } else {
                    let at = start + entry.raw_file_position();
                    let mut window = FileWindow::new(file, at, size);
                    sniff(&mut window, path, size, scratch, &mut delta)?;
                }
            }
        }
    }
    Ok(delta)
}

/// An archive member's content must lie inside the archive (`len` bytes).
fn check_extent(at: u64, size: u64, len: u64) -> Result<(), ImageError> {
    if at.checked_add(size).is_some_and(|end| end <= len) {
        Ok(())
    } else {
        Err(ImageError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "truncated archive: a member of {size} bytes at offset {at} ends past its end ({len} bytes)"
            ),
        )))
    }
}

/// Decides with the path borrowed from the header; only kept paths are allocated.
fn entry_step<R: Read>(entry: &tar::Entry<'_, R>, delta: &mut LayerDelta) -> Step {
    let raw = entry.path_bytes();
    let lossy;
    let path = match std::str::from_utf8(&raw) {
        Ok(p) => normalize(p),
        Err(_) => {
            lossy = String::from_utf8_lossy(&raw).into_owned();
            normalize(&lossy)
        }
    };
    classify_entry(entry, path, delta)
}

fn keep<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: String,
    delta: &mut LayerDelta,
) -> Result<(), ImageError> {
    let mut content = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut content)?;
    delta.files.push((path, Node::File(content)));
    Ok(())
}

fn sniff<R: inventory::Skip>(
    r: &mut R,
    path: String,
    size: u64,
    scratch: &mut inventory::ExecScratch,
    delta: &mut LayerDelta,
) -> Result<(), ImageError> {
    if let Some(info) = inventory::sniff_executable(r, size, scratch, MAX_WHOLE_EXECUTABLE)? {
        delta.files.push((path, Node::GoBinary(info)));
    }
    Ok(())
}

/// The bytes `start..start + len` of a file, read with positioned reads (`pread`), so that
/// several windows on one file have independent positions and seeking costs no system call.
/// A window made with [`FileWindow::read_ahead`] reads small requests a block at a time, so
/// that walking an archive of small files (header, a skipped content, the next header, …)
/// costs one system call per block rather than one per header.
struct FileWindow<'f> {
    file: &'f File,
    start: u64,
    len: u64,
    pos: u64,
    /// Read-ahead: the window's bytes from `buf_at` (empty when unused).
    buf: Vec<u8>,
    buf_at: u64,
    block: usize,
}

impl<'f> FileWindow<'f> {
    fn new(file: &'f File, start: u64, len: u64) -> Self {
        FileWindow {
            file,
            start,
            len,
            pos: 0,
            buf: Vec::new(),
            buf_at: 0,
            block: 0,
        }
    }

    fn read_ahead(file: &'f File, start: u64, len: u64, block: usize) -> Self {
        FileWindow {
            block,
            ..FileWindow::new(file, start, len)
        }
    }
}

/// Read-ahead block of the archive walks: a few small files with their headers.
const READ_AHEAD: usize = 32 << 10;

impl Read for FileWindow<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (out.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let buf_end = self.buf_at + self.buf.len() as u64;
        if self.pos < self.buf_at || self.pos >= buf_end {
            if n >= self.block {
                let got = self.file.read_at(&mut out[..n], self.start + self.pos)?;
                self.pos += got as u64;
                return Ok(got);
            }
            let want = (self.block as u64).min(left) as usize;
            self.buf.resize(want, 0);
            let got = self.file.read_at(&mut self.buf, self.start + self.pos)?;
            self.buf.truncate(got);
            self.buf_at = self.pos;
            if got == 0 {
                return Ok(0);
            }
        }
        let from = (self.pos - self.buf_at) as usize;
        let k = n.min(self.buf.len() - from);
        out[..k].copy_from_slice(&self.buf[from..from + k]);
        self.pos += k as u64;
        Ok(k)
    }
}

impl Seek for FileWindow<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = base
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl inventory::Skip for FileWindow<'_> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.pos = self.pos.saturating_add(n).min(self.len.max(self.pos));
        Ok(())
    }
}

/// What to do with a layer entry's content.
enum Step {
    /// Nothing (skipped, or fully handled from the header).
    Next,
    /// Keep the content of this wanted file.
    Keep(String),
    /// An executable: look for Go build information.
    Sniff(String),
}

/// Records what a layer entry means for the layer (whiteout, opaque directory, path hashes,
/// symlinks and hard links) and says whether its content is needed.
fn classify_entry<R: Read>(entry: &tar::Entry<'_, R>, path: &str, delta: &mut LayerDelta) -> Step {
    let (parent, name) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    if let Some(hidden) = name.strip_prefix(".wh.") {
        if hidden == ".wh..opq" {
            delta.opaque.push(parent.to_string());
        } else if !hidden.starts_with(".wh.") {
            // `.wh..wh.plnk`, `.wh..wh.aufs`: AUFS bookkeeping, not deletions.
            delta.whiteouts.push(if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            });
        }
        return Step::Next;
    }
    let header = entry.header();
    let kind = header.entry_type();
    let kind = if kind.is_dir() {
        Kind::Dir
    } else if kind.is_file() {
        Kind::File {
            size: entry.size(),
            executable: header.mode().map(|m| m & 0o111 != 0).unwrap_or(false),
        }
    } else if kind.is_symlink() {
        Kind::Symlink(entry.link_name_bytes())
    } else if kind.is_hard_link() {
        Kind::HardLink(entry.link_name_bytes())
    } else {
        Kind::Other
    };
    classify(path, kind, delta)
}

/// What a layer entry is, whatever the layer's form (tar or directory).
enum Kind<'a> {
    Dir,
    File {
        size: u64,
        executable: bool,
    },
    /// With the link target as stored.
    Symlink(Option<std::borrow::Cow<'a, [u8]>>),
    /// With the target path (tar only: a directory shows the linked file itself).
    HardLink(Option<std::borrow::Cow<'a, [u8]>>),
    /// Devices, FIFOs, sockets.
    Other,
}

/// Records an entry that is not a whiteout marker; says whether its content is needed.
fn classify(path: &str, kind: Kind<'_>, delta: &mut LayerDelta) -> Step {
    if let Kind::Dir = kind {
        delta.dirs.insert(path_hash(path.as_bytes()));
        return Step::Next;
    }
    delta.nondirs.insert(path_hash(path.as_bytes()));
    let wanted = inventory::wanted(path);
    match kind {
        Kind::File { size, executable } => {
            if wanted {
                if size <= MAX_KEPT_FILE {
                    return Step::Keep(path.to_string());
                }
                tracing::warn!(%path, size, "wanted file too large, not analysed");
            } else if executable && size >= 64 {
                return Step::Sniff(path.to_string());
            }
        }
        Kind::Symlink(Some(target))
            if wanted || path.split('/').count() <= SHALLOW_SYMLINK_DEPTH =>
        {
            let target = String::from_utf8_lossy(&target).into_owned();
            delta.files.push((path.to_string(), Node::Symlink(target)));
        }
        Kind::HardLink(Some(target)) if wanted => {
            let target = normalize(&String::from_utf8_lossy(&target)).to_string();
            match delta.files.iter().rev().find(|(p, _)| *p == target) {
                Some((_, node)) => {
                    let node = node.clone();
                    delta.files.push((path.to_string(), node));
                }
                None => delta.hardlinks.push((path.to_string(), target)),
            }
        }
        _ => {}
    }
    Step::Next
}

#[derive(Deserialize)]
struct SaveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The pieces of an image archive gathered in one pass.
#[derive(Default)]
struct Gathered {
    layers: Vec<LayerDelta>,
    /// Archive path of a layer blob → index in `layers`.
    layer_at: HashMap<String, usize>,
    /// Layers in a format this reader cannot decompress (zstd), by archive path.
    unsupported: HashMap<String, &'static str>,
    json: HashMap<String, Vec<u8>>,
    /// Symlinked archive members (Docker links duplicate `layer.tar`s): path → target path.
    links: HashMap<String, String>,
}

impl Gathered {
    fn layer(&self, path: &str) -> Result<&LayerDelta, ImageError> {
        let mut p = normalize(path).to_string();
        for _ in 0..8 {
            if let Some(&i) = self.layer_at.get(&p) {
                return Ok(&self.layers[i]);
            }
            if let Some(why) = self.unsupported.get(&p) {
                return Err(ImageError::Format(format!(
                    "layer {path} is {why}, which is not supported"
                )));
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(ImageError::Format(format!(
            "layer {path} is missing from the archive"
        )))
    }

    fn add_layer(
        &mut self,
        path: String,
        delta: Result<LayerDelta, ImageError>,
    ) -> Result<(), ImageError> {
        let delta = delta.map_err(layer_error(&path))?;
        self.layer_at.insert(path, self.layers.len());
        self.layers.push(delta);
        Ok(())
    }

    fn json(&self, path: &str) -> Result<&[u8], ImageError> {
        let mut p = normalize(path).to_string();
        for _ in 0..8 {
            if let Some(b) = self.json.get(&p) {
                return Ok(b);
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(ImageError::Format(format!(
            "{path} is missing from the archive"
        )))
    }
}

/// What a member of an image archive is, from its first bytes.
enum Member {
    Tar,
    Gzip,
    Zstd,
    Json,
    Other,
}

impl Member {
    fn of(head: &[u8], size: u64) -> Member {
        let json = head.trim_ascii_start();
        if head.starts_with(&[0x1f, 0x8b]) {
            Member::Gzip
        } else if head.len() == 512 && (&head[257..262] == b"ustar" || head.iter().all(|&b| b == 0))
        {
            Member::Tar
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Member::Zstd
        } else if (json.starts_with(b"{") || json.starts_with(b"[")) && size <= MAX_JSON {
            Member::Json
        } else {
            Member::Other
        }
    }
}

/// The archive path of a member worth looking at (a regular file), after recording links.
fn member_path<R: Read>(g: &mut Gathered, entry: &tar::Entry<'_, R>) -> Option<String> {
    let path = normalize(&String::from_utf8_lossy(&entry.path_bytes())).to_string();
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        if let Some(target) = entry.link_name_bytes() {
            let target = String::from_utf8_lossy(&target).into_owned();
            let resolved = if kind.is_hard_link() {
                normalize(&target).to_string()
            } else {
                join_link(&path, &target, "")
            };
            g.links.insert(path, resolved);
        }
        return None;
    }
    // Directories, and the legacy per-layer v1 metadata nobody needs.
    (kind.is_file() && !path.ends_with("/json") && !path.ends_with("VERSION")).then_some(path)
}

fn layer_error(path: &str) -> impl FnOnce(ImageError) -> ImageError + '_ {
    move |e| match e {
        ImageError::Io(io) => {
            ImageError::Io(io::Error::new(io.kind(), format!("layer {path}: {io}")))
        }
        other => other,
    }
}

/// One pass over an image archive stream.
fn gather<R: Read>(reader: R) -> Result<Gathered, ImageError> {
    let mut g = Gathered::default();
    let mut scratch = inventory::ExecScratch::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(path) = member_path(&mut g, &entry) else {
            continue;
        };
        let size = entry.size();
        let mut peek = [0u8; 512];
        let n = read_full(&mut entry, &mut peek)?;
        let head = &peek[..n];
        let rest = Cursor::new(head.to_vec()).chain(&mut entry);
        match Member::of(head, size) {
            Member::Tar => g.add_layer(path, read_layer(rest, &mut scratch))?,
            Member::Gzip => g.add_layer(
                path,
                read_layer(flate2::read::MultiGzDecoder::new(rest), &mut scratch),
            )?,
            Member::Zstd => {
                g.unsupported.insert(path, "zstd-compressed");
            }
            Member::Json => {
                let mut content = Vec::new();
                { rest }.read_to_end(&mut content)?;
                g.json.insert(path, content);
            }
            Member::Other => {}
        }
    }
    Ok(g)
}

/// One pass over an image archive file, seeking over what is not needed (see
/// [`read_layer_at`]): for an uncompressed archive, the cost is the headers and the few files
/// the analyzers read, not the size of the image.
fn gather_file(file: &File) -> Result<Gathered, ImageError> {
    let len = file.metadata()?.len();
    let mut g = Gathered::default();
    let mut scratch = inventory::ExecScratch::default();
    let mut archive = tar::Archive::new(FileWindow::read_ahead(file, 0, len, READ_AHEAD));
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let Some(path) = member_path(&mut g, &entry) else {
            continue;
        };
        let size = entry.size();
        if entry.header().entry_type().is_gnu_sparse() {
            continue; // no image tool writes sparse members
        }
        let at = entry.raw_file_position();
        check_extent(at, size, len)?;
        let mut peek = [0u8; 512];
        let n = read_full(&mut FileWindow::new(file, at, size), &mut peek)?;
        match Member::of(&peek[..n], size) {
            Member::Tar => g.add_layer(path, read_layer_at(file, at, size, &mut scratch))?,
            Member::Gzip => {
                let gz = flate2::read::MultiGzDecoder::new(FileWindow::new(file, at, size));
                g.add_layer(path, read_layer(gz, &mut scratch))?
            }
            Member::Zstd => {
                g.unsupported.insert(path, "zstd-compressed");
            }
            Member::Json => {
                let mut content = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut content)?;
                g.json.insert(path, content);
            }
            Member::Other => {}
        }
    }
    Ok(g)
}

/// Config path, layer paths and tags of the chosen image, from `manifest.json` (Docker) or,
/// failing that, `index.json` (OCI image layout).
fn choose(
    g: &Gathered,
    select: Option<&str>,
) -> Result<(String, Vec<String>, Vec<String>), ImageError> {
    if let Some(raw) = g.json.get("manifest.json") {
        let manifests: Vec<SaveManifest> = serde_json::from_slice(raw)
            .map_err(|e| ImageError::Format(format!("manifest.json: {e}")))?;
        let tags = |m: &SaveManifest| m.repo_tags.clone().unwrap_or_default();
        let chosen = match select {
            Some(want) => {
                let want_hex = want.trim_start_matches("sha256:");
                manifests
                    .iter()
                    .find(|m| {
                        let t = tags(m);
                        t.iter()
                            .any(|t| t == want || *t == format!("{want}:latest"))
                            || (want_hex.len() >= 12 && m.config.contains(want_hex))
                    })
                    .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
                    .ok_or_else(|| ImageError::NoSuchImage(want.to_string()))?
            }
            None if manifests.len() == 1 => &manifests[0],
            None if manifests.is_empty() => {
                return Err(ImageError::Format("manifest.json lists no image".into()));
            }
            None => {
                return Err(ImageError::Ambiguous {
                    images: manifests
                        .iter()
                        .map(|m| tags(m).first().cloned().unwrap_or_else(|| m.config.clone()))
                        .collect(),
                });
            }
        };
        return Ok((chosen.config.clone(), chosen.layers.clone(), tags(chosen)));
    }
    let Some(raw) = g.json.get("index.json") else {
        return Err(ImageError::Format(
            "neither manifest.json nor index.json: not a docker save or OCI layout".into(),
        ));
    };
    let blob = |digest: &str| -> String { format!("blobs/{}", digest.replacen(':', "/", 1)) };
    let mut doc: Value =
        serde_json::from_slice(raw).map_err(|e| ImageError::Format(format!("index.json: {e}")))?;
    let mut tags = Vec::new();
    // Follow nested indexes (multi-platform images) to the first linux manifest.
    for _ in 0..4 {
        if doc.get("layers").is_some() {
            break;
        }
        let manifests = doc
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let pick = manifests
            .iter()
            .find(|m| {
                let name = m
                    .pointer("/annotations/org.opencontainers.image.ref.name")
                    .and_then(Value::as_str);
                select.is_some_and(|s| name == Some(s))
            })
            .or_else(|| {
                manifests.iter().find(|m| {
                    m.pointer("/platform/os")
                        .and_then(Value::as_str)
                        .is_none_or(|os| os == "linux")
                        && m.pointer("/platform/architecture").and_then(Value::as_str)
                            != Some("unknown")
                })
            })
            .ok_or_else(|| ImageError::Format("the OCI index lists no image manifest".into()))?;
        if let Some(name) = pick
            .pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(Value::as_str)
        {
            tags.push(name.to_string());
        }
        let digest = pick.get("digest").and_then(Value::as_str).unwrap_or("");
        doc = serde_json::from_slice(g.json(&blob(digest))?)
            .map_err(|e| ImageError::Format(format!("manifest {digest}: {e}")))?;
    }
    let config = doc
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| ImageError::Format("OCI manifest without config".into()))?;
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.get("digest").and_then(Value::as_str).map(blob))
                .collect()
        })
        .unwrap_or_default();
    Ok((blob(config), layers, tags))
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    rootfs: RootFs,
    #[serde(default)]
    history: Vec<History>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct History {
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// Reads an image archive (`docker save` format, or an OCI image layout tar) from a stream.
/// `select` names the image (tag or ID) when the archive holds several.
pub fn read_saved_from<R: Read>(reader: R, select: Option<&str>) -> Result<ImageTree, ImageError> {
    assemble(&gather(reader)?, select)
}

/// Picks the image of a gathered archive and merges its layers bottom-up.
fn assemble(g: &Gathered, select: Option<&str>) -> Result<ImageTree, ImageError> {
    let (config_path, layer_paths, repo_tags) = choose(g, select)?;
    let config_raw = g.json(&config_path)?;
    let config: ImageConfig = serde_json::from_slice(config_raw)
        .map_err(|e| ImageError::Format(format!("image config {config_path}: {e}")))?;
    if config.rootfs.diff_ids.len() != layer_paths.len() {
        return Err(ImageError::Format(format!(
            "the manifest lists {} layers but the config {} diff IDs",
            layer_paths.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let id = format!("sha256:{}", hex::encode(Sha256::digest(config_raw)));
    let mut created_by = config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.clone());
    let layers: Vec<LayerMeta> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| LayerMeta {
            diff_id: d.clone(),
            created_by: created_by.next().flatten(),
        })
        .collect();

    let mut tree = FileTree::new();
    for (path, meta) in layer_paths.iter().zip(&layers) {
        let delta = g.layer(path)?;
        let layer: Arc<str> = Arc::from(meta.diff_id.as_str());
        for dir in &delta.opaque {
            tree.remove_under(dir);
        }
        for gone in &delta.whiteouts {
            tree.entries.remove(gone);
            tree.remove_under(gone);
        }
        if !delta.nondirs.is_empty() || !delta.dirs.is_empty() {
            tree.entries.retain(|p, _| !delta.hides(p));
        }
        for (p, node) in &delta.files {
            tree.entries.insert(
                p.clone(),
                TreeEntry {
                    layer: Some(layer.clone()),
                    node: node.clone(),
                },
            );
        }
        for (p, target) in &delta.hardlinks {
            // The link's target was written by a lower layer (or not kept at all).
            if let Some(TreeEntry { node, .. }) = tree.entries.get(target).cloned() {
                tree.entries.insert(
                    p.clone(),
                    TreeEntry {
                        layer: Some(layer.clone()),
                        node,
                    },
                );
            }
        }
    }
    Ok(ImageTree {
        meta: ImageMeta {
            reference: select
                .map(str::to_string)
                .or_else(|| repo_tags.first().cloned()),
            id,
            repo_tags,
            repo_digests: Vec::new(),
            os: config.os,
            architecture: config.architecture,
            layers,
        },
        files: tree,
    })
}

/// Reads a `docker save` tarball (`moat scan image --input FILE`), optionally gzip-compressed
/// as a whole (`docker save | gzip`). `select` names the image when the file holds several.
pub fn read_saved(path: &Path, select: Option<&str>) -> Result<ImageTree, ImageError> {
    let file = File::open(path)?;
    if file.metadata()?.is_file() {
        let mut magic = [0u8; 2];
        let n = read_full(&mut FileWindow::new(&file, 0, 2), &mut magic)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
            return read_saved_from(gz, select);
        }
        return assemble(&gather_file(&file)?, select);
    }
    // A pipe or device (`--input /dev/stdin`): it cannot seek.
    let mut stream = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 2];
    let n = read_full(&mut stream, &mut magic)?;
    let head = Cursor::new(magic[..n].to_vec());
    if magic == [0x1f, 0x8b] {
        read_saved_from(
            flate2::read::MultiGzDecoder::new(head.chain(stream)),
            select,
        )
    } else {
        read_saved_from(head.chain(stream), select)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (path, kind, content) triples: kind `f` file, `x` executable, `d` dir,
    /// `l` symlink (content = target), `h` hard link (content = target).
    fn layer(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(if *kind == 'x' { 0o755 } else { 0o644 });
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                'l' | 'h' => {
                    h.set_entry_type(if *kind == 'l' {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    b.append_link(&mut h, path, std::str::from_utf8(content).unwrap())
                        .unwrap();
                }
                _ => {
                    h.set_size(content.len() as u64);
                    b.append_data(&mut h, path, *content).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A docker-save archive of the given layers, listed in reverse order (as a save may).
    fn save(layers: &[Vec<u8>], gzip_first: bool) -> Vec<u8> {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("sha256:{}", hex::encode(Sha256::digest(l))))
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": diff_ids.iter().enumerate().map(|(i, _)| serde_json::json!({"created_by": format!("step {i}")})).collect::<Vec<_>>(),
        })
        .to_string();
        let config_hex = hex::encode(Sha256::digest(config.as_bytes()));
        let manifest = serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": ["test/image:1"],
            "Layers": (0..layers.len()).map(|i| format!("l{i}/layer.tar")).collect::<Vec<_>>(),
        }])
        .to_string();
        let mut b = tar::Builder::new(Vec::new());
        let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        };
        add(&mut b, "manifest.json", manifest.as_bytes());
        for (i, l) in layers.iter().enumerate().rev() {
            if i == 0 && gzip_first {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, l).unwrap();
                add(&mut b, &format!("l{i}/layer.tar"), &gz.finish().unwrap());
            } else {
                add(&mut b, &format!("l{i}/layer.tar"), l);
            }
        }
        add(&mut b, &format!("{config_hex}.json"), config.as_bytes());
        b.into_inner().unwrap()
    }

    /// Reads an archive both ways, as a stream and as a file (the seeking walk), checks that
    /// they agree, and returns the result.
    fn read_both(archive: Vec<u8>) -> ImageTree {
        let streamed = read_saved_from(Cursor::new(archive.clone()), None).unwrap();
        let file = std::env::temp_dir().join(format!(
            "moat-image-test-{}-{}.tar",
            std::process::id(),
            hex::encode(&Sha256::digest(&archive)[..8])
        ));
        std::fs::write(&file, &archive).unwrap();
        let seeked = read_saved(&file, None);
        let _ = std::fs::remove_file(&file);
        let seeked = seeked.unwrap();
        assert_eq!(seeked.meta, streamed.meta);
        assert_eq!(
            seeked.files.iter().collect::<Vec<_>>(),
            streamed.files.iter().collect::<Vec<_>>()
        );
        seeked
    }

    fn paths(t: &ImageTree) -> Vec<String> {
        t.files.iter().map(|(p, _)| p.to_string()).collect()
    }

    const META: &[u8] = b"Name: a\nVersion: 1\n";

    #[test]
    fn whiteouts_opaque_and_shadowing() {
        let base = layer(&[
            ("usr/", 'd', b""),
            ("usr/lib/", 'd', b""),
            ("usr/lib/os-release", 'f', b"ID=debian\nVERSION_ID=\"12\"\n"),
            ("etc/os-release", 'l', b"../usr/lib/os-release"),
            ("site/a-1.dist-info/METADATA", 'f', META),
            ("site/b-1.dist-info/METADATA", 'f', META),
            ("opq/c-1.dist-info/METADATA", 'f', META),
            ("swap/d-1.dist-info/METADATA", 'f', META),
            ("lib", 'l', b"usr/lib"),
            (
                "usr/bin/cat",
                'x',
                b"\x7fELF not really an ELF file but long enough to be sniffed ......",
            ),
        ]);
        let upper = layer(&[
            ("site/.wh.a-1.dist-info", 'f', b""),
            ("opq/", 'd', b""),
            ("opq/.wh..wh..opq", 'f', b""),
            ("opq/e-1.dist-info/METADATA", 'f', META),
            ("swap", 'l', b"elsewhere"),
            ("site/b-1.dist-info/INSTALLER", 'f', b"pip"),
            (
                "hl/f-1.dist-info/METADATA",
                'h',
                b"site/b-1.dist-info/METADATA",
            ),
        ]);
        for gz in [false, true] {
            let t = read_both(save(&[base.clone(), upper.clone()], gz));
            assert_eq!(
                paths(&t),
                [
                    "etc/os-release",
                    "hl/f-1.dist-info/METADATA",
                    "lib",
                    "opq/e-1.dist-info/METADATA",
                    "site/b-1.dist-info/METADATA",
                    "swap",
                    "usr/lib/os-release",
                ]
            );
            let (l0, l1) = (&t.meta.layers[0].diff_id, &t.meta.layers[1].diff_id);
            assert_eq!(
                t.files
                    .get("site/b-1.dist-info/METADATA")
                    .unwrap()
                    .layer
                    .as_deref(),
                Some(l0.as_str())
            );
            assert_eq!(
                t.files
                    .get("opq/e-1.dist-info/METADATA")
                    .unwrap()
                    .layer
                    .as_deref(),
                Some(l1.as_str())
            );
            assert_eq!(t.files.read("hl/f-1.dist-info/METADATA"), Some(META));
            assert_eq!(
                t.files.read("etc/os-release"),
                Some(&b"ID=debian\nVERSION_ID=\"12\"\n"[..])
            );
            assert_eq!(
                t.files.resolve("lib/os-release").unwrap().0,
                "usr/lib/os-release"
            );
            assert_eq!(t.meta.repo_tags, ["test/image:1"]);
            assert_eq!(t.meta.layers[1].created_by.as_deref(), Some("step 1"));
            assert!(t.meta.id.starts_with("sha256:"));
        }
    }

    #[test]
    fn whole_directory_whiteout_and_root_opaque() {
        let base = layer(&[
            ("app/x-1.dist-info/METADATA", 'f', META),
            ("keep/y-1.dist-info/METADATA", 'f', META),
        ]);
        let del = layer(&[("./.wh.app", 'f', b"")]);
        let t = read_both(save(&[base.clone(), del], false));
        assert_eq!(paths(&t), ["keep/y-1.dist-info/METADATA"]);
        let wipe = layer(&[
            (".wh..wh..opq", 'f', b""),
            ("new/z-1.dist-info/METADATA", 'f', META),
        ]);
        let t = read_both(save(&[base, wipe], false));
        assert_eq!(paths(&t), ["new/z-1.dist-info/METADATA"]);
    }

    #[test]
    fn go_binaries_are_reduced_to_build_info() {
        let bin =
            inventory::synthetic_executable("go1.20.1", "path\tx\nmod\tx\tv1.0.0\t\n", true, true);
        // Without the note, only the writable segments are searched (seeking over the rest).
        let bare =
            inventory::synthetic_executable("go1.21.0", "path\ty\nmod\ty\tv2.0.0\t\n", true, false);
        let l = layer(&[
            ("usr/local/bin/app", 'x', &bin),
            ("usr/local/bin/data", 'f', &bin),
            ("usr/local/bin/bare", 'x', &bare),
        ]);
        let t = read_both(save(&[l], false));
        assert_eq!(paths(&t), ["usr/local/bin/app", "usr/local/bin/bare"]);
        for (path, go) in [
            ("usr/local/bin/app", "go1.20.1"),
            ("usr/local/bin/bare", "go1.21.0"),
        ] {
            match &t.files.get(path).unwrap().node {
                Node::GoBinary(info) => assert_eq!(info.go_version, go),
                other => panic!("{other:?}"),
            }
        }
    }

    /// An OCI image layout (`skopeo copy … oci-archive:`, `docker buildx … type=oci`): a
    /// multi-platform index leading to a linux manifest, gzip-compressed layer blobs.
    #[test]
    fn oci_layout_with_gzip_layers() {
        let sha = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
        let gz = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, b).unwrap();
            e.finish().unwrap()
        };
        let base = layer(&[
            ("etc/os-release", 'f', b"ID=alpine\nVERSION_ID=3.19.1\n"),
            ("site/a-1.dist-info/METADATA", 'f', META),
            ("site/b-1.dist-info/METADATA", 'f', META),
        ]);
        let upper = layer(&[("site/.wh.a-1.dist-info", 'f', b"")]);
        let diff_ids = [sha(&base), sha(&upper)];
        let blobs = [gz(&base), gz(&upper)];
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": sha(config.as_bytes()), "size": config.len()},
            "layers": blobs.iter().map(|b| serde_json::json!({"digest": sha(b), "size": b.len()})).collect::<Vec<_>>(),
        })
        .to_string();
        let other = r#"{"schemaVersion":2,"config":{"digest":"sha256:00"},"layers":[]}"#;
        let nested = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"digest": sha(other.as_bytes()), "platform": {"os": "unknown", "architecture": "unknown"}},
                {"digest": sha(manifest.as_bytes()), "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        })
        .to_string();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "digest": sha(nested.as_bytes()),
                "annotations": {"org.opencontainers.image.ref.name": "app:1"},
            }],
        })
        .to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: String, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        };
        let blob = |b: &[u8]| format!("blobs/{}", sha(b).replacen(':', "/", 1));
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json".into(), index.as_bytes());
        for part in [
            nested.as_bytes(),
            other.as_bytes(),
            manifest.as_bytes(),
            config.as_bytes(),
        ] {
            add(blob(part), part);
        }
        for l in &blobs {
            add(blob(l), l);
        }
        let t = read_both(b.into_inner().unwrap());
        assert_eq!(paths(&t), ["etc/os-release", "site/b-1.dist-info/METADATA"]);
        assert_eq!(t.meta.id, sha(config.as_bytes()));
        assert_eq!(t.meta.repo_tags, ["app:1"]);
        let layers: Vec<&str> = t.meta.layers.iter().map(|l| l.diff_id.as_str()).collect();
        assert_eq!(layers, diff_ids);
    }

    #[test]
    fn bad_archives() {
        let err = read_saved_from(Cursor::new(layer(&[("a", 'f', b"x")])), None).unwrap_err();
        assert!(matches!(err, ImageError::Format(_)), "{err}");
        let mut s = save(&[layer(&[("a", 'f', b"x")])], false);
        s.truncate(600);
        assert!(read_saved_from(Cursor::new(s.clone()), None).is_err());
        // The seeking walk notices the truncation too.
        let file = std::env::temp_dir().join(format!("moat-image-cut-{}.tar", std::process::id()));
        std::fs::write(&file, &s).unwrap();
        let cut = read_saved(&file, None);
        assert!(cut.is_err(), "{:?}", cut.map(|t| t.meta));
        // Cut inside a layer's skipped content, with manifest and config ahead of it: the
        // walk must not end quietly with part of the layer.
        let big = layer(&[
            ("usr/bin/tool", 'f', &[7u8; 8192][..]),
            ("site/a-1.dist-info/METADATA", 'f', META),
        ]);
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&big)));
        let config =
            serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).to_string();
        let manifest =
            serde_json::json!([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).to_string();
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("manifest.json", manifest.as_bytes()),
            ("c.json", config.as_bytes()),
            ("l/layer.tar", &big[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        }
        let whole = b.into_inner().unwrap();
        std::fs::write(&file, &whole).unwrap();
        assert_eq!(
            paths(&read_saved(&file, None).unwrap()),
            ["site/a-1.dist-info/METADATA"]
        );
        let at = whole.windows(5).position(|w| w == [7u8; 5]).unwrap() + 4096;
        assert!(read_saved_from(Cursor::new(whole[..at].to_vec()), None).is_err());
        std::fs::write(&file, &whole[..at]).unwrap();
        let cut = read_saved(&file, None);
        let _ = std::fs::remove_file(&file);
        assert!(cut.is_err(), "{:?}", cut.map(|t| t.meta));
    }

    #[test]
    fn resolve_symlink_chains() {
        let mut t = FileTree::new();
        t.insert(
            "usr/lib/os-release",
            None,
            Node::File(b"ID=alpine".to_vec()),
        );
        t.insert("etc/os-release", None, Node::Symlink("/etc/alt".into()));
        t.insert("etc/alt", None, Node::Symlink("../lib/os-release".into()));
        t.insert("lib", None, Node::Symlink("usr/lib".into()));
        t.insert("loop", None, Node::Symlink("loop".into()));
        assert_eq!(t.read("etc/os-release"), Some(&b"ID=alpine"[..]));
        assert_eq!(t.read("loop"), None);
        assert_eq!(t.read("nothing"), None);
    }
}
