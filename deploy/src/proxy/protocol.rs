//! The control protocol's vocabulary: environment names, requests and replies.
//!
//! Owns the wire shape of the control socket (one JSON object per line each way) and the
//! validation of what a request may name. It is pure: no I/O, no tokio. It must not decide
//! anything about traffic; `commands` applies a request, `control` carries it.
//!
//! Requests (`op` is the tag):
//! - `{"op":"add","name":"production","listen":"127.0.0.1:8443"}`
//! - `{"op":"remove","name":"production","drain_ms":5000}` (`drain_ms` optional)
//! - `{"op":"set_upstream","name":"production","upstream":"127.0.0.1:32768","drain_ms":30000}`
//!   (`upstream: null` clears it: new requests get 503; `drain_ms` optional)
//! - `{"op":"status"}` or `{"op":"status","name":"production"}`
//!
//! Replies: `{"ok":true,"environments":[…]}` (the environments after the change, or the asked
//! ones) or `{"ok":false,"error":"…"}`.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The longest environment name the proxy accepts.
pub const MAX_NAME_LEN: usize = 64;

/// An environment's name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit. The same word the administrator gave to `moat env add`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

/// Why a string is not an [`EnvName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("environment name is empty")]
    Empty,
    #[error("environment name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "environment name may only contain ASCII letters, digits, '-', '_' and '.', and must start with a letter or digit"
    )]
    Invalid,
}

impl EnvName {
    /// Checks `name` against the naming rule.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !(first_ok && rest_ok) {
            return Err(NameError::Invalid);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<EnvName> for String {
    fn from(value: EnvName) -> Self {
        value.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Own `listen` for environment `name` (no upstream yet: its requests get 503). Adding an
    /// environment that exists with the same address is a no-op. A port of 0 binds a free port;
    /// the reply and the state file carry the bound address.
    Add { name: EnvName, listen: SocketAddr },
    /// Stop listening for `name`; requests in flight get up to `drain_ms` to finish.
    Remove {
        name: EnvName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drain_ms: Option<u64>,
    },
    /// Make `upstream` the live one of `name` (the switch). Requests and connections on the
    /// previous upstream get up to `drain_ms` to finish, then are closed. Setting the live
    /// upstream again is a no-op.
    SetUpstream {
        name: EnvName,
        upstream: Option<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drain_ms: Option<u64>,
    },
    /// Every environment, or only `name`.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<EnvName>,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<EnvStatus>,
}

impl ControlReply {
    pub fn ok(environments: Vec<EnvStatus>) -> Self {
        Self {
            ok: true,
            error: None,
            environments,
        }
    }

    pub fn refused(error: impl fmt::Display) -> Self {
        Self {
            ok: false,
            error: Some(error.to_string()),
            environments: Vec::new(),
        }
    }
}

/// What one environment is doing right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvStatus {
    pub name: EnvName,
    /// The bound public address.
    pub listen: SocketAddr,
    /// The live upstream; `None` answers 503.
    pub upstream: Option<SocketAddr>,
    /// Requests, streams and upgraded connections open on the live upstream.
    pub active: usize,
    /// Previous upstreams still finishing their connections.
    #[serde(default)]
    pub draining: Vec<DrainStatus>,
}

/// A previous upstream that is draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub upstream: SocketAddr,
    /// Requests, streams and upgraded connections still open on it.
    pub connections: usize,
    /// Milliseconds until what is left is closed.
    pub remaining_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(EnvName::new("production").is_ok());
        assert!(EnvName::new("eu-west.staging_2").is_ok());
        assert_eq!(EnvName::new(""), Err(NameError::Empty));
        assert_eq!(EnvName::new("-x"), Err(NameError::Invalid));
        assert_eq!(EnvName::new("a b"), Err(NameError::Invalid));
        assert_eq!(EnvName::new("a/b"), Err(NameError::Invalid));
        assert_eq!(EnvName::new("é"), Err(NameError::Invalid));
        assert_eq!(EnvName::new("a".repeat(65)), Err(NameError::TooLong));
        assert!(EnvName::new("a".repeat(64)).is_ok());
    }

    #[test]
    fn requests_parse_from_their_wire_form() {
        let add: ControlRequest =
            serde_json::from_str(r#"{"op":"add","name":"prod","listen":"127.0.0.1:8443"}"#)
                .unwrap();
        assert_eq!(
            add,
            ControlRequest::Add {
                name: EnvName::new("prod").unwrap(),
                listen: "127.0.0.1:8443".parse().unwrap()
            }
        );
        let set: ControlRequest = serde_json::from_str(
            r#"{"op":"set_upstream","name":"prod","upstream":"127.0.0.1:9000","drain_ms":5}"#,
        )
        .unwrap();
        assert!(matches!(
            set,
            ControlRequest::SetUpstream {
                drain_ms: Some(5),
                ..
            }
        ));
        let clear: ControlRequest =
            serde_json::from_str(r#"{"op":"set_upstream","name":"prod","upstream":null}"#).unwrap();
        assert!(matches!(
            clear,
            ControlRequest::SetUpstream {
                upstream: None,
                drain_ms: None,
                ..
            }
        ));
        let status: ControlRequest = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(status, ControlRequest::Status { name: None });
    }

    #[test]
    fn bad_requests_are_refused_by_the_parser() {
        for bad in [
            r#"{"op":"add","name":"../x","listen":"127.0.0.1:1"}"#,
            r#"{"op":"add","name":"x","listen":"nowhere"}"#,
            r#"{"op":"add","name":"x","listen":"127.0.0.1:1","extra":1}"#,
            r#"{"op":"launch"}"#,
            r#"{"name":"x"}"#,
        ] {
            assert!(
                serde_json::from_str::<ControlRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_round_trip() {
        let req = ControlRequest::Remove {
            name: EnvName::new("x").unwrap(),
            drain_ms: None,
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(line, r#"{"op":"remove","name":"x"}"#);
        assert_eq!(serde_json::from_str::<ControlRequest>(&line).unwrap(), req);
    }
}
