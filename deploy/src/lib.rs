//! Deployments.
//!
//! Modules:
//! - [`proxy`]: the edge proxy of the `docker` target (`moat proxy`): owns environments'
//!   public addresses, forwards to the live colour, switches colours atomically.
//!
//! It will also own:
//! - the release state machine: prepare → verify → switch → observe → retire, or roll back from
//!   any step after prepare; each transition a pure decision over typed values, with the I/O of
//!   a target behind a trait;
//! - the Docker target (it drives the edge proxy: the switch moves traffic from the old
//!   containers to the new ones);
//! - the Kubernetes target (kube-rs);
//! - the pre-switch probe (the new release answers before any traffic moves to it).
//!
//! It must not touch the database: the coordinator decides whether a deploy may run (claims,
//! environments, approvals) and records its outcome; this crate only carries a release out on a
//! target and reports what happened. It is driven by the runner's deploy stage and by `moat`.

pub mod proxy;
