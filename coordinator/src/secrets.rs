//! The repository secret store: values encrypted at rest with the coordinator's key ring,
//! bound to their repository and name (so a ciphertext copied to another row does not open);
//! opened only to hand them to the stages granted them. The API sets, lists (names only) and
//! removes them; every write and every use is in the audit trail, never a value.

use crate::app::AppState;
use crate::crypto::Sealed;
use crate::store::{Millis, StoredSecret};

/// Secret names are environment variable names (they become one in the stage).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=128).contains(&name.len())
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("MOAT_")
}

/// Largest secret value accepted (a kubeconfig or a PEM bundle fits).
pub const MAX_VALUE: usize = 64 << 10;

fn aad(repo_id: i64, name: &str) -> String {
    format!("{repo_id}/{name}")
}

/// Encrypts and stores `value`; returns whether the secret is new.
pub async fn set(
    state: &AppState,
    repo_id: i64,
    name: &str,
    value: &str,
    now: Millis,
) -> crate::store::Result<bool> {
    let sealed = state
        .keys
        .secrets
        .encrypt(value.as_bytes(), &aad(repo_id, name));
    let stored = StoredSecret {
        key_id: sealed.key_id,
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
    };
    state.store.set_secret(repo_id, name, &stored, now).await
}

/// The value of repository secret `name`, opened.
pub async fn open(state: &AppState, repo_id: i64, name: &str) -> Result<String, String> {
    let stored = state
        .store
        .get_secret(repo_id, name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no value stored for secret {name}"))?;
    let plain = state
        .keys
        .secrets
        .decrypt(
            &Sealed {
                key_id: stored.key_id,
                nonce: stored.nonce,
                ciphertext: stored.ciphertext,
            },
            &aad(repo_id, name),
        )
        .map_err(|e| e.to_string())?;
    String::from_utf8(plain).map_err(|_| "the stored value is not text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("DB_PASSWORD"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1X"));
        assert!(!valid_name("A-B"));
        assert!(!valid_name("MOAT_TOKEN"));
        assert!(!valid_name(""));
    }
}
