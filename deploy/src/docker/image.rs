//! The image a release runs: a reference by digest only (a tag can move under a release; a
//! digest is what the gates passed), and making it present on the host: used when it is there,
//! pulled by digest when it is not.
//!
//! It must not build, tag or remove images: a retired colour's image stays for a rollback.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::{DockerError, is_not_found, server_message};

/// An image named by its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A local image id, `sha256:<64 hex>`: cannot be pulled.
    Id(String),
    /// `repository[:tag]@sha256:<64 hex>`: pullable by that digest.
    Digest(String),
}

impl ImageRef {
    /// Accepts `sha256:<64 hex>` and `name@sha256:<64 hex>`; refuses a plain tag (or anything
    /// else) with a message that says what to give instead.
    pub fn parse(image: &str) -> Result<ImageRef, DockerError> {
        let refuse = |why: &str| {
            DockerError::Image(format!(
                "image {image:?} {why}: a deploy runs exactly the image its gates passed, so give \
                 it by digest (repository@sha256:…, or a local image id sha256:…)"
            ))
        };
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse("is not an image reference"));
        }
        if image.starts_with("sha256:") {
            return if is_digest(image) {
                Ok(ImageRef::Id(image.to_string()))
            } else {
                Err(refuse("is not a well-formed image id"))
            };
        }
        match image.rsplit_once('@') {
            None => Err(refuse("is not pinned by digest")),
            Some((name, digest)) => {
                if name.is_empty() || name.contains('@') || !is_digest(digest) {
                    Err(refuse("is not a well-formed digest reference"))
                } else {
                    Ok(ImageRef::Digest(image.to_string()))
                }
            }
        }
    }

    /// The reference as the engine takes it.
    pub fn as_str(&self) -> &str {
        match self {
            ImageRef::Id(s) | ImageRef::Digest(s) => s,
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Makes sure `image` is on the host: inspect, and pull by digest when it is missing.
pub(crate) async fn ensure(docker: &Docker, image: &ImageRef) -> Result<(), DockerError> {
    let reference = image.as_str();
    match docker.inspect_image(reference).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(DockerError::engine(format!("inspecting image {image}"), &e)),
    }
    if let ImageRef::Id(_) = image {
        return Err(DockerError::Image(format!(
            "image {image} is not on this Docker host, and a bare image id cannot be pulled \
             (give repository@sha256:… to pull it)"
        )));
    }
    let cannot = |detail: String| {
        DockerError::Image(format!(
            "image {image} is not on this Docker host and cannot be pulled: {detail}"
        ))
    };
    tracing::info!(image = %image, "pulling image by digest");
    let options = CreateImageOptionsBuilder::default()
        .from_image(reference)
        .build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    return Err(cannot(message));
                }
            }
            Err(e) => return Err(cannot(server_message(&e))),
        }
    }
    docker
        .inspect_image(reference)
        .await
        .map(drop)
        .map_err(|e| cannot(server_message(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_and_ids_are_accepted() {
        let id = format!("sha256:{HEX}");
        assert_eq!(ImageRef::parse(&id).unwrap(), ImageRef::Id(id.clone()));
        for r in [
            format!("registry.example:5000/org/app@sha256:{HEX}"),
            format!("app:1.2@sha256:{HEX}"),
        ] {
            assert_eq!(ImageRef::parse(&r).unwrap(), ImageRef::Digest(r.clone()));
        }
    }

    #[test]
    fn tags_and_malformed_references_are_refused_saying_what_to_give() {
        for bad in [
            "app",
            "app:latest",
            "registry.example:5000/app:1",
            "sha256:abc",
            "app@sha256:XYZ",
            "@sha256:0",
            "",
            "app @sha256:x",
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("by digest"), "{bad}: {e}");
        }
        let e = ImageRef::parse("app:latest").unwrap_err().to_string();
        assert!(e.contains("is not pinned by digest"), "{e}");
        assert!(
            ImageRef::parse(&format!("app@sha256:{}", &HEX[..63])).is_err(),
            "63 hex digits"
        );
        assert!(
            ImageRef::parse(&format!("sha256:{}", HEX.to_uppercase())).is_err(),
            "digests are lower-case"
        );
    }
}
