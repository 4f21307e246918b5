//! Moat's runner: executes planned stages in hardened Docker containers through bollard.
//!
//! - [`docker`]: the engine connection, labels, cleanup of a run and of leftovers, image pulls.
//! - [`workspace`]: the source tree of a run as a tar archive, from a git checkout.
//! - [`outcome`]: how a stage ended and what it is given; the words every stage kind shares.
//! - [`engine`]: one run's network and volume, and one stage (with services) at a time, of every
//!   kind: `test` in a container, `build` and `scan` (`engine::stages`) over the scanner crates.
//! - [`local`]: a whole plan as a DAG on one engine (used by `moat run`).
//! - [`logs`]: output chunks to capped lines; duration and size formatting.
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
pub mod outcome;
pub mod scratch;
pub mod workspace;

pub use engine::{Engine, EngineConfig, RunHandle};
pub use error::EngineError;
pub use local::{RunOptions, RunReport, RunStatus, execute, new_run_id};
pub use logs::StreamKind;
pub use outcome::{Observer, StageInput, StageResult, StageStatus};
