//! `moat proxy` (the edge proxy of the `docker` deploy target, as a process of its own) and the
//! supervisor with which `moat up` keeps one running beside its embedded runner.
//!
//! The proxy is a separate process on purpose: a crashed or restarted coordinator or runner
//! must not take the environments' public addresses down. So `moat up` adopts a proxy that
//! already answers on its control socket (one left running by a `moat up` that was killed),
//! starts one when none answers, and starts it again when it dies. On a clean shutdown it
//! stops only a proxy it started itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use moat_deploy::proxy::{self, ControlClient, ProxyConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where the proxy keeps its control socket (`control.sock`, mode 0600) and its state
    /// (`state.json`: environments and live upstreams).
    #[arg(long, default_value = "./moat-data/proxy", env = "MOAT_PROXY_DIR")]
    pub dir: PathBuf,
    /// Print the environments of the proxy running on DIR (JSON) instead of starting one.
    #[arg(long)]
    pub status: bool,
}

/// The control socket inside a proxy directory.
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The proxy directory of `moat up`'s data directory.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("proxy")
}

pub fn execute(args: ProxyArgs) -> u8 {
    let run = async {
        if args.status {
            let envs = ControlClient::new(control_socket(&args.dir))
                .status()
                .await?;
            println!("{}", serde_json::to_string_pretty(&envs)?);
            return Ok(());
        }
        let shutdown = CancellationToken::new();
        super::serve::cancel_on_signal(shutdown.clone());
        let config = ProxyConfig::new(control_socket(&args.dir), state_file(&args.dir));
        let running = proxy::start(config, shutdown).await?;
        println!(
            "moat: edge proxy controlled on {}",
            running.control_socket().display()
        );
        running.wait().await?;
        anyhow::Ok(())
    };
    super::serve::report(super::serve::runtime().and_then(|rt| rt.block_on(run)))
}

/// How often the supervisor asks the proxy whether it is alive.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a status request may take before the proxy counts as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The wait before the next start after `failures` starts in a row that did not last: none
/// for the first, then doubling from 250 ms up to 10 s, so that a proxy that cannot start
/// (its address taken, its directory unwritable) does not spin.
pub fn restart_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(10_000))
}

/// A proxy run counts as having lasted (and resets the back-off) after this long.
const LASTED: Duration = Duration::from_secs(30);

/// Keeps a `moat proxy` answering on `dir` until `shutdown`: adopts one that already answers,
/// otherwise starts `exe proxy --dir DIR` and starts it again whenever it exits. Returns once
/// the first proxy answers; the watching goes on in a task.
pub async fn supervise(
    exe: PathBuf,
    dir: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = ControlClient::new(control_socket(&dir)).with_timeout(ANSWER_WITHIN);
    let mut child = None;
    if client.status().await.is_err() {
        child = Some(spawn(&exe, &dir)?);
        wait_until_answering(&client, &dir, child.as_mut()).await?;
    }
    let socket = control_socket(&dir);
    println!(
        "moat: edge proxy on {}{}",
        socket.display(),
        if child.is_some() {
            ""
        } else {
            " (already running)"
        }
    );
    Ok(tokio::spawn(watch(exe, dir, client, child, shutdown)))
}

async fn watch(
    exe: PathBuf,
    dir: PathBuf,
    client: ControlClient,
    mut child: Option<(tokio::process::Child, tokio::time::Instant)>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        // Our own proxy is waited for (a death is seen at once); an adopted one is asked.
        let exited = tokio::select! {
            _ = shutdown.cancelled() => break,
            status = async {
                match child.as_mut() {
                    Some((c, _)) => c.wait().await.ok(),
                    None => std::future::pending().await,
                }
            } => status,
            _ = tokio::time::sleep(WATCH_EVERY), if child.is_none() => None,
        };
        if let Some(status) = exited {
            let lasted = child.take().map(|(_, t)| t.elapsed()).unwrap_or_default();
            failures = if lasted >= LASTED { 0 } else { failures + 1 };
            if client.status().await.is_ok() {
                // Another proxy took the socket (one started by hand): keep it.
                tracing::info!(proxy.status = %status, "the edge proxy exited; another one answers");
                continue;
            }
            tracing::warn!(proxy.status = %status, "the edge proxy exited; starting it again");
        } else if client.status().await.is_ok() {
            continue;
        } else {
            // An adopted proxy stopped answering: this process takes over.
            tracing::warn!("the edge proxy stopped answering; starting one");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(restart_delay(failures)) => {}
        }
        match spawn(&exe, &dir) {
            Ok(c) => child = Some(c),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), "cannot start the edge proxy");
            }
        }
    }
    if let Some((mut c, _)) = child {
        stop(&mut c).await;
    }
}

/// The proxy's own log when `moat up` started it: a proxy that outlives a killed `moat up`
/// must not hold that process's output pipes open.
pub fn log_file(dir: &Path) -> PathBuf {
    dir.join("proxy.log")
}

fn spawn(exe: &Path, dir: &Path) -> anyhow::Result<(tokio::process::Child, tokio::time::Instant)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file(dir))
        .with_context(|| format!("cannot open {}", log_file(dir).display()))?;
    let child = tokio::process::Command::new(exe)
        .arg("proxy")
        .arg("--dir")
        .arg(dir)
        // Its own process group: a Ctrl-C meant for `moat up` reaches the proxy through
        // `moat up`'s orderly shutdown, not at the same time.
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env(
            "MOAT_LOG",
            std::env::var("MOAT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .spawn()
        .with_context(|| format!("cannot start {} proxy", exe.display()))?;
    Ok((child, tokio::time::Instant::now()))
}

/// Waits (at most 10 s) until the proxy answers its control socket.
async fn wait_until_answering(
    client: &ControlClient,
    dir: &Path,
    mut child: Option<&mut (tokio::process::Child, tokio::time::Instant)>,
) -> anyhow::Result<()> {
    for _ in 0..100 {
        if client.status().await.is_ok() {
            return Ok(());
        }
        if let Some((c, _)) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            anyhow::bail!(
                "the edge proxy exited at start ({status}); see {}",
                log_file(dir).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the edge proxy did not answer within 10 s")
}

/// Asks the proxy to stop (SIGTERM: it drains for its shutdown grace), then kills it.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // `kill(1)` rather than `unsafe` libc: the pid is our own child, not yet reaped.
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_stay_bounded() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::from_millis(250));
        assert_eq!(restart_delay(2), Duration::from_millis(500));
        assert_eq!(restart_delay(3), Duration::from_secs(1));
        assert_eq!(restart_delay(7), Duration::from_secs(10));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(10));
    }
}
