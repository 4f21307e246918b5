//! The built-in scanners that judge a checked-out tree: [`secrets`], the credential scanner
//! behind `moat scan secrets` and the secret gate, and [`manifests`], the Kubernetes manifest
//! policy behind `moat scan manifests`.

pub mod manifests;
mod report;
pub mod secrets;
