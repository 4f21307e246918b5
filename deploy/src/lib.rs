//! Deployments: a new version made to serve an environment, and the way back.
//!
//! - [`release`]: the release state machine: prepare → verify → switch → observe → retire, and
//!   the way back from each step; health answers judged. Pure decisions over typed values; a
//!   target carries out its actions.
//! - [`driver`]: the loop that carries a release out on a [`driver::Target`]: records each
//!   phase first, performs the actions, waits, times health tries out, retries the way back.
//! - [`plan`]: a `deploy:` block of `.moat.yml` made into the machine's [`release::Plan`].
//! - [`proxy`]: the edge proxy of the `docker` target (`moat proxy`): owns environments'
//!   public addresses, forwards to the live colour, switches colours atomically.
//! - [`docker`]: the `docker` target: blue/green containers on one Docker host, sandboxed and
//!   labelled, switched through the edge proxy; recovery after a killed deploy and
//!   reconciliation of a live release whose container is gone.
//! - [`plan`]: a pipeline's `deploy:` block as a release plan and the docker target's app.
//!
//! Still to come:
//! - the Kubernetes target (kube-rs);
//! - the pre-switch probe (the new release answers before any traffic moves to it).
//!
//! It must not touch the database: the coordinator decides whether a deploy may run (claims,
//! environments, approvals) and records its outcome; this crate only carries a release out on a
//! target and reports what happened. It is driven by the runner's deploy stage and by `moat`.

pub mod docker;
pub mod driver;
pub mod plan;
pub mod proxy;
pub mod release;
