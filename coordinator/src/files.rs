//! Files only the coordinator's user may read: keys, tokens. Used by `crypto` (the key files)
//! and `server` (the first admin token), so neither depends on the other for it.

use std::path::Path;

use anyhow::Context;

/// Writes a secret file readable by the owner only (a temporary file renamed over it, so a
/// crash leaves the old content or the new, never half). Every error names the file.
pub fn write_secret_file(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    written.with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot write {} (renaming {} over it)",
            path.display(),
            tmp.display()
        )
    })?;
    Ok(())
}
