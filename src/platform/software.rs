//! The software key store: one PKCS#8 file per alias in a directory, for desktop providers and tests.
//!
//! Rules this module enforces: key files are created `0600` (never widened afterwards), a key file
//! that group or others can access is refused with [`KeyStoreError::InsecurePermissions`] instead of
//! being used, and no key bytes ever reach a log line or an error message.

use crate::core::files::{read_file_bounded, ReadError};
use crate::core::sync::Locked;
use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::core::identity::{
    p256_spki_from_point, validate_alias, KeyPolicy, KeyStore, KeyStoreError,
};

/// File name suffix of a key file (`<alias>.p8`).
const KEY_SUFFIX: &str = ".p8";

/// Largest key file read. This store writes ring's P-256 PKCS#8 v1 document, 138 bytes; PKCS#8
/// P-256 keys from other tools (v2 with attributes, explicit curve parameters) stay under 500.
/// 4 KiB is several times any of them and still nothing to hold in memory.
const MAX_KEY_FILE_BYTES: u64 = 4 * 1024;

/// A directory of PKCS#8 P-256 key files. See the module docs for the permission rules.
pub struct SoftwareKeyStore {
    dir: PathBuf,
    rng: SystemRandom,
    /// Parsed keys by alias. Parsing a PKCS#8 key recomputes its public point, which costs about as
    /// much as a signature; the TLS signer calls `sign` on every handshake, so keys are parsed once.
    /// The permission check therefore happens when a key is first used by this store instance.
    loaded: Mutex<HashMap<String, Arc<EcdsaKeyPair>>>,
}

impl std::fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(context: &str, path: &Path, e: std::io::Error) -> KeyStoreError {
    KeyStoreError::Io(format!("{context} {}: {e}", path.display()))
}

impl SoftwareKeyStore {
    /// Opens (creating it `0700` if missing) the key directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeyStoreError> {
        let dir = dir.into();
        if !dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(&dir)
                .map_err(|e| io_error("cannot create key directory", &dir, e))?;
        } else if !dir.is_dir() {
            return Err(KeyStoreError::Io(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(SoftwareKeyStore {
            dir,
            rng: SystemRandom::new(),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, alias: &str) -> PathBuf {
        self.dir.join(format!("{alias}{KEY_SUFFIX}"))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<EcdsaKeyPair>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.loaded.locked()
    }

    fn load(&self, alias: &str) -> Result<Arc<EcdsaKeyPair>, KeyStoreError> {
        validate_alias(alias)?;
        if let Some(key) = self.cache().get(alias) {
            return Ok(key.clone());
        }
        let path = self.path(alias);
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(KeyStoreError::NotFound {
                    alias: alias.to_owned(),
                })
            }
            Err(e) => return Err(io_error("cannot open key file", &path, e)),
        };
        // Check the permissions of the file we opened (fstat), not of the path, so a swap between
        // check and read cannot slip a different file in.
        let meta = file
            .metadata()
            .map_err(|e| io_error("cannot stat key file", &path, e))?;
        check_private(&path, &meta)?;
        let pkcs8 = match read_file_bounded(&mut file, MAX_KEY_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(ReadError::Io(e)) => return Err(io_error("cannot read key file", &path, e)),
            // Like any other file that does not parse as a key: corrupt, and left as it is.
            Err(e @ ReadError::TooLarge { .. }) => {
                return Err(KeyStoreError::Corrupt {
                    alias: alias.to_owned(),
                    reason: format!("key file {e}"),
                })
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &self.rng)
            .map_err(|e| KeyStoreError::Corrupt {
                alias: alias.to_owned(),
                // ring's KeyRejected describes the reason only ("InvalidEncoding"), never key bytes.
                reason: format!("not a P-256 PKCS#8 key ({e})"),
            })?;
        let key = Arc::new(key);
        self.cache().insert(alias.to_owned(), key.clone());
        Ok(key)
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), KeyStoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "refusing key file readable by others");
        return Err(KeyStoreError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyStoreError> {
    // No POSIX mode bits to check; pmn's software store targets Linux and macOS hosts.
    Ok(())
}

impl KeyStore for SoftwareKeyStore {
    fn generate(&self, alias: &str, policy: KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        if policy.requires_user_presence() {
            return Err(KeyStoreError::Unsupported(
                "a software key store cannot require user presence".into(),
            ));
        }
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
            .map_err(|_| KeyStoreError::Platform("P-256 key generation failed".into()))?;
        let path = self.path(alias);
        let mut options = fs::OpenOptions::new();
        // create_new: an existing key is never overwritten, and the existence check is atomic.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(KeyStoreError::AlreadyExists {
                    alias: alias.to_owned(),
                })
            }
            Err(e) => return Err(io_error("cannot create key file", &path, e)),
        };
        let written = file
            .write_all(pkcs8.as_ref())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Do not leave a truncated key behind: it would read as Corrupt forever.
            let _ = fs::remove_file(&path);
            return Err(io_error("cannot write key file", &path, e));
        }
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &self.rng)
                .map_err(|_| {
                    KeyStoreError::Platform("freshly generated key did not parse".into())
                })?;
        let spki =
            p256_spki_from_point(key.public_key().as_ref()).map_err(KeyStoreError::Platform)?;
        self.cache().insert(alias.to_owned(), Arc::new(key));
        tracing::debug!(alias, path = %path.display(), "generated software key");
        Ok(spki)
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.load(alias)?;
        p256_spki_from_point(key.public_key().as_ref()).map_err(|reason| KeyStoreError::Corrupt {
            alias: alias.to_owned(),
            reason,
        })
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.load(alias)?;
        key.sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| KeyStoreError::Platform("ECDSA signing failed".into()))
    }

    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        validate_alias(alias)?;
        self.cache().remove(alias);
        let path = self.path(alias);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(KeyStoreError::NotFound {
                alias: alias.to_owned(),
            }),
            Err(e) => Err(io_error("cannot delete key file", &path, e)),
        }
    }

    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| io_error("cannot list key directory", &self.dir, e))?;
        let mut aliases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list key directory", &self.dir, e))?;
            let name = entry.file_name();
            let Some(alias) = name.to_str().and_then(|n| n.strip_suffix(KEY_SUFFIX)) else {
                continue;
            };
            // Files that are not valid aliases were not written by this store; leave them out.
            if validate_alias(alias).is_ok() {
                aliases.push(alias.to_owned());
            }
        }
        aliases.sort();
        Ok(aliases)
    }

    fn backend(&self) -> &'static str {
        "software"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    use std::os::unix::fs::PermissionsExt;

    fn verify(spki: &[u8], message: &[u8], der: &[u8]) {
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
        key.verify(message, &p256::ecdsa::Signature::from_der(der).unwrap())
            .unwrap();
    }

    #[test]
    fn sign_verify_round_trip_with_an_independent_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let spki = store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
        assert_eq!(store.public_key("tls").unwrap(), spki);
        let sig = store.sign("tls", b"hello world").unwrap();
        verify(&spki, b"hello world", &sig);
        // The key survives a restart: a new store instance reads the file.
        let reopened = SoftwareKeyStore::open(dir.path()).unwrap();
        assert_eq!(reopened.public_key("tls").unwrap(), spki);
        verify(&spki, b"again", &reopened.sign("tls", b"again").unwrap());
    }

    #[test]
    fn key_file_is_created_0600_in_a_0700_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("keys");
        let store = SoftwareKeyStore::open(&dir).unwrap();
        store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("tls.p8")), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn group_or_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SoftwareKeyStore::open(dir.path())
            .unwrap()
            .generate("tls", KeyPolicy::TlsIdentity)
            .unwrap();
        let path = dir.path().join("tls.p8");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let err = store.sign("tls", b"x").unwrap_err();
        assert_eq!(
            err,
            KeyStoreError::InsecurePermissions {
                path: path.display().to_string(),
                mode: 0o644
            }
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(matches!(
            store.public_key("tls"),
            Err(KeyStoreError::InsecurePermissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            store.sign("tls", b"x"),
            Err(KeyStoreError::InsecurePermissions { mode: 0o640, .. })
        ));
    }

    #[test]
    fn missing_alias_is_not_found_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let not_found = KeyStoreError::NotFound {
            alias: "ghost".into(),
        };
        assert_eq!(store.public_key("ghost").unwrap_err(), not_found);
        assert_eq!(store.sign("ghost", b"x").unwrap_err(), not_found);
        assert_eq!(store.delete("ghost").unwrap_err(), not_found);
    }

    #[test]
    fn corrupted_key_file_is_corrupt_and_the_error_carries_no_key_bytes() {
        let dir = tempfile::tempdir().unwrap();
        SoftwareKeyStore::open(dir.path())
            .unwrap()
            .generate("tls", KeyPolicy::TlsIdentity)
            .unwrap();
        let path = dir.path().join("tls.p8");
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        bytes.truncate(len - 10);
        fs::write(&path, &bytes).unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let err = store.sign("tls", b"x").unwrap_err();
        assert!(
            matches!(err, KeyStoreError::Corrupt { ref alias, .. } if alias == "tls"),
            "{err:?}"
        );
        let hex: String = bytes[bytes.len() - 8..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!format!("{err:?}").contains(&hex));
    }

    #[test]
    fn oversize_key_file_is_corrupt_and_left_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let spki = store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
        let path = dir.path().join("tls.p8");
        let key = fs::read(&path).unwrap();
        assert_eq!(
            key.len(),
            138,
            "the size MAX_KEY_FILE_BYTES is derived from"
        );
        // A normal key file reads back in a new store instance.
        assert_eq!(
            SoftwareKeyStore::open(dir.path())
                .unwrap()
                .public_key("tls")
                .unwrap(),
            spki
        );
        let mut huge = key.clone();
        huge.resize(MAX_KEY_FILE_BYTES as usize + 1, 0);
        fs::write(&path, &huge).unwrap();
        let err = SoftwareKeyStore::open(dir.path())
            .unwrap()
            .sign("tls", b"x")
            .unwrap_err();
        assert!(
            matches!(err, KeyStoreError::Corrupt { ref alias, ref reason }
                if alias == "tls" && reason.contains("4096")),
            "{err:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), huge);
    }

    #[test]
    fn keys_are_never_overwritten_and_list_delete_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        let first = store.generate("b-key", KeyPolicy::TlsIdentity).unwrap();
        store
            .generate(
                "a-key",
                KeyPolicy::OwnerApproval {
                    user_presence: false,
                },
            )
            .unwrap();
        assert_eq!(
            store.generate("b-key", KeyPolicy::TlsIdentity).unwrap_err(),
            KeyStoreError::AlreadyExists {
                alias: "b-key".into()
            }
        );
        assert_eq!(store.public_key("b-key").unwrap(), first);
        fs::write(dir.path().join("notes.txt"), b"not a key").unwrap();
        assert_eq!(store.list().unwrap(), vec!["a-key", "b-key"]);
        store.delete("a-key").unwrap();
        assert_eq!(store.list().unwrap(), vec!["b-key"]);
        assert!(matches!(
            store.sign("a-key", b"x"),
            Err(KeyStoreError::NotFound { .. })
        ));
    }

    #[test]
    fn user_presence_is_refused_not_silently_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.generate(
                "owner",
                KeyPolicy::OwnerApproval {
                    user_presence: true
                }
            ),
            Err(KeyStoreError::Unsupported(_))
        ));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn invalid_alias_never_touches_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftwareKeyStore::open(dir.path().join("keys")).unwrap();
        assert!(matches!(
            store.generate("../escape", KeyPolicy::TlsIdentity),
            Err(KeyStoreError::InvalidAlias { .. })
        ));
        assert!(!dir.path().join("escape.p8").exists());
    }
}
