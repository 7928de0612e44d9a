//! The encrypted warm-restart cache (`--cache-dir DIR --cache-key-file FILE`): one file per
//! service holding what its cache knows (values, listings, when each was fetched), sealed with
//! ChaCha20-Poly1305 under the operator's 32-byte key, a random nonce per write and the format
//! and service as associated data. The whole snapshot is one sealed message, so names,
//! versions and values are all encrypted and authenticated together: no entry can be swapped,
//! dropped, moved to another service or truncated without the file failing to open. A file
//! that does not open (tampered, truncated, another key, another format) is ignored with one
//! warning. Files are 0600 in a directory only the daemon's user may enter, written to a
//! temporary file and renamed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Nonce};

use crate::cache::warm::{Kept, Snapshot};
use crate::error::{Error, Result};
use crate::provider::{Fetched, Listed, Metadata, SecretBytes, Service, ValueKind};

/// Length of the key, in bytes (a key file holds them raw, or as 64 hex digits).
pub const KEY_LEN: usize = 32;
/// The first bytes of every file: the format and its version.
const MAGIC: &[u8] = b"secretfs-warm-cache-1\n";
const NONCE_LEN: usize = 12;
/// A snapshot unchanged but for its fetch times is written again after this long, so the times
/// kept stay close to the truth (older times only make restored values expire sooner).
pub const REWRITE_UNCHANGED_AFTER: Duration = Duration::from_secs(600);

/// Where warm-restart files go, and the key that seals them.
pub struct WarmCache {
    dir: PathBuf,
    key: SecretBytes,
    /// Per service: a digest of the last snapshot written (without fetch times) and when.
    written: Mutex<Vec<(Service, u64, SystemTime)>>,
}

impl std::fmt::Debug for WarmCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl WarmCache {
    /// Check and open: `key_file` holds 32 bytes (raw, or 64 hex digits and an optional newline)
    /// and no one but the daemon's user may read or write it; `dir` (made 0700 if missing) is
    /// the daemon's user's and no one else's. Any problem is a configuration error naming it.
    pub fn open(dir: &Path, key_file: &Path) -> Result<WarmCache> {
        let key = read_key(key_file)?;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::Config(format!("--cache-dir {}: cannot create it: {e}", dir.display())))?;
        }
        let meta = std::fs::metadata(dir).map_err(|e| Error::Config(format!("--cache-dir {}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!("--cache-dir {}: not a directory", dir.display())));
        }
        private(&meta, "--cache-dir", dir)?;
        Ok(WarmCache { dir: dir.to_path_buf(), key, written: Mutex::new(Vec::new()) })
    }

    fn file(&self, service: Service) -> PathBuf {
        self.dir.join(format!("{}.cache", service.dir_name()))
    }

    /// The snapshot kept for `service`, if its file opens; a file that does not is ignored
    /// with one warning (a missing one silently).
    pub fn load(&self, service: Service) -> Option<Snapshot> {
        let path = self.file(service);
        let sealed = match std::fs::read(&path) {
            Ok(sealed) => sealed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("warm cache {} ignored: {e}", path.display());
                return None;
            }
        };
        let decoded = unseal(&self.key, service, &sealed).and_then(|plain| decode(plain.as_slice()));
        match decoded {
            Some(snapshot) => Some(snapshot),
            None => {
                tracing::warn!(
                    "warm cache {} ignored: it does not open with this key (tampered, truncated, or sealed with another key)",
                    path.display()
                );
                None
            }
        }
    }

    /// Keep `snapshot` for `service` if it differs from the last one written (or that one is
    /// old, or `force`): sealed, written to a temporary file (0600), synced and renamed over.
    pub fn save(&self, service: Service, snapshot: &Snapshot, wall_now: SystemTime, force: bool) -> Result<()> {
        let digest = digest(snapshot);
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let last = written.iter().find(|(s, _, _)| *s == service).copied();
        let fresh = last.is_some_and(|(_, d, at)| {
            d == digest && wall_now.duration_since(at).unwrap_or_default() < REWRITE_UNCHANGED_AFTER
        });
        if fresh && !force {
            return Ok(());
        }
        let sealed = seal(&self.key, service, encode(snapshot).as_slice());
        let path = self.file(service);
        let temporary = self.dir.join(format!(".{}.cache.{}", service.dir_name(), std::process::id()));
        let outcome = write_atomically(&temporary, &path, &sealed);
        if outcome.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        outcome.map_err(|e| Error::Transient(format!("cannot write the warm cache {}: {e}", path.display())))?;
        written.retain(|(s, _, _)| *s != service);
        written.push((service, digest, wall_now));
        Ok(())
    }
}

fn write_atomically(temporary: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Refuse a file or directory another user could read or write, or that is not the daemon's.
fn private(meta: &std::fs::Metadata, option: &str, path: &Path) -> Result<()> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(Error::Config(format!(
            "{option} {}: owned by uid {}, not by this daemon's ({me})",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{option} {}: mode {:04o} lets other users in; allow only its owner (chmod {})",
            path.display(),
            meta.mode() & 0o7777,
            if meta.is_dir() { "0700" } else { "0400" }
        )));
    }
    Ok(())
}

fn read_key(path: &Path) -> Result<SecretBytes> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Config(format!("--cache-key-file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Config(format!("--cache-key-file {}: not a regular file", path.display())));
    }
    private(&meta, "--cache-key-file", path)?;
    let raw = SecretBytes::new(
        std::fs::read(path).map_err(|e| Error::Config(format!("--cache-key-file {}: {e}", path.display())))?,
    );
    let bytes = raw.as_slice();
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.len() == KEY_LEN {
        return Ok(raw);
    }
    if text.len() == KEY_LEN * 2 && text.iter().all(u8::is_ascii_hexdigit) {
        let decoded = text.chunks(2).map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            digit(pair[0]) << 4 | digit(pair[1])
        });
        return Ok(SecretBytes::new(decoded.collect()));
    }
    Err(Error::Config(format!(
        "--cache-key-file {}: holds {} bytes; a key is 32 random bytes (head -c 32 /dev/urandom) or 64 hex digits",
        path.display(),
        bytes.len()
    )))
}

fn associated_data(service: Service) -> Vec<u8> {
    [MAGIC, service.dir_name().as_bytes()].concat()
}

/// `MAGIC`, a random nonce, then `plain` encrypted and authenticated.
fn seal(key: &SecretBytes, service: Service, plain: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new_from_slice(key.as_slice()).expect("a 32-byte key");
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut sealed = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plain.len() + 16);
    sealed.extend_from_slice(MAGIC);
    sealed.extend_from_slice(&nonce);
    let mut body = plain.to_vec();
    cipher.encrypt_in_place(&nonce, &associated_data(service), &mut body).expect("encryption cannot fail");
    sealed.extend_from_slice(&body);
    sealed
}

/// The plaintext of a sealed file, if it opens with `key` for `service`.
fn unseal(key: &SecretBytes, service: Service, sealed: &[u8]) -> Option<SecretBytes> {
    let rest = sealed.strip_prefix(MAGIC)?;
    if rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let cipher = ChaCha20Poly1305::new_from_slice(key.as_slice()).ok()?;
    let mut plain = body.to_vec();
    let opened = cipher.decrypt_in_place(Nonce::from_slice(nonce), &associated_data(service), &mut plain);
    let plain = SecretBytes::new(plain);
    opened.ok().map(|()| plain)
}

/// A digest of what a snapshot holds, fetch times left out.
fn digest(snapshot: &Snapshot) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (name, kept) in &snapshot.values {
        (name, &kept.item.version, kept.item.bytes.as_slice()).hash(&mut hasher);
    }
    for (prefix, kept) in &snapshot.listings {
        prefix.hash(&mut hasher);
        kept.item.iter().for_each(|listed| listed.name.hash(&mut hasher));
    }
    hasher.finish()
}

const VALUE: u8 = 1;
const LISTING: u8 = 2;

/// The snapshot as bytes (zeroed when dropped): tagged entries of length-prefixed fields.
fn encode(snapshot: &Snapshot) -> SecretBytes {
    let size: usize = snapshot.values.iter().map(|(n, k)| n.len() + k.item.bytes.len() + 128).sum::<usize>()
        + snapshot.listings.iter().map(|(p, k)| p.len() + k.item.len() * 64).sum::<usize>();
    let mut out = Writer(Vec::with_capacity(size));
    for (name, kept) in &snapshot.values {
        let value = &kept.item;
        out.byte(VALUE);
        out.text(name);
        out.optional_text(value.version.as_deref());
        out.byte(kind_code(value.kind));
        out.optional_time(value.last_modified);
        out.time(kept.fetched);
        out.optional_text(value.meta.arn.as_deref());
        out.count(value.meta.stages.len());
        value.meta.stages.iter().for_each(|stage| out.text(stage));
        out.bytes(value.bytes.as_slice());
    }
    for (prefix, kept) in &snapshot.listings {
        out.byte(LISTING);
        out.text(prefix);
        out.time(kept.fetched);
        out.count(kept.item.len());
        for listed in &kept.item {
            out.text(&listed.name);
            out.optional_time(listed.last_modified);
        }
    }
    SecretBytes::new(out.0)
}

/// The snapshot in `bytes`, or `None` if they are not one.
fn decode(bytes: &[u8]) -> Option<Snapshot> {
    let mut input = Reader(bytes);
    let mut snapshot = Snapshot::default();
    while !input.0.is_empty() {
        match input.byte()? {
            VALUE => {
                let name = input.text()?;
                let version = input.optional_text()?;
                let kind = kind_of(input.byte()?)?;
                let last_modified = input.optional_time()?;
                let fetched = input.time()?;
                let arn = input.optional_text()?;
                let stages = (0..input.count()?).map(|_| input.text()).collect::<Option<Vec<_>>>()?;
                let bytes = SecretBytes::new(input.bytes()?.to_vec());
                let value = Fetched { bytes, kind, version, last_modified, meta: Metadata { arn, stages } };
                snapshot.values.push((name, Kept { item: value, fetched }));
            }
            LISTING => {
                let prefix = input.text()?;
                let fetched = input.time()?;
                let names = (0..input.count()?)
                    .map(|_| Some(Listed { name: input.text()?, last_modified: input.optional_time()? }))
                    .collect::<Option<Vec<_>>>()?;
                snapshot.listings.push((prefix, Kept { item: names, fetched }));
            }
            _ => return None,
        }
    }
    Some(snapshot)
}

fn kind_code(kind: ValueKind) -> u8 {
    match kind {
        ValueKind::String => 0,
        ValueKind::SecureString => 1,
        ValueKind::StringList => 2,
        ValueKind::SecretString => 3,
        ValueKind::SecretBinary => 4,
    }
}

fn kind_of(code: u8) -> Option<ValueKind> {
    [
        ValueKind::String,
        ValueKind::SecureString,
        ValueKind::StringList,
        ValueKind::SecretString,
        ValueKind::SecretBinary,
    ]
    .get(usize::from(code))
    .copied()
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }
    fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.extend_from_slice(bytes);
    }
    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }
    fn optional_text(&mut self, text: Option<&str>) {
        match text {
            Some(text) => {
                self.byte(1);
                self.text(text);
            }
            None => self.byte(0),
        }
    }
    fn time(&mut self, time: SystemTime) {
        let ms = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        self.0.extend_from_slice(&ms.to_le_bytes());
    }
    fn optional_time(&mut self, time: Option<SystemTime>) {
        match time {
            Some(time) => {
                self.byte(1);
                self.time(time);
            }
            None => self.byte(0),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (self.0.len() >= n).then(|| {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        })
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn count(&mut self) -> Option<usize> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_string)
    }
    fn optional_text(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.text().map(Some),
            _ => None,
        }
    }
    fn time(&mut self) -> Option<SystemTime> {
        let b = self.take(8)?;
        let ms = u64::from_le_bytes(b.try_into().ok()?);
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }
    fn optional_time(&mut self) -> Option<Option<SystemTime>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.time().map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_700_000);
        let value = Fetched {
            bytes: SecretBytes::new(b"CANARY\xff\x00value".to_vec()),
            kind: ValueKind::SecretBinary,
            version: Some("v1".into()),
            last_modified: Some(at),
            meta: Metadata { arn: Some("arn:x".into()), stages: vec!["AWSCURRENT".into()] },
        };
        let listed = vec![Listed { name: "prod/db".into(), last_modified: None }];
        Snapshot {
            values: vec![("prod/db".into(), Kept { item: value, fetched: at })],
            listings: vec![("prod/".into(), Kept { item: listed, fetched: at })],
        }
    }

    #[test]
    fn a_snapshot_round_trips_sealed_and_nothing_else_opens() {
        let key = SecretBytes::new(vec![7; KEY_LEN]);
        let plain = encode(&snapshot());
        let sealed = seal(&key, Service::SecretsManager, plain.as_slice());
        assert!(!sealed.windows(6).any(|w| w == b"CANARY") && !sealed.windows(7).any(|w| w == b"prod/db"));
        let opened = decode(unseal(&key, Service::SecretsManager, &sealed).unwrap().as_slice()).unwrap();
        let (name, kept) = &opened.values[0];
        assert_eq!((name.as_str(), kept.item.bytes.as_slice()), ("prod/db", &b"CANARY\xff\x00value"[..]));
        assert_eq!(
            (kept.item.kind, kept.item.meta.stages.clone()),
            (ValueKind::SecretBinary, vec!["AWSCURRENT".into()])
        );
        assert_eq!(opened.listings[0].1.item[0].name, "prod/db");
        let other_key = SecretBytes::new(vec![8; KEY_LEN]);
        assert!(unseal(&other_key, Service::SecretsManager, &sealed).is_none(), "another key");
        assert!(unseal(&key, Service::ParameterStore, &sealed).is_none(), "moved to another service");
        assert!(unseal(&key, Service::SecretsManager, &sealed[..sealed.len() - 1]).is_none(), "truncated");
        for at in [0, MAGIC.len() + 3, sealed.len() / 2, sealed.len() - 1] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 1;
            assert!(unseal(&key, Service::SecretsManager, &flipped).is_none(), "byte {at} flipped");
        }
        assert!(decode(b"\x01\xff\xff\xff\xff").is_none() && decode(b"\x09").is_none());
    }
}
