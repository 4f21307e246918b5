//! Moat's runner: executes planned stages in hardened Docker containers through bollard.
//!
//! - [`docker`]: the engine connection, labels, cleanup of a run and of leftovers, image pulls.
//! - [`workspace`]: the source tree of a run as a tar archive, from a git checkout.
//! - [`engine`]: one run's network and volume, and one stage (with services) at a time.
//! - [`local`]: a whole plan as a DAG on one engine (used by `moat run`).
//! - [`logs`]: output chunks to capped lines; duration and size formatting.
//! - [`stages`]: the stage kinds beyond `test` (build, scan), over the scanner crates.
//! - [`git`]: the one `git` helper (workspace, demo, tests, benchmarks).
//! - [`scratch`]: the one temporary-directory guard.
//! - [`agent`]: the runner side of the coordinator protocol (its types: `moat-protocol`).
//!
//! The scanners themselves (`moat-secrets`, `moat-vuln`, `moat-manifests`) are pure crates;
//! this one only feeds them what it reads from the engine.

pub mod agent;
pub mod docker;
pub mod engine;
pub mod error;
pub mod git;
pub mod local;
pub mod logs;
pub mod scratch;
pub mod stages;
pub mod workspace;

pub use engine::{Engine, EngineConfig, Observer, RunHandle, StageInput, StageResult, StageStatus};
pub use error::EngineError;
pub use local::{RunOptions, RunReport, RunStatus, execute, new_run_id};
pub use logs::StreamKind;
