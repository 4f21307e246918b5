//! One layer tar, read once as it streams by into a [`LayerDelta`]: the wanted files, Go build
//! information, whiteouts, opaque directories and the hashes of every path it writes. Also the
//! seekable window over a file that lets a save's layers be read in place. It must not merge
//! layers (that is `save`'s assembly) nor know where the tar came from.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::{ImageError, MAX_KEPT_FILE, MAX_WHOLE_EXECUTABLE, SHALLOW_SYMLINK_DEPTH};
use crate::inventory::{self, Node, normalize};

/// FNV-1a, 64 bits: cheap, allocation-free identity for every path a layer writes.
pub(super) fn path_hash(path: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What one layer contributes, independent of the layers below it.
#[derive(Debug, Default)]
pub(super) struct LayerDelta {
    /// Kept entries in archive order (a later entry for the same path wins).
    pub(super) files: Vec<(String, Node)>,
    /// Wanted hard links whose target was not kept in this layer: (path, target).
    pub(super) hardlinks: Vec<(String, String)>,
    /// Paths deleted from lower layers (`.wh.<name>`).
    pub(super) whiteouts: Vec<String>,
    /// Directories whose lower content is hidden (`.wh..wh..opq`).
    pub(super) opaque: Vec<String>,
    /// Hashes of every non-directory path written (hides lower content at and below it).
    pub(super) nondirs: HashSet<u64>,
    /// Hashes of every directory written (hides a lower non-directory at that path).
    pub(super) dirs: HashSet<u64>,
}

impl LayerDelta {
    /// Whether this layer hides a lower layer's entry at `path`.
    pub(super) fn hides(&self, path: &str) -> bool {
        let h = path_hash(path.as_bytes());
        if self.nondirs.contains(&h) || self.dirs.contains(&h) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| self.nondirs.contains(&path_hash(&path.as_bytes()[..i])))
    }
}

/// Reads one layer tar (plain or gzip) entry by entry, from a stream.
pub(super) fn read_layer<R: Read>(
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
pub(super) fn read_layer_at(
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
pub(super) fn check_extent(at: u64, size: u64, len: u64) -> Result<(), ImageError> {
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
pub(super) fn entry_step<R: Read>(entry: &tar::Entry<'_, R>, delta: &mut LayerDelta) -> Step {
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

pub(super) fn keep<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: String,
    delta: &mut LayerDelta,
) -> Result<(), ImageError> {
    let mut content = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut content)?;
    delta.files.push((path, Node::File(content)));
    Ok(())
}

pub(super) fn sniff<R: inventory::Skip>(
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
pub(super) struct FileWindow<'f> {
    pub(super) file: &'f File,
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) pos: u64,
    /// Read-ahead: the window's bytes from `buf_at` (empty when unused).
    pub(super) buf: Vec<u8>,
    pub(super) buf_at: u64,
    pub(super) block: usize,
}

impl<'f> FileWindow<'f> {
    pub(super) fn new(file: &'f File, start: u64, len: u64) -> Self {
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

    pub(super) fn read_ahead(file: &'f File, start: u64, len: u64, block: usize) -> Self {
        FileWindow {
            block,
            ..FileWindow::new(file, start, len)
        }
    }
}

/// Read-ahead block of the archive walks: a few small files with their headers.
pub(super) const READ_AHEAD: usize = 32 << 10;

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
pub(super) enum Step {
    /// Nothing (skipped, or fully handled from the header).
    Next,
    /// Keep the content of this wanted file.
    Keep(String),
    /// An executable: look for Go build information.
    Sniff(String),
}

/// Records what a layer entry means for the layer (whiteout, opaque directory, path hashes,
/// symlinks and hard links) and says whether its content is needed.
pub(super) fn classify_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    path: &str,
    delta: &mut LayerDelta,
) -> Step {
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
pub(super) enum Kind<'a> {
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
pub(super) fn classify(path: &str, kind: Kind<'_>, delta: &mut LayerDelta) -> Step {
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
