//! What an owner's phone remembers of the grants it revoked (issue 12), so a revocation cannot
//! spread back: a provider that was off when a grant was revoked, and is now the only one online
//! holding it, would otherwise be the source from which the owner's catch-up copies the grant to
//! the next provider that comes online. Kept in a file (0600, written atomically) when the app
//! gives one, so it survives the phone's restarts.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::acl::{check_permissions, write_atomically};
use super::{AccessError, GrantId};
use crate::core::files::{read_to_string_bounded, ReadError};

/// Most revoked grant ids remembered; the oldest is forgotten first (a grant that old has long
/// expired, and an expired grant cannot be installed anywhere).
pub const MAX_REVOKED_REMEMBERED: usize = 4096;

/// The revoked grant ids, oldest first.
#[derive(Debug, Default)]
pub struct RevokedGrants {
    ids: VecDeque<GrantId>,
    /// Owner keys (DER SPKI) this phone removed: a provider that missed the removal is told again.
    removed_owners: VecDeque<Vec<u8>>,
    path: Option<PathBuf>,
}

/// Most removed owner keys remembered (a household has at most [`super::MAX_OWNER_KEYS`] at once).
pub const MAX_REMOVED_OWNERS_REMEMBERED: usize = 64;

/// Largest revoked-grants file read. The file is compact JSON: each of at most
/// [`MAX_REVOKED_REMEMBERED`] (4096) ids is at most 64 characters plus quotes and a comma (67
/// bytes: 274 432), each of at most [`MAX_REMOVED_OWNERS_REMEMBERED`] (64) owner keys a base64
/// P-256 SPKI of 124 characters (127 with quotes and comma: 8 128; even a 1 KiB SPKI would be
/// 1 371, 87 744 in all), plus ~50 bytes of field names. At most ~365 KB: 1 MiB leaves room.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    revoked: Vec<GrantId>,
    /// Base64 DER SPKIs of the owner keys this phone removed.
    #[serde(default)]
    removed_owners: Vec<String>,
}

impl RevokedGrants {
    /// Only in memory (lost when the app restarts).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Backed by `path` (created on first write); refused when others can read it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AccessError> {
        let path = path.into();
        let mut this = RevokedGrants {
            ids: VecDeque::new(),
            removed_owners: VecDeque::new(),
            path: Some(path.clone()),
        };
        match read_to_string_bounded(&path, MAX_FILE_BYTES) {
            Ok(text) => {
                check_permissions(&path)?;
                let corrupt = |reason: String| AccessError::Corrupt {
                    path: path.display().to_string(),
                    reason,
                };
                let file: File = serde_json::from_str(&text)
                    .map_err(|e| corrupt(format!("not a revoked-grants file: {e}")))?;
                if file.format != 1 || file.revoked.len() > MAX_REVOKED_REMEMBERED {
                    return Err(corrupt("unknown format or too many entries".into()));
                }
                if file.removed_owners.len() > MAX_REMOVED_OWNERS_REMEMBERED {
                    return Err(corrupt("too many removed owner keys".into()));
                }
                use base64::Engine;
                for key in &file.removed_owners {
                    let spki = base64::engine::general_purpose::STANDARD
                        .decode(key)
                        .map_err(|e| corrupt(format!("bad owner key: {e}")))?;
                    this.removed_owners.push_back(spki);
                }
                this.ids = file.revoked.into();
            }
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e @ ReadError::TooLarge { .. }) => {
                return Err(AccessError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
            Err(ReadError::Io(e)) => {
                return Err(AccessError::Storage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
        Ok(this)
    }

    /// Whether the owner revoked `id`.
    pub fn contains(&self, id: &GrantId) -> bool {
        self.ids.contains(id)
    }

    /// Remembers `id` (and stores the set).
    pub fn insert(&mut self, id: GrantId) -> Result<(), AccessError> {
        if self.contains(&id) {
            return Ok(());
        }
        if self.ids.len() >= MAX_REVOKED_REMEMBERED {
            self.ids.pop_front();
        }
        self.ids.push_back(id);
        self.persist()
    }

    /// Remembers that this phone removed the owner key `spki` (and stores the set).
    pub fn remove_owner(&mut self, spki: Vec<u8>) -> Result<(), AccessError> {
        if self.removed_owners.contains(&spki) {
            return Ok(());
        }
        if self.removed_owners.len() >= MAX_REMOVED_OWNERS_REMEMBERED {
            self.removed_owners.pop_front();
        }
        self.removed_owners.push_back(spki);
        self.persist()
    }

    /// Whether this phone ever removed an owner key (else there is nothing to catch up on).
    pub fn removed_any_owner(&self) -> bool {
        !self.removed_owners.is_empty()
    }

    /// Whether this phone removed the owner key `spki`.
    pub fn owner_removed(&self, spki: &[u8]) -> bool {
        self.removed_owners.iter().any(|k| k == spki)
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn persist(&self) -> Result<(), AccessError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        use base64::Engine;
        let file = File {
            format: 1,
            revoked: self.ids.iter().cloned().collect(),
            removed_owners: self
                .removed_owners
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
                .collect(),
        };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| AccessError::Storage(format!("cannot serialise: {e}")))?;
        write_atomically(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_grants_survive_a_restart_and_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("revoked.json");
        let mut r = RevokedGrants::open(&path).expect("open");
        r.insert(GrantId::new("g1").unwrap()).expect("insert");
        r.insert(GrantId::new("g1").unwrap()).expect("again");
        assert_eq!(r.len(), 1);
        r.remove_owner(vec![1, 2, 3])
            .expect("remember a removed owner");
        let r = RevokedGrants::open(&path).expect("reopen");
        assert!(r.contains(&GrantId::new("g1").unwrap()));
        assert!(r.owner_removed(&[1, 2, 3]));
        assert!(!r.owner_removed(&[4]));
        let mut m = RevokedGrants::in_memory();
        for n in 0..=MAX_REVOKED_REMEMBERED {
            m.insert(GrantId::new(format!("g{n}")).unwrap())
                .expect("insert");
        }
        assert_eq!(m.len(), MAX_REVOKED_REMEMBERED);
        assert!(
            !m.contains(&GrantId::new("g0").unwrap()),
            "the oldest went first"
        );
        // Group- or world-readable: refused.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                RevokedGrants::open(&path),
                Err(AccessError::InsecurePermissions { .. })
            ));
        }
    }

    #[test]
    fn a_full_file_loads_and_one_byte_over_the_bound_is_corrupt_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("revoked.json");
        let mut r = RevokedGrants::open(&path).expect("open");
        // The largest file this store writes (longest ids, every slot used) is under the bound.
        for n in 0..MAX_REVOKED_REMEMBERED {
            r.ids.push_back(GrantId::new(format!("{n:064}")).unwrap());
        }
        for n in 0..MAX_REMOVED_OWNERS_REMEMBERED {
            r.removed_owners.push_back(vec![n as u8; 91]);
        }
        r.persist().expect("persist");
        let written = std::fs::metadata(&path).expect("written").len();
        assert!(written <= MAX_FILE_BYTES / 2, "{written} bytes");
        assert_eq!(
            RevokedGrants::open(&path).expect("a full file").len(),
            MAX_REVOKED_REMEMBERED
        );
        // Padded with JSON whitespace to one byte over: still valid JSON, refused by size.
        let mut text = std::fs::read(&path).expect("read");
        text.resize(MAX_FILE_BYTES as usize + 1, b' ');
        std::fs::write(&path, &text).expect("pad");
        let e = RevokedGrants::open(&path).expect_err("too large");
        assert!(matches!(e, AccessError::Corrupt { .. }), "{e}");
        assert_eq!(std::fs::read(&path).expect("kept"), text);
    }
}
