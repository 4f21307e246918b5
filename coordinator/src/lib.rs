//! The coordinator (webhooks, REST API, runner protocol, scheduler, store) and the `moat`
//! command line.

pub mod app;
pub mod cli;
pub mod crypto;
pub mod demo;
pub mod forge;
pub mod git;
pub mod http;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tokens;
