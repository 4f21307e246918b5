//! The subcommands of `moat` that work without a server.

pub mod admin;
pub mod image;
pub mod manifests;
pub mod run;
pub mod scan;
pub mod serve;
pub mod validate;
pub mod vuln;
