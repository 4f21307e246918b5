//! The coordinator's keys and what they protect.
//!
//! - Secrets at rest: ChaCha20-Poly1305 under a 256-bit key from `<data>/secrets.key` (created
//!   with mode 0600 on first start). Each value is stored with the id of the key that sealed it,
//!   so a new key can be added in front of the file and old values still open; the repository
//!   and secret name are bound as associated data, so a ciphertext moved to another row does
//!   not open.
//! - Sealed values for GitOps: age (X25519) to the coordinator's seal identity in
//!   `<data>/seal.key`. `moat seal` needs only the public recipient (`GET /api/v1/seal-key`).
//!   The plaintext starts with `moat-repo: NAME\n`, which binds a sealed value to its
//!   repository: copied into another repository's `.moat.yml`, it does not open. The format is
//!   plain age, so the `age` tool can open Moat's values and produce ones Moat opens.

use std::path::Path;

use age::secrecy::ExposeSecret;
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Prefix of a sealed value in `.moat.yml`.
pub const SEALED_PREFIX: &str = "moat:v1:";
const BINDING: &str = "moat-repo: ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the value was sealed with key {0}, which this coordinator does not have")]
    UnknownKey(String),
    #[error("the value does not open (wrong key, or altered)")]
    Open,
    #[error("not a sealed value (expected {SEALED_PREFIX}…)")]
    NotSealed,
    #[error("sealed for repository {sealed_for:?}, not {repo:?}")]
    WrongRepository { sealed_for: String, repo: String },
    #[error("a sealed value must start with \"moat-repo: NAME\" on its first line")]
    Unbound,
}

struct Key32 {
    id: String,
    cipher: ChaCha20Poly1305,
}

/// The keys that encrypt secrets at rest; the first one encrypts, all of them decrypt.
pub struct KeyRing {
    keys: Vec<Key32>,
}

/// An encrypted value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..6])
}

impl KeyRing {
    /// Loads `path` (one hex key per line, newest first), creating it with one new key and mode
    /// 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let key: [u8; 32] = rand::rng().random();
            crate::files::write_secret_file(path, &hex::encode(key))?;
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = hex::decode(line)
                .ok()
                .filter(|b| b.len() == 32)
                .with_context(|| format!("{}:{}: expected 64 hex digits", path.display(), i + 1))?;
            keys.push(Key32 {
                id: key_id(&bytes),
                cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
            });
        }
        if keys.is_empty() {
            bail!("{} holds no key", path.display());
        }
        Ok(KeyRing { keys })
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. `repo-id/secret-name`).
    pub fn encrypt(&self, plaintext: &[u8], aad: &str) -> Sealed {
        let key = &self.keys[0];
        let nonce: [u8; 12] = rand::rng().random();
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        Sealed {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn decrypt(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != 12 {
            return Err(CryptoError::Open);
        }
        key.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)
    }
}

fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// The age identity that opens sealed values.
pub struct SealKey {
    identity: age::x25519::Identity,
}

impl SealKey {
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let identity = age::x25519::Identity::generate();
            crate::files::write_secret_file(path, identity.to_string().expose_secret())?;
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .with_context(|| format!("{} holds no AGE-SECRET-KEY", path.display()))?;
        let identity = line
            .parse::<age::x25519::Identity>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(SealKey { identity })
    }

    /// The public recipient (`age1…`) that `moat seal` encrypts to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Opens a `moat:v1:` value sealed for `repo`.
    pub fn open(&self, sealed: &str, repo: &str) -> Result<String, CryptoError> {
        let body = sealed
            .trim()
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::NotSealed)?;
        let ciphertext = STANDARD.decode(body).map_err(|_| CryptoError::NotSealed)?;
        let plain = age::decrypt(&self.identity, &ciphertext).map_err(|_| CryptoError::Open)?;
        let plain = String::from_utf8(plain).map_err(|_| CryptoError::Open)?;
        let (first, value) = plain.split_once('\n').ok_or(CryptoError::Unbound)?;
        let bound = first.strip_prefix(BINDING).ok_or(CryptoError::Unbound)?;
        if bound != repo {
            return Err(CryptoError::WrongRepository {
                sealed_for: bound.to_string(),
                repo: repo.to_string(),
            });
        }
        Ok(value.to_string())
    }
}

/// Seals `value` for `repo` to `recipient` (an `age1…` public key): what `moat seal` prints.
pub fn seal(recipient: &str, repo: &str, value: &str) -> anyhow::Result<String> {
    let recipient: age::x25519::Recipient = recipient
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("not an age recipient: {e}"))?;
    let plaintext = format!("{BINDING}{repo}\n{value}");
    let ciphertext = age::encrypt(&recipient, plaintext.as_bytes())
        .map_err(|e| anyhow::anyhow!("sealing failed: {e}"))?;
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(ciphertext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "moat-crypto-{tag}-{}-{}",
            std::process::id(),
            rand::rng().random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn secrets_round_trip_bound_to_their_row() {
        let dir = scratch("ring");
        let ring = KeyRing::load_or_create(&dir.join("secrets.key")).unwrap();
        let sealed = ring.encrypt(b"hunter22", "1/DB_PASSWORD");
        assert_ne!(sealed.ciphertext, b"hunter22");
        assert_eq!(ring.decrypt(&sealed, "1/DB_PASSWORD").unwrap(), b"hunter22");
        assert_eq!(
            ring.decrypt(&sealed, "2/DB_PASSWORD"),
            Err(CryptoError::Open)
        );
        // Reloaded from disk: same key, still opens.
        let again = KeyRing::load_or_create(&dir.join("secrets.key")).unwrap();
        assert_eq!(
            again.decrypt(&sealed, "1/DB_PASSWORD").unwrap(),
            b"hunter22"
        );
        // A rotated key in front: new values use it, old ones still open.
        let old = std::fs::read_to_string(dir.join("secrets.key")).unwrap();
        let new: [u8; 32] = rand::rng().random();
        crate::files::write_secret_file(
            &dir.join("secrets.key"),
            &format!("{}\n{}", hex::encode(new), old.trim()),
        )
        .unwrap();
        let rotated = KeyRing::load_or_create(&dir.join("secrets.key")).unwrap();
        assert_eq!(
            rotated.decrypt(&sealed, "1/DB_PASSWORD").unwrap(),
            b"hunter22"
        );
        assert_ne!(rotated.encrypt(b"x", "a").key_id, sealed.key_id);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("perm");
        let path = dir.join("secrets.key");
        KeyRing::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyRing::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sealed_values_open_only_in_their_repository() {
        let dir = scratch("seal");
        let key = SealKey::load_or_create(&dir.join("seal.key")).unwrap();
        let sealed = seal(&key.recipient(), "web", "s3cret-value").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert_eq!(key.open(&sealed, "web").unwrap(), "s3cret-value");
        assert!(matches!(
            key.open(&sealed, "api"),
            Err(CryptoError::WrongRepository { .. })
        ));
        let other = SealKey::load_or_create(&dir.join("other.key")).unwrap();
        assert_eq!(other.open(&sealed, "web"), Err(CryptoError::Open));
        assert_eq!(key.open("plain", "web"), Err(CryptoError::NotSealed));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Interoperability with the `age` tool (Debian's `age`, installed by scripts/ensure-deps).
    #[test]
    fn age_tool_opens_moat_values_and_moat_opens_age_values() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = scratch("interop");
        let key = SealKey::load_or_create(&dir.join("seal.key")).unwrap();
        let sealed = seal(&key.recipient(), "web", "from-moat").unwrap();
        let raw = STANDARD
            .decode(sealed.strip_prefix(SEALED_PREFIX).unwrap())
            .unwrap();
        std::fs::write(dir.join("v.age"), raw).unwrap();
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(dir.join("seal.key"))
            .arg(dir.join("v.age"))
            .output()
            .expect("the age tool is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "moat-repo: web\nfrom-moat"
        );

        let mut child = Command::new("age")
            .args(["-r", &key.recipient()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"moat-repo: web\nfrom-age")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let value = format!("{SEALED_PREFIX}{}", STANDARD.encode(&out.stdout));
        assert_eq!(key.open(&value, "web").unwrap(), "from-age");
        let _ = std::fs::remove_dir_all(dir);
    }
}
