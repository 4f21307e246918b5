//! The `moat` command line and, in later issues, the coordinator service (webhooks, API,
//! dashboard, scheduler, store).

pub mod cli;
