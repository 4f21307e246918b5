//! A `docker save` or OCI-layout archive: gathering its members in one pass (layers as
//! [`LayerDelta`]s, manifest, index, config), choosing the image, and assembling the final
//! tree bottom-up with overlay semantics. It must not talk to the engine (`engine` does).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::layer::{FileWindow, LayerDelta, READ_AHEAD, check_extent, read_layer, read_layer_at};
use super::{ImageError, MAX_JSON};
use crate::inventory::{
    self, FileTree, ImageMeta, ImageTree, LayerMeta, TreeEntry, join_link, normalize,
};
use crate::read_full;

#[derive(Deserialize)]
pub(super) struct SaveManifest {
    #[serde(rename = "Config")]
    pub(super) config: String,
    #[serde(rename = "RepoTags", default)]
    pub(super) repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub(super) layers: Vec<String>,
}

/// The pieces of an image archive gathered in one pass.
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) layers: Vec<LayerDelta>,
    /// Archive path of a layer blob → index in `layers`.
    pub(super) layer_at: HashMap<String, usize>,
    /// Layers in a format this reader cannot decompress (zstd), by archive path.
    pub(super) unsupported: HashMap<String, &'static str>,
    pub(super) json: HashMap<String, Vec<u8>>,
    /// Symlinked archive members (Docker links duplicate `layer.tar`s): path → target path.
    pub(super) links: HashMap<String, String>,
}

impl Gathered {
    pub(super) fn layer(&self, path: &str) -> Result<&LayerDelta, ImageError> {
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

    pub(super) fn add_layer(
        &mut self,
        path: String,
        delta: Result<LayerDelta, ImageError>,
    ) -> Result<(), ImageError> {
        let delta = delta.map_err(layer_error(&path))?;
        self.layer_at.insert(path, self.layers.len());
        self.layers.push(delta);
        Ok(())
    }

    pub(super) fn json(&self, path: &str) -> Result<&[u8], ImageError> {
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
pub(super) enum Member {
    Tar,
    Gzip,
    Zstd,
    Json,
    Other,
}

impl Member {
    pub(super) fn of(head: &[u8], size: u64) -> Member {
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
pub(super) fn member_path<R: Read>(g: &mut Gathered, entry: &tar::Entry<'_, R>) -> Option<String> {
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

pub(super) fn layer_error(path: &str) -> impl FnOnce(ImageError) -> ImageError + '_ {
    move |e| match e {
        ImageError::Io(io) => {
            ImageError::Io(io::Error::new(io.kind(), format!("layer {path}: {io}")))
        }
        other => other,
    }
}

/// One pass over an image archive stream.
pub(super) fn gather<R: Read>(reader: R) -> Result<Gathered, ImageError> {
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
pub(super) fn gather_file(file: &File) -> Result<Gathered, ImageError> {
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
pub(super) fn choose(
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
pub(super) struct ImageConfig {
    #[serde(default)]
    pub(super) os: Option<String>,
    #[serde(default)]
    pub(super) architecture: Option<String>,
    pub(super) rootfs: RootFs,
    #[serde(default)]
    pub(super) history: Vec<History>,
}

#[derive(Deserialize)]
pub(super) struct RootFs {
    #[serde(default)]
    pub(super) diff_ids: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct History {
    #[serde(default)]
    pub(super) created_by: Option<String>,
    #[serde(default)]
    pub(super) empty_layer: bool,
}

/// Reads an image archive (`docker save` format, or an OCI image layout tar) from a stream.
/// `select` names the image (tag or ID) when the archive holds several.
pub fn read_saved_from<R: Read>(reader: R, select: Option<&str>) -> Result<ImageTree, ImageError> {
    assemble(&gather(reader)?, select)
}

/// Picks the image of a gathered archive and merges its layers bottom-up.
pub(super) fn assemble(g: &Gathered, select: Option<&str>) -> Result<ImageTree, ImageError> {
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
