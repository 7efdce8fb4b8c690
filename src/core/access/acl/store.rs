//! The ACL on disk: the JSON file layout, [`Acl::open`] (load and re-verify every grant) and
//! `persist` (written `0600` through a temporary file and a rename), and the two file helpers the
//! other stores of this module share ([`check_permissions`], [`write_atomically`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::{Acl, Entry, MAX_GRANTS, MAX_TOMBSTONES};
use crate::core::access::audit::AuditKind;
use crate::core::access::{AccessError, DeviceFingerprint, GrantId, OwnerKeys, SignedGrant};
use crate::core::files::{read_to_string_bounded, ReadError};

/// Version of the file layout.
const FILE_FORMAT: u32 = 1;

/// Largest ACL file read. The file is pretty JSON. A grant's XML is at most ~6.3 KB: two bare
/// JIDs (network, guest) of at most 2 047 bytes each, an item id of at most 256 bytes (1 536 if
/// every byte were XML-escaped), a 64-character id, two 64-hex fingerprints, three u64, a
/// base64 signature of at most 108 characters, two scopes, the namespace and attribute names
/// (~300); with its JSON entry that is under 8 KiB, and [`MAX_GRANTS`] (256) of them under
/// 2 MiB. [`MAX_TOMBSTONES`] (1024) tombstones of ~150 bytes (64-character id, u64, keys and
/// indentation) fit 256 KiB; 16 owner keys, their devices and the network JID ~8 KB. About
/// 2.3 MiB at most: 4 MiB leaves room.
pub(in crate::core::access) const MAX_ACL_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    format: u32,
    network: String,
    version: u64,
    grants: Vec<StoredGrant>,
    tombstones: Vec<StoredTombstone>,
    /// Owner-approval keys registered over the tunnel (base64 DER SPKI), on top of those the
    /// provider is configured with.
    #[serde(default)]
    owners: Vec<String>,
    /// Which device (TLS key fingerprint, hex) holds each registered owner key (fingerprint, hex):
    /// those devices are the household's owners, the only ones that register or remove owner keys.
    #[serde(default)]
    owner_devices: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGrant {
    /// The `<grant>` exactly as parsed from the owner, re-verified on load.
    xml: String,
    revoked_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTombstone {
    id: GrantId,
    forget_after: u64,
}

impl Acl {
    /// Opens the ACL file at `path`, or starts an empty ACL (and writes it) if there is none.
    /// A file that exists but cannot be trusted is an error, never an empty ACL.
    pub fn open(
        path: impl Into<PathBuf>,
        owners: OwnerKeys,
        now: u64,
    ) -> Result<Self, AccessError> {
        let path = path.into();
        let mut acl = Acl::in_memory(owners);
        acl.path = Some(path.clone());
        match fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                acl.persist()?;
                return Ok(acl);
            }
            Err(e) => {
                return Err(AccessError::Storage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
        check_permissions(&path)?;
        let text = read_to_string_bounded(&path, MAX_ACL_FILE_BYTES).map_err(|e| match e {
            // Bigger than any ACL this provider writes: as untrustworthy as any corrupt file.
            ReadError::TooLarge { .. } => AccessError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
            ReadError::Io(e) => {
                AccessError::Storage(format!("cannot read {}: {e}", path.display()))
            }
        })?;
        acl.load(&path, &text, now)?;
        Ok(acl)
    }

    fn load(&mut self, path: &Path, text: &str, now: u64) -> Result<(), AccessError> {
        let corrupt = |reason: String| AccessError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let file: AclFile =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not an ACL file: {e}")))?;
        if file.format != FILE_FORMAT {
            return Err(corrupt(format!("unknown format {}", file.format)));
        }
        let network: BareJid = file
            .network
            .parse()
            .map_err(|e| corrupt(format!("bad network JID: {e}")))?;
        if &network != self.owners.network() {
            return Err(corrupt(format!(
                "ACL of network {network}, this provider is {}",
                self.owners.network()
            )));
        }
        if file.grants.len() > MAX_GRANTS || file.tombstones.len() > MAX_TOMBSTONES {
            return Err(corrupt(
                "more entries than a provider ever holds".to_owned(),
            ));
        }
        for owner in &file.owners {
            let spki = base64::engine::general_purpose::STANDARD
                .decode(owner)
                .map_err(|e| corrupt(format!("bad owner key: {e}")))?;
            self.owners
                .add(&spki)
                .map_err(|e| corrupt(format!("bad owner key: {e}")))?;
        }
        for (key, device) in &file.owner_devices {
            let (Some(key), Some(device)) = (
                DeviceFingerprint::from_hex(key),
                DeviceFingerprint::from_hex(device),
            ) else {
                return Err(corrupt(format!("bad owner device {key} → {device}")));
            };
            if !self.owners.contains(&key) {
                return Err(corrupt(format!("owner device for an unknown key {key}")));
            }
            self.owner_devices.insert(key, device);
        }
        self.version = file.version;
        for stored in file.grants {
            let grant: SignedGrant = xso::from_bytes(stored.xml.as_bytes())
                .map_err(|e| corrupt(format!("unreadable grant: {e}")))?;
            if grant.version > file.version {
                return Err(corrupt(format!(
                    "grant {} is newer than the ACL version",
                    grant.id
                )));
            }
            match self.owners.verify_grant(&grant) {
                Ok(()) => {}
                // The issuing device left the network: its grants end (never grants more access).
                Err(AccessError::UnknownIssuer { issuer }) => {
                    self.audit_grant(now, AuditKind::Revoke, &grant, "issuer removed");
                    tracing::info!(grant = %grant.id, %issuer, "dropping grant of a removed owner device");
                    continue;
                }
                Err(e) => return Err(corrupt(format!("grant {}: {e}", grant.id))),
            }
            if self.grants.contains_key(&grant.id) {
                return Err(corrupt(format!("grant {} stored twice", grant.id)));
            }
            let entry = Entry {
                grant,
                revoked_at: stored.revoked_at,
            };
            self.grants.insert(entry.grant.id.clone(), entry);
        }
        for t in file.tombstones {
            self.tombstones.insert(t.id, t.forget_after);
        }
        self.prune(now);
        Ok(())
    }

    pub(super) fn persist(&self) -> Result<(), AccessError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut grants = Vec::with_capacity(self.grants.len());
        for entry in self.grants.values() {
            let xml = xso::to_vec(&entry.grant)
                .map_err(|e| AccessError::Storage(format!("cannot serialise a grant: {e}")))?;
            let xml = String::from_utf8(xml)
                .map_err(|e| AccessError::Storage(format!("grant is not UTF-8: {e}")))?;
            grants.push(StoredGrant {
                xml,
                revoked_at: entry.revoked_at,
            });
        }
        let file = AclFile {
            format: FILE_FORMAT,
            network: self.owners.network().to_string(),
            version: self.version,
            grants,
            tombstones: self
                .tombstones
                .iter()
                .map(|(id, until)| StoredTombstone {
                    id: id.clone(),
                    forget_after: *until,
                })
                .collect(),
            owners: self
                .owners
                .spkis()
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
                .collect(),
            owner_devices: self
                .owner_devices
                .iter()
                .map(|(k, d)| (k.to_hex(), d.to_hex()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AccessError::Storage(format!("cannot serialise the ACL: {e}")))?;
        write_atomically(path, &bytes)
    }
}

#[cfg(unix)]
pub(in crate::core::access) fn check_permissions(path: &Path) -> Result<(), AccessError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path)
        .map_err(|e| AccessError::Storage(format!("cannot stat {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AccessError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(in crate::core::access) fn check_permissions(_path: &Path) -> Result<(), AccessError> {
    // No POSIX mode bits; desktop providers run on Linux and macOS.
    Ok(())
}

/// Writes `bytes` to `path` via `<path>.tmp` (created `0600`), fsync and rename.
pub(in crate::core::access) fn write_atomically(
    path: &Path,
    bytes: &[u8],
) -> Result<(), AccessError> {
    let storage = |what: &str, p: &Path, e: std::io::Error| {
        AccessError::Storage(format!("cannot {what} {}: {e}", p.display()))
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage("remove", &tmp, e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| storage("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| storage("write", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| storage("replace", path, e))?;
    // Make the rename itself durable; not every platform lets a directory be opened, so best effort.
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
