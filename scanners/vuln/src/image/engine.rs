//! Reading an image from a Docker engine (behind the `docker` feature): in place from its
//! overlay2 layer directories when this host is the engine's and that applies, otherwise
//! through the engine's export, parsed as it streams. Either way the config read must hash to
//! the image ID the engine named.

use std::io::{self, Read};

use bollard::Docker;
use futures_util::StreamExt;

use super::{ImageError, ImageTree, overlay, read_saved_from};

/// Reads an image (tag, ID or `name@digest`) of the engine. On the engine's own host, as root,
/// with the overlay2 storage driver, its layer directories are read in place (see
/// [`overlay`]); otherwise, or if that fails, the image is exported ([`read_image_exported`]).
/// Records the engine's tags and repo digests; the config read must hash to the image ID the
/// engine named.
pub async fn read_image(docker: &Docker, reference: &str) -> Result<ImageTree, ImageError> {
    let inspect = inspect(docker, reference).await?;
    if let Some(read) = read_layers(&inspect) {
        match read.await {
            Ok(image) => return Ok(with_engine_meta(image, reference, inspect)),
            Err(e) => tracing::warn!(
                image.reference = reference,
                error = %e,
                "reading the image's layer directories failed; exporting it instead"
            ),
        }
    }
    read_exported(docker, reference, inspect).await
}

/// Like [`read_image`], but always through the engine's export (`GET /images/{id}/get`), read
/// as it streams: the archive is parsed on a blocking thread fed through a bounded channel, so
/// at most a few chunks of the export are in memory.
pub async fn read_image_exported(
    docker: &Docker,
    reference: &str,
) -> Result<ImageTree, ImageError> {
    let inspect = inspect(docker, reference).await?;
    read_exported(docker, reference, inspect).await
}

/// Reads an image only from its layer directories; `None` when that path does not apply here
/// (another storage driver, a remote engine, not root). For tests and benchmarks.
pub async fn read_image_layers(
    docker: &Docker,
    reference: &str,
) -> Result<Option<ImageTree>, ImageError> {
    let inspect = inspect(docker, reference).await?;
    let Some(read) = read_layers(&inspect) else {
        return Ok(None);
    };
    let image = read.await?;
    Ok(Some(with_engine_meta(image, reference, inspect)))
}

/// Reading the image's layer directories on a blocking thread, when that path applies.
fn read_layers(
    inspect: &bollard::models::ImageInspect,
) -> Option<impl std::future::Future<Output = Result<ImageTree, ImageError>> + use<>> {
    let layout = overlay::layout(inspect)?;
    let id = inspect.id.clone()?;
    Some(async move {
        tokio::task::spawn_blocking(move || overlay::read(&layout, &id))
            .await
            .map_err(|e| ImageError::Io(io::Error::other(e)))?
    })
}

async fn inspect(
    docker: &Docker,
    reference: &str,
) -> Result<bollard::models::ImageInspect, ImageError> {
    docker.inspect_image(reference).await.map_err(|e| {
        if matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            ImageError::NotFound {
                reference: reference.to_string(),
            }
        } else {
            ImageError::Docker {
                reference: reference.to_string(),
                source: e,
            }
        }
    })
}

fn with_engine_meta(
    mut image: ImageTree,
    reference: &str,
    inspect: bollard::models::ImageInspect,
) -> ImageTree {
    image.meta.reference = Some(reference.to_string());
    image.meta.repo_tags = inspect.repo_tags.unwrap_or_default();
    image.meta.repo_digests = inspect.repo_digests.unwrap_or_default();
    image
}

async fn read_exported(
    docker: &Docker,
    reference: &str,
    inspect: bollard::models::ImageInspect,
) -> Result<ImageTree, ImageError> {
    let id = inspect.id.clone().unwrap_or_else(|| reference.to_string());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    // Export by ID so that a tag moved meanwhile cannot swap the image under the scan.
    let stream = docker.export_image(&id);
    let pump = async move {
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item.map_err(io::Error::other)).await.is_err() || failed {
                break; // the reader is done (or failed): stop pulling
            }
        }
    };
    let parse = tokio::task::spawn_blocking(move || read_saved_from(ChannelReader::new(rx), None));
    let ((), parsed) = tokio::join!(pump, parse);
    let image = parsed.map_err(|e| ImageError::Io(io::Error::other(e)))??;

    if inspect
        .id
        .as_deref()
        .is_some_and(|want| want != image.meta.id)
    {
        return Err(ImageError::IdMismatch {
            expected: id,
            actual: image.meta.id,
        });
    }
    Ok(with_engine_meta(image, reference, inspect))
}

/// A blocking `Read` over chunks sent from async code.
struct ChannelReader<B> {
    rx: tokio::sync::mpsc::Receiver<io::Result<B>>,
    current: Option<B>,
    pos: usize,
}

impl<B> ChannelReader<B> {
    fn new(rx: tokio::sync::mpsc::Receiver<io::Result<B>>) -> Self {
        ChannelReader {
            rx,
            current: None,
            pos: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChannelReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}
