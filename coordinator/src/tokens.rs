//! Bearer tokens: 256 random bits behind a prefix that says what the token is for. Only their
//! SHA-256 is stored, so a leaked database does not hold usable credentials; lookups go by hash.

use rand::Rng;
use sha2::{Digest, Sha256};

/// `moat_a_` admin, `moat_r_` runner, `moat_g_` one-time runner registration.
pub const ADMIN_PREFIX: &str = "moat_a_";
pub const RUNNER_PREFIX: &str = "moat_r_";
pub const REGISTRATION_PREFIX: &str = "moat_g_";

/// Longest token accepted in a header; anything longer is refused before hashing.
pub const MAX_TOKEN_LEN: usize = 256;

pub fn generate(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A random secret for webhook signatures (hex, 32 bytes).
pub fn webhook_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = generate(ADMIN_PREFIX);
        let b = generate(ADMIN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(ADMIN_PREFIX));
        assert_eq!(a.len(), ADMIN_PREFIX.len() + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}
