//! The `moat` binary, and the only one: parses arguments, sets up tracing, and hands over to
//! the libraries (`moat-pipelines`, `moat-runner`, `moat-coordinator`, the scanners). Glue only:
//! no decision is made here that a library could test.
//!
//! - `commands/`: one module per subcommand family (run, validate, scan, db, up/server/runner,
//!   the API verbs).
//! - `demo`: `moat up --demo`, the example repository run at start.

mod commands;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "Self-hosted CI/CD with security gates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline of a local repository in the terminal, without a server.
    Run(commands::run::RunArgs),
    /// Check a pipeline file; errors are printed as file:line:col: message.
    Validate {
        /// The pipeline file (default: .moat.yml in the current directory).
        file: Option<PathBuf>,
    },
    /// The built-in scanners on their own.
    Scan {
        #[command(subcommand)]
        command: ScanCommand,
    },
    /// Compare two versions the way the scanner does: prints <, = or >.
    VersionCompare {
        /// debian, alpine, pypi, semver or go.
        ecosystem: String,
        a: String,
        b: String,
    },
    /// The vulnerability database.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// All in one: coordinator, embedded runner and SQLite in a data directory.
    Up(commands::serve::UpArgs),
    /// The coordinator alone (SQLite or Postgres).
    Server(commands::serve::ServerArgs),
    /// A runner: pulls jobs from a coordinator and runs them in Docker.
    Runner(commands::serve::RunnerArgs),
    /// The edge proxy of the docker deploy target: owns environments' public addresses and
    /// forwards to each one's live colour (`moat up` starts one itself).
    Proxy(commands::proxy::ProxyArgs),
    /// Manage repositories.
    Repo {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[command(subcommand)]
        command: commands::admin::RepoCommand,
    },
    /// List runs, or show one run with its stages.
    Runs {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[command(flatten)]
        args: commands::admin::RunsArgs,
    },
    /// Print a run's logs.
    Logs {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        run: i64,
        /// Keep printing until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a run.
    Cancel {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        run: i64,
    },
    /// Run a run's pipeline again at the same commit.
    Rerun {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        run: i64,
    },
    /// Approve a run's stages that require an approval (`approval: required`).
    Approve {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        run: i64,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Start a run of a repository's branch by hand.
    Trigger {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        repo: String,
        #[arg(long)]
        branch: String,
        #[arg(long)]
        commit: Option<String>,
    },
    /// Manage a repository's secrets (encrypted at rest; values never shown).
    Secret {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[command(subcommand)]
        command: commands::admin::SecretCommand,
    },
    /// Encrypt a value (read from stdin) for a repository's `.moat.yml`; only the coordinator
    /// can open it, and only for that repository.
    Seal {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[arg(long)]
        repo: String,
        /// The coordinator's public key (`age1…`); fetched from the coordinator when omitted.
        #[arg(long)]
        recipient: Option<String>,
    },
    /// List webhook deliveries with their outcome (pending, processed, ignored, failed).
    Deliveries {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        /// Only this repository's (name or id).
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// List registered runners.
    Runners {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
    },
    /// Create a one-time runner registration token.
    RunnerToken {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[arg(long)]
        description: Option<String>,
        /// How long it can be used to register (like 30m, 1h, 24h; at most 720h).
        #[arg(long, default_value = "1h")]
        expires: String,
    },
    /// List, create and revoke tokens (admin, registration, runner).
    Token {
        #[command(flatten)]
        client: commands::admin::ClientOpts,
        #[command(subcommand)]
        command: commands::admin::TokenCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Download OSV's advisories (all supported ecosystems, or those named).
    Update {
        /// The database directory.
        #[arg(long, default_value = "./moat-data/vulndb")]
        db: PathBuf,
        ecosystems: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ScanCommand {
    /// Look for credentials in a directory tree (exit 1 when any is found).
    Secrets(commands::scan::ScanSecretsArgs),
    /// Judge Kubernetes manifests against the Pod Security Standards and hygiene checks
    /// (exit 1 on findings).
    Manifests(commands::manifests::ScanManifestsArgs),
    /// Match an image's packages against the vulnerability database (exit 1 on findings).
    Image(commands::image::ScanImageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal: `moat up` writes its proxy's log to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match cli.command {
        Command::Validate { file } => commands::validate::execute(file),
        Command::Run(args) => commands::run::execute(args),
        Command::Scan {
            command: ScanCommand::Secrets(args),
        } => commands::scan::execute_secrets(args),
        Command::Scan {
            command: ScanCommand::Manifests(args),
        } => commands::manifests::execute_manifests(args),
        Command::Scan {
            command: ScanCommand::Image(args),
        } => commands::image::execute_image(args),
        Command::VersionCompare { ecosystem, a, b } => {
            commands::vuln::version_compare(&ecosystem, &a, &b)
        }
        Command::Db {
            command: DbCommand::Update { db, ecosystems },
        } => commands::vuln::db_update(&db, &ecosystems),
        Command::Up(args) => commands::serve::up(args),
        Command::Proxy(args) => commands::proxy::execute(args),
        Command::Server(args) => commands::serve::server(args),
        Command::Runner(args) => commands::serve::runner(args),
        Command::Repo { client, command } => commands::admin::repo(client, command),
        Command::Runs { client, args } => commands::admin::runs(client, args),
        Command::Logs {
            client,
            run,
            follow,
        } => commands::admin::logs(client, run, follow),
        Command::Cancel { client, run } => commands::admin::cancel(client, run),
        Command::Rerun { client, run } => commands::admin::rerun(client, run),
        Command::Approve { client, run, stage } => commands::admin::approve(client, run, stage),
        Command::Trigger {
            client,
            repo,
            branch,
            commit,
        } => commands::admin::trigger(client, repo, branch, commit),
        Command::Runners { client } => commands::admin::runners(client),
        Command::Deliveries {
            client,
            repo,
            limit,
        } => commands::admin::deliveries(client, repo, limit),
        Command::Secret { client, command } => commands::admin::secret(client, command),
        Command::Seal {
            client,
            repo,
            recipient,
        } => commands::admin::seal(client, repo, recipient),
        Command::RunnerToken {
            client,
            description,
            expires,
        } => commands::admin::runner_token(client, description, expires),
        Command::Token { client, command } => commands::admin::token(client, command),
    };
    ExitCode::from(code)
}
