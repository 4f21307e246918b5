//! The built-in scanners that judge a checked-out tree. Today: [`secrets`], the credential
//! scanner behind `moat scan secrets` and the secret gate.

pub mod secrets;
