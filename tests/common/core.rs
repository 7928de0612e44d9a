//! Helpers for core tests: a filesystem over in-memory providers, walked by path.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

use std::sync::Arc;

use secretfs::cache::{CacheSettings, ServiceCache};
use secretfs::error::Result;
use secretfs::fs::{Attr, FsConfig, NodeKind, OpenMode, SecretFs};
use secretfs::inodes::Ino;
use secretfs::provider::{Provider, Service};

pub fn config(json_keys: bool) -> FsConfig {
    FsConfig { json_keys, ..FsConfig::for_owner(1000, 1000) }
}

pub fn filesystem(ps: Arc<dyn Provider>, sm: Arc<dyn Provider>, json_keys: bool) -> SecretFs {
    filesystem_with_prefixes(ps, "/", sm, "", json_keys)
}

pub fn filesystem_with_prefixes(
    ps: Arc<dyn Provider>,
    ps_prefix: &str,
    sm: Arc<dyn Provider>,
    sm_prefix: &str,
    json_keys: bool,
) -> SecretFs {
    filesystem_with(config(json_keys), ps, ps_prefix, sm, sm_prefix)
}

pub fn filesystem_with(
    config: FsConfig,
    ps: Arc<dyn Provider>,
    ps_prefix: &str,
    sm: Arc<dyn Provider>,
    sm_prefix: &str,
) -> SecretFs {
    let settings = CacheSettings::default();
    SecretFs::new(
        config,
        vec![
            (Service::ParameterStore, ServiceCache::new(Service::ParameterStore, ps, ps_prefix.into(), settings)),
            (Service::SecretsManager, ServiceCache::new(Service::SecretsManager, sm, sm_prefix.into(), settings)),
        ],
    )
}

/// Attributes of the node at `path` ("" is the root), looked up part by part as the kernel does.
pub fn stat(fs: &SecretFs, path: &str) -> Result<Attr> {
    let mut attr = fs.getattr(Ino::ROOT, None)?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        attr = fs.lookup(attr.ino, part)?;
    }
    Ok(attr)
}

/// The whole content of the file at `path`, read through open/read/release.
pub fn read(fs: &SecretFs, path: &str) -> Result<Vec<u8>> {
    let attr = stat(fs, path)?;
    let fh = fs.open(attr.ino, OpenMode::default())?.fh;
    let mut content = Vec::new();
    loop {
        let chunk = fs.read(fh, content.len() as u64, 4096, |b| b.to_vec())?;
        if chunk.is_empty() {
            break;
        }
        content.extend(chunk);
    }
    fs.release(fh)?;
    assert_eq!(attr.size, content.len() as u64, "st_size of {path} must equal the bytes read");
    Ok(content)
}

/// Names and kinds in the directory at `path`, without `.` and `..`, sorted.
pub fn list(fs: &SecretFs, path: &str) -> Result<Vec<(String, NodeKind)>> {
    let attr = stat(fs, path)?;
    let fh = fs.opendir(attr.ino)?;
    let entries = fs.readdir(fh)?;
    fs.releasedir(fh);
    let mut names: Vec<(String, NodeKind)> =
        entries.iter().filter(|e| e.name != "." && e.name != "..").map(|e| (e.name.clone(), e.kind)).collect();
    names.sort();
    Ok(names)
}

pub fn names(fs: &SecretFs, path: &str) -> Vec<String> {
    list(fs, path).unwrap().into_iter().map(|(n, _)| n).collect()
}

/// Open `path` with `mode` as the kernel does: looked up, and looked up again once if the
/// inode found shows a fixed version (ESTALE); returns the inode and the handle.
pub fn open(fs: &SecretFs, path: &str, mode: OpenMode) -> Result<(Ino, u64)> {
    let attr = stat(fs, path)?;
    match fs.open(attr.ino, mode) {
        Err(secretfs::error::Error::Replaced) => {
            let attr = stat(fs, path)?;
            Ok((attr.ino, fs.open(attr.ino, mode)?.fh))
        }
        opened => Ok((attr.ino, opened?.fh)),
    }
}

/// Open `path` for writing (truncating), write `content`, and close; returns close's result.
pub fn write(fs: &SecretFs, path: &str, content: &[u8]) -> Result<()> {
    let (_, fh) = open(fs, path, OpenMode { write: true, truncate: true, ..OpenMode::default() })?;
    let written = fs.write(fh, 0, content);
    let closed = fs.release(fh);
    written?;
    closed.map(|_| ())
}

/// Create `name` in the directory at `dir`, write `content` (if any) and close; returns close's
/// result.
pub fn create(fs: &SecretFs, dir: &str, name: &str, content: &[u8]) -> Result<()> {
    let parent = stat(fs, dir)?;
    let (_, fh) = fs.create(parent.ino, name, false)?;
    let written = if content.is_empty() { Ok(0) } else { fs.write(fh, 0, content) };
    let closed = fs.flush(fh).and_then(|_| fs.release(fh));
    written?;
    closed.map(|_| ())
}

/// Rename `from` (a path) to `to` (a path) as `rename(2)` would.
pub fn rename(fs: &SecretFs, from: &str, to: &str) -> Result<()> {
    let (from_dir, from_name) = from.rsplit_once('/').unwrap();
    let (to_dir, to_name) = to.rsplit_once('/').unwrap();
    let (from_dir, to_dir) = (stat(fs, from_dir)?, stat(fs, to_dir)?);
    stat(fs, from)?;
    fs.rename(from_dir.ino, from_name, to_dir.ino, to_name, false).map(|_| ())
}

/// Unlink the file at `path`.
pub fn unlink(fs: &SecretFs, path: &str) -> Result<()> {
    let (dir, name) = path.rsplit_once('/').unwrap();
    fs.unlink(stat(fs, dir)?.ino, name).map(|_| ())
}
