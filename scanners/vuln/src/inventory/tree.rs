//! The file tree of an image as the analyzers see it: the image's identity ([`ImageMeta`],
//! its layers) and the kept paths ([`FileTree`]: wanted files, symlinks, Go build info), with
//! symlink resolution. The image reader (`image`) fills it; the analyzers only read it. It
//! must not know how images are stored or read.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::golang::GoBuildInfo;

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
    pub(crate) entries: BTreeMap<String, TreeEntry>,
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

    pub(crate) fn remove_under(&mut self, dir: &str) {
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
pub(crate) fn join_link(at: &str, target: &str, rest: &str) -> String {
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
pub(crate) fn clean(path: &str) -> String {
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
pub(crate) fn normalize(path: &str) -> &str {
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
