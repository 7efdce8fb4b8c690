//! The owner signature on playlist entries. The server stores and relays the items, and anyone the
//! access model lets publish could add some: the signature is how a subscriber tells the
//! household's entries from everyone else's.
//!
//! Signed with the household's owner-approval key (the key that signs guest grants, DESIGN §5) by
//! the same code path (`access::sign_with`, which checks the signature against the
//! store's public key before it leaves) and verified against the [`OwnerKeys`] the subscriber keeps
//! for that household. The canonical bytes use the grants' length-prefixed encoding under their
//! own tag, so a signed entry can never pass for a grant or a revocation, nor the reverse:
//!
//! ```text
//! field("pmn/playlist/entry/v1") field(network) field(playlist) field(entry id)
//! field(title) field(uri) field(kind) (0x00 | 0x01 u64 duration-ms) u32 position
//! (0x00 | 0x01 field(artwork)) u64 updated field(issuer, 32 B)
//! ```
//! The network (the publisher's bare JID), the playlist name and the entry id are bound, so the
//! server cannot move a signed entry to another household, playlist or id. It can still replay an
//! entry the owner since retracted or replaced; `updated` lets a subscriber keep the newest.

use xmpp_parsers::jid::BareJid;

use super::entry::{EntrySignature, ParsedEntry, PlaylistEntry};
use super::error::{signature_refusal, IgnoredReason, PlaylistError};
use crate::core::access::{put_field, sign_with, DeviceFingerprint, OwnerKeys};
use crate::core::identity::KeyStore;

const ENTRY_TAG: &[u8] = b"pmn/playlist/entry/v1";

fn signed_bytes(
    network: &BareJid,
    playlist: &str,
    entry: &PlaylistEntry,
    updated: u64,
    issuer: &DeviceFingerprint,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_field(&mut out, ENTRY_TAG);
    put_field(&mut out, network.as_str().as_bytes());
    put_field(&mut out, playlist.as_bytes());
    put_field(&mut out, entry.id.as_bytes());
    put_field(&mut out, entry.title.as_bytes());
    put_field(&mut out, entry.uri.as_bytes());
    put_field(&mut out, entry.kind.as_str().as_bytes());
    match entry.duration_ms {
        None => out.push(0),
        Some(ms) => {
            out.push(1);
            out.extend_from_slice(&ms.to_be_bytes());
        }
    }
    out.extend_from_slice(&entry.position.to_be_bytes());
    match &entry.artwork {
        None => out.push(0),
        Some(art) => {
            out.push(1);
            put_field(&mut out, art.as_bytes());
        }
    }
    out.extend_from_slice(&updated.to_be_bytes());
    put_field(&mut out, issuer.as_bytes());
    out
}

/// An entry whose owner signature verified for its household and playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The entry.
    pub entry: PlaylistEntry,
    /// When the owner signed it (owner's clock, seconds since the epoch).
    pub updated: u64,
    /// The owner key that signed it.
    pub issuer: DeviceFingerprint,
}

/// Signs `entry` of `playlist` on `network` at `updated` with the owner key `alias` of `store`;
/// returns the `<signature>` to put in the entry. On a phone the store may ask for the user here.
pub fn sign_entry(
    network: &BareJid,
    playlist: &str,
    entry: &PlaylistEntry,
    updated: u64,
    store: &dyn KeyStore,
    alias: &str,
) -> Result<EntrySignature, PlaylistError> {
    entry.validate()?;
    let (issuer, der) = sign_with(store, alias, |issuer| {
        signed_bytes(network, playlist, entry, updated, issuer)
    })
    .map_err(PlaylistError::Signing)?;
    Ok(EntrySignature { issuer, der })
}

/// Checks a parsed entry of `playlist` published by `network` against that household's owner
/// keys. Unsigned, wrongly signed and foreign-signed entries are refused with their reason.
pub fn verify_entry(
    owners: &OwnerKeys,
    network: &BareJid,
    playlist: &str,
    parsed: ParsedEntry,
) -> Result<VerifiedEntry, IgnoredReason> {
    let Some(sig) = &parsed.signature else {
        return Err(IgnoredReason::Unsigned);
    };
    // The keys must be the publisher's: another household's owner cannot vouch for this one.
    if owners.network() != network {
        return Err(IgnoredReason::UnknownSigner);
    }
    let message = signed_bytes(
        network,
        playlist,
        &parsed.entry,
        parsed.updated,
        &sig.issuer,
    );
    owners
        .verify_signature(&sig.issuer, &message, &sig.der)
        .map_err(|e| signature_refusal(&e))?;
    Ok(VerifiedEntry {
        issuer: sig.issuer,
        entry: parsed.entry,
        updated: parsed.updated,
    })
}

#[cfg(test)]
mod tests {
    use super::super::entry::{parse_item, MediaKind};
    use super::*;
    use crate::core::identity::{KeyPolicy, KeyStore};
    use crate::platform::software::SoftwareKeyStore;

    const ALIAS: &str = "owner-approval";

    fn household(dir: &tempfile::TempDir, name: &str) -> (SoftwareKeyStore, OwnerKeys) {
        let store = SoftwareKeyStore::open(dir.path().join(name)).unwrap();
        let spki = store
            .generate(
                ALIAS,
                KeyPolicy::OwnerApproval {
                    user_presence: false,
                },
            )
            .unwrap();
        let mut owners = OwnerKeys::new(format!("{name}@home.test").parse().unwrap());
        owners.add(&spki).unwrap();
        (store, owners)
    }

    fn entry() -> PlaylistEntry {
        PlaylistEntry {
            id: "e1".into(),
            title: "Radio One".into(),
            uri: "https://radio.example/one".into(),
            kind: MediaKind::Stream,
            duration_ms: None,
            artwork: None,
            position: 0,
        }
    }

    fn signed(store: &SoftwareKeyStore, net: &BareJid, e: &PlaylistEntry) -> ParsedEntry {
        let sig = sign_entry(net, "radio", e, 5, store, ALIAS).unwrap();
        parse_item(Some(&e.id), Some(&e.to_element(5, Some(sig)))).unwrap()
    }

    #[test]
    fn an_owner_signed_entry_verifies_only_where_it_was_published() {
        let dir = tempfile::tempdir().unwrap();
        let (store, owners) = household(&dir, "home");
        let (thief, thief_owners) = household(&dir, "thief");
        let net = owners.network().clone();
        let good = signed(&store, &net, &entry());
        let v = verify_entry(&owners, &net, "radio", good.clone()).unwrap();
        assert_eq!(v.entry, entry());
        assert_eq!(v.updated, 5);
        // Another playlist, another id, another network, another field: the signature breaks.
        assert_eq!(
            verify_entry(&owners, &net, "jazz", good.clone()),
            Err(IgnoredReason::BadSignature)
        );
        let mut moved = good.clone();
        moved.entry.id = "e2".into();
        assert_eq!(
            verify_entry(&owners, &net, "radio", moved),
            Err(IgnoredReason::BadSignature)
        );
        let mut retitled = good.clone();
        retitled.entry.uri = "https://evil.example/".into();
        assert_eq!(
            verify_entry(&owners, &net, "radio", retitled),
            Err(IgnoredReason::BadSignature)
        );
        let mut replayed = good.clone();
        replayed.updated = 6;
        assert_eq!(
            verify_entry(&owners, &net, "radio", replayed),
            Err(IgnoredReason::BadSignature)
        );
        // Keys of another household, a signer not among the owners, no signature.
        assert_eq!(
            verify_entry(&thief_owners, &net, "radio", good.clone()),
            Err(IgnoredReason::UnknownSigner)
        );
        let forged = signed(&thief, &net, &entry());
        assert_eq!(
            verify_entry(&owners, &net, "radio", forged),
            Err(IgnoredReason::UnknownSigner)
        );
        let mut unsigned = good;
        unsigned.signature = None;
        assert_eq!(
            verify_entry(&owners, &net, "radio", unsigned),
            Err(IgnoredReason::Unsigned)
        );
    }
}
