//! The `moat` binary: parses arguments, sets up tracing, and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moat_coordinator::cli;

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
    Run(cli::run::RunArgs),
    /// Check a pipeline file; errors are printed as file:line:col: message.
    Validate {
        /// The pipeline file (default: .moat.yml in the current directory).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::Validate { file } => cli::validate::execute(file),
        Command::Run(args) => cli::run::execute(args),
    };
    ExitCode::from(code)
}
