//! The access wire elements (`<request>`, `<grant>`, `<revoke>`, `<decision>`, `<owner>`,
//! `<acl>`, `<audit>`), parsed as the receiving role parses them and re-serialised.

use minidom::Element;

use crate::core::access::{
    AccessDecision, AccessRequest, AclState, AuditPage, DeviceFingerprint, OwnerKey, OwnerKeys,
    SignedGrant, SignedRevoke,
};

use super::{bare, element, rewire, round_trip};

/// The access wire elements, by root name: `<request>`, `<grant>`, `<revoke>`, `<decision>`,
/// `<owner>`, `<acl>`, `<audit>`. Each parses as the receiving role parses it and re-serialises.
/// A `<session>` root holds several, handled in order as a provider would: `<owner>` keys
/// registered first make the signatures of later `<grant>`s and `<revoke>`s verifiable.
pub fn access(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Some(network) = bare("home@home.test") else {
        return;
    };
    let mut owners = OwnerKeys::new(network);
    if el.name() == "session" {
        for child in el.children().take(64) {
            access_element(child.clone(), &mut owners);
        }
    } else {
        access_element(el, &mut owners);
    }
}

fn access_element(el: Element, owners: &mut OwnerKeys) {
    match el.name() {
        "request" => {
            let Ok(req) = AccessRequest::parse(el) else {
                return;
            };
            round_trip(&req, |e| AccessRequest::parse(e).ok(), "request");
        }
        "grant" => {
            let Ok(grant) = SignedGrant::parse(el) else {
                return;
            };
            round_trip(&grant, |e| SignedGrant::parse(e).ok(), "grant");
            // The signed bytes depend on the fields only, never on how the XML was written.
            let again = SignedGrant::parse(rewire(&grant.clone().into())).ok();
            assert_eq!(
                again.map(|g| g.signed_bytes()),
                Some(grant.signed_bytes()),
                "grant signed bytes"
            );
            let _ = owners.verify_grant(&grant);
        }
        "revoke" => {
            let Ok(revoke) = SignedRevoke::parse(el) else {
                return;
            };
            round_trip(&revoke, |e| SignedRevoke::parse(e).ok(), "revoke");
            let again = SignedRevoke::parse(rewire(&revoke.clone().into())).ok();
            assert_eq!(
                again.map(|r| r.signed_bytes()),
                Some(revoke.signed_bytes()),
                "revoke signed bytes"
            );
            let _ = owners.verify_revoke(&revoke);
        }
        "decision" => {
            let Ok(decision) = AccessDecision::try_from(el) else {
                return;
            };
            round_trip(&decision, |e| AccessDecision::try_from(e).ok(), "decision");
        }
        "owner" => {
            let Ok(owner) = OwnerKey::try_from(el) else {
                return;
            };
            round_trip(&owner, |e| OwnerKey::try_from(e).ok(), "owner");
            if let Ok(fp) = owners.add(&owner.key) {
                assert_eq!(fp, DeviceFingerprint::from_spki(&owner.key));
            }
        }
        "acl" => {
            let Ok(acl) = AclState::try_from(el) else {
                return;
            };
            round_trip(&acl, |e| AclState::try_from(e).ok(), "acl");
            for entry in &acl.entries {
                let _ = entry.grant.validate();
                let _ = owners.verify_grant(&entry.grant);
            }
        }
        "audit" => {
            let Ok(page) = AuditPage::try_from(el) else {
                return;
            };
            round_trip(&page, |e| AuditPage::try_from(e).ok(), "audit");
        }
        _ => {}
    }
}
