//! The coordinator: webhooks, REST API, runner protocol, scheduler, store, secrets, policy.
//! It decides, records and hands out work; it never talks to Docker or Kubernetes (runners do).
//! The `moat` binary that serves it lives in the `moat` package (`cli/`).

pub mod app;
pub mod claims;
pub mod crypto;
pub mod environments;
pub mod files;
pub mod forge;
pub mod git;
pub mod http;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tokens;
