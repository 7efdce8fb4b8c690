//! The one fingerprint type: SHA-256 of a device's `SubjectPublicKeyInfo` (DESIGN §4), which the
//! XTLS `<fingerprint hash='sha-256'>` element carries, the trust store pins, grants name and the
//! ACL keys by. One parser (exactly 64 hex digits), one spelling (lower-case hex), one `Debug` that
//! shortens it for logs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::spki_sha256;

/// A device's key fingerprint: SHA-256 of its `SubjectPublicKeyInfo` (DESIGN §4), shown and sent as
/// 64 lower-case hex digits.
///
/// ```
/// use pmn::core::identity::DeviceFingerprint;
/// let fp = DeviceFingerprint::from_spki(b"abc");
/// assert_eq!(fp.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!(DeviceFingerprint::from_hex(&fp.to_hex()), Some(fp));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceFingerprint(pub [u8; 32]);

impl DeviceFingerprint {
    /// The fingerprint of a DER `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &[u8]) -> Self {
        DeviceFingerprint(spki_sha256(spki))
    }

    /// Parses exactly 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(DeviceFingerprint(out))
    }

    /// Lower-case hex, the form on the wire and in files.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for DeviceFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DeviceFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight bytes are enough to tell devices apart in logs and assertion failures.
        write!(f, "DeviceFingerprint({}…)", &self.to_hex()[..16])
    }
}

impl Serialize for DeviceFingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for DeviceFingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DeviceFingerprint::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits (SHA-256 of an SPKI)"))
    }
}

impl xso::FromXmlText for DeviceFingerprint {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        DeviceFingerprint::from_hex(&data).ok_or(xso::error::Error::Other(
            "device fingerprint must be 64 hex digits",
        ))
    }
}

impl xso::AsXmlText for DeviceFingerprint {
    fn as_xml_text(&self) -> Result<std::borrow::Cow<'_, str>, xso::error::Error> {
        Ok(std::borrow::Cow::Owned(self.to_hex()))
    }
}

impl From<[u8; 32]> for DeviceFingerprint {
    fn from(digest: [u8; 32]) -> Self {
        DeviceFingerprint(digest)
    }
}

impl From<DeviceFingerprint> for [u8; 32] {
    fn from(fp: DeviceFingerprint) -> Self {
        fp.0
    }
}

impl std::str::FromStr for DeviceFingerprint {
    type Err = String;

    /// The same rule as [`DeviceFingerprint::from_hex`], with surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceFingerprint::from_hex(s.trim())
            .ok_or_else(|| "a fingerprint is 64 hex digits (SHA-256 of an SPKI)".to_owned())
    }
}
