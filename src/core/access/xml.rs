//! The wire elements of `urn:xmpp:tmp:pmn:access:0`, as `xso` structs:
//!
//! ```xml
//! <request xmlns='urn:xmpp:tmp:pmn:access:0' device='<hex SHA-256 of the guest device SPKI>'>
//!   <scope name='playback'/>
//!   <reason>Film night: play my video on your TV</reason>
//! </request>
//!
//! <grant xmlns='urn:xmpp:tmp:pmn:access:0' id='…' network='home@home.test' guest='romeo@friend.test'
//!        device='<hex>' not-before='1700000000' expires='1700007200' version='7' issuer='<hex>'
//!        signature='<base64 DER ECDSA P-256>'>
//!   <scope name='playback'/>
//! </grant>
//!
//! <revoke xmlns='urn:xmpp:tmp:pmn:access:0' id='…' network='home@home.test' version='8'
//!         issuer='<hex>' signature='<base64>'/>
//! ```
//!
//! Parsing is strict — unknown attributes, unknown children, unknown scopes, duplicate scopes and
//! oversize text are refused — because a `<request>` arrives from a stranger. Use the `parse`
//! functions: they run the derived parser *and* the checks a derive cannot express.
//! The guest's JID is never in the payload: it is the stanza's `from`.

use std::borrow::Cow;
use std::fmt;

use minidom::Element;
use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;
use xso::text::Base64;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use super::grant::MAX_GRANT_LIFETIME_SECS;
use super::{AccessError, DeviceFingerprint, Scope, NS_ACCESS};

/// Longest `<reason>` accepted, in bytes: a sentence for the owner to read, not a document.
pub const MAX_REASON_BYTES: usize = 512;
/// Longest item id accepted, in bytes.
pub const MAX_ITEM_ID_BYTES: usize = 256;
/// Longest grant id accepted (characters of `A-Z a-z 0-9 _ -`).
const MAX_GRANT_ID_LEN: usize = 64;
/// A DER ECDSA P-256 signature is at most 72 bytes; anything much longer is not one.
const MAX_SIGNATURE_BYTES: usize = 80;

fn other(msg: &'static str) -> xso::error::Error {
    xso::error::Error::Other(msg)
}

/// A grant id: 1–64 characters of `A-Z a-z 0-9 _ -` (safe in attributes, file names and logs).
///
/// ```
/// use pmn::core::access::GrantId;
/// let id = GrantId::random();
/// assert_eq!(id.as_str().len(), 32);
/// assert!(GrantId::new("g-1").is_ok());
/// assert!(GrantId::new("a b").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantId(String);

impl GrantId {
    /// Checks and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, AccessError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_GRANT_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(GrantId(id))
        } else {
            Err(AccessError::Malformed(
                "grant id must be 1-64 characters of A-Z a-z 0-9 _ -".to_owned(),
            ))
        }
    }

    /// A fresh random id (128 bits, hex): ids must never repeat, since a repeated id is a replay.
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        GrantId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GrantId {
    type Error = AccessError;
    fn try_from(s: String) -> Result<Self, AccessError> {
        GrantId::new(s)
    }
}

impl From<GrantId> for String {
    fn from(id: GrantId) -> String {
        id.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromXmlText for GrantId {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        GrantId::new(data).map_err(|_| other("invalid grant id"))
    }
}

impl AsXmlText for GrantId {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(&self.0))
    }
}

/// The id of one media library item (as `library.item` takes it): 1–256 bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemId(String);

impl ItemId {
    /// Checks and wraps an item id.
    pub fn new(id: impl Into<String>) -> Result<Self, AccessError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_ITEM_ID_BYTES || id.chars().any(char::is_control) {
            return Err(AccessError::Malformed(format!(
                "item id must be 1-{MAX_ITEM_ID_BYTES} bytes without control characters"
            )));
        }
        Ok(ItemId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ItemId {
    type Error = AccessError;
    fn try_from(s: String) -> Result<Self, AccessError> {
        ItemId::new(s)
    }
}

impl From<ItemId> for String {
    fn from(id: ItemId) -> String {
        id.0
    }
}

impl FromXmlText for ItemId {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        ItemId::new(data).map_err(|_| other("invalid item id"))
    }
}

impl AsXmlText for ItemId {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(&self.0))
    }
}

/// Why the guest asks, shown to the owner: at most [`MAX_REASON_BYTES`] bytes, no control characters
/// except line breaks and tabs (so it cannot fake UI lines with escape sequences).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reason(String);

impl Reason {
    /// Checks and wraps a reason.
    pub fn new(text: impl Into<String>) -> Result<Self, AccessError> {
        let text = text.into();
        if text.len() > MAX_REASON_BYTES {
            return Err(AccessError::Malformed(format!(
                "reason longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(AccessError::Malformed(
                "reason contains control characters".to_owned(),
            ));
        }
        Ok(Reason(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromXmlText for Reason {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        Reason::new(data).map_err(|_| other("reason too long or contains control characters"))
    }
}

impl AsXmlText for Reason {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(&self.0))
    }
}

/// Scopes must be non-empty and without duplicates; `library-item` comes with an item, and an item
/// only with `library-item` (a grant must never be more permissive than it reads).
fn check_scopes(scopes: &[Scope], item: Option<&ItemId>) -> Result<(), AccessError> {
    if scopes.is_empty() {
        return Err(AccessError::Malformed("no scope".to_owned()));
    }
    for (i, s) in scopes.iter().enumerate() {
        if scopes[..i].contains(s) {
            return Err(AccessError::Malformed(format!("scope `{s}` given twice")));
        }
    }
    let wants_item = scopes.iter().any(|s| s.targets_one_item());
    match (wants_item, item.is_some()) {
        (true, false) => Err(AccessError::Malformed(
            "scope `library-item` needs an item".to_owned(),
        )),
        (false, true) => Err(AccessError::Malformed(
            "an item is only allowed with scope `library-item`".to_owned(),
        )),
        _ => Ok(()),
    }
}

fn from_element<T>(elem: Element, what: &str) -> Result<T, AccessError>
where
    T: TryFrom<Element, Error = xso::error::FromElementError>,
{
    T::try_from(elem).map_err(|e| AccessError::Malformed(format!("<{what}>: {e}")))
}

/// A guest's request for access (sent by the guest's phone to the host network).
///
/// ```
/// use pmn::core::access::{AccessRequest, DeviceFingerprint, Scope, NS_ACCESS};
/// let xml = format!("<request xmlns='{NS_ACCESS}' device='{}'><scope name='playback'/></request>",
///                   "ab".repeat(32));
/// let req = AccessRequest::parse(xml.parse().unwrap()).unwrap();
/// assert_eq!(req.scopes, vec![Scope::Playback]);
/// ```
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "request", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct AccessRequest {
    /// The asking device's key fingerprint. Informational until the tunnel confirms it: the owner
    /// sees it, and the grant binds it.
    #[xml(attribute)]
    pub device: DeviceFingerprint,
    /// The one item asked for, with scope `library-item`.
    #[xml(attribute(default))]
    pub item: Option<ItemId>,
    /// The scopes wanted.
    #[xml(extract(n = .., namespace = NS_ACCESS, name = "scope", fields(attribute(name = "name", type_ = Scope))))]
    pub scopes: Vec<Scope>,
    /// Why, for the owner to read.
    #[xml(extract(default, namespace = NS_ACCESS, name = "reason", fields(text(type_ = Reason))))]
    pub reason: Option<Reason>,
}

impl AccessRequest {
    /// A request for `scopes` from `device`.
    pub fn new(device: DeviceFingerprint, scopes: Vec<Scope>, reason: Option<Reason>) -> Self {
        AccessRequest {
            device,
            item: None,
            scopes,
            reason,
        }
    }

    /// Parses and checks a `<request>`.
    pub fn parse(elem: Element) -> Result<Self, AccessError> {
        let req: AccessRequest = from_element(elem, "request")?;
        req.validate()?;
        Ok(req)
    }

    /// The checks beyond the element's shape (scopes non-empty, no duplicates, item rules).
    pub fn validate(&self) -> Result<(), AccessError> {
        check_scopes(&self.scopes, self.item.as_ref())
    }
}

impl xmpp_parsers::iq::IqSetPayload for AccessRequest {}

/// A grant signed by an owner device (see [`super::GrantDraft::sign`] and
/// [`super::OwnerKeys::verify_grant`]). Every field except `signature` is signed; the signed bytes
/// are [`SignedGrant::signed_bytes`], independent of how the XML was serialised.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "grant", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct SignedGrant {
    /// Unique id; a second grant with the same id is a replay.
    #[xml(attribute)]
    pub id: GrantId,
    /// The network (bare JID) whose devices honour the grant.
    #[xml(attribute)]
    pub network: BareJid,
    /// The guest's bare JID (his own network identifier).
    #[xml(attribute)]
    pub guest: BareJid,
    /// The guest device's key fingerprint; calls from other devices of the guest are refused.
    #[xml(attribute)]
    pub device: DeviceFingerprint,
    /// Valid from (seconds since the epoch, inclusive).
    #[xml(attribute(name = "not-before"))]
    pub not_before: u64,
    /// Valid until (seconds since the epoch, exclusive).
    #[xml(attribute)]
    pub expires: u64,
    /// The ACL version the issuer saw; lower than the provider's is a rollback.
    #[xml(attribute)]
    pub version: u64,
    /// Fingerprint of the owner-approval key that signed.
    #[xml(attribute)]
    pub issuer: DeviceFingerprint,
    /// The one item of a `library-item` grant.
    #[xml(attribute(default))]
    pub item: Option<ItemId>,
    /// What the guest may do.
    #[xml(extract(n = .., namespace = NS_ACCESS, name = "scope", fields(attribute(name = "name", type_ = Scope))))]
    pub scopes: Vec<Scope>,
    /// DER ECDSA P-256 / SHA-256 over [`SignedGrant::signed_bytes`].
    #[xml(attribute(codec = Base64))]
    pub signature: Vec<u8>,
}

impl SignedGrant {
    /// Parses a `<grant>` and checks its fields (not its signature: see
    /// [`super::OwnerKeys::verify_grant`]).
    pub fn parse(elem: Element) -> Result<Self, AccessError> {
        let grant: SignedGrant = from_element(elem, "grant")?;
        grant.validate()?;
        Ok(grant)
    }

    /// The checks that need no key and no clock: scopes, item, time window, lifetime, guest.
    pub fn validate(&self) -> Result<(), AccessError> {
        check_scopes(&self.scopes, self.item.as_ref())?;
        if self.expires <= self.not_before {
            return Err(AccessError::Malformed(format!(
                "grant {}: expires before it becomes valid",
                self.id
            )));
        }
        if self.expires - self.not_before > MAX_GRANT_LIFETIME_SECS {
            return Err(AccessError::Malformed(format!(
                "grant {}: longer than {MAX_GRANT_LIFETIME_SECS} s",
                self.id
            )));
        }
        if self.guest == self.network {
            return Err(AccessError::Malformed(
                "a grant to the network itself is meaningless".to_owned(),
            ));
        }
        if self.signature.len() > MAX_SIGNATURE_BYTES {
            return Err(AccessError::Malformed("signature too long".to_owned()));
        }
        Ok(())
    }

    /// The canonical bytes the issuer signs. See `grant.rs` for the encoding and why.
    pub fn signed_bytes(&self) -> Vec<u8> {
        super::grant::grant_signed_bytes(self)
    }
}

impl xmpp_parsers::iq::IqSetPayload for SignedGrant {}

/// A revocation signed by an owner device: grant `id` ends at once, and the provider's ACL version
/// moves to at least `version` (and always past its current one), so the revoked grant — or any
/// other grant issued before — can never be installed again.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "revoke", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct SignedRevoke {
    /// The revoked grant.
    #[xml(attribute)]
    pub id: GrantId,
    /// The network whose ACL changes.
    #[xml(attribute)]
    pub network: BareJid,
    /// The new ACL version (the provider takes `max(current + 1, version)`).
    #[xml(attribute)]
    pub version: u64,
    /// Fingerprint of the owner-approval key that signed.
    #[xml(attribute)]
    pub issuer: DeviceFingerprint,
    /// DER ECDSA P-256 / SHA-256 over [`SignedRevoke::signed_bytes`].
    #[xml(attribute(codec = Base64))]
    pub signature: Vec<u8>,
}

impl SignedRevoke {
    /// Parses a `<revoke>` (not its signature: see [`super::OwnerKeys::verify_revoke`]).
    pub fn parse(elem: Element) -> Result<Self, AccessError> {
        let revoke: SignedRevoke = from_element(elem, "revoke")?;
        if revoke.signature.len() > MAX_SIGNATURE_BYTES {
            return Err(AccessError::Malformed("signature too long".to_owned()));
        }
        Ok(revoke)
    }

    /// The canonical bytes the issuer signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        super::grant::revoke_signed_bytes(self)
    }
}

impl xmpp_parsers::iq::IqSetPayload for SignedRevoke {}
