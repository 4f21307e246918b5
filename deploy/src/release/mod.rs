//! A release: one attempt to make a new version of an application serve an environment.
//! [`health`] judges health answers; [`machine`] is the state machine that orders a target's
//! steps and decides every way back. Both are pure: targets (the Docker host and its edge
//! proxy, Kubernetes) carry out the [`machine::Action`]s and report what happened.

pub mod health;
pub mod machine;

pub use health::{Answer, HealthPolicy, OBSERVE_FAILURES};
pub use machine::{Action, Input, Outcome, Phase, Plan, Release, Rollback, Step, recover};

#[cfg(test)]
mod tests;
