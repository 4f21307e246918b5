//! `moat db update` (behind the `fetch` feature): downloads OSV's export of each ecosystem
//! into the database directory, replacing a file only once its successor is complete and
//! readable. The only network access of the scanners.

use std::path::{Path, PathBuf};

use crate::Ecosystem;
use crate::db::{DbError, OSV_EXPORT_BASE};

/// What an update stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateReport {
    /// (ecosystem, archive path, bytes) per download.
    pub downloaded: Vec<(Ecosystem, PathBuf, u64)>,
}

/// Downloads OSV's export (`{ECOSYSTEM}/all.zip`) of each ecosystem into
/// `dir/{ECOSYSTEM}/all.zip`, replacing the previous one only once the new one is complete
/// and readable. Fails with "cannot download URL: reason" when the network does not allow it.
pub async fn update(dir: &Path, ecosystems: &[Ecosystem]) -> Result<UpdateReport, DbError> {
    update_from(OSV_EXPORT_BASE, dir, ecosystems).await
}

/// [`update`] from another mirror of the export bucket (tests use a loopback server).
pub async fn update_from(
    base_url: &str,
    dir: &Path,
    ecosystems: &[Ecosystem],
) -> Result<UpdateReport, DbError> {
    // reqwest is built without a default TLS provider; the process-wide one is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DbError::Download {
            url: base_url.to_string(),
            reason: error_chain(&e),
        })?;
    let mut report = UpdateReport {
        downloaded: Vec::new(),
    };
    for eco in ecosystems {
        let name = eco.osv_name();
        let url = format!("{}/{name}/all.zip", base_url.trim_end_matches('/'));
        let target_dir = dir.join(name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DbError::Io { path, source }
        };
        tokio::fs::create_dir_all(&target_dir)
            .await
            .map_err(io(&target_dir))?;
        let tmp = target_dir.join(".all.zip.partial");
        let bytes = download(&client, &url, &tmp).await;
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        // Check before replacing: a truncated or foreign file must not become the database.
        let check = tmp.clone();
        let verified = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let f = std::fs::File::open(&check).map_err(|e| e.to_string())?;
            let archive =
                zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
            Ok(archive.len())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        if let Err(reason) = verified {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(DbError::BadArchive { url, reason });
        }
        let target = target_dir.join("all.zip");
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(io(&target))?;
        report.downloaded.push((*eco, target, bytes));
    }
    Ok(report)
}

async fn download(client: &reqwest::Client, url: &str, to: &Path) -> Result<u64, DbError> {
    use tokio::io::AsyncWriteExt;
    let fail = |reason: String| DbError::Download {
        url: url.to_string(),
        reason,
    };
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(|source| DbError::Io {
            path: to.to_path_buf(),
            source,
        })?;
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        total += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(|source| DbError::Io {
            path: to.to_path_buf(),
            source,
        })?;
    }
    file.flush().await.map_err(|source| DbError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    Ok(total)
}

/// An error and its causes on one line: reqwest's own message ("error sending request") says
/// little; the cause (DNS failure, connection refused) is what the user needs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_read_as_one_line() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::other(Wrapper(inner));
        assert_eq!(error_chain(&outer), "wrapped: connection refused");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
