//! Secret files in the data directory: created once, owner-only, never overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to `path` unless it already exists. Returns whether this call created it.
/// The file appears complete or not at all, so a concurrent reader never sees half a key.
pub fn write_new_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a secret file needs a parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&temp, path);
    std::fs::remove_file(&temp)?;
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

/// Reads the secret at `path`, creating it with `generate` on first use.
pub fn load_or_create_secret(
    path: &Path,
    generate: impl FnOnce() -> Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            write_new_secret_file(path, &generate())?;
            std::fs::read(path)
        }
        Err(error) => Err(error),
    }
}
