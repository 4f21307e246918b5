//! Build and scan stages end to end with `moat run`: an image built from the workspace (on a
//! local base image), pushed to a real registry on loopback (Debian's `docker-registry`), and
//! scanned against real PyPA advisories — the scan's findings carry the pushed digest, `fail_on`
//! fails the run, an ignore with a future expiry lets it pass, an expired one fails again.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A registry on 127.0.0.1 (the engine allows plain HTTP there), killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = TempDir::new("registry").expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/ensure-deps)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The images the tests built and tagged for this registry, listed while it still
        // holds its port (so that no later registry's images can carry the same prefix).
        let prefix = format!("127.0.0.1:{}/", self.port);
        let tags: Vec<String> = Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|t| t.starts_with(&prefix))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !tags.is_empty() {
            let _ = Command::new("docker")
                .args(["image", "rm", "--force"])
                .args(&tags)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The PyPA advisories of tests/fixtures as a vulnerability database.
fn vuln_db() -> TempDir {
    let db = TempDir::new("vulndb").expect("temp dir");
    let out = Command::new("cp")
        .arg("-r")
        .arg(tests_dir().join("fixtures/advisories/PyPI"))
        .arg(db.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    db
}

fn metadata(name: &str, version: &str) -> String {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package\n")
}

fn pipeline(port: u16, ignore: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: image
    kind: build
    build:
      context: app
      tag: "127.0.0.1:{port}/moat-e2e/app:${{MOAT_COMMIT}}"
      push: true
      args: {{ GREETING: hello }}
  - name: scan
    kind: scan
    scan:
      image: "127.0.0.1:{port}/moat-e2e/app:${{MOAT_COMMIT}}"
      fail_on: high
{ignore}"#
    )
}

fn run_with_db(dir: &std::path::Path, db: &std::path::Path) -> std::process::Output {
    let child = moat()
        .arg("run")
        .arg(dir)
        .arg("--vuln-db")
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_no_leftovers(pid);
    out
}

fn commit_pipeline(repo: &std::path::Path, content: &str) {
    std::fs::write(repo.join(".moat.yml"), content).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "pipeline"]);
}

#[test]
fn build_push_and_scan_the_pushed_digest_with_fail_on_and_ignores() {
    let base = busybox_image();
    let registry = Registry::start();
    let db = vuln_db();
    let site = "usr/lib/python3/site-packages";
    let files = [
        (
            "app/Dockerfile".to_string(),
            format!(
                "FROM {base}\nARG GREETING\nCOPY site-packages/ /{site}/\nRUN [\"/bin/sh\", \"-c\", \"echo $GREETING > /greeting\"]\n"
            ),
        ),
        (
            "app/site-packages/urllib3-1.24.1.dist-info/METADATA".to_string(),
            metadata("urllib3", "1.24.1"),
        ),
        (
            "app/site-packages/requests-2.19.1.dist-info/METADATA".to_string(),
            metadata("requests", "2.19.1"),
        ),
        (".moat.yml".to_string(), pipeline(registry.port, "")),
    ];
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = repo("buildscan", &refs);

    // No ignore: urllib3 1.24.1 has a high-severity advisory (PYSEC-2023-192).
    let out = run_with_db(repo.path(), db.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout.contains("pushed 127.0.0.1:"), "{stdout}");
    let pushed = stdout
        .lines()
        .find_map(|l| l.split("pushed ").nth(1))
        .and_then(|r| r.split('@').nth(1))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("no pushed digest: {stdout}"));
    assert!(pushed.starts_with("sha256:"), "{pushed}");
    // The scan names the image it scanned by the digest the registry gave.
    assert!(
        stdout.contains(&format!("({pushed})")),
        "the scan carries the pushed digest {pushed}:\n{stdout}"
    );
    assert!(stdout.contains("PYSEC-2023-192"), "{stdout}");
    assert!(stdout.contains("requests"), "{stdout}");
    let scan_row = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("scan "))
        .unwrap();
    assert!(scan_row.contains("failed"), "{scan_row}");
    assert!(
        scan_row.contains("1 finding at high or above"),
        "{scan_row}"
    );

    // An ignore with a reason and a future expiry lets it pass.
    let ignore = "      ignore:\n        - { id: PYSEC-2023-192, reason: \"proxy code path not used\", expires: 2099-01-01 }\n";
    commit_pipeline(repo.path(), &pipeline(registry.port, ignore));
    let out = run_with_db(repo.path(), db.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("ignored (proxy code path not used)"));

    // An expired ignore stops applying, and says so.
    let expired = "      ignore:\n        - { id: CVE-2023-43804, reason: \"was fine once\", expires: 2020-01-01 }\n";
    commit_pipeline(repo.path(), &pipeline(registry.port, expired));
    let out = run_with_db(repo.path(), db.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout.contains("the ignore for CVE-2023-43804 expired on 2020-01-01"),
        "{stdout}"
    );
}

#[test]
fn a_missing_database_fails_the_scan_stage_clearly() {
    let image = busybox_image();
    let pipeline = format!(
        "version: 1\nstages:\n  - name: scan\n    kind: scan\n    scan: {{ image: \"{image}\", fail_on: high }}\n"
    );
    let repo = repo("nodb", &[(".moat.yml", &pipeline)]);
    let missing = TempDir::new("nodb").expect("temp dir");
    let out = run_with_db(repo.path(), &missing.path().join("absent"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("moat db update"),
        "{}",
        describe(&out)
    );
}
