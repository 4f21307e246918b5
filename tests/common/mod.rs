//! Shared helpers for the end-to-end tests: the `moat` binary, throw-away git repositories,
//! locally built test images (no registry is reachable), and checks that Moat left nothing
//! behind on the Docker engine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `moat` binary built for this test run.
pub fn moat() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
    c.env("NO_COLOR", "1");
    c
}

/// Where the repository's test data lives.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

pub use moat_runner::scratch::TempDir;

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{:?} failed: {}", cmd, describe(&out));
    out
}

/// `git -C dir args…` as the tests' identity; panics with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    const WHO: moat_runner::git::Identity = moat_runner::git::Identity {
        name: "Moat Test",
        email: "test@moat.invalid",
    };
    moat_runner::git::git_as(WHO, dir, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A git repository on branch `main` with the given files committed.
pub fn repo(tag: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(tag).expect("temp dir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    for (name, content) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    dir
}

/// The test image: `FROM scratch` plus the host's static busybox, tagged
/// `moat-test/busybox:1`. Built once per test binary; the engine's cache makes rebuilds cheap.
pub fn busybox_image() -> &'static str {
    static IMAGE: OnceLock<()> = OnceLock::new();
    const TAG: &str = "moat-test/busybox:1";
    IMAGE.get_or_init(|| {
        let ctx = TempDir::new("busybox-image").expect("temp dir");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed (apt-get install busybox-static)");
        std::fs::copy(busybox, ctx.path().join("busybox")).unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN [\"/bin/mkdir\", \"-p\", \"/tmp\", \"/root\"]\n",
        )
        .unwrap();
        run_ok(
            Command::new("docker")
                .args(["build", "-q", "-t", TAG])
                .arg(ctx.path()),
        );
    });
    TAG
}

/// Containers, networks and volumes carrying `label` (e.g. `moat.pid=123`).
pub fn labelled_resources(label: &str) -> Vec<String> {
    let mut found = Vec::new();
    let filter = format!("label={label}");
    for (kind, args) in [
        ("container", vec!["ps", "-a", "-q", "--filter", &filter]),
        ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
    ] {
        let out = run_ok(Command::new("docker").args(&args));
        for line in text(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
            found.push(format!("{kind} {line}"));
        }
    }
    found
}

/// Asserts that the `moat` process `pid` left no Docker resource behind.
pub fn assert_no_leftovers(pid: u32) {
    let left = labelled_resources(&format!("moat.pid={pid}"));
    assert!(left.is_empty(), "leftovers of moat pid {pid}: {left:?}");
}

/// The pids of the `moat proxy` processes serving the proxy directory of `data_dir` (the
/// ones `moat up` starts for itself, found by their command line).
#[allow(dead_code)] // each test binary compiles this module; not all of them use everything
pub fn proxy_pids(data_dir: &Path) -> Vec<u32> {
    let dir = data_dir.join("proxy");
    let want = [
        "proxy".as_bytes(),
        "--dir".as_bytes(),
        dir.as_os_str().as_encoded_bytes(),
    ];
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 4 && args[1..4] == want {
            pids.push(pid);
        }
    }
    pids
}

/// Kills (SIGKILL) the proxies `moat up` left for `data_dir`: a `moat up` killed with
/// `kill -9` leaves its proxy serving on purpose.
#[allow(dead_code)]
pub fn kill_proxies(data_dir: &Path) {
    for pid in proxy_pids(data_dir) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}
