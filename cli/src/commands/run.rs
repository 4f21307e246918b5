//! `moat run [DIR]`: the pipeline of a local checkout, executed by the same engine the runners
//! use, with live prefixed output and a summary table. Exit 0 only when every selected stage
//! passed; 1 when a stage failed; 2 when the run could not start; 130 when interrupted.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use moat_pipelines::{Event, EventKind, Plan, PlannedStage, Policy};
use moat_runner::logs::fmt_duration;
use moat_runner::{
    Engine, EngineConfig, Observer, RunStatus, StageResult, StageStatus, StreamKind, workspace,
};
use moat_secrets::gate::GateMode;
use tokio_util::sync::CancellationToken;

use super::validate::{Loaded, load};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EventArg {
    Push,
    PullRequest,
    Tag,
    Manual,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GateArg {
    Block,
    Warn,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The repository (any directory inside a git checkout). Default: the current directory.
    pub dir: Option<PathBuf>,
    /// The pipeline file. Default: .moat.yml at the repository root.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Run only this stage and what it needs (repeatable).
    #[arg(long = "stage", short = 's', value_name = "NAME")]
    pub stages: Vec<String>,
    /// The event to simulate; decides `when:` conditions.
    #[arg(long, value_enum, default_value = "push")]
    pub event: EventArg,
    /// Branch name for the event (default: the checked-out branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Target branch of a simulated pull request.
    #[arg(long, default_value = "main")]
    pub target_branch: String,
    /// Tag name for `--event tag`.
    #[arg(long)]
    pub tag: Option<String>,
    /// How many independent stages may run at once (default: number of CPUs).
    #[arg(long, short = 'p')]
    pub parallel: Option<usize>,
    /// Use the working tree (tracked and untracked, not ignored files) instead of HEAD.
    #[arg(long)]
    pub working_tree: bool,
    /// Kill a stage that prints nothing for this long (default 15m; a stage's
    /// `no_output_timeout` wins).
    #[arg(long, value_parser = parse_duration_arg)]
    pub no_output_timeout: Option<Duration>,
    /// Write each stage's output to DIR/<stage>.log.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Give the stages that list it the secret NAME; its value comes from the environment
    /// variable NAME, or is asked for (repeatable). Values are masked in all output.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// The vulnerability database scan stages use (see `moat db update`).
    #[arg(long, env = "MOAT_VULN_DB", default_value = "./moat-data/vulndb")]
    pub vuln_db: PathBuf,
    /// The secret gate: block the run on credentials in the source, warn, or skip the scan.
    #[arg(long, value_enum, default_value = "block")]
    pub secret_gate: GateArg,
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorArg,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    moat_pipelines::units::parse_duration(s)
}

const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "31"];

/// Prints prefixed live output and keeps each stage's lines.
struct Terminal {
    width: usize,
    colour: bool,
    logs: Mutex<HashMap<String, Vec<String>>>,
    log_cap: usize,
}

impl Terminal {
    fn prefix(&self, stage: &PlannedStage) -> String {
        let name = format!("{:<w$}", stage.name, w = self.width);
        if self.colour {
            format!(
                "\x1b[{}m{name} |\x1b[0m",
                COLOURS[stage.index % COLOURS.len()]
            )
        } else {
            format!("{name} |")
        }
    }

    fn print(&self, stage: &PlannedStage, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{} {text}", self.prefix(stage));
    }

    fn system(&self, text: &str) -> String {
        if self.colour {
            format!("\x1b[2m[moat] {text}\x1b[0m")
        } else {
            format!("[moat] {text}")
        }
    }
}

impl Observer for Terminal {
    fn stage_started(&self, stage: &PlannedStage) {
        let image = stage.image.as_deref().unwrap_or("-");
        self.print(stage, &self.system(&format!("starting ({image})")));
    }

    fn log_line(&self, stage: &PlannedStage, stream: StreamKind, line: &str) {
        let shown = match stream {
            StreamKind::System => self.system(line),
            _ => line.to_string(),
        };
        self.print(stage, &shown);
        let mut logs = self.logs.lock().expect("log lock");
        let entry = logs.entry(stage.name.clone()).or_default();
        if entry.len() < self.log_cap {
            entry.push(line.to_string());
        }
    }

    fn stage_finished(&self, stage: &PlannedStage, result: &StageResult) {
        if result.status == StageStatus::Skipped {
            return;
        }
        let mut text = format!(
            "{} in {}",
            result.status.as_str(),
            fmt_duration(result.duration)
        );
        if let Some(r) = &result.reason {
            text.push_str(&format!(": {r}"));
        }
        self.print(stage, &self.system(&text));
    }
}

fn status_cell(status: StageStatus, colour: bool) -> String {
    let text = format!("{:<9}", status.as_str());
    if !colour {
        return text;
    }
    let code = match status {
        StageStatus::Passed => "32",
        StageStatus::Failed => "31",
        StageStatus::Skipped => "2",
        StageStatus::Cancelled => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn event_from(args: &RunArgs, checkout: &workspace::Checkout, run_id: &str) -> Event {
    let kind = match args.event {
        EventArg::Push => EventKind::Push,
        EventArg::PullRequest => EventKind::PullRequest,
        EventArg::Tag => EventKind::Tag,
        EventArg::Manual => EventKind::Manual,
    };
    Event {
        kind,
        branch: args.branch.clone().or_else(|| checkout.branch.clone()),
        target_branch: (kind == EventKind::PullRequest).then(|| args.target_branch.clone()),
        tag: args.tag.clone(),
        commit: checkout.commit.clone(),
        repo: checkout.repo.clone(),
        run_id: run_id.to_string(),
    }
}

fn print_summary(plan: &Plan, report: &moat_runner::RunReport, colour: bool) {
    let width = plan
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!();
    println!(
        "{:<width$}  {:<9}  {:>8}  DETAIL",
        "STAGE", "STATUS", "DURATION"
    );
    for (name, r) in &report.stages {
        let duration = if r.status == StageStatus::Skipped {
            "-".to_string()
        } else {
            fmt_duration(r.duration)
        };
        println!(
            "{:<width$}  {}  {:>8}  {}",
            name,
            status_cell(r.status, colour),
            duration,
            r.reason.as_deref().unwrap_or("")
        );
    }
    let count = |st: StageStatus| report.stages.iter().filter(|(_, r)| r.status == st).count();
    println!(
        "\nrun {}: {} ({} passed, {} failed, {} skipped, {} cancelled) in {}",
        report.run_id,
        report.status.as_str(),
        count(StageStatus::Passed),
        count(StageStatus::Failed),
        count(StageStatus::Skipped),
        count(StageStatus::Cancelled),
        fmt_duration(report.duration)
    );
}

pub fn execute(args: RunArgs) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moat: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> u8 {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let checkout = match find_project(&dir, args.file.is_none()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    };
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| checkout.project_dir().join(".moat.yml"));
    let pipeline = match load(&file, &Policy::default()) {
        Loaded::Valid(p) => p,
        Loaded::Invalid(text) => {
            eprint!("{text}");
            return 2;
        }
        Loaded::Unreadable(msg) => {
            eprintln!("{msg}");
            return 2;
        }
    };
    let run_id = moat_runner::new_run_id();
    let event = event_from(&args, &checkout, &run_id);
    if !pipeline.triggered_by(&event) {
        eprintln!(
            "moat: note: the pipeline's `on:` would not start a run for this {} event; running it anyway",
            event.kind
        );
    }
    let mut plan = match moat_pipelines::plan(&pipeline, &event) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.render(&file.display().to_string()));
            return 2;
        }
    };
    if !args.stages.is_empty()
        && let Err(unknown) = plan.select(&args.stages)
    {
        let known: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "moat: no stage named {}; the pipeline has: {}",
            unknown.join(", "),
            known.join(", ")
        );
        return 2;
    }

    let secrets = match read_secrets(&args.secrets, &pipeline) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("moat: {msg}");
            return 2;
        }
    };
    for s in plan.stages.iter().filter(|s| s.skip.is_none()) {
        for name in &s.secrets {
            if !secrets.iter().any(|(k, _)| k == name) {
                eprintln!(
                    "moat: warning: stage {} is granted secret {name}, but no value was given (pass --secret {name}); it runs without it",
                    s.name
                );
            }
        }
    }

    let docker = match moat_runner::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    };
    if let Err(e) = moat_runner::docker::remove_leftovers(&docker).await {
        tracing::warn!(error = %e, "could not look for leftovers of earlier runs");
    }
    let tar = match workspace::archive(&checkout, args.working_tree) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    };

    let mode = match args.secret_gate {
        GateArg::Block => GateMode::Block,
        GateArg::Warn => GateMode::Warn,
        GateArg::Off => GateMode::Off,
    };
    match moat_secrets::gate::check_archive(&tar, mode, None, &std::env::temp_dir()) {
        Ok(outcome) => {
            if let Some(report) = &outcome.report
                && !report.findings.is_empty()
            {
                eprint!("{}", moat_secrets::report::table(report));
            }
            if outcome.blocked {
                eprintln!(
                    "moat: run {run_id}: {}. Remove the credential, or allow-list its fingerprint with a reason in .moat/secrets.allow.",
                    outcome.summary()
                );
                return 1;
            }
            if mode != GateMode::Off {
                println!("moat: {}", outcome.summary());
            }
        }
        Err(e) => {
            eprintln!("moat: {e}");
            return 2;
        }
    }

    let mut config = EngineConfig {
        vuln_db: Some(args.vuln_db.clone()),
        ..EngineConfig::default()
    };
    if let Some(d) = args.no_output_timeout {
        config.default_no_output_timeout = d;
    }
    let engine = Arc::new(Engine::new(docker, config));
    let colour = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let terminal = Arc::new(Terminal {
        width: plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(1),
        colour,
        logs: Mutex::new(HashMap::new()),
        log_cap: 200_000,
    });

    let cancel = CancellationToken::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("moat: interrupted; stopping containers and cleaning up");
            cancel.cancel();
        });
    }

    let parallel = args.parallel.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    println!(
        "moat: run {run_id} of {} at {} ({} event)",
        checkout.repo,
        &checkout.commit[..checkout.commit.len().min(12)],
        event.kind
    );
    let options = moat_runner::RunOptions {
        run_id: run_id.clone(),
        workspace: tar,
        parallel,
        secrets,
    };
    let report = match moat_runner::execute(
        engine,
        &plan,
        options,
        terminal.clone(),
        cancel.clone(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moat: {e}");
            return if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                130
            } else {
                2
            };
        }
    };
    if let Some(dir) = &args.log_dir
        && let Err(e) = write_logs(dir, &terminal)
    {
        eprintln!("moat: cannot write logs to {}: {e}", dir.display());
    }
    print_summary(&plan, &report, colour);
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        return 130;
    }
    match report.status {
        RunStatus::Passed => 0,
        RunStatus::Failed => 1,
        RunStatus::Cancelled => 130,
    }
}

/// Values for `--secret NAME`: from the environment variable NAME, or asked for on the
/// terminal without echo. Names must be declared under `secrets:`; values must be at least
/// four characters (shorter ones could not be masked without masking ordinary words).
fn read_secrets(
    names: &[String],
    pipeline: &moat_pipelines::Pipeline,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for name in names {
        if !pipeline.secrets.iter().any(|s| &s.name == name) {
            return Err(format!(
                "--secret {name}: the pipeline declares no secret of that name"
            ));
        }
        let value =
            match std::env::var(name) {
                Ok(v) => v,
                Err(_) => rpassword::prompt_password(format!("value of secret {name}: ")).map_err(
                    |e| format!("--secret {name}: not in the environment, and cannot ask: {e}"),
                )?,
            };
        if value.chars().count() < moat_secrets::mask::MIN_SECRET_LEN {
            return Err(format!(
                "--secret {name}: values must be at least {} characters",
                moat_secrets::mask::MIN_SECRET_LEN
            ));
        }
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// The checkout whose project is `dir` or, when `search` is set, the nearest directory from
/// `dir` up to the checkout's root that holds a `.moat.yml`.
fn find_project(dir: &std::path::Path, search: bool) -> Result<workspace::Checkout, String> {
    let here = workspace::inspect(dir).map_err(|e| e.to_string())?;
    if !search {
        return Ok(here);
    }
    let mut candidate = here.project_dir();
    loop {
        if candidate.join(".moat.yml").is_file() {
            return workspace::inspect(&candidate).map_err(|e| e.to_string());
        }
        if candidate == here.root || !candidate.pop() {
            return Err(format!(
                "no .moat.yml in {} or above it in the repository",
                dir.display()
            ));
        }
    }
}

fn write_logs(dir: &std::path::Path, terminal: &Terminal) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let logs = terminal.logs.lock().expect("log lock");
    for (stage, lines) in logs.iter() {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.join(format!("{stage}.log")), text)?;
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
