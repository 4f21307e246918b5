//! The `.moat.yml` language, version 1: a located YAML reader with input limits, the typed
//! model, strict validation that reports every problem as `file:line:col: message`, and the
//! planner that turns a pipeline and an event into a DAG of stages. Pure: no I/O anywhere.

pub mod diag;
pub mod model;
pub mod pattern;
pub mod plan;
pub mod reference;
pub mod schedule;
pub mod units;
pub mod yaml;

mod lint;
mod parse;

pub use diag::{Diagnostic, Diagnostics, Pos};
pub use model::*;
pub use plan::{Event, Plan, PlanError, PlannedStage, plan};

/// Largest pipeline file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// What the administrator allows beyond the secure defaults. A pipeline asking for more is
/// refused with a located error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow_privileged: bool,
    pub allow_host_mounts: bool,
    pub allow_docker_socket: bool,
}

/// Parses and validates a pipeline file under the default (strictest) policy.
pub fn parse(src: &str) -> Result<Pipeline, Diagnostics> {
    parse_with(src.as_bytes(), &Policy::default())
}

/// Parses and validates raw bytes: size limit, UTF-8, YAML limits, schema and semantics. Every
/// problem found is reported, not just the first.
pub fn parse_with(src: &[u8], policy: &Policy) -> Result<Pipeline, Diagnostics> {
    parse::parse(src, policy)
}
