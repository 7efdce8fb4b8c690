//! Attestations, revocation lists and the trust decisions of `sync.rs`.

use super::*;
use crate::core::e2e::revocation::{self, ListError, RevocationList};
use crate::core::e2e::trust::{TrustSource, TrustStore};
use crate::core::error::ErrorKind;
use std::sync::Arc;
use xmpp_parsers::minidom::Element;

#[test]
fn attestation_verifies_only_for_its_subject_jid_and_signer() {
    let dir = tempfile::tempdir().unwrap();
    let id = |n: &str| {
        let store = Arc::new(
            crate::platform::software::SoftwareKeyStore::open(dir.path().join(n)).unwrap(),
        );
        DeviceIdentity::load_or_generate(store, "tls", n).unwrap()
    };
    let (owner, newbie, other) = (id("owner"), id("newbie"), id("other"));
    let jid: BareJid = "home@home.test".parse().unwrap();
    let a = attest(&owner, &jid, newbie.spki(), 4).unwrap();
    assert_eq!(a.epoch, 4);
    let mut moved = a.clone();
    moved.epoch = 5;
    assert!(!verify_attestation(
        &moved,
        &jid,
        newbie.spki(),
        owner.spki()
    ));
    assert!(verify_attestation(&a, &jid, newbie.spki(), owner.spki()));
    assert!(!verify_attestation(&a, &jid, other.spki(), owner.spki()));
    assert!(!verify_attestation(&a, &jid, newbie.spki(), other.spki()));
    let elsewhere: BareJid = "romeo@away.test".parse().unwrap();
    assert!(!verify_attestation(
        &a,
        &elsewhere,
        newbie.spki(),
        owner.spki()
    ));
    let pk = PubKey {
        key: KeyData {
            der: newbie.certificate().to_vec(),
        },
        attestations: vec![a],
    };
    assert_eq!(PubKey::try_from(Element::from(pk.clone())).unwrap(), pk);
    let bad: Element = format!("<pubkey xmlns='{NS_PUBKEY}'><x/></pubkey>")
        .parse()
        .unwrap();
    assert!(PubKey::try_from(bad).is_err());
}

struct Net {
    _dir: tempfile::TempDir,
    jid: BareJid,
}

fn net() -> Net {
    Net {
        _dir: tempfile::tempdir().unwrap(),
        jid: "home@home.test".parse().unwrap(),
    }
}

impl Net {
    fn id(&self, n: &str) -> DeviceIdentity {
        let store = Arc::new(
            crate::platform::software::SoftwareKeyStore::open(self._dir.path().join(n)).unwrap(),
        );
        DeviceIdentity::load_or_generate(store, "tls", n).unwrap()
    }

    /// `subject`'s published item with attestations by `by` at their epochs.
    fn key(&self, subject: &DeviceIdentity, by: &[(&DeviceIdentity, u64)]) -> PublishedKey {
        PublishedKey {
            certificate: subject.certificate().to_vec(),
            spki: subject.spki().to_vec(),
            fingerprint: subject.fingerprint(),
            attestations: by
                .iter()
                .map(|(owner, epoch)| attest(owner, &self.jid, subject.spki(), *epoch).unwrap())
                .collect(),
        }
    }

    fn list(
        &self,
        signer: &DeviceIdentity,
        epoch: u64,
        revoked: &[DeviceFingerprint],
    ) -> std::result::Result<RevocationList, ListError> {
        Ok(
            revocation::sign_list(signer, &self.jid, epoch, &revoked.iter().copied().collect())
                .unwrap(),
        )
    }
}

#[test]
fn epochs_only_move_forward_and_a_revoked_key_is_refused_even_first_hand() {
    let n = net();
    let (owner, lost, stranger) = (n.id("owner"), n.id("lost"), n.id("stranger"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.json");
    let trust = TrustStore::open(&path).unwrap();
    let me = DeviceFingerprint([9u8; 32]);
    trust
        .pin(&n.jid, &owner.fingerprint(), TrustSource::Paired)
        .unwrap();
    trust
        .pin(&n.jid, &lost.fingerprint(), TrustSource::Paired)
        .unwrap();

    let two = n.list(&owner, 2, &[lost.fingerprint()]);
    let (dropped, refused) = apply_revocations(&trust, &n.jid, &me, std::slice::from_ref(&two));
    assert_eq!(
        dropped,
        vec![lost.fingerprint()],
        "the first-hand pin is dropped"
    );
    assert!(refused.is_empty(), "{refused:?}");
    assert!(!trust.is_trusted(&n.jid, &lost.fingerprint()));
    assert_eq!(trust.revocation_epoch(&n.jid), 2);
    assert_eq!(trust.revocation_anchor(&n.jid), Some(owner.fingerprint()));
    let again = trust
        .pin(&n.jid, &lost.fingerprint(), TrustSource::Paired)
        .unwrap_err();
    assert_eq!(
        again.kind(),
        ErrorKind::Forbidden,
        "a revoked key is never pinned again"
    );

    // The same list again changes nothing; an older one is a rollback; an empty newer list
    // does not bring the key back.
    let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[two]);
    assert!(refused.is_empty());
    let one = n.list(&owner, 1, &[]);
    let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[one]);
    assert_eq!(refused, vec![ListError::Rollback { known: 2, got: 1 }]);
    let three = n.list(&owner, 3, &[]);
    apply_revocations(&trust, &n.jid, &me, &[three]);
    assert_eq!(trust.revocation_epoch(&n.jid), 3);
    assert!(trust.is_revoked(&n.jid, &lost.fingerprint()));

    // Signers: one never trusted here, one revoked earlier.
    let (_, refused) = apply_revocations(
        &trust,
        &n.jid,
        &me,
        &[n.list(&stranger, 9, &[owner.fingerprint()])],
    );
    assert_eq!(
        refused,
        vec![ListError::UnknownSigner(stranger.fingerprint())]
    );
    let (_, refused) = apply_revocations(
        &trust,
        &n.jid,
        &me,
        &[n.list(&lost, 9, &[owner.fingerprint()])],
    );
    assert_eq!(refused, vec![ListError::RevokedSigner(lost.fingerprint())]);
    // A forged list is refused the same way, never a panic.
    let mut forged = n.list(&owner, 10, &[]).unwrap();
    forged.revoked.push(revocation::Revoked {
        fingerprint: DeviceFingerprint([1; 32]).to_hex(),
    });
    let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[Ok(forged)]);
    assert_eq!(refused, vec![ListError::BadSignature]);
    assert_eq!(trust.revocation_epoch(&n.jid), 3);
    assert!(trust.is_trusted(&n.jid, &owner.fingerprint()));

    // Survives a restart (the file beside the trust file).
    let reopened = TrustStore::open(&path).unwrap();
    assert_eq!(reopened.revocation_epoch(&n.jid), 3);
    assert!(reopened.is_revoked(&n.jid, &lost.fingerprint()));
    assert!(dir.path().join("trust.json.revocations.json").exists());
}

#[test]
fn attestations_older_than_the_newest_revocation_are_void_until_reissued() {
    let n = net();
    let (tv, phone, tablet, laptop) = (n.id("tv"), n.id("phone"), n.id("tablet"), n.id("laptop"));
    let trust = TrustStore::in_memory();
    let own = tv.fingerprint();
    trust
        .pin(&n.jid, &phone.fingerprint(), TrustSource::Paired)
        .unwrap();
    let dir = |keys: Vec<PublishedKey>, lists| Directory { keys, lists };
    let base = || {
        vec![
            n.key(&phone, &[]),
            n.key(&tv, &[(&phone, 0)]),
            n.key(&tablet, &[(&phone, 0)]),
            n.key(&laptop, &[(&phone, 0)]),
        ]
    };
    let out = apply_directory(&trust, &n.jid, Some(&own), &dir(base(), vec![])).unwrap();
    assert_eq!(out.pinned.len(), 2, "tablet and laptop, never ourselves");
    assert!(!trust.is_trusted(&n.jid, &own));

    // The phone revokes the tablet at epoch 1: the tablet goes, and so does the laptop until
    // its attestation is re-issued; the saved item with its old attestation changes nothing.
    let list = n.list(&phone, 1, &[tablet.fingerprint()]);
    let out =
        apply_directory(&trust, &n.jid, Some(&own), &dir(base(), vec![list.clone()])).unwrap();
    assert!(out.revoked.contains(&tablet.fingerprint()));
    assert!(out.revoked.contains(&laptop.fingerprint()));
    let reissued = vec![
        n.key(&phone, &[]),
        n.key(&tablet, &[(&phone, 0), (&phone, 1)]),
        n.key(&laptop, &[(&phone, 1)]),
    ];
    let out = apply_directory(&trust, &n.jid, Some(&own), &dir(reissued, vec![list])).unwrap();
    assert_eq!(out.pinned, vec![laptop.fingerprint()]);
    assert!(
        !trust.is_trusted(&n.jid, &tablet.fingerprint()),
        "revoked stays revoked"
    );
}

#[test]
fn the_signer_of_the_newest_list_vouches_when_the_revoked_key_was_the_only_first_hand_one() {
    // TV paired with the phone only; the tablet is trusted through the phone. The phone is
    // stolen and revoked from the tablet: the TV drops the phone and keeps the tablet.
    let n = net();
    let (tv, phone, tablet, laptop) = (n.id("tv"), n.id("phone"), n.id("tablet"), n.id("laptop"));
    let trust = TrustStore::in_memory();
    let own = tv.fingerprint();
    trust
        .pin(&n.jid, &phone.fingerprint(), TrustSource::Paired)
        .unwrap();
    let keys = || {
        vec![
            n.key(&phone, &[]),
            n.key(&tablet, &[(&phone, 0)]),
            n.key(&laptop, &[(&phone, 0), (&tablet, 1)]),
        ]
    };
    apply_directory(
        &trust,
        &n.jid,
        Some(&own),
        &Directory {
            keys: keys(),
            lists: vec![],
        },
    )
    .unwrap();
    assert!(trust.is_trusted(&n.jid, &tablet.fingerprint()));
    let list = n.list(&tablet, 1, &[phone.fingerprint()]);
    let out = apply_directory(
        &trust,
        &n.jid,
        Some(&own),
        &Directory {
            keys: keys(),
            lists: vec![list],
        },
    )
    .unwrap();
    assert!(out.revoked.contains(&phone.fingerprint()));
    assert!(!trust.is_trusted(&n.jid, &phone.fingerprint()));
    assert!(
        trust.is_trusted(&n.jid, &tablet.fingerprint()),
        "the list's signer stays"
    );
    assert!(
        trust.is_trusted(&n.jid, &laptop.fingerprint()),
        "re-attested by the list's signer at the new epoch"
    );
}
