//! What the benchmarks share: their argument parsing, running commands, and the busybox test
//! image. Each example includes this module (`mod support;`) and uses only part of it.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The value after `name` on the command line.
pub fn opt(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The value after `name`, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    opt(name).unwrap_or_else(|| default.to_string())
}

/// Whether `name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Runs a command; its trimmed standard output, or an error with its standard error.
pub fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git -C dir args…` with a fixed identity.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    const WHO: moat_runner::git::Identity = moat_runner::git::Identity {
        name: "bench",
        email: "bench@moat.invalid",
    };
    Ok(moat_runner::git::git_as(WHO, dir, args)?)
}

/// The test image `tag`: `FROM scratch` plus the host's static busybox (as the e2e tests
/// build it; no registry is needed).
pub fn build_busybox_image(tag: &str) -> anyhow::Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("busybox-static is installed (apt-get install busybox-static)")?;
    let ctx = std::env::temp_dir().join(format!("moat-bench-image-{}", std::process::id()));
    std::fs::create_dir_all(&ctx)?;
    std::fs::copy(busybox, ctx.join("busybox"))?;
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN [\"/bin/mkdir\", \"-p\", \"/tmp\", \"/root\"]\n",
    )?;
    let built = sh(Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(&ctx));
    let _ = std::fs::remove_dir_all(&ctx);
    built.map(|_| ())
}
