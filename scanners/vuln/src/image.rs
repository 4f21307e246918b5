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

//!
//! - [`inventory::tree`](super::inventory): the tree it fills ([`ImageTree`], [`FileTree`]),
//!   re-exported here.
//! - `layer`: one layer tar into a `LayerDelta`; the in-place file window.
//! - `save`: a save or OCI layout gathered in one pass, the image chosen, the tree assembled.
//! - `engine` and `overlay` (feature `docker`): reading from the Docker engine.

use std::io;

use thiserror::Error;

pub use super::inventory::{FileTree, ImageMeta, ImageTree, LayerMeta, Node, TreeEntry};
pub use save::{read_saved, read_saved_from};

#[cfg(feature = "docker")]
mod engine;
mod layer;
#[cfg(feature = "docker")]
mod overlay;
mod save;
#[cfg(test)]
mod tests;
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
