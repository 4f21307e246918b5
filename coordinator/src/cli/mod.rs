//! The subcommands of `moat` that work without a server.

pub mod run;
pub mod validate;
