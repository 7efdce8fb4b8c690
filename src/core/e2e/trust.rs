//! The pinned keys of peer devices: which SPKI fingerprints this device accepts, per bare JID.
//!
//! Identity is *bare JID + SPKI SHA-256*: all devices of a network share the bare JID and each has
//! its own key. A key gets here only by pairing (SPAKE2), by an attestation from a trusted owner
//! device (XEP-0189), or explicitly by the app; revocation removes it. Optionally persisted as a
//! JSON file so pins survive a restart (written atomically: temp file + rename, mode 0600).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::fingerprint_hex;

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

#[derive(Default, Serialize, Deserialize)]
struct TrustFile {
    devices: Vec<TrustedDevice>,
}

/// The set of pinned peer keys. Thread-safe; share it as `Arc<TrustStore>`.
#[derive(Debug)]
pub struct TrustStore {
    devices: Mutex<BTreeMap<(String, [u8; 32]), TrustedDevice>>,
    path: Option<PathBuf>,
}

impl TrustStore {
    /// An empty store that lives in memory only.
    pub fn in_memory() -> Self {
        TrustStore {
            devices: Mutex::new(BTreeMap::new()),
            path: None,
        }
    }

    /// A store backed by the JSON file `path` (created on the first pin if missing).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mut devices = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("cannot read trust file {}: {e}", path.display()),
                ))
            }
        }
        Ok(TrustStore {
            devices: Mutex::new(devices),
            path: Some(path),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, [u8; 32]), TrustedDevice>> {
        // Single inserts/removes cannot leave the map inconsistent, so a poisoned lock is usable.
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `fingerprint` is pinned for devices of `jid`.
    pub fn is_trusted(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> bool {
        self.lock().contains_key(&(jid.to_string(), *fingerprint))
    }

    /// How `fingerprint` of `jid` is trusted, if it is.
    pub fn source(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Option<TrustSource> {
        self.lock()
            .get(&(jid.to_string(), *fingerprint))
            .map(|d| d.source.clone())
    }

    /// Pins `fingerprint` for `jid`. Idempotent; an existing pin keeps its original source.
    pub fn pin(&self, jid: &BareJid, fingerprint: &[u8; 32], source: TrustSource) -> Result<()> {
        {
            let mut devices = self.lock();
            devices
                .entry((jid.to_string(), *fingerprint))
                .or_insert_with(|| TrustedDevice {
                    jid: jid.to_string(),
                    fingerprint: fingerprint_hex(fingerprint),
                    source,
                });
        }
        self.save()
    }

    /// Removes the pin; true if there was one. The endpoint closes tunnels using the key.
    pub fn revoke(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<bool> {
        let removed = self
            .lock()
            .remove(&(jid.to_string(), *fingerprint))
            .is_some();
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// Every trusted device, sorted by JID and fingerprint.
    pub fn list(&self) -> Vec<TrustedDevice> {
        self.lock().values().cloned().collect()
    }

    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = TrustFile {
            devices: self.list(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("trust file: {e}")))?;
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Config,
                format!("cannot write trust file {}: {e}", path.display()),
            )
        };
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(&json).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
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
        let fp = [7u8; 32];
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
        assert_eq!(
            TrustStore::open(&path).unwrap_err().kind(),
            ErrorKind::Config
        );
    }
}
