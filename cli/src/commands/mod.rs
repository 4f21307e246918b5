//! The subcommands of `moat`: argument types (clap) and the glue that calls the libraries.

pub mod admin;
pub mod image;
pub mod manifests;
pub mod proxy;
pub mod run;
pub mod scan;
pub mod serve;
pub mod validate;
pub mod vuln;
