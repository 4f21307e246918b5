//! Hostile input at the coordinator's HTTP edge, against the real `moat server` process:
//! webhook senders that never finish their bodies or trickle them slowly (refusals come before
//! the body, memory stays bounded), the one JSON error shape, payload fields git would refuse
//! and what became of each delivery. One test target; its modules hold the tests by what they
//! test, this file the helpers they share.

#[path = "../cluster/mod.rs"]
mod cluster;
#[path = "../common/mod.rs"]
mod common;

mod deliveries;
mod error_shape;
mod payloads;
mod webhooks;

use std::time::Duration;

use cluster::*;
use common::*;
use serde_json::Value;

fn cli(c: &Coordinator, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .output()
        .expect("run moat")
}
