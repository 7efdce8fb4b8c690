//! The household's owners from the app (issue 12): which phones may approve guests. The first
//! owner key a provider sees is taken at set-up; every later one is added by an owner phone.

use base64::Engine;

use super::controller::Controller;
use super::error::{config, PmnError};
use super::runtime;
use crate::core::access::DeviceFingerprint;
use crate::core::controller::OwnerKeyInfo;

/// An owner-approval key of the network, as its providers hold it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OwnerKey {
    /// The key's fingerprint (hex).
    pub fingerprint: String,
    /// The key (base64 DER SPKI), what `removeOwner` takes.
    pub public_key: String,
    /// The device (TLS key fingerprint, hex) that holds it, when known.
    pub device: Option<String>,
    /// The online providers (full JIDs) that hold it.
    pub providers: Vec<String>,
}

impl From<OwnerKeyInfo> for OwnerKey {
    fn from(o: OwnerKeyInfo) -> Self {
        OwnerKey {
            fingerprint: o.key.to_hex(),
            public_key: base64::engine::general_purpose::STANDARD.encode(&o.spki),
            device: o.device.map(|d| d.to_hex()),
            providers: o.providers.iter().map(ToString::to_string).collect(),
        }
    }
}

fn public_key(b64: &str) -> Result<Vec<u8>, PmnError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| config(format!("not a base64 public key: {e}")))
}

#[uniffi::export]
impl Controller {
    /// Owner devices: this phone's owner-approval key (base64 DER SPKI), to hand to an owner
    /// phone that makes this one an owner too (`addOwner`).
    pub fn owner_public_key(&self) -> Result<String, PmnError> {
        let spki = self.core()?.owner_public_key()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(spki))
    }

    /// Owner devices: the owner keys the network's online providers hold.
    pub async fn owner_keys(&self) -> Result<Vec<OwnerKey>, PmnError> {
        let core = self.core()?;
        runtime::run(async move {
            Ok(core
                .owner_keys()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Owner devices: makes another phone an owner — its `ownerPublicKey()` (base64), held by the
    /// device whose key fingerprint is `device_fingerprint` (hex). Returns the providers that
    /// took it; a phone that is no owner itself gets `PmnError.Forbidden`.
    pub async fn add_owner(
        &self,
        public_key: String,
        device_fingerprint: String,
    ) -> Result<Vec<String>, PmnError> {
        let core = self.core()?;
        let spki = self::public_key(&public_key)?;
        let device = DeviceFingerprint::from_hex(&device_fingerprint).ok_or_else(|| {
            config(format!(
                "{device_fingerprint:?} is not a fingerprint in hex"
            ))
        })?;
        runtime::run(async move {
            let took = core.add_owner(spki, device).await?;
            Ok(took.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Owner devices: removes the owner key `public_key` (base64) on every online provider; every
    /// grant it signed ends there. Returns the providers that applied it.
    pub async fn remove_owner(&self, public_key: String) -> Result<Vec<String>, PmnError> {
        let core = self.core()?;
        let spki = self::public_key(&public_key)?;
        runtime::run(async move {
            let took = core.remove_owner(spki).await?;
            Ok(took.iter().map(ToString::to_string).collect())
        })
        .await
    }
}
