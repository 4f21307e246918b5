//! Go: the build information embedded in Go executables (module path and version of the main
//! module and every dependency, and the Go toolchain version), and `go.mod` for source trees.
//!
//! Build information lives in the `.go.buildinfo` blob that starts with `\xff Go buildinf:`
//! (16-byte aligned, 32-byte header). Go 1.18+ stores the version and module strings inline
//! after the header (flag bit 2); older toolchains store two pointers to Go strings, which are
//! resolved through the ELF program headers. Versions are reported as OSV's Go ecosystem spells
//! them: without the `v` (`1.2.3`), the toolchain as package `stdlib` (`go1.21` → `1.21.0`).

use std::io::{self, Read};

use memchr::memmem;

use super::ParseError;
use crate::{Ecosystem, Package, read_full};

/// Starts the build-information blob.
pub const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const ALIGN: u64 = 16;
/// Longest version or module string accepted (module lists of large programs are ~100 kB).
const MAX_STRING: u64 = 4 << 20;
/// How far into the data segment the blob may start (Go's own reader looks at 64 KiB).
const SEARCH_WINDOW: usize = 64 * 1024;

/// What a Go executable says about how it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `runtime.buildVersion`, e.g. `go1.21.5`.
    pub go_version: String,
    /// `runtime/debug.ReadBuildInfo`'s text form (`path`, `mod`, `dep`, `=>`, `build` lines),
    /// without its sentinels; empty for binaries built outside module mode.
    pub modinfo: String,
}

/// Reads the build information of a whole executable held in memory (ELF-aware: the blob is
/// looked for at the start of `.go.buildinfo` or of the first writable segment, as Go does, so
/// that a program that merely contains the magic string in its read-only data is not misread).
pub fn read_buildinfo(bin: &[u8]) -> Option<GoBuildInfo> {
    let elf = Elf::parse(bin);
    if let Some(start) = elf.as_ref().and_then(Elf::data_start) {
        let end = bin.len().min(start + SEARCH_WINDOW);
        if let Some(info) = find_in(bin, start, end, elf.as_ref()) {
            return Some(info);
        }
    }
    // Unusual layouts: the whole file, where only a blob that fully validates counts.
    find_in(bin, 0, bin.len(), elf.as_ref())
}

/// Looks for a blob at 16-aligned offsets (relative to `start`) of `bin[start..end]`.
fn find_in(bin: &[u8], start: usize, end: usize, elf: Option<&Elf<'_>>) -> Option<GoBuildInfo> {
    let window = &bin[start..end];
    let mut from = 0;
    let finder = memmem::Finder::new(BUILDINFO_MAGIC);
    while let Some(i) = finder.find(&window[from..]) {
        let p = from + i;
        from = p + 1;
        if !(p as u64).is_multiple_of(ALIGN) || window.len() - p < HEADER_LEN {
            continue;
        }
        let hdr = &window[p..];
        let ptr_size = hdr[14] as usize;
        let flags = hdr[15];
        if flags & 2 != 0 {
            // The inline strings may run past the search window: decode from the whole file.
            if let Decoded::Found(info) = decode_inline(&bin[start + p..]) {
                return Some(info);
            }
            continue;
        }
        let Some(elf) = elf else { continue };
        if ptr_size != 4 && ptr_size != 8 {
            continue;
        }
        let big = flags & 1 != 0;
        let read_ptr = |b: &[u8]| -> u64 {
            match (ptr_size, big) {
                (4, false) => u64::from(u32::from_le_bytes(b[..4].try_into().unwrap())),
                (4, true) => u64::from(u32::from_be_bytes(b[..4].try_into().unwrap())),
                (_, false) => u64::from_le_bytes(b[..8].try_into().unwrap()),
                (_, true) => u64::from_be_bytes(b[..8].try_into().unwrap()),
            }
        };
        let read_string = |addr: u64| -> Option<&[u8]> {
            let header = elf.read_vaddr(addr, 2 * ptr_size)?;
            let data = read_ptr(header);
            let len = read_ptr(&header[ptr_size..]);
            if len > MAX_STRING {
                return None;
            }
            elf.read_vaddr(data, len as usize)
        };
        let Some(version) = read_string(read_ptr(&hdr[16..]))
            .filter(|v| v.starts_with(b"go") || v.starts_with(b"devel"))
        else {
            continue;
        };
        let modinfo = read_string(read_ptr(&hdr[16 + ptr_size..])).unwrap_or_default();
        return Some(GoBuildInfo {
            go_version: String::from_utf8_lossy(version).into_owned(),
            modinfo: strip_sentinels(modinfo),
        });
    }
    None
}

enum Decoded {
    Found(GoBuildInfo),
    /// More bytes are needed to decide.
    Truncated,
    /// Not an inline-format blob (old pointer format, or not a blob at all).
    No,
}

/// Decodes a Go 1.18+ blob starting at the magic.
fn decode_inline(data: &[u8]) -> Decoded {
    if data.len() < HEADER_LEN {
        return Decoded::Truncated;
    }
    if !matches!(data[14], 4 | 8) || data[15] & 2 == 0 {
        return Decoded::No;
    }
    let mut rest = &data[HEADER_LEN..];
    let mut strings: [&[u8]; 2] = [&[], &[]];
    for s in &mut strings {
        let Some((len, n)) = uvarint(rest) else {
            return if rest.len() < 10 {
                Decoded::Truncated
            } else {
                Decoded::No
            };
        };
        if len > MAX_STRING {
            return Decoded::No;
        }
        let len = len as usize;
        if rest.len() < n + len {
            return Decoded::Truncated;
        }
        *s = &rest[n..n + len];
        rest = &rest[n + len..];
    }
    let [version, modinfo] = strings;
    if !(version.starts_with(b"go") || version.starts_with(b"devel")) {
        return Decoded::No;
    }
    Decoded::Found(GoBuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        modinfo: strip_sentinels(modinfo),
    })
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// The module string is framed by two 16-byte sentinels (`cmd/go`'s `infoStart`/`infoEnd`).
fn strip_sentinels(b: &[u8]) -> String {
    if b.len() >= 33 && b[b.len() - 17] == b'\n' {
        String::from_utf8_lossy(&b[16..b.len() - 16]).into_owned()
    } else {
        String::new()
    }
}

/// Whether the first bytes of an ELF file hold the `Go` note (`.note.go.buildid`), which the Go
/// linker places in the first page of every ELF executable built with a build ID.
pub fn has_go_note(head: &[u8]) -> bool {
    memmem::find_iter(head, b"Go\x00\x00").any(|p| {
        p >= 12 && {
            let namesz = &head[p - 12..p - 8];
            let kind = &head[p - 4..p];
            (namesz == [4, 0, 0, 0] && kind == [4, 0, 0, 0])
                || (namesz == [0, 0, 0, 4] && kind == [0, 0, 0, 4])
        }
    })
}

/// Looks at an executable as it streams by (a tar entry of `size` bytes) and returns its Go
/// build information, if it is a Go program. Non-ELF files cost one small read. ELF files with
/// the Go note are read whole into `scratch` (when at most `max_whole` bytes) and parsed with
/// [`read_buildinfo`], which also understands the pre-1.18 format. Other ELF files (C programs,
/// or Go programs linked without a build ID) are scanned for an inline (Go 1.18+) blob in their
/// writable segments only — where the linker puts it, at the start with Go's own linker and
/// after the relocated read-only data with an external one — skipping text and read-only data
/// without copying them, so that the many C programs of a distribution cost little more than
/// their reading.
pub fn sniff_executable<R: Skip>(
    r: &mut R,
    size: u64,
    scratch: &mut ExecScratch,
    max_whole: u64,
) -> io::Result<Option<GoBuildInfo>> {
    let head = size.min(16 * 1024) as usize;
    let whole = &mut scratch.whole;
    ensure_len(whole, head);
    let got = read_full(r, &mut whole[..head])?;
    let head = &whole[..got];
    if got < 64 || !head.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    if has_go_note(head) && size <= max_whole {
        let size = size as usize;
        ensure_len(whole, size);
        let got = got + read_full(r, &mut whole[got..size])?;
        return Ok(read_buildinfo(&whole[..got]));
    }
    // Writable, non-executable segments, from the program headers in the first bytes.
    let mut regions: Vec<(u64, u64)> = Elf::parse(head)
        .map(|elf| {
            elf.loads
                .iter()
                .filter(|(_, _, filesz, flags)| flags & 3 == 2 && *filesz > 0)
                .map(|&(_, offset, filesz, _)| (offset, offset.saturating_add(filesz).min(size)))
                .collect()
        })
        .unwrap_or_default();
    regions.sort_unstable();
    if regions.is_empty() {
        regions.push((0, size)); // no usable program headers: the whole file
    }
    scratch.window.clear();
    scratch.window.extend_from_slice(head);
    let mut scan = Scan {
        r,
        buf: &mut scratch.window,
        base: 0,
    };
    for (start, end) in regions {
        scan.skip_to(start)?;
        if let Some(info) = scan.scan_until(end)? {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// A stream [`sniff_executable`] can pass over: by reading and dropping the bytes (the default,
/// for streams) or by seeking (files read with positioned reads), so that the text and
/// read-only data of the executables in an image file are never read at all.
pub trait Skip: Read {
    /// Passes over the next `n` bytes (fewer at the end of the stream).
    fn skip(&mut self, n: u64) -> io::Result<()> {
        io::copy(&mut self.take(n), &mut io::sink())?;
        Ok(())
    }
}

impl Skip for &[u8] {}
impl<R: Read> Skip for tar::Entry<'_, R> {}

/// Reusable buffers of [`sniff_executable`], so that scanning thousands of executables
/// allocates (and zero-fills) memory only when a larger one comes along.
#[derive(Debug, Default)]
pub struct ExecScratch {
    /// Whole Go executables; its length only grows, so the memory stays initialised.
    whole: Vec<u8>,
    /// The sliding window of the segment scan.
    window: Vec<u8>,
}

fn ensure_len(buf: &mut Vec<u8>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0);
    }
}

/// A forward-only window on a stream: `buf` holds the bytes from absolute offset `base`.
struct Scan<'a, R> {
    r: &'a mut R,
    buf: &'a mut Vec<u8>,
    base: u64,
}

impl<R: Skip> Scan<'_, R> {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Moves the window's start to `off`, discarding (not copying) what lies before it.
    fn skip_to(&mut self, off: u64) -> io::Result<()> {
        if off <= self.base {
            return Ok(());
        }
        if off <= self.end() {
            self.buf.drain(..(off - self.base) as usize);
        } else {
            let gap = off - self.end();
            self.buf.clear();
            self.r.skip(gap)?;
        }
        self.base = off;
        Ok(())
    }

    /// Looks for an inline blob starting (16-aligned) before `end`. Alignment is judged on file
    /// offsets, which share their residue mod 16 with the virtual addresses of loadable
    /// segments.
    fn scan_until(&mut self, end: u64) -> io::Result<Option<GoBuildInfo>> {
        let finder = memmem::Finder::new(BUILDINFO_MAGIC);
        loop {
            let mut from = 0;
            let mut pending = None;
            while let Some(i) = finder.find(&self.buf[from..]) {
                let p = from + i;
                from = p + 1;
                let at = self.base + p as u64;
                if at >= end {
                    break;
                }
                if !at.is_multiple_of(ALIGN) {
                    continue;
                }
                match decode_inline(&self.buf[p..]) {
                    Decoded::Found(info) => return Ok(Some(info)),
                    Decoded::No => {}
                    Decoded::Truncated if (self.buf.len() - p) as u64 <= 2 * MAX_STRING => {
                        pending = Some(p);
                        break;
                    }
                    Decoded::Truncated => {}
                }
            }
            // Keep what a later read may complete: a blob being decoded, or a partial magic.
            let keep = pending.unwrap_or(self.buf.len().saturating_sub(BUILDINFO_MAGIC.len() - 1));
            self.buf.drain(..keep);
            self.base += keep as u64;
            // A blob being decoded may run past the region; otherwise stop at its end.
            let want = match pending {
                Some(_) => 64 * 1024,
                None => end.saturating_sub(self.end()).min(64 * 1024) as usize,
            };
            if want == 0 || read_append(self.r, self.buf, want)? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Appends up to `n` bytes; returns how many were read (fewer only at the end). Reads into
/// spare capacity without zero-filling it first.
fn read_append<R: Read>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    buf.reserve(n);
    r.take(n as u64).read_to_end(buf)
}

/// The packages of a Go program: its main module (unless unversioned, `(devel)`), every
/// dependency (after `=>` replacements; a replacement by a local directory drops the module,
/// whose code is then not the published release), and `stdlib` at the toolchain version.
pub fn packages(info: &GoBuildInfo, location: &str) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    let mut last_replaceable: Option<usize> = None;
    let mut drop_last = false;
    for line in info.modinfo.lines() {
        let mut f = line.split('\t');
        let kind = f.next().unwrap_or("");
        let path = f.next().unwrap_or("");
        let version = f.next().unwrap_or("");
        match kind {
            "mod" | "dep" => {
                if drop_last {
                    out.pop();
                    drop_last = false;
                }
                last_replaceable = None;
                let v = version.trim_start_matches('v');
                if path.is_empty() || version.is_empty() || version == "(devel)" {
                    continue;
                }
                out.push(Package::new(Ecosystem::Go, path, v, location));
                last_replaceable = Some(out.len() - 1);
            }
            "=>" => {
                if let Some(i) = last_replaceable.take() {
                    if version.is_empty() {
                        drop_last = i + 1 == out.len();
                    } else {
                        out[i].name = path.to_string();
                        out[i].version = version.trim_start_matches('v').to_string();
                    }
                }
            }
            _ => {}
        }
    }
    if drop_last {
        out.pop();
    }
    if let Some(v) = stdlib_version(&info.go_version) {
        out.push(Package::new(Ecosystem::Go, "stdlib", &v, location));
    }
    out
}

/// `go1.21.5` → `1.21.5`; `go1.20` → `1.20.0`; `go1.21rc2` → `1.21.0-rc.2`;
/// `go1.22.1 X:boringcrypto` → `1.22.1`. Development builds (`devel …`) have no release.
pub fn stdlib_version(go_version: &str) -> Option<String> {
    let v = go_version.split_whitespace().next()?.strip_prefix("go")?;
    let (release, pre) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&v[..i], Some(&v[i..])),
        None => (v, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return None;
    }
    let mut out = parts.join(".");
    for _ in parts.len()..3 {
        out.push_str(".0");
    }
    if let Some(pre) = pre {
        let split = pre.find(|c: char| c.is_ascii_digit()).unwrap_or(pre.len());
        out.push('-');
        out.push_str(&pre[..split]);
        if split < pre.len() {
            out.push('.');
            out.push_str(&pre[split..]);
        }
    }
    Some(out)
}

/// The modules a `go.mod` requires, after its `replace` directives (a replacement by a local
/// directory drops the module). The `go` and `toolchain` directives are not dependencies.
pub fn parse_go_mod(text: &str, location: &str) -> Result<Vec<Package>, ParseError> {
    let mut requires: Vec<(String, String)> = Vec::new();
    // (old path, old version or "", new path, new version or "" for a directory)
    let mut replaces: Vec<(String, String, String, String)> = Vec::new();
    let mut block: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (verb, args) = match &block {
            Some(b) => {
                if line == ")" {
                    block = None;
                    continue;
                }
                (b.clone(), line)
            }
            None => {
                let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let rest = rest.trim();
                if rest == "(" {
                    block = Some(verb.to_string());
                    continue;
                }
                (verb.to_string(), rest)
            }
        };
        let tokens: Vec<&str> = args
            .split_whitespace()
            .map(|t| t.trim_matches('"'))
            .collect();
        match verb.as_str() {
            "require" => {
                let [path, version, ..] = tokens[..] else {
                    return Err(ParseError::syntax(
                        n + 1,
                        "require needs a path and a version",
                    ));
                };
                requires.push((path.to_string(), version.to_string()));
            }
            "replace" => {
                let Some(arrow) = tokens.iter().position(|t| *t == "=>") else {
                    return Err(ParseError::syntax(n + 1, "replace without =>"));
                };
                let (old, new) = (&tokens[..arrow], &tokens[arrow + 1..]);
                if old.is_empty() || new.is_empty() {
                    return Err(ParseError::syntax(n + 1, "incomplete replace"));
                }
                replaces.push((
                    old[0].to_string(),
                    old.get(1).unwrap_or(&"").to_string(),
                    new[0].to_string(),
                    new.get(1).unwrap_or(&"").to_string(),
                ));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    'req: for (path, version) in requires {
        let (mut path, mut version) = (path, version);
        // A versioned replace wins over an unversioned one for the same module.
        let mut best: Option<&(String, String, String, String)> = None;
        for r in &replaces {
            if r.0 == path
                && (r.1.is_empty() || r.1 == version)
                && best.is_none_or(|b| b.1.is_empty())
            {
                best = Some(r);
            }
        }
        if let Some((_, _, new_path, new_version)) = best {
            if new_version.is_empty() {
                continue 'req;
            }
            path = new_path.clone();
            version = new_version.clone();
        }
        out.push(Package::new(
            Ecosystem::Go,
            &path,
            version.trim_start_matches('v'),
            location,
        ));
    }
    Ok(out)
}

/// Just enough of ELF (32/64-bit, either byte order) to map virtual addresses to file offsets
/// and find a section by name.
struct Elf<'a> {
    data: &'a [u8],
    /// (vaddr, offset, filesz, flags) of each PT_LOAD segment.
    loads: Vec<(u64, u64, u64, u32)>,
    /// File offset of `.go.buildinfo`, when the section headers name it.
    buildinfo_section: Option<u64>,
}

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 52 || !data.starts_with(b"\x7fELF") {
            return None;
        }
        let is64 = match data[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big = match data[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let rd = Reader { data, big };
        let (phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx) = if is64 {
            (
                rd.u64(32)?,
                rd.u64(40)?,
                rd.u16(54)?,
                rd.u16(56)?,
                rd.u16(58)?,
                rd.u16(60)?,
                rd.u16(62)?,
            )
        } else {
            (
                u64::from(rd.u32(28)?),
                u64::from(rd.u32(32)?),
                rd.u16(42)?,
                rd.u16(44)?,
                rd.u16(46)?,
                rd.u16(48)?,
                rd.u16(50)?,
            )
        };
        let mut loads = Vec::new();
        for i in 0..u64::from(phnum) {
            let at = usize::try_from(phoff.checked_add(i * u64::from(phentsize))?).ok()?;
            let kind = rd.u32(at)?;
            let (flags, offset, vaddr, filesz) = if is64 {
                (
                    rd.u32(at + 4)?,
                    rd.u64(at + 8)?,
                    rd.u64(at + 16)?,
                    rd.u64(at + 32)?,
                )
            } else {
                (
                    rd.u32(at + 24)?,
                    u64::from(rd.u32(at + 4)?),
                    u64::from(rd.u32(at + 8)?),
                    u64::from(rd.u32(at + 16)?),
                )
            };
            if kind == 1 {
                loads.push((vaddr, offset, filesz, flags));
            }
        }
        let section = |i: u64| -> Option<(u32, u64, u64)> {
            let at = usize::try_from(shoff.checked_add(i * u64::from(shentsize))?).ok()?;
            if is64 {
                Some((rd.u32(at)?, rd.u64(at + 24)?, rd.u64(at + 32)?))
            } else {
                Some((
                    rd.u32(at)?,
                    u64::from(rd.u32(at + 16)?),
                    u64::from(rd.u32(at + 20)?),
                ))
            }
        };
        let mut buildinfo_section = None;
        if shoff != 0
            && shnum != 0
            && let Some((_, strtab, strsize)) = section(u64::from(shstrndx))
        {
            for i in 0..u64::from(shnum) {
                let Some((name, offset, _)) = section(i) else {
                    break;
                };
                if u64::from(name) >= strsize {
                    continue;
                }
                let Some(start) = usize::try_from(strtab + u64::from(name)).ok() else {
                    continue;
                };
                if data
                    .get(start..)
                    .is_some_and(|s| s.starts_with(b".go.buildinfo\0"))
                {
                    buildinfo_section = Some(offset);
                    break;
                }
            }
        }
        Some(Elf {
            data,
            loads,
            buildinfo_section,
        })
    }

    /// Where the build information may start: `.go.buildinfo`, else the first segment that is
    /// writable and not executable (the data segment, which the linker starts with it).
    fn data_start(&self) -> Option<usize> {
        let off = self.buildinfo_section.or_else(|| {
            self.loads
                .iter()
                .find(|(_, _, _, flags)| flags & 3 == 2)
                .map(|&(_, offset, _, _)| offset)
        })?;
        usize::try_from(off).ok().filter(|&o| o < self.data.len())
    }

    fn read_vaddr(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let &(vaddr, offset, filesz, _) = self
            .loads
            .iter()
            .find(|(v, _, size, _)| addr >= *v && addr - v < *size)?;
        if addr - vaddr + len as u64 > filesz {
            return None;
        }
        let start = usize::try_from(offset + (addr - vaddr)).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.bytes::<2>(at)?;
        Some(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.bytes::<4>(at)?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

/// Builds a minimal ELF64 little-endian executable that carries Go build information, in the
/// inline (Go 1.18+, `inline`) or the older pointer format, with or without the Go note, and
/// with a decoy magic string in its read-only data. `modinfo` is the text form, ending in a
/// newline. For tests of machines without a Go toolchain.
#[doc(hidden)]
pub fn synthetic_executable(go_version: &str, modinfo: &str, inline: bool, note: bool) -> Vec<u8> {
    const TEXT_VADDR: u64 = 0x40_0000;
    const DATA_OFF: usize = 0x2000;
    const DATA_VADDR: u64 = 0x60_0000;
    let framed = {
        let mut m = hex::decode("3077af0c9274080241e1c107e6d618e6").expect("hex");
        m.extend_from_slice(modinfo.as_bytes());
        m.extend(hex::decode("f932433186182072008242104116d8f2").expect("hex"));
        m
    };
    let mut f = vec![0u8; DATA_OFF];
    // ELF header.
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // two program headers
    // Decoy: the magic in read-only data, aligned, followed by nonsense.
    f[0x800..0x800 + BUILDINFO_MAGIC.len()].copy_from_slice(BUILDINFO_MAGIC);
    f[0x800 + 14] = 8;
    f[0x800 + 15] = 2;
    f[0x800 + 32] = 0x05;
    f[0x800 + 33..0x800 + 38].copy_from_slice(b"hello");
    if note {
        let id = b"synthetic/build-id";
        let at = 0x100;
        f[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
        f[at + 4..at + 8].copy_from_slice(&(id.len() as u32).to_le_bytes());
        f[at + 8..at + 12].copy_from_slice(&4u32.to_le_bytes());
        f[at + 12..at + 16].copy_from_slice(b"Go\0\0");
        f[at + 16..at + 16 + id.len()].copy_from_slice(id);
    }
    // Strings of the pointer format live in the text segment ("rodata").
    let (ver_at, mod_at) = (0x1000usize, 0x1100usize);
    f[ver_at..ver_at + go_version.len()].copy_from_slice(go_version.as_bytes());
    f.resize(f.len().max(mod_at + framed.len()), 0);
    f[mod_at..mod_at + framed.len()].copy_from_slice(&framed);
    let data_off = f.len().next_multiple_of(0x1000);
    f.resize(data_off, 0);
    let text_len = data_off as u64;
    // Data segment: the blob.
    let mut data = Vec::new();
    data.extend_from_slice(BUILDINFO_MAGIC);
    data.push(8);
    data.push(if inline { 2 } else { 0 });
    data.resize(32, 0);
    if inline {
        for s in [go_version.as_bytes(), &framed[..]] {
            let mut n = s.len() as u64;
            while n >= 0x80 {
                data.push((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            data.push(n as u8);
            data.extend_from_slice(s);
        }
    } else {
        // Two pointers to Go string headers at data+0x40 and data+0x50.
        data[16..24].copy_from_slice(&(DATA_VADDR + 0x40).to_le_bytes());
        data[24..32].copy_from_slice(&(DATA_VADDR + 0x50).to_le_bytes());
        data.resize(0x60, 0);
        data[0x40..0x48].copy_from_slice(&(TEXT_VADDR + ver_at as u64).to_le_bytes());
        data[0x48..0x50].copy_from_slice(&(go_version.len() as u64).to_le_bytes());
        data[0x50..0x58].copy_from_slice(&(TEXT_VADDR + mod_at as u64).to_le_bytes());
        data[0x58..0x60].copy_from_slice(&(framed.len() as u64).to_le_bytes());
    }
    data.resize(data.len() + 0x200, 0);
    // Program headers: text (R+X) at offset 0, data (R+W) after it.
    for (i, (vaddr, off, size, flags)) in [
        (TEXT_VADDR, 0u64, text_len, 5u32),
        (DATA_VADDR, data_off as u64, data.len() as u64, 6u32),
    ]
    .into_iter()
    .enumerate()
    {
        let at = 64 + i * 56;
        f[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
        f[at + 24..at + 32].copy_from_slice(&vaddr.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
        f[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    }
    f.extend_from_slice(&data);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
        dep\tgolang.org/x/text\tv0.3.5\th1:abc=\n\
        dep\tgithub.com/old/thing\tv1.0.0\th1:def=\n\
        =>\tgithub.com/new/thing\tv1.2.0\th1:ghi=\n\
        dep\tgithub.com/local/thing\tv0.1.0\n\
        =>\t../thing\t\t\n\
        dep\tgithub.com/gin-gonic/gin\tv1.6.2\th1:jkl=\n\
        build\tGOOS=linux\n";

    /// Yields at most `n` bytes per read, to exercise the streaming scanner's carry-over.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    impl Skip for Trickle<'_> {}

    fn summary(info: &GoBuildInfo) -> Vec<String> {
        packages(info, "app")
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect()
    }

    const WANT: [&str; 4] = [
        "golang.org/x/text@0.3.5",
        "github.com/new/thing@1.2.0",
        "github.com/gin-gonic/gin@1.6.2",
        "stdlib@1.16.3",
    ];

    #[test]
    fn inline_format_whole_and_streamed() {
        for note in [true, false] {
            let bin = synthetic_executable("go1.16.3", MODINFO, true, note);
            let info = read_buildinfo(&bin).expect("buildinfo");
            assert_eq!(info.go_version, "go1.16.3");
            assert_eq!(summary(&info), WANT);
            for chunk in [7, 4096, 1 << 20] {
                let mut scratch = ExecScratch::default();
                let got = sniff_executable(
                    &mut Trickle(&bin, chunk),
                    bin.len() as u64,
                    &mut scratch,
                    1 << 30,
                )
                .unwrap()
                .expect("sniffed");
                assert_eq!(got, info, "note {note} chunk {chunk}");
            }
        }
    }

    #[test]
    fn pointer_format() {
        let bin = synthetic_executable("go1.15.2", MODINFO, false, true);
        let info = read_buildinfo(&bin).expect("buildinfo");
        assert_eq!(info.go_version, "go1.15.2");
        assert!(summary(&info).contains(&"stdlib@1.15.2".to_string()));
        let mut scratch = ExecScratch::default();
        let got = sniff_executable(
            &mut Trickle(&bin, 100),
            bin.len() as u64,
            &mut scratch,
            1 << 30,
        )
        .unwrap();
        assert_eq!(got, Some(info));
        // Without the note the old format cannot be read from a stream.
        let bin = synthetic_executable("go1.15.2", MODINFO, false, false);
        assert!(read_buildinfo(&bin).is_some());
        let got = sniff_executable(
            &mut Trickle(&bin, 100),
            bin.len() as u64,
            &mut scratch,
            1 << 30,
        )
        .unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn not_go() {
        let mut scratch = ExecScratch::default();
        let text = b"#!/bin/sh\necho hi\n";
        assert_eq!(
            sniff_executable(&mut &text[..], text.len() as u64, &mut scratch, 1 << 20).unwrap(),
            None
        );
        let mut elf = synthetic_executable("go1.20", "", true, false);
        let at = elf.len() - 0x200 - 64;
        elf.truncate(at - (at % 0x1000)); // cut off the data segment: only the decoy remains
        assert_eq!(read_buildinfo(&elf), None);
        assert_eq!(
            sniff_executable(&mut &elf[..], elf.len() as u64, &mut scratch, 0).unwrap(),
            None
        );
    }

    #[test]
    fn stdlib_versions() {
        assert_eq!(stdlib_version("go1.21.5").as_deref(), Some("1.21.5"));
        assert_eq!(stdlib_version("go1.20").as_deref(), Some("1.20.0"));
        assert_eq!(stdlib_version("go1.21rc2").as_deref(), Some("1.21.0-rc.2"));
        assert_eq!(
            stdlib_version("go1.22.1 X:boringcrypto").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(stdlib_version("devel go1.23-abc"), None);
    }

    #[test]
    fn go_mod() {
        let text = r#"module example.com/app

go 1.21
toolchain go1.21.5

require github.com/a/b v1.2.3

require (
	golang.org/x/net v0.0.0-20200202094626-16171245cfb2 // indirect
	github.com/old/mod v1.0.0
	github.com/local/mod v0.1.0
	"github.com/quoted/mod" v2.0.0+incompatible
)

replace github.com/old/mod => github.com/new/mod v1.1.0

replace (
	github.com/local/mod => ../local
)
"#;
        let got: Vec<String> = parse_go_mod(text, "go.mod")
            .unwrap()
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [
                "github.com/a/b@1.2.3",
                "golang.org/x/net@0.0.0-20200202094626-16171245cfb2",
                "github.com/new/mod@1.1.0",
                "github.com/quoted/mod@2.0.0+incompatible"
            ]
        );
        assert!(parse_go_mod("require x\n", "go.mod").is_err());
    }
}
