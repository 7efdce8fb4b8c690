//! The access protocol between devices, beyond the signed payloads of `xml.rs`:
//!
//! ```xml
//! <!-- owner device → provider, iq set inside the end-to-end tunnel: register my approval key -->
//! <owner xmlns='urn:xmpp:tmp:pmn:access:0' key='<base64 DER SPKI>'/>
//! <!-- provider's answer to <owner/>, <grant/>, <revoke/> and to an <acl/> get: its ACL state -->
//! <acl xmlns='urn:xmpp:tmp:pmn:access:0' version='7'>
//!   <entry active='true' revoked-at='…'><grant …/></entry>
//! </acl>
//! <!-- owner → provider, iq get: audit records after sequence number 12 -->
//! <audit xmlns='urn:xmpp:tmp:pmn:access:0' after='12'/>
//! <!-- owner phone → guest phone, headline message: the answer to a <request/> -->
//! <decision xmlns='urn:xmpp:tmp:pmn:access:0' result='approved' grant='…' expires='…'>
//!   <device jid='home@home.test' fingerprint='<hex>'/>
//! </decision>
//! ```
//!
//! The `<decision>` is only a notice: the guest pins the listed device keys so that its tunnel to
//! the host's TV can authenticate the TV. The grant itself never leaves the host network, and the
//! provider enforces nothing the guest says.

use std::borrow::Cow;

use xmpp_parsers::jid::BareJid;
use xso::text::Base64;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use super::{AuditKind, AuditRecord, DeviceFingerprint, GrantId, SignedGrant, NS_ACCESS};

/// How many `<device>` entries a `<decision>` may list (a household, not a data centre).
pub const MAX_DECISION_DEVICES: usize = 64;
/// How many audit records one `<audit>` answer carries at most.
pub const MAX_AUDIT_PAGE: usize = 200;

/// An owner device registers an owner-approval key with a provider, or removes one (iq set,
/// through the tunnel). Only the first key of a household, and keys an owner device registers,
/// are accepted ([`super::Acl::add_owner_key`]).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "owner", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct OwnerKey {
    /// DER `SubjectPublicKeyInfo` of the P-256 owner-approval key.
    #[xml(attribute(codec = Base64))]
    pub key: Vec<u8>,
    /// The TLS key of the device that holds it, when an owner registers another phone's key;
    /// absent: the registering device's own.
    #[xml(attribute(default))]
    pub device: Option<DeviceFingerprint>,
    /// Remove the key instead (its grants end everywhere it is removed).
    #[xml(attribute(default))]
    pub remove: bool,
}

impl OwnerKey {
    /// Registers `key` as held by the sending device.
    pub fn register(key: Vec<u8>) -> Self {
        OwnerKey {
            key,
            device: None,
            remove: false,
        }
    }
}

/// One grant of a provider's ACL as the owner lists it.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "entry", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct AclEntry {
    /// Whether it allows calls now.
    #[xml(attribute)]
    pub active: bool,
    /// When it was revoked (provider's clock), if it was.
    #[xml(attribute(name = "revoked-at", default))]
    pub revoked_at: Option<u64>,
    /// The grant as the provider holds it.
    #[xml(child)]
    pub grant: SignedGrant,
}

/// A provider's ACL: its version and (for a get) its grants.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "acl", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct AclState {
    /// The ACL version; new grants must carry at least this.
    #[xml(attribute(default))]
    pub version: u64,
    /// The grants (empty in answers to `<owner/>`, `<grant/>` and `<revoke/>`).
    #[xml(child(n = ..))]
    pub entries: Vec<AclEntry>,
}

/// The owner keys a provider holds (iq get with no children; the result lists them, each with the
/// device that holds it when known). At most [`super::MAX_OWNER_KEYS`] (and the configured ones).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "owners", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct OwnerList {
    /// The keys.
    #[xml(child(n = ..))]
    pub owners: Vec<OwnerKey>,
}

impl xmpp_parsers::iq::IqSetPayload for OwnerKey {}
impl xmpp_parsers::iq::IqGetPayload for OwnerList {}
impl xmpp_parsers::iq::IqResultPayload for OwnerList {}
impl xmpp_parsers::iq::IqGetPayload for AclState {}
impl xmpp_parsers::iq::IqResultPayload for AclState {}

/// Audit records after a sequence number (iq get), or the records themselves (result).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "audit", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct AuditPage {
    /// Records with a sequence number above this one.
    #[xml(attribute(default))]
    pub after: u64,
    /// The records (empty in the query).
    #[xml(child(n = ..))]
    pub records: Vec<AuditEntry>,
}

impl xmpp_parsers::iq::IqGetPayload for AuditPage {}
impl xmpp_parsers::iq::IqResultPayload for AuditPage {}

/// One audit record on the wire.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "record", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct AuditEntry {
    /// Sequence number.
    #[xml(attribute)]
    pub seq: u64,
    /// First occurrence.
    #[xml(attribute)]
    pub at: u64,
    /// Last occurrence.
    #[xml(attribute(name = "last-at"))]
    pub last_at: u64,
    /// Occurrences folded into this record.
    #[xml(attribute)]
    pub count: u32,
    /// What happened.
    #[xml(attribute)]
    pub kind: AuditKind,
    /// Who.
    #[xml(attribute)]
    pub subject: String,
    /// The device fingerprint (hex), when known.
    #[xml(attribute(default))]
    pub device: Option<String>,
    /// The grant involved.
    #[xml(attribute(default))]
    pub grant: Option<String>,
    /// The method, for use and deny.
    #[xml(attribute(default))]
    pub method: Option<String>,
    /// A short detail.
    #[xml(text)]
    pub detail: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        AuditEntry {
            seq: r.seq,
            at: r.at,
            last_at: r.last_at,
            count: r.count,
            kind: r.kind,
            subject: r.subject,
            device: r.device,
            grant: r.grant_id,
            method: r.method,
            detail: r.detail,
        }
    }
}

impl From<AuditEntry> for AuditRecord {
    fn from(e: AuditEntry) -> Self {
        AuditRecord {
            seq: e.seq,
            at: e.at,
            last_at: e.last_at,
            count: e.count,
            kind: e.kind,
            subject: e.subject,
            device: e.device,
            grant_id: e.grant,
            method: e.method,
            detail: e.detail,
        }
    }
}

impl AuditKind {
    /// The wire name (`request`, `grant`, `use`, `deny`, `revoke`).
    pub fn name(self) -> &'static str {
        match self {
            AuditKind::Request => "request",
            AuditKind::Grant => "grant",
            AuditKind::Use => "use",
            AuditKind::Deny => "deny",
            AuditKind::Revoke => "revoke",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            AuditKind::Request,
            AuditKind::Grant,
            AuditKind::Use,
            AuditKind::Deny,
            AuditKind::Revoke,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

impl FromXmlText for AuditKind {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        AuditKind::from_name(&data).ok_or(xso::error::Error::Other("unknown audit kind"))
    }
}

impl AsXmlText for AuditKind {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(self.name()))
    }
}

/// The owner's answer to a guest's request.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "decision", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct Decision {
    /// `approved` or `denied`.
    #[xml(attribute)]
    pub result: String,
    /// The device fingerprint the request named (so a guest with several requests knows which).
    #[xml(attribute(name = "for"))]
    pub for_device: DeviceFingerprint,
    /// The grant id, when approved.
    #[xml(attribute(default))]
    pub grant: Option<GrantId>,
    /// When the grant expires, when approved.
    #[xml(attribute(default))]
    pub expires: Option<u64>,
    /// The host's devices that hold the grant, with the keys to pin for them.
    #[xml(child(n = ..))]
    pub devices: Vec<DecisionDevice>,
    /// The owner's signature over the introduction (required on an approval).
    #[xml(child(default))]
    pub introduction: Option<super::Introduction>,
}

/// A host device named in a [`Decision`].
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "device", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct DecisionDevice {
    /// The host network (bare JID).
    #[xml(attribute)]
    pub jid: BareJid,
    /// The device's TLS key fingerprint.
    #[xml(attribute)]
    pub fingerprint: DeviceFingerprint,
}

/// `result` of an approving [`Decision`].
pub const APPROVED: &str = "approved";
/// `result` of a refusing [`Decision`].
pub const DENIED: &str = "denied";

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    #[test]
    fn decision_round_trips_and_rejects_unknown_attributes() {
        let d = Decision {
            result: APPROVED.into(),
            for_device: DeviceFingerprint([7; 32]),
            grant: Some(GrantId::new("g1").expect("id")),
            expires: Some(99),
            devices: vec![DecisionDevice {
                jid: "home@home.test".parse().expect("jid"),
                fingerprint: DeviceFingerprint([9; 32]),
            }],
            introduction: Some(super::super::Introduction {
                owner: vec![1, 2, 3],
                signature: vec![4, 5],
            }),
        };
        let el = Element::from(d.clone());
        assert_eq!(Decision::try_from(el).expect("parses"), d);
        let bad: Element = format!(
            "<decision xmlns='{NS_ACCESS}' result='approved' for='{}' evil='1'/>",
            "ab".repeat(32)
        )
        .parse()
        .expect("xml");
        assert!(Decision::try_from(bad).is_err());
    }

    #[test]
    fn audit_entry_round_trips() {
        let e = AuditEntry {
            seq: 3,
            at: 10,
            last_at: 12,
            count: 2,
            kind: AuditKind::Deny,
            subject: "eve@evil.test/x".into(),
            device: None,
            grant: None,
            method: Some("recorder.schedule".into()),
            detail: "out-of-scope".into(),
        };
        let page = AuditPage {
            after: 0,
            records: vec![e.clone()],
        };
        let back = AuditPage::try_from(Element::from(page)).expect("parses");
        assert_eq!(back.records, vec![e.clone()]);
        assert_eq!(AuditEntry::from(AuditRecord::from(e.clone())), e);
        let bad: Element = format!(
            "<audit xmlns='{NS_ACCESS}'><record seq='1' at='1' last-at='1' count='1' kind='steal' subject='x'/></audit>"
        )
        .parse()
        .expect("xml");
        assert!(AuditPage::try_from(bad).is_err());
    }
}
