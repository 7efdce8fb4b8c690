//! The pinned keys of peer devices: which SPKI fingerprints this device accepts, per bare JID.
//!
//! Identity is *bare JID + SPKI SHA-256*: all devices of a network share the bare JID and each has
//! its own key. A key gets here only by pairing (SPAKE2), by an attestation from a trusted owner
//! device (XEP-0189), or explicitly by the app; revocation removes it. Optionally persisted as a
//! JSON file so pins survive a restart.
//!
//! Revocations (DESIGN §4): beside the pins, the store keeps per network the newest owner-signed
//! revocation list it verified ([`TrustStore::accept_revocations`]): its epoch, its signer (the
//! *anchor*, whose attestations at that epoch count like a first-hand device's) and every key any
//! accepted list named. A named key is never trusted again, whatever its source, and a list with a
//! lower epoch is refused. Persisted in `<trust file>.revocations.json` the same way as the pins.
//!
//! Persistence: every change is written while the store's lock is held, so concurrent pins and
//! revocations reach the file in the order they happened and the last write holds every change; a
//! change whose write fails is undone in memory too (memory and file never disagree). A write goes
//! to a temporary file of its own (unique name, created `0600`, never reused or truncated), is
//! fsynced, renamed over the file, and the directory is fsynced, so a crash leaves the old or the
//! new file, never a mix. Opening refuses a file that group or others can access (a pin list
//! anyone on the machine can edit would let them add keys).

use crate::core::sync::Locked;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::revocation::{ListError, RevocationList, VerifiedList};
use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::files::{read_bounded, ReadError};
use crate::core::identity::DeviceFingerprint;
use xmpp_parsers::minidom::Element;

/// How a key came to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TrustSource {
    /// Paired with this device (SPAKE2 on a short code).
    Paired,
    /// Attested by a trusted owner device with this fingerprint (hex).
    Attested {
        /// The attesting device's fingerprint (hex).
        by: String,
    },
    /// Pinned explicitly by the app.
    Manual,
    /// A device of another network whose owner granted this device guest access (named in the
    /// owner's decision). Trusted for calls to that network only; never vouches for anyone.
    Host {
        /// The grant id.
        grant: String,
        /// When the grant ends (seconds since the epoch, host's clock): the pin counts for nothing
        /// after. 0 in trust files written before pins expired: never.
        #[serde(default)]
        expires: u64,
    },
}

/// One trusted peer device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedDevice {
    /// The peer's bare JID (its network).
    pub jid: String,
    /// Lower-case hex SHA-256 of its SPKI.
    pub fingerprint: String,
    /// How it became trusted.
    pub source: TrustSource,
}

/// Largest trust file read or written. The store has no count limit (pins come from pairing,
/// attestations and the app), so the bound is on bytes, and [`TrustStore::pin`] refuses a pin
/// that would write a bigger file: the store never writes a file it would refuse to read back.
/// One pin in pretty JSON is at most ~4.4 KB (a bare JID of at most 2 047 bytes, doubled if every
/// byte were JSON-escaped; a 64-hex fingerprint; a host source with a 64-character grant id and a
/// u64; ~150 bytes of keys and indentation) and typically ~250 bytes: 4 MiB holds over 900
/// worst-case pins and ~16 000 ordinary ones, far beyond any household's devices and hosts.
const MAX_TRUST_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Largest revocation file read or written (refused on write the same way). Per network: up to
/// [`super::revocation::MAX_REVOKED`] (1024) revoked fingerprints of ~76 bytes in pretty JSON
/// (78 KB), the kept signed list as escaped XML with 1024 `<revoked>` elements of at most ~160
/// bytes each plus signer and signature (~170 KB), the JID, epoch and anchor (~4 KB): ~250 KB for
/// a network at the largest list. 8 MiB holds over 30 such networks; a device follows its own
/// network and the few that host it.
const MAX_REVOCATION_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Default, Serialize, Deserialize)]
struct TrustFile {
    devices: Vec<TrustedDevice>,
}

/// What a device knows of one network's revocations (the newest verified list and every key any
/// verified list named).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Epoch of the newest verified list (0: none yet).
    pub epoch: u64,
    /// Fingerprint (hex) of that list's signer.
    pub anchor: Option<String>,
    /// Every revoked fingerprint (hex), sorted.
    pub revoked: BTreeSet<String>,
    /// The newest list as signed (XML), so this device can publish it again when the server
    /// serves an older one or none.
    #[serde(default)]
    pub signed: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct RevocationFile {
    networks: BTreeMap<String, Revocations>,
}

/// What [`TrustStore::accept_revocations`] did with a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The list is the one already kept (same epoch, nothing new).
    Unchanged,
    /// The list was newer (or named more keys at the same epoch): kept; these pins were dropped.
    Newer {
        /// Pins removed because the list names them.
        dropped: Vec<DeviceFingerprint>,
    },
}

/// The set of pinned peer keys. Thread-safe; share it as `Arc<TrustStore>`.
#[derive(Debug)]
pub struct TrustStore {
    devices: Mutex<BTreeMap<(String, DeviceFingerprint), TrustedDevice>>,
    path: Option<PathBuf>,
    /// Per network (bare JID): the revocations this device verified. Lock order: this, then
    /// `devices`.
    revocations: Mutex<BTreeMap<String, Revocations>>,
}

impl TrustStore {
    /// An empty store that lives in memory only.
    pub fn in_memory() -> Self {
        TrustStore {
            devices: Mutex::new(BTreeMap::new()),
            path: None,
            revocations: Mutex::new(BTreeMap::new()),
        }
    }

    /// A store backed by the JSON file `path` (created on the first pin if missing).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mut devices = BTreeMap::new();
        check_permissions(&path)?;
        if let Some(bytes) = read_store_file(&path, MAX_TRUST_FILE_BYTES, "trust file")? {
            let file: TrustFile = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("trust file {} is corrupt: {e}", path.display()),
                )
            })?;
            for d in file.devices {
                let fp = parse_fingerprint_hex(&d.fingerprint).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("trust file {}: bad fingerprint", path.display()),
                    )
                })?;
                devices.insert((d.jid.clone(), fp), d);
            }
        }
        let revocations = load_revocations(&revocations_path(&path))?;
        Ok(TrustStore {
            devices: Mutex::new(devices),
            path: Some(path),
            revocations: Mutex::new(revocations),
        })
    }

    fn lock_revocations(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Revocations>> {
        // Every change is one insert of a complete value: a poisoned lock is still consistent.
        self.revocations.locked()
    }

    /// What this device knows of `jid`'s revocations.
    pub fn revocations(&self, jid: &BareJid) -> Revocations {
        self.lock_revocations()
            .get(jid.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// Epoch of the newest revocation list of `jid` this device verified (0 if none).
    pub fn revocation_epoch(&self, jid: &BareJid) -> u64 {
        self.lock_revocations()
            .get(jid.as_str())
            .map_or(0, |r| r.epoch)
    }

    /// The signer of that list, whose attestations at its epoch count like a first-hand key's.
    pub fn revocation_anchor(&self, jid: &BareJid) -> Option<DeviceFingerprint> {
        self.lock_revocations()
            .get(jid.as_str())
            .and_then(|r| r.anchor.as_deref().and_then(parse_fingerprint_hex))
    }

    /// The newest verified list of `jid` as signed (to publish again), if any.
    pub fn kept_list(&self, jid: &BareJid) -> Option<RevocationList> {
        let xml = self.lock_revocations().get(jid.as_str())?.signed.clone()?;
        let element: Element = xml.parse().ok()?;
        super::revocation::parse_list(&element).ok()
    }

    /// Whether a verified revocation list of `jid` named `fingerprint`.
    pub fn is_revoked(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> bool {
        self.lock_revocations()
            .get(jid.as_str())
            .is_some_and(|r| r.revoked.contains(&fingerprint.to_hex()))
    }

    /// Takes a list whose signature verified ([`crate::core::e2e::revocation::verify_list`]) as
    /// `jid`'s newest if it is one: its signer must be trusted here (first-hand or by attestation;
    /// `own` — this device — also counts, for the lists it signs itself) and not revoked, and its
    /// epoch must not be lower than the kept one. A newer list is persisted first, then every pin
    /// it names is dropped (whatever its source). At the kept epoch a list is merged only when it
    /// names more keys (two owners revoking at once): a revocation is never forgotten.
    pub fn accept_revocations(
        &self,
        jid: &BareJid,
        list: &VerifiedList,
        own: &DeviceFingerprint,
    ) -> std::result::Result<Accepted, ListError> {
        let mut all = self.lock_revocations();
        let current = all.get(jid.as_str()).cloned().unwrap_or_default();
        let signer_hex = list.signer.to_hex();
        if current.revoked.contains(&signer_hex) {
            return Err(ListError::RevokedSigner(list.signer));
        }
        // Looked up in the pins directly: `source` would take the revocations lock again.
        let signer_source = self
            .lock()
            .get(&(jid.to_string(), list.signer))
            .map(|d| d.source.clone());
        let signer_trusted = list.signer == *own
            || matches!(
                signer_source,
                Some(TrustSource::Paired | TrustSource::Manual | TrustSource::Attested { .. })
            );
        if !signer_trusted {
            return Err(ListError::UnknownSigner(list.signer));
        }
        if list.epoch < current.epoch {
            return Err(ListError::Rollback {
                known: current.epoch,
                got: list.epoch,
            });
        }
        let named: BTreeSet<String> = list.revoked.iter().map(DeviceFingerprint::to_hex).collect();
        let mut next = current.clone();
        next.revoked.extend(named);
        if list.epoch > current.epoch {
            next.epoch = list.epoch;
            next.anchor = Some(signer_hex);
            next.signed = Some(String::from(&Element::from(list.signed.clone())));
        }
        if next == current {
            return Ok(Accepted::Unchanged);
        }
        let mut updated = all.clone();
        updated.insert(jid.to_string(), next.clone());
        if let Some(path) = &self.path {
            let file = RevocationFile { networks: updated };
            let json =
                serde_json::to_vec_pretty(&file).map_err(|e| ListError::Storage(e.to_string()))?;
            let path = revocations_path(path);
            check_write_size(json.len(), MAX_REVOCATION_FILE_BYTES)
                .and_then(|()| write_atomically(&path, &json))
                .map_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "could not save the revocations");
                    ListError::Storage(format!("{}: {e}", path.display()))
                })?;
        }
        all.insert(jid.to_string(), next.clone());
        drop(all);
        // The revocations are saved: even if dropping the pins below fails to reach the trust
        // file, `is_trusted` refuses every named key from now on.
        let mut dropped = Vec::new();
        for fp in &list.revoked {
            match self.remove_pin(jid, fp) {
                Ok(true) => dropped.push(*fp),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not drop a revoked pin from the file"),
            }
        }
        tracing::info!(network = %jid, epoch = next.epoch, dropped = dropped.len(), "revocation list accepted");
        Ok(Accepted::Newer { dropped })
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, DeviceFingerprint), TrustedDevice>> {
        // Single inserts/removes cannot leave the map inconsistent, so a poisoned lock is usable.
        self.devices.locked()
    }

    /// Whether `fingerprint` is pinned for devices of `jid` (and no revocation list named it).
    pub fn is_trusted(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> bool {
        !self.is_revoked(jid, fingerprint)
            && self.lock().contains_key(&(jid.to_string(), *fingerprint))
    }

    /// How `fingerprint` of `jid` is trusted, if it is (never for a key a revocation list named).
    pub fn source(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> Option<TrustSource> {
        if self.is_revoked(jid, fingerprint) {
            return None;
        }
        self.lock()
            .get(&(jid.to_string(), *fingerprint))
            .map(|d| d.source.clone())
    }

    /// Pins `fingerprint` for `jid`. Idempotent; an existing pin keeps its original source. If the
    /// file cannot be written (or would grow past what [`TrustStore::open`] reads back, 4 MiB)
    /// the pin is not made (`Config`). A key a revocation list of `jid` named is
    /// refused (`Forbidden`): it may not come back by pairing, attestation or by hand.
    pub fn pin(
        &self,
        jid: &BareJid,
        fingerprint: &DeviceFingerprint,
        source: TrustSource,
    ) -> Result<()> {
        let key = (jid.to_string(), *fingerprint);
        // Held across the pin, so a revocation list accepted meanwhile cannot be missed.
        let revocations = self.lock_revocations();
        if revocations
            .get(jid.as_str())
            .is_some_and(|r| r.revoked.contains(&fingerprint.to_hex()))
        {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "key {} was revoked on {jid}; it cannot be trusted again",
                    fingerprint.to_hex()
                ),
            ));
        }
        let mut devices = self.lock();
        if devices.contains_key(&key) {
            return Ok(());
        }
        devices.insert(
            key.clone(),
            TrustedDevice {
                jid: jid.to_string(),
                fingerprint: fingerprint.to_hex(),
                source,
            },
        );
        if let Err(e) = self.save(&devices) {
            devices.remove(&key);
            return Err(e);
        }
        Ok(())
    }

    /// Removes the pin; true if there was one. The endpoint closes tunnels using the key. If the
    /// file cannot be written the pin stays (and the error says so).
    pub fn revoke(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> Result<bool> {
        self.remove_pin(jid, fingerprint)
    }

    fn remove_pin(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> Result<bool> {
        let key = (jid.to_string(), *fingerprint);
        let mut devices = self.lock();
        let Some(removed) = devices.remove(&key) else {
            return Ok(false);
        };
        if let Err(e) = self.save(&devices) {
            devices.insert(key, removed);
            return Err(e);
        }
        Ok(true)
    }

    /// Every trusted device, sorted by JID and fingerprint.
    pub fn list(&self) -> Vec<TrustedDevice> {
        self.lock().values().cloned().collect()
    }

    /// Writes `devices` (the caller holds the lock, so this is the newest state).
    fn save(&self, devices: &BTreeMap<(String, DeviceFingerprint), TrustedDevice>) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = TrustFile {
            devices: devices.values().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("trust file: {e}")))?;
        check_write_size(json.len(), MAX_TRUST_FILE_BYTES)
            .and_then(|()| write_atomically(path, &json))
            .map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "could not save the trust file");
                Error::new(
                    ErrorKind::Config,
                    format!("cannot write trust file {}: {e}", path.display()),
                )
            })
    }
}

/// The revocation file beside the trust file `path`.
fn revocations_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trust".to_owned());
    path.with_file_name(format!("{name}.revocations.json"))
}

fn load_revocations(path: &Path) -> Result<BTreeMap<String, Revocations>> {
    check_permissions(path)?;
    let Some(bytes) = read_store_file(path, MAX_REVOCATION_FILE_BYTES, "revocation file")? else {
        return Ok(BTreeMap::new());
    };
    let file: RevocationFile = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("revocation file {} is corrupt: {e}", path.display()),
        )
    })?;
    Ok(file.networks)
}

/// The bytes of the store file `path` (`None` if there is none), at most `max` of them: a bigger
/// file is reported corrupt (`Config`), as any file the store cannot have written, and left as
/// it is.
fn read_store_file(path: &Path, max: u64, what: &str) -> Result<Option<Vec<u8>>> {
    match read_bounded(path, max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e @ ReadError::TooLarge { .. }) => Err(Error::new(
            ErrorKind::Config,
            format!("{what} {} is corrupt: {e}", path.display()),
        )),
        Err(ReadError::Io(e)) => Err(Error::new(
            ErrorKind::Config,
            format!("cannot read {what} {}: {e}", path.display()),
        )),
    }
}

/// Refuses to write more than `max` bytes, so no write makes a file that the next open refuses.
fn check_write_size(len: usize, max: u64) -> std::io::Result<()> {
    if len as u64 > max {
        return Err(std::io::Error::other(format!(
            "it would hold {len} bytes, more than the {max} the store reads back"
        )));
    }
    Ok(())
}

/// Refuses a file that group or others may read or write (unix); a missing file is fine.
#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Config,
                format!("cannot read trust file {}: {e}", path.display()),
            ))
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "trust file {} is accessible by group or others (mode {mode:03o}); \
                 it must be readable by its owner only (chmod 600)",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<()> {
    // No POSIX mode bits: the platform's app sandbox protects the app's files.
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file of its own in the same directory (unique
/// name, created `0600`, never truncated or shared with another write), fsync, rename, and fsync
/// of the directory so the rename itself survives a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trust".to_owned());
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Never leave a half-written temporary file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Best effort: not every platform lets a directory be opened and synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_per_bare_jid_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let home: BareJid = "home@home.test".parse().unwrap();
        let other: BareJid = "romeo@away.test".parse().unwrap();
        let fp = DeviceFingerprint([7u8; 32]);
        {
            let store = TrustStore::open(&path).unwrap();
            store.pin(&home, &fp, TrustSource::Paired).unwrap();
            assert!(store.is_trusted(&home, &fp));
            assert!(!store.is_trusted(&other, &fp));
        }
        let store = TrustStore::open(&path).unwrap();
        assert_eq!(store.source(&home, &fp), Some(TrustSource::Paired));
        assert!(store.revoke(&home, &fp).unwrap());
        assert!(!store.revoke(&home, &fp).unwrap());
        assert!(!TrustStore::open(&path).unwrap().is_trusted(&home, &fp));
    }

    #[test]
    fn a_corrupt_trust_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        std::fs::write(&path, b"{not json").unwrap();
        // Owner-only, as the store writes it: the refusal is for the content, not the mode.
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let err = TrustStore::open(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("corrupt"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_trust_file_others_can_read_is_refused_on_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let home: BareJid = "home@home.test".parse().unwrap();
        TrustStore::open(&path)
            .unwrap()
            .pin(&home, &DeviceFingerprint([1; 32]), TrustSource::Paired)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "written owner-only");
        for bad in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = TrustStore::open(&path).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert!(err.message().contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(TrustStore::open(&path)
            .unwrap()
            .is_trusted(&home, &DeviceFingerprint([1; 32])));
    }

    #[test]
    fn concurrent_pins_and_revocations_all_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let store = std::sync::Arc::new(TrustStore::open(&path).unwrap());
        let home: BareJid = "home@home.test".parse().unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (store, home) = (store.clone(), home.clone());
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        let fp = DeviceFingerprint([t * 32 + i; 32]);
                        store.pin(&home, &fp, TrustSource::Paired).unwrap();
                        // Every third pin is revoked again: the file must end without it.
                        if i % 3 == 0 {
                            assert!(store.revoke(&home, &fp).unwrap());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let reopened = TrustStore::open(&path).unwrap();
        assert_eq!(reopened.list(), store.list());
        assert_eq!(reopened.list().len(), 8 * (25 - 9));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["trust.json".to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_leaves_memory_and_file_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let store = TrustStore::open(&path).unwrap();
        let home: BareJid = "home@home.test".parse().unwrap();
        store
            .pin(&home, &DeviceFingerprint([1; 32]), TrustSource::Paired)
            .unwrap();
        // A directory nobody may write to (root ignores modes: then there is nothing to test).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        let probe = dir.path().join("probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(&probe);
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            return;
        }
        let err = store
            .pin(&home, &DeviceFingerprint([2; 32]), TrustSource::Paired)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            !store.is_trusted(&home, &DeviceFingerprint([2; 32])),
            "undone in memory"
        );
        assert!(store.revoke(&home, &DeviceFingerprint([1; 32])).is_err());
        assert!(
            store.is_trusted(&home, &DeviceFingerprint([1; 32])),
            "revocation undone in memory"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let reopened = TrustStore::open(&path).unwrap();
        assert_eq!(reopened.list(), store.list());
    }

    fn list(signer: DeviceFingerprint, epoch: u64, revoked: &[DeviceFingerprint]) -> VerifiedList {
        // The store trusts what `verify_list` checked; here only its decisions are under test.
        VerifiedList {
            epoch,
            signer,
            revoked: revoked.iter().copied().collect(),
            signed: RevocationList {
                epoch,
                signer: crate::core::e2e::revocation::Signer { spki: vec![1] },
                revoked: Vec::new(),
                signature: crate::core::e2e::revocation::ListSignature { der: vec![2] },
            },
        }
    }

    #[cfg(unix)]
    #[test]
    fn revocations_persist_owner_only_beside_the_trust_file_and_a_corrupt_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let home: BareJid = "home@home.test".parse().unwrap();
        let (owner, lost, me) = (
            DeviceFingerprint([1u8; 32]),
            DeviceFingerprint([2u8; 32]),
            DeviceFingerprint([3u8; 32]),
        );
        {
            let store = TrustStore::open(&path).unwrap();
            store.pin(&home, &owner, TrustSource::Paired).unwrap();
            store.pin(&home, &lost, TrustSource::Manual).unwrap();
            assert_eq!(
                store.accept_revocations(&home, &list(owner, 4, &[lost]), &me),
                Ok(Accepted::Newer {
                    dropped: vec![lost]
                })
            );
            assert_eq!(
                store.accept_revocations(&home, &list(owner, 4, &[lost]), &me),
                Ok(Accepted::Unchanged)
            );
            assert_eq!(
                store.accept_revocations(&home, &list(owner, 3, &[]), &me),
                Err(ListError::Rollback { known: 4, got: 3 })
            );
            // Our own list is accepted although we are not pinned here.
            assert!(store
                .accept_revocations(&home, &list(me, 5, &[lost]), &me)
                .is_ok());
            assert_eq!(store.revocation_anchor(&home), Some(me));
            assert!(store.kept_list(&home).is_some());
        }
        let rev = dir.path().join("trust.json.revocations.json");
        let mode = std::fs::metadata(&rev).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let store = TrustStore::open(&path).unwrap();
        assert_eq!(store.revocation_epoch(&home), 5);
        assert!(store.is_revoked(&home, &lost));
        assert!(!store.is_trusted(&home, &lost));
        assert!(store.is_trusted(&home, &owner));
        drop(store);
        std::fs::write(&rev, b"{not json").unwrap();
        let err = TrustStore::open(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        std::fs::set_permissions(&rev, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TrustStore::open(&path).unwrap_err();
        assert!(err.message().contains("chmod 600"), "{err}");
    }

    /// A pin with a JID of `jid_len` bytes and a fingerprint made of `n`.
    fn device(n: u32, jid_len: usize) -> TrustedDevice {
        let mut fp = [0u8; 32];
        fp[..4].copy_from_slice(&n.to_be_bytes());
        TrustedDevice {
            jid: format!("{}@host.test", "j".repeat(jid_len)),
            fingerprint: DeviceFingerprint(fp).to_hex(),
            source: TrustSource::Paired,
        }
    }

    fn owner_only(path: &Path) {
        #[cfg(unix)]
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }

    #[test]
    fn a_trust_file_at_the_bound_loads_one_byte_over_is_corrupt_and_kept_and_no_pin_outgrows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        // Long JIDs, as many as fit, then one pin whose JID pads the file to 10 bytes short of
        // the bound (the file length grows one byte per JID byte).
        let count = (MAX_TRUST_FILE_BYTES / 2300) as u32;
        let mut devices: Vec<_> = (0..count).map(|n| device(n, 2000)).collect();
        devices.push(device(count, 0));
        let len = |d: &Vec<TrustedDevice>| {
            let file = TrustFile { devices: d.clone() };
            serde_json::to_vec_pretty(&file).unwrap().len() as u64
        };
        let short = len(&devices);
        devices[count as usize] = device(count, (MAX_TRUST_FILE_BYTES - 10 - short) as usize);
        let json = serde_json::to_vec_pretty(&TrustFile {
            devices: devices.clone(),
        })
        .unwrap();
        assert_eq!(json.len() as u64, MAX_TRUST_FILE_BYTES - 10);
        std::fs::write(&path, &json).unwrap();
        owner_only(&path);
        let store = TrustStore::open(&path).expect("a file under the bound loads");
        assert_eq!(store.list().len(), devices.len());
        // One more pin would write past the bound: refused, in memory and on disk.
        let home: BareJid = "home@home.test".parse().unwrap();
        let new = DeviceFingerprint([0xee; 32]);
        let err = store.pin(&home, &new, TrustSource::Paired).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!store.is_trusted(&home, &new));
        assert_eq!(std::fs::read(&path).unwrap(), json);
        drop(store);
        // A file one byte over the bound (trailing JSON whitespace: the content still parses) is
        // corrupt, as any file the store cannot have written, and stays as it was.
        let mut over = json.clone();
        over.resize(MAX_TRUST_FILE_BYTES as usize + 1, b' ');
        std::fs::write(&path, &over).unwrap();
        let err = TrustStore::open(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), over);
    }

    #[test]
    fn a_revocation_file_one_byte_over_the_bound_is_corrupt_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let home: BareJid = "home@home.test".parse().unwrap();
        let (owner, lost, me) = (
            DeviceFingerprint([1u8; 32]),
            DeviceFingerprint([2u8; 32]),
            DeviceFingerprint([3u8; 32]),
        );
        {
            let store = TrustStore::open(&path).unwrap();
            store.pin(&home, &owner, TrustSource::Paired).unwrap();
            store
                .accept_revocations(&home, &list(owner, 1, &[lost]), &me)
                .unwrap();
        }
        assert!(TrustStore::open(&path)
            .expect("a normal file loads")
            .is_revoked(&home, &lost));
        let rev = revocations_path(&path);
        let mut over = std::fs::read(&rev).unwrap();
        over.resize(MAX_REVOCATION_FILE_BYTES as usize + 1, b' ');
        std::fs::write(&rev, &over).unwrap();
        let err = TrustStore::open(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&rev).unwrap(), over);
    }
}
