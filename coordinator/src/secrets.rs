//! The repository secret store: values encrypted at rest with the coordinator's key ring,
//! bound to their repository and name; opened only to hand them to the stages granted them.

use crate::app::AppState;

/// The value of repository secret `name`, opened. (Stored secrets arrive with the secret store;
/// until a value is set, it is not available.)
pub async fn open(_state: &AppState, _repo_id: i64, name: &str) -> Result<String, String> {
    Err(format!("no value stored for secret {name}"))
}
