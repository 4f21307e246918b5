//! `moat db update` against loopback servers: a refused connection, an OSV export that is
//! stored and then loads, and answers that are not an export. Tests of moat-vuln's `fetch`
//! feature, kept in package `moat` (which depends on moat-vuln with it) so that moat-vuln's own
//! dev-dependencies stay free of tokio and reqwest.

use std::path::{Path, PathBuf};

use moat_vuln::db::{self, Database, DbError};
use moat_vuln::matcher::match_package;
use moat_vuln::{Ecosystem, Package};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn package(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
    Package {
        ecosystem,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        distro_release: None,
        location: format!("fixture/{name}"),
        layer: Some("sha256:layer".to_string()),
    }
}

#[tokio::test]
async fn update_fails_clearly_without_the_network() {
    let dir = std::env::temp_dir().join(format!("moat-db-update-{}", std::process::id()));
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let err = db::update_from("http://127.0.0.1:1", &dir, &[Ecosystem::PyPI])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DbError::Download { .. }), "{err:?}");
    assert!(
        msg.starts_with("cannot download http://127.0.0.1:1/PyPI/all.zip: "),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("connect"),
        "the reason is given: {msg}"
    );
    assert!(!dir.join("PyPI/all.zip").exists());
    assert!(!dir.join("PyPI/.all.zip.partial").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves one response to every request on a loopback port: (status line, body).
async fn serve(status: &'static str, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn update_stores_an_export_that_then_loads() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for path in [
        "crates.io/RUSTSEC-2021-0003.json",
        "crates.io/RUSTSEC-2022-0013.json",
    ] {
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        zip.start_file(name, opts).unwrap();
        zip.write_all(&std::fs::read(fixtures().join("advisories").join(path)).unwrap())
            .unwrap();
    }
    let body = zip.finish().unwrap().into_inner();
    let base = serve("200 OK", body).await;
    let dir = std::env::temp_dir().join(format!("moat-db-fetch-{}", std::process::id()));
    let report = db::update_from(&base, &dir, &[Ecosystem::CratesIo])
        .await
        .unwrap();
    assert_eq!(report.downloaded.len(), 1);
    assert_eq!(report.downloaded[0].1, dir.join("crates.io/all.zip"));
    let loaded = Database::load(&dir).unwrap();
    assert!(
        loaded.stats().errors.is_empty(),
        "{:?}",
        loaded.stats().errors
    );
    assert_eq!(loaded.len(), 2);
    let f = match_package(&loaded, &package(Ecosystem::CratesIo, "regex", "1.5.4"));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].id, "RUSTSEC-2022-0013");

    // A server that answers with something else is refused, and the previous archive stays.
    let bad = serve("200 OK", b"<html>not a zip</html>".to_vec()).await;
    let err = db::update_from(&bad, &dir, &[Ecosystem::CratesIo])
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::BadArchive { .. }), "{err:?}");
    let missing = serve("404 Not Found", Vec::new()).await;
    let err = db::update_from(&missing, &dir, &[Ecosystem::CratesIo])
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with(": HTTP 404 Not Found"), "{err}");
    assert_eq!(Database::load(&dir).unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
