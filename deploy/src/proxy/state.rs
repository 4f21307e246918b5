//! The proxy's state file: which environments exist, where they listen, their live upstream.
//!
//! Owns the file's JSON shape and its atomic replacement (write a temporary file beside it,
//! flush it to disk, rename it over the old one, flush the directory), so a crash leaves the
//! old or the new state, never half of one. It must not hold connections or draining upstreams:
//! only what a restarted proxy needs to serve the live colour at once.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::protocol::EnvName;

/// The only version of the file this code reads and writes.
pub const STATE_VERSION: u32 = 1;

/// Everything the proxy persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyState {
    pub version: u32,
    pub environments: BTreeMap<EnvName, EnvState>,
}

impl Default for ProxyState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            environments: BTreeMap::new(),
        }
    }
}

/// One environment in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvState {
    /// The bound public address.
    pub listen: SocketAddr,
    /// The live upstream, if one is set.
    pub upstream: Option<SocketAddr>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}; this proxy reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<ProxyState, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ProxyState::default()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: ProxyState = serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: state.version,
        });
    }
    Ok(state)
}

/// Replaces the state file with `state` atomically. The file is readable by its owner only.
pub fn save(path: &Path, state: &ProxyState) -> Result<(), StateError> {
    let write_error = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let mut json = serde_json::to_vec_pretty(state).expect("the state serialises");
    json.push(b'\n');
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = open_private(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(write_error)
}

/// Creates the directory that will hold `path` (owner-only) when it does not exist yet.
pub(crate) fn ensure_parent(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        _ => Ok(()),
    }
}

/// `DIR/.NAME.tmp`: beside the file so the rename stays on one file system.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

fn open_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("moat-proxy-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> ProxyState {
        let mut state = ProxyState::default();
        state.environments.insert(
            EnvName::new("production").unwrap(),
            EnvState {
                listen: "127.0.0.1:8443".parse().unwrap(),
                upstream: Some("127.0.0.1:32768".parse().unwrap()),
            },
        );
        state.environments.insert(
            EnvName::new("staging").unwrap(),
            EnvState {
                listen: "127.0.0.1:8444".parse().unwrap(),
                upstream: None,
            },
        );
        state
    }

    #[test]
    fn a_missing_file_is_an_empty_state() {
        let dir = scratch("missing");
        assert_eq!(
            load(&dir.join("state.json")).unwrap(),
            ProxyState::default()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("roundtrip");
        let path = dir.join("state.json");
        save(&path, &ProxyState::default()).unwrap();
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"production\"") && text.contains("127.0.0.1:32768"),
            "{text}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_broken_or_foreign_file_is_an_error_not_an_empty_state() {
        let dir = scratch("broken");
        let path = dir.join("state.json");
        fs::write(&path, "{\"version\":1,\"environments\":").unwrap();
        assert!(matches!(load(&path), Err(StateError::Parse { .. })));
        fs::write(&path, r#"{"version":2,"environments":{}}"#).unwrap();
        assert!(matches!(
            load(&path),
            Err(StateError::Version { found: 2, .. })
        ));
        fs::write(
            &path,
            r#"{"version":1,"environments":{"../x":{"listen":"127.0.0.1:1","upstream":null}}}"#,
        )
        .unwrap();
        assert!(matches!(load(&path), Err(StateError::Parse { .. })));
        fs::remove_dir_all(dir).unwrap();
    }
}
