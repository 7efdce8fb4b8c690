//! Entity capabilities: building our own (XEP-0115 `<c/>` and XEP-0390 ecaps2), verifying and
//! caching others'.
//!
//! The hash inputs are computed here, not with `xmpp_parsers::caps::compute_disco` /
//! `xmpp_parsers::ecaps2::compute_disco` (0.23), because those disagree with the specifications on
//! input that other clients do send:
//!
//! - XEP-0115 §5.1 step 7 sorts a form's fields by `var`; `caps::compute_disco` hashes them in
//!   document order, so a correct hash from a client that does not send its fields sorted is
//!   refused. It also hashes a form without a hidden FORM_TYPE (§5.4 step 3.6: ignore that form),
//!   and as it reads a parsed `DiscoInfoResult` (features in a `BTreeSet`) it cannot see the
//!   duplicates that make a response ill-formed (§5.4 steps 3.3–3.5).
//! - XEP-0390 §4.1 sorts the FORM_TYPE field among the other fields; `ecaps2::compute_disco` always
//!   puts it first, which differs as soon as a field's `var` sorts before `FORM_TYPE` (e.g. `A`, or
//!   `FOO`). It also does not reject what §4.1 steps 1–2 reject (foreign children of `<query/>`,
//!   `<reported/>`/`<item/>` in a form).
//!
//! What to send upstream to xmpp-parsers: in `caps::compute_extensions`, skip forms whose FORM_TYPE
//! is missing or not hidden and sort `extension.fields` by `var` before encoding them; in
//! `ecaps2::compute_extensions`, encode FORM_TYPE as an ordinary field inside the sorted field list
//! instead of prepending it; and offer both algorithms over the raw `<query/>` element (or a
//! duplicate-preserving view of it) so that callers can apply XEP-0115 §5.4 steps 3.3–3.5. The
//! tests below carry the specifications' examples plus the cases where 0.23 differs.
//!
//! The cache holds only answers that verified, keyed by (scheme, algorithm, hash), and is bounded:
//! the hashes come from anyone's presence.

use std::collections::{BTreeSet, HashMap, HashSet};

use base64::Engine;
use minidom::Element;
use xmpp_parsers::caps::{hash_caps, Caps};
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::ecaps2::{hash_ecaps2, ECaps2};
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::ns;
use xmpp_parsers::presence::Presence;

use super::{IDENTITY_CATEGORY, IDENTITY_TYPE};

/// The caps `node` pmn devices announce.
pub const CAPS_NODE: &str = "https://pmn.invalid/caps";

/// How many verified disco#info results a [`CapsCache`] keeps by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 256;

/// Most hashes read from one presence: a `<c/>` with hundreds of `<hash/>` children must not make
/// us hash an answer hundreds of times.
const MAX_KEYS_PER_PRESENCE: usize = 4;

/// The algorithms our own ecaps2 element carries: the one XEP-0390 §4.2 requires support for and
/// a second family, as the XEP's own examples do.
const OWN_ECAPS2_ALGOS: [Algo; 2] = [Algo::Sha_256, Algo::Sha3_256];

/// XEP-0128 data forms namespace.
const NS_DATA_FORMS: &str = "jabber:x:data";

/// The disco#info a device answers: for a provider, the `automation/service` identity named after the
/// device and one feature per service; a controller passes `name = None` and no service features
/// (spec §6: a controller never announces a service).
pub fn disco_info_for(name: Option<&str>, features: &[&str]) -> DiscoInfoResult {
    let identities = match name {
        Some(name) => vec![Identity {
            category: IDENTITY_CATEGORY.into(),
            type_: IDENTITY_TYPE.into(),
            lang: None,
            name: Some(name.into()),
        }],
        None => vec![Identity {
            category: "client".into(),
            type_: "phone".into(),
            lang: None,
            name: None,
        }],
    };
    let mut all: BTreeSet<String> = features.iter().map(|f| f.to_string()).collect();
    all.insert(ns::DISCO_INFO.into());
    all.insert(ns::CAPS.into());
    all.insert(ns::ECAPS2.into());
    all.insert(ns::PING.into());
    DiscoInfoResult {
        node: None,
        identities,
        features: all,
        extensions: vec![],
    }
}

/// The XEP-0115 `<c/>` element announcing `info` (SHA-1, as every XEP-0115 client understands).
pub fn caps_for(info: &DiscoInfoResult) -> Caps {
    Caps::new(CAPS_NODE, own_hash(info, Scheme::Caps, Algo::Sha_1))
}

/// The XEP-0390 `<c xmlns='urn:xmpp:caps'/>` element announcing `info` (SHA-256 and SHA3-256).
pub fn ecaps2_for(info: &DiscoInfoResult) -> ECaps2 {
    ECaps2::new(
        OWN_ECAPS2_ALGOS
            .iter()
            .map(|algo| own_hash(info, Scheme::Ecaps2, algo.clone()))
            .collect(),
    )
}

/// The available presence a device sends: both caps elements, so that XEP-0115-only and
/// XEP-0390-aware peers can each skip the disco#info query for a hash they know. The ecaps2 element
/// adds about 230 bytes to each presence (measured in the tests), sent once per (re)connection.
pub fn presence_for(info: &DiscoInfoResult) -> Presence {
    Presence::available()
        .with_payload(caps_for(info))
        .with_payload(ecaps2_for(info))
}

/// Whether `node` is one of the XEP-0390 hash nodes (`urn:xmpp:caps#<algo>.<hash>`) of `info`, so
/// that a disco#info query for it is answered with the node echoed. (The XEP-0115 node is
/// `<CAPS_NODE>#<ver>`, which the roles compare with their precomputed `ver`.)
pub fn is_own_ecaps2_node(info: &DiscoInfoResult, node: &str) -> bool {
    if !node.starts_with(ns::ECAPS2) {
        return false; // not worth hashing for
    }
    ecaps2_for(info)
        .hashes
        .into_iter()
        .any(|h| node == query_node(&CapsKey::from_ecaps2(h), None))
}

/// Our own info is built by [`disco_info_for`] and always hashes; the algorithms are fixed above.
fn own_hash(info: &DiscoInfoResult, scheme: Scheme, algo: Algo) -> Hash {
    let input = HashInput::from_info(info);
    match CapsKey::digest(scheme, &algo, &input) {
        Ok(hash) => Hash { algo, hash },
        Err(e) => {
            // Unreachable for what disco_info_for builds; announce an empty hash rather than panic
            // (peers then just ask disco#info).
            tracing::error!(error = %e, "own disco#info does not hash");
            Hash { algo, hash: vec![] }
        }
    }
}

/// Why a disco#info answer has no caps hash, so cannot be verified or cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IllFormed {
    /// Two identities with the same category, type, xml:lang and name (XEP-0115 §5.4 step 3.3).
    #[error("identity {0} appears twice")]
    DuplicateIdentity(String),
    /// Two features with the same `var` (XEP-0115 §5.4 step 3.4).
    #[error("feature {0} appears twice")]
    DuplicateFeature(String),
    /// Two forms with the same FORM_TYPE (XEP-0115 §5.4 step 3.5).
    #[error("two forms with FORM_TYPE {0}")]
    DuplicateFormType(String),
    /// A FORM_TYPE with different values, or two FORM_TYPE fields (XEP-0115 §5.4 step 3.5).
    #[error("a FORM_TYPE with conflicting values")]
    ConflictingFormType,
    /// A form field without `var`, or two fields with one `var`: no order to hash them in.
    #[error("form field {0:?} missing or repeated")]
    BadField(Option<String>),
    /// ecaps2 only: a form without a hidden FORM_TYPE (XEP-0390 §4.1 step 3).
    #[error("a form without a hidden FORM_TYPE")]
    MissingFormType,
    /// ecaps2 only: a child of `<query/>` that is not an identity, feature or form, or a form with
    /// `<reported/>`/`<item/>` (XEP-0390 §4.1 steps 1–2).
    #[error("unexpected <{0}/> in disco#info")]
    UnexpectedElement(String),
    /// The algorithm is not one we hash with (XEP-0390 forbids SHA-1, for one).
    #[error("unsupported hash algorithm {0}")]
    UnsupportedAlgo(String),
}

/// How XEP-0115 identities are ordered before hashing.
#[derive(Debug, Clone, Copy)]
enum IdentityOrder {
    /// §5.1 step 2: by category, then type, then xml:lang (then name). What we announce.
    Fields,
    /// By the joined `category/type/lang/name` strings, as several implementations do.
    Joined,
}

/// One identity as the hash algorithms read it (absent xml:lang and name are empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IdentityKey {
    category: String,
    type_: String,
    lang: String,
    name: String,
}

#[derive(Debug, Clone, Default)]
struct FieldInput {
    var: Option<String>,
    hidden: bool,
    values: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct FormInput {
    fields: Vec<FieldInput>,
    /// Name of a `<reported/>`/`<item/>` child, which XEP-0390 forbids.
    table: Option<String>,
}

impl FormInput {
    /// The value of the form's hidden FORM_TYPE: `Ok(None)` if it has none (a form to ignore for
    /// XEP-0115), an error if it has two or conflicting ones.
    fn form_type(&self) -> Result<Option<&str>, IllFormed> {
        let mut found: Option<&str> = None;
        let mut fields = 0;
        for field in self
            .fields
            .iter()
            .filter(|f| f.var.as_deref() == Some("FORM_TYPE"))
        {
            fields += 1;
            if !field.hidden {
                continue; // XEP-0068: a FORM_TYPE that is not hidden is no form type
            }
            for value in &field.values {
                match found {
                    Some(v) if v != value => return Err(IllFormed::ConflictingFormType),
                    _ => found = Some(value),
                }
            }
        }
        if fields > 1 {
            return Err(IllFormed::ConflictingFormType);
        }
        Ok(found)
    }

    /// The fields other than FORM_TYPE, checked to have distinct `var`s.
    fn data_fields(&self) -> Result<Vec<(&str, &FieldInput)>, IllFormed> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let Some(var) = field.var.as_deref() else {
                return Err(IllFormed::BadField(None));
            };
            if !seen.insert(var) {
                return Err(IllFormed::BadField(Some(var.to_owned())));
            }
            if var != "FORM_TYPE" {
                out.push((var, field));
            }
        }
        Ok(out)
    }
}

/// What the caps algorithms read from a disco#info answer, kept as received: duplicates are kept
/// (they make the answer ill-formed) and nothing is reordered.
#[derive(Debug, Clone, Default)]
pub struct HashInput {
    identities: Vec<IdentityKey>,
    features: Vec<String>,
    forms: Vec<FormInput>,
    /// Names of children of `<query/>` that are none of identity, feature, form.
    unexpected: Vec<String>,
}

impl HashInput {
    /// Reads a `<query xmlns='http://jabber.org/protocol/disco#info'/>` as received.
    pub fn from_element(query: &Element) -> Self {
        let mut input = HashInput::default();
        for child in query.children() {
            if child.is("identity", ns::DISCO_INFO) {
                input.identities.push(IdentityKey {
                    category: child.attr("category").unwrap_or_default().to_owned(),
                    type_: child.attr("type").unwrap_or_default().to_owned(),
                    lang: child
                        .attr_ns(minidom::rxml::Namespace::xml(), "lang")
                        .unwrap_or_default()
                        .to_owned(),
                    name: child.attr("name").unwrap_or_default().to_owned(),
                });
            } else if child.is("feature", ns::DISCO_INFO) {
                input
                    .features
                    .push(child.attr("var").unwrap_or_default().to_owned());
            } else if child.is("x", NS_DATA_FORMS) {
                input.forms.push(form_from_element(child));
            } else {
                input.unexpected.push(child.name().to_owned());
            }
        }
        input
    }

    /// Reads a parsed result (our own, or one built in tests). A parsed result has already lost
    /// duplicate features, so use [`HashInput::from_element`] for what came from the network.
    pub fn from_info(info: &DiscoInfoResult) -> Self {
        HashInput {
            identities: info
                .identities
                .iter()
                .map(|i| IdentityKey {
                    category: i.category.clone(),
                    type_: i.type_.clone(),
                    lang: i.lang.clone().unwrap_or_default(),
                    name: i.name.clone().unwrap_or_default(),
                })
                .collect(),
            features: info.features.iter().cloned().collect(),
            forms: info.extensions.iter().map(form_from_parsed).collect(),
            unexpected: vec![],
        }
    }

    fn check_duplicates(&self) -> Result<(), IllFormed> {
        let mut identities = HashSet::new();
        for i in &self.identities {
            if !identities.insert(i) {
                return Err(IllFormed::DuplicateIdentity(format!(
                    "{}/{}/{}/{}",
                    i.category, i.type_, i.lang, i.name
                )));
            }
        }
        let mut features = HashSet::new();
        for f in &self.features {
            if !features.insert(f) {
                return Err(IllFormed::DuplicateFeature(f.clone()));
            }
        }
        Ok(())
    }

    /// The XEP-0115 §5.1 verification string, or why the answer is ill-formed (§5.4 step 3).
    pub fn caps_string(&self) -> Result<Vec<u8>, IllFormed> {
        self.caps_string_ordered(IdentityOrder::Fields)
    }

    /// The verification strings a correct XEP-0115 peer may have hashed: the spec's, and the one
    /// with identities sorted as joined strings when that differs (see [`IdentityOrder`]).
    fn caps_strings(&self) -> Result<Vec<Vec<u8>>, IllFormed> {
        let spec = self.caps_string_ordered(IdentityOrder::Fields)?;
        let joined = self.caps_string_ordered(IdentityOrder::Joined)?;
        Ok(if joined == spec {
            vec![spec]
        } else {
            vec![spec, joined]
        })
    }

    fn caps_string_ordered(&self, order: IdentityOrder) -> Result<Vec<u8>, IllFormed> {
        self.check_duplicates()?;
        let mut identities: Vec<Vec<u8>> = self
            .identities
            .iter()
            .map(|i| format!("{}/{}/{}/{}", i.category, i.type_, i.lang, i.name).into_bytes())
            .collect();
        match order {
            // Step 2: by category, then type, then xml:lang (then name, for a total order).
            IdentityOrder::Fields => {
                let mut keyed: Vec<(&IdentityKey, Vec<u8>)> =
                    self.identities.iter().zip(identities).collect();
                keyed.sort();
                identities = keyed.into_iter().map(|(_, joined)| joined).collect();
            }
            IdentityOrder::Joined => identities.sort(),
        }
        let mut s = Vec::new();
        for i in identities {
            s.extend(i);
            s.push(b'<');
        }
        // Steps 4–5: features, sorted (i;octet is byte order, which is `str`'s order).
        let mut features: Vec<&String> = self.features.iter().collect();
        features.sort();
        for f in features {
            s.extend(item(f, b'<'));
        }
        // Steps 6–7: forms with a hidden FORM_TYPE, sorted by it; other forms are ignored
        // (§5.4 step 3.6).
        let mut forms = Vec::new();
        let mut types = HashSet::new();
        for form in &self.forms {
            let Some(form_type) = form.form_type()? else {
                tracing::debug!("caps: ignoring a form without a hidden FORM_TYPE");
                continue;
            };
            if !types.insert(form_type) {
                return Err(IllFormed::DuplicateFormType(form_type.to_owned()));
            }
            forms.push((form_type, form.data_fields()?));
        }
        forms.sort_by(|a, b| a.0.cmp(b.0));
        for (form_type, mut fields) in forms {
            s.extend(item(form_type, b'<'));
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (var, field) in fields {
                s.extend(item(var, b'<'));
                let mut values: Vec<&String> = field.values.iter().collect();
                values.sort();
                for v in values {
                    s.extend(item(v, b'<'));
                }
            }
        }
        Ok(s)
    }

    /// The XEP-0390 §4.1 hash function input, or why there is none.
    pub fn ecaps2_string(&self) -> Result<Vec<u8>, IllFormed> {
        const US: u8 = 0x1f; // after each item
        const RS: u8 = 0x1e; // after each identity / field
        const GS: u8 = 0x1d; // after each form
        const FS: u8 = 0x1c; // after each section
        if let Some(name) = self.unexpected.first() {
            return Err(IllFormed::UnexpectedElement(name.clone()));
        }
        // XEP-0390 does not define duplicates, XEP-0030 does not allow them: refuse, as for 0115.
        self.check_duplicates()?;
        let mut features: Vec<Vec<u8>> = self.features.iter().map(|f| item(f, US)).collect();
        let mut identities: Vec<Vec<u8>> = self
            .identities
            .iter()
            .map(|i| {
                let mut b = Vec::new();
                for part in [&i.category, &i.type_, &i.lang, &i.name] {
                    b.extend(item(part, US));
                }
                b.push(RS);
                b
            })
            .collect();
        let mut forms: Vec<Vec<u8>> = Vec::with_capacity(self.forms.len());
        let mut types = HashSet::new();
        for form in &self.forms {
            if let Some(name) = &form.table {
                return Err(IllFormed::UnexpectedElement(name.clone()));
            }
            let form_type = form.form_type()?.ok_or(IllFormed::MissingFormType)?;
            if !types.insert(form_type) {
                return Err(IllFormed::DuplicateFormType(form_type.to_owned()));
            }
            form.data_fields()?; // the same checks on `var`s as for XEP-0115
                                 // FORM_TYPE is an ordinary field here, sorted with the others.
            let mut fields: Vec<Vec<u8>> = form
                .fields
                .iter()
                .map(|field| {
                    let mut values: Vec<Vec<u8>> =
                        field.values.iter().map(|v| item(v, US)).collect();
                    values.sort();
                    let mut b = item(field.var.as_deref().unwrap_or_default(), US);
                    b.extend(values.concat());
                    b.push(RS);
                    b
                })
                .collect();
            fields.sort();
            let mut b = fields.concat();
            b.push(GS);
            forms.push(b);
        }
        let mut s = Vec::new();
        for section in [&mut features, &mut identities, &mut forms] {
            section.sort();
            s.extend(section.concat());
            s.push(FS);
        }
        Ok(s)
    }
}

/// `text` followed by the separator `sep`: the unit both hash inputs are built of.
fn item(text: &str, sep: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(text.len() + 1);
    b.extend_from_slice(text.as_bytes());
    b.push(sep);
    b
}

fn form_from_element(x: &Element) -> FormInput {
    let mut form = FormInput::default();
    for child in x.children() {
        if child.is("field", NS_DATA_FORMS) {
            form.fields.push(FieldInput {
                var: child.attr("var").map(str::to_owned),
                hidden: child.attr("type") == Some("hidden"),
                values: child
                    .children()
                    .filter(|v| v.is("value", NS_DATA_FORMS))
                    .map(|v| v.text())
                    .collect(),
            });
        } else if child.is("reported", NS_DATA_FORMS) || child.is("item", NS_DATA_FORMS) {
            form.table = Some(child.name().to_owned());
        }
    }
    form
}

fn form_from_parsed(form: &DataForm) -> FormInput {
    FormInput {
        fields: form
            .fields
            .iter()
            .map(|f| FieldInput {
                var: f.var.clone(),
                hidden: f.type_ == xmpp_parsers::data_forms::FieldType::Hidden,
                values: f.values.clone(),
            })
            .collect(),
        table: None,
    }
}

/// Which caps protocol a hash belongs to: the same algorithm over different inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// XEP-0115 `<c xmlns='http://jabber.org/protocol/caps'/>`.
    Caps,
    /// XEP-0390 `<c xmlns='urn:xmpp:caps'/>`.
    Ecaps2,
}

/// One announced hash of a device's disco#info: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapsKey {
    /// The protocol the hash belongs to.
    pub scheme: Scheme,
    /// The hash algorithm.
    pub algo: Algo,
    /// The digest.
    pub hash: Vec<u8>,
}

impl CapsKey {
    fn from_caps(caps: &Caps) -> Self {
        CapsKey {
            scheme: Scheme::Caps,
            algo: caps.hash.clone(),
            hash: caps.ver.clone(),
        }
    }

    fn from_ecaps2(hash: Hash) -> Self {
        CapsKey {
            scheme: Scheme::Ecaps2,
            algo: hash.algo,
            hash: hash.hash,
        }
    }

    /// The hash we announce for `input`: the specification's input only.
    fn digest(scheme: Scheme, algo: &Algo, input: &HashInput) -> Result<Vec<u8>, IllFormed> {
        let data = match scheme {
            Scheme::Caps => input.caps_string()?,
            Scheme::Ecaps2 => input.ecaps2_string()?,
        };
        Self::hash_of(scheme, algo, &data)
    }

    fn hash_of(scheme: Scheme, algo: &Algo, data: &[u8]) -> Result<Vec<u8>, IllFormed> {
        match scheme {
            Scheme::Caps => hash_caps(data, algo.clone())
                .map(|h| h.hash)
                .map_err(IllFormed::UnsupportedAlgo),
            Scheme::Ecaps2 => hash_ecaps2(data, algo.clone())
                .map(|h| h.hash)
                .map_err(|e| IllFormed::UnsupportedAlgo(e.to_string())),
        }
    }

    /// Whether `input` hashes to this key; `Err` if the answer is ill-formed (never cache it).
    ///
    /// A XEP-0115 hash is also accepted over identities sorted as joined strings, which is what
    /// slixmpp 1.17 computes (`sorted('/'.join(i) …)`): the two orders differ only when a
    /// category, type or xml:lang holds a character below `/` (`en` and `en-US`), and either is a
    /// hash of the same content, so accepting both costs no security.
    pub fn verify(&self, input: &HashInput) -> Result<bool, IllFormed> {
        let inputs = match self.scheme {
            Scheme::Caps => input.caps_strings()?,
            Scheme::Ecaps2 => vec![input.ecaps2_string()?],
        };
        for data in inputs {
            if Self::hash_of(self.scheme, &self.algo, &data)? == self.hash {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether we can compute this key's hash, and its length is the algorithm's: others are never
    /// queried for or cached.
    fn usable(&self) -> bool {
        let len = match (&self.scheme, &self.algo) {
            (Scheme::Caps, Algo::Sha_1) => 20,
            (_, Algo::Sha_256 | Algo::Sha3_256 | Algo::Blake2b_256) => 32,
            (_, Algo::Sha_512 | Algo::Sha3_512 | Algo::Blake2b_512) => 64,
            _ => return false,
        };
        self.hash.len() == len
    }
}

/// The node to ask disco#info for `key` (XEP-0115 §6.2 / XEP-0390 §4.3).
fn query_node(key: &CapsKey, legacy_node: Option<&str>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key.hash);
    match key.scheme {
        Scheme::Caps => format!("{}#{b64}", legacy_node.unwrap_or_default()),
        Scheme::Ecaps2 => format!("{}#{}.{b64}", ns::ECAPS2, String::from(key.algo.clone())),
    }
}

/// The hashes one presence announced, strongest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    keys: Vec<CapsKey>,
    /// The XEP-0115 `node`, needed to ask for a [`Scheme::Caps`] key.
    node: Option<String>,
}

impl Advertised {
    /// The caps a presence carries, if any usable: ecaps2 hashes (kept in the order sent), then the
    /// XEP-0115 hash; at most a few, unknown algorithms and wrong lengths skipped.
    pub fn from_presence(presence: &Presence) -> Option<Self> {
        let mut keys = Vec::new();
        let mut node = None;
        if let Some(ecaps2) = presence
            .payloads
            .iter()
            .find(|p| p.is("c", ns::ECAPS2))
            .and_then(|p| ECaps2::try_from(p.clone()).ok())
        {
            keys.extend(ecaps2.hashes.into_iter().map(CapsKey::from_ecaps2));
        }
        if let Some(caps) = presence
            .payloads
            .iter()
            .find(|p| p.is("c", ns::CAPS))
            .and_then(|p| Caps::try_from(p.clone()).ok())
        {
            keys.push(CapsKey::from_caps(&caps));
            node = Some(caps.node);
        }
        keys.retain(CapsKey::usable);
        keys.truncate(MAX_KEYS_PER_PRESENCE);
        (!keys.is_empty()).then_some(Advertised { keys, node })
    }

    /// Caps announcing the one XEP-0115 hash in `caps`.
    pub fn from_caps(caps: &Caps) -> Self {
        Advertised {
            keys: vec![CapsKey::from_caps(caps)],
            node: Some(caps.node.clone()),
        }
    }

    /// The hashes, strongest first.
    pub fn keys(&self) -> &[CapsKey] {
        &self.keys
    }

    /// The key a query is made for, and in-flight queries are shared by.
    pub fn primary(&self) -> Option<&CapsKey> {
        self.keys.first()
    }

    /// The disco#info `node` to query for [`Advertised::primary`].
    pub fn query_node(&self) -> Option<String> {
        self.primary()
            .map(|key| query_node(key, self.node.as_deref()))
    }
}

/// A disco#info answer as received: the parsed result pmn uses, and what the hash algorithms need
/// that parsing loses.
#[derive(Debug, Clone)]
pub struct DiscoAnswer {
    /// The parsed result.
    pub info: DiscoInfoResult,
    input: HashInput,
}

impl DiscoAnswer {
    /// Parses the `<query/>` of a disco#info result.
    ///
    /// xmpp-parsers refuses a whole result for an extension form it does not like (two FORM_TYPE
    /// fields, a FORM_TYPE with two values); pmn reads no form, so such a result is parsed without
    /// its forms instead, and the forms still count for the hash, which then refuses it
    /// ([`IllFormed::ConflictingFormType`]): the device is shown, its answer never cached.
    pub fn from_element(query: Element) -> Result<Self, xso::error::FromElementError> {
        let input = HashInput::from_element(&query);
        let info = match DiscoInfoResult::try_from(query.clone()) {
            Ok(info) => info,
            Err(e) => {
                let mut formless = query;
                if formless.remove_child("x", NS_DATA_FORMS).is_none() {
                    return Err(e);
                }
                while formless.remove_child("x", NS_DATA_FORMS).is_some() {}
                tracing::debug!(error = %e, "disco#info forms refused by the parser; read without them");
                DiscoInfoResult::try_from(formless)?
            }
        };
        Ok(DiscoAnswer { info, input })
    }

    /// An answer built from a parsed result (our own, or in tests).
    pub fn from_info(info: DiscoInfoResult) -> Self {
        DiscoAnswer {
            input: HashInput::from_info(&info),
            info,
        }
    }

    /// The hash input view.
    pub fn input(&self) -> &HashInput {
        &self.input
    }
}

/// What [`CapsCache::insert_verified`] did with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It hashed to at least one announced key and was cached under those that matched.
    Verified,
    /// It hashed to none of them (a forged or buggy answer): not cached.
    Mismatch,
    /// It cannot be hashed: not cached.
    IllFormed(IllFormed),
}

/// Verified disco#info results by announced hash, shared by all devices announcing the same hash.
///
/// Bounded: at most `capacity` entries, the least recently used one evicted first, because the keys
/// are whatever hashes anyone's presence carries.
#[derive(Debug)]
pub struct CapsCache {
    capacity: usize,
    entries: HashMap<CapsKey, (DiscoInfoResult, u64)>,
    /// Monotonic use counter: an entry's stamp is its last use.
    clock: u64,
    evicted: u64,
}

impl Default for CapsCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CACHE_CAPACITY)
    }
}

impl CapsCache {
    /// A cache of at most `capacity` results (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        CapsCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
            evicted: 0,
        }
    }

    /// The cached result for any of the announced hashes.
    pub fn get(&mut self, caps: &Advertised) -> Option<DiscoInfoResult> {
        self.clock += 1;
        let clock = self.clock;
        caps.keys.iter().find_map(|key| {
            self.entries.get_mut(key).map(|(info, used)| {
                *used = clock;
                info.clone()
            })
        })
    }

    /// Whether `key` is cached (without counting as a use).
    pub fn contains(&self, key: &CapsKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Verifies `answer` against every announced hash and caches it under those it matches.
    pub fn insert_verified(&mut self, caps: &Advertised, answer: &DiscoAnswer) -> Verdict {
        let mut matched = Vec::new();
        for key in &caps.keys {
            match key.verify(&answer.input) {
                Ok(true) => matched.push(key.clone()),
                Ok(false) => tracing::debug!(?key.scheme, algo = ?key.algo, "caps hash mismatch"),
                Err(e) => return Verdict::IllFormed(e),
            }
        }
        if matched.is_empty() {
            return Verdict::Mismatch;
        }
        let mut plain = answer.info.clone();
        // Answers to a caps query echo node='…#ver'; the cached content is node-independent.
        plain.node = None;
        for key in matched {
            self.insert(key, plain.clone());
        }
        Verdict::Verified
    }

    fn insert(&mut self, key: CapsKey, info: DiscoInfoResult) {
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            // O(capacity) scan: fine for a few hundred entries, filled at presence rate.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
                self.evicted += 1;
                tracing::debug!(
                    evicted = self.evicted,
                    "caps cache full: evicted the least recently used"
                );
            }
        }
        self.entries.insert(key, (info, self.clock));
    }

    /// Number of cached hashes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries were evicted to make room since the cache was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        match xml.parse() {
            Ok(el) => el,
            Err(e) => panic!("test XML does not parse: {e}"),
        }
    }

    fn b64(s: &str) -> Vec<u8> {
        match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(b) => b,
            Err(e) => panic!("bad base64 in test: {e}"),
        }
    }

    fn b64_of(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn sha1_b64(input: &[u8]) -> String {
        let hash = hash_caps(input, Algo::Sha_1)
            .map(|h| h.hash)
            .unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(hash)
    }

    const XEP0115_5_2: &str = "<query xmlns='http://jabber.org/protocol/disco#info' \
        node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
        <identity category='client' name='Exodus 0.9.1' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/></query>";

    /// XEP-0115 §5.3 with `fields` as the form's fields after FORM_TYPE (and FORM_TYPE placed
    /// `form_type_last` if asked), identities and features shuffled.
    fn xep0115_5_3(fields: &[(&str, &[&str])], form_type_last: bool) -> String {
        let form_type = "<field var='FORM_TYPE' type='hidden'>\
            <value>urn:xmpp:dataforms:softwareinfo</value></field>";
        let mut x = String::from("<x xmlns='jabber:x:data' type='result'>");
        if !form_type_last {
            x.push_str(form_type);
        }
        for (var, values) in fields {
            x.push_str(&format!("<field var='{var}'>"));
            for v in *values {
                x.push_str(&format!("<value>{v}</value>"));
            }
            x.push_str("</field>");
        }
        if form_type_last {
            x.push_str(form_type);
        }
        x.push_str("</x>");
        format!(
            "<query xmlns='http://jabber.org/protocol/disco#info' \
             node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>{x}</query>"
        )
    }

    const SOFTWAREINFO_SORTED: &[(&str, &[&str])] = &[
        ("ip_version", &["ipv4", "ipv6"]),
        ("os", &["Mac"]),
        ("os_version", &["10.5.1"]),
        ("software", &["Psi"]),
        ("software_version", &["0.11"]),
    ];

    const SOFTWAREINFO_SHUFFLED: &[(&str, &[&str])] = &[
        ("software_version", &["0.11"]),
        ("os", &["Mac"]),
        ("ip_version", &["ipv6", "ipv4"]),
        ("software", &["Psi"]),
        ("os_version", &["10.5.1"]),
    ];

    #[test]
    fn xep0115_simple_example_5_2() {
        let input = HashInput::from_element(&parse(XEP0115_5_2));
        let s = input.caps_string().expect("well-formed");
        assert_eq!(
            s,
            b"client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
              http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
              http://jabber.org/protocol/muc<"
                .to_vec()
        );
        assert_eq!(sha1_b64(&s), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn xep0115_complex_example_5_3_verifies_in_any_field_order() {
        let expected: &[u8] = "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<\
            http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<\
            http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<\
            urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<\
            software<Psi<software_version<0.11<"
            .as_bytes();
        let key = CapsKey {
            scheme: Scheme::Caps,
            algo: Algo::Sha_1,
            hash: b64("q07IKJEyjvHSyhy//CH0CxmKi8w="),
        };
        for (fields, last) in [
            (SOFTWAREINFO_SORTED, false),
            (SOFTWAREINFO_SHUFFLED, false),
            (SOFTWAREINFO_SHUFFLED, true),
        ] {
            let el = parse(&xep0115_5_3(fields, last));
            let input = HashInput::from_element(&el);
            assert_eq!(input.caps_string().as_deref(), Ok(expected));
            assert_eq!(key.verify(&input), Ok(true));
            // The parsed view (what our own info goes through) agrees.
            let parsed = DiscoInfoResult::try_from(el).expect("parses");
            assert_eq!(
                HashInput::from_info(&parsed).caps_string().as_deref(),
                Ok(expected)
            );
        }
    }

    #[test]
    fn xmpp_parsers_0_23_refuses_the_shuffled_5_3_example() {
        // Documents the upstream bug this module works around: if this starts failing, upstream
        // was fixed and `compute_disco` may be usable again (duplicates aside).
        let el = parse(&xep0115_5_3(SOFTWAREINFO_SHUFFLED, false));
        let parsed = DiscoInfoResult::try_from(el).expect("parses");
        let theirs = xmpp_parsers::caps::compute_disco(&parsed);
        assert_ne!(sha1_b64(&theirs), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }

    #[test]
    fn identities_sorted_as_joined_strings_also_verify() {
        // `en` sorts before `en-US` field by field, after it as joined strings ('-' < '/').
        let el = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' xml:lang='en-US' name='A'/>\
             <identity category='client' type='pc' xml:lang='en' name='A'/></query>",
        );
        let input = HashInput::from_element(&el);
        let spec = input.caps_string().expect("well-formed");
        assert_eq!(spec, b"client/pc/en/A<client/pc/en-US/A<".to_vec());
        let joined = b"client/pc/en-US/A<client/pc/en/A<";
        for data in [spec.as_slice(), joined.as_slice()] {
            let key = CapsKey {
                scheme: Scheme::Caps,
                algo: Algo::Sha_1,
                hash: hash_caps(data, Algo::Sha_1)
                    .map(|h| h.hash)
                    .unwrap_or_default(),
            };
            assert_eq!(key.verify(&input), Ok(true));
        }
    }

    #[test]
    fn form_without_hidden_form_type_is_ignored_not_hashed() {
        let base = parse(XEP0115_5_2);
        let expected = HashInput::from_element(&base).caps_string();
        for form in [
            "<x xmlns='jabber:x:data' type='result'><field var='os'><value>Mac</value></field></x>",
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>\
             <value>urn:x</value></field><field var='os'><value>Mac</value></field></x>",
        ] {
            let mut el = base.clone();
            el.append_child(parse(form));
            let input = HashInput::from_element(&el);
            assert_eq!(input.caps_string(), expected, "{form}");
            // XEP-0390 has no such leniency.
            assert_eq!(
                input.ecaps2_string(),
                Err(IllFormed::MissingFormType),
                "{form}"
            );
        }
    }

    #[test]
    fn ill_formed_answers_have_no_hash() {
        let identity = "<identity category='client' type='pc' name='A'/>";
        let feature = "<feature var='urn:x'/>";
        let form = |ty: &str, extra: &str| {
            format!(
                "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
                 <value>{ty}</value>{extra}</field></x>"
            )
        };
        let cases = [
            (format!("{identity}{identity}"), "duplicate identity"),
            (format!("{identity}{feature}{feature}"), "duplicate feature"),
            (
                format!("{identity}{}{}", form("urn:f", ""), form("urn:f", "")),
                "two forms",
            ),
            (
                format!("{identity}{}", form("urn:f", "<value>urn:g</value>")),
                "conflicting FORM_TYPE values",
            ),
        ];
        for (children, what) in cases {
            let el = parse(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#info'>{children}</query>"
            ));
            let input = HashInput::from_element(&el);
            assert!(input.caps_string().is_err(), "{what}");
            assert!(input.ecaps2_string().is_err(), "{what}");
        }
        // Same identity in two languages is not a duplicate.
        let el = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' name='A' xml:lang='en'/>\
             <identity category='client' type='pc' name='A' xml:lang='de'/></query>",
        );
        assert!(HashInput::from_element(&el).caps_string().is_ok());
    }

    /// XEP-0390 §4.5.1, features shuffled as in the XEP.
    const XEP0390_SIMPLE: &str = r#"<query xmlns="http://jabber.org/protocol/disco#info">
  <identity category="client" name="BombusMod" type="mobile"/>
  <feature var="http://jabber.org/protocol/si"/>
  <feature var="http://jabber.org/protocol/bytestreams"/>
  <feature var="http://jabber.org/protocol/chatstates"/>
  <feature var="http://jabber.org/protocol/disco#info"/>
  <feature var="http://jabber.org/protocol/disco#items"/>
  <feature var="urn:xmpp:ping"/>
  <feature var="jabber:iq:time"/>
  <feature var="jabber:iq:privacy"/>
  <feature var="jabber:iq:version"/>
  <feature var="http://jabber.org/protocol/rosterx"/>
  <feature var="urn:xmpp:time"/>
  <feature var="jabber:x:oob"/>
  <feature var="http://jabber.org/protocol/ibb"/>
  <feature var="http://jabber.org/protocol/si/profile/file-transfer"/>
  <feature var="urn:xmpp:receipts"/>
  <feature var="jabber:iq:roster"/>
  <feature var="jabber:iq:last"/>
</query>"#;

    fn xep0390_complex(extra_field: &str) -> String {
        format!(
            r#"<query xmlns="http://jabber.org/protocol/disco#info">
  <identity category="client" name="Tkabber" type="pc" xml:lang="en"/>
  <identity category="client" name="Ткаббер" type="pc" xml:lang="ru"/>
  <feature var="games:board"/>
  <feature var="http://jabber.org/protocol/activity"/>
  <feature var="http://jabber.org/protocol/activity+notify"/>
  <feature var="http://jabber.org/protocol/bytestreams"/>
  <feature var="http://jabber.org/protocol/chatstates"/>
  <feature var="http://jabber.org/protocol/commands"/>
  <feature var="http://jabber.org/protocol/disco#info"/>
  <feature var="http://jabber.org/protocol/disco#items"/>
  <feature var="http://jabber.org/protocol/evil"/>
  <feature var="http://jabber.org/protocol/feature-neg"/>
  <feature var="http://jabber.org/protocol/geoloc"/>
  <feature var="http://jabber.org/protocol/geoloc+notify"/>
  <feature var="http://jabber.org/protocol/ibb"/>
  <feature var="http://jabber.org/protocol/iqibb"/>
  <feature var="http://jabber.org/protocol/mood"/>
  <feature var="http://jabber.org/protocol/mood+notify"/>
  <feature var="http://jabber.org/protocol/rosterx"/>
  <feature var="http://jabber.org/protocol/si"/>
  <feature var="http://jabber.org/protocol/si/profile/file-transfer"/>
  <feature var="http://jabber.org/protocol/tune"/>
  <feature var="http://www.facebook.com/xmpp/messages"/>
  <feature var="http://www.xmpp.org/extensions/xep-0084.html#ns-metadata+notify"/>
  <feature var="jabber:iq:avatar"/>
  <feature var="jabber:iq:browse"/>
  <feature var="jabber:iq:dtcp"/>
  <feature var="jabber:iq:filexfer"/>
  <feature var="jabber:iq:ibb"/>
  <feature var="jabber:iq:inband"/>
  <feature var="jabber:iq:jidlink"/>
  <feature var="jabber:iq:last"/>
  <feature var="jabber:iq:oob"/>
  <feature var="jabber:iq:privacy"/>
  <feature var="jabber:iq:roster"/>
  <feature var="jabber:iq:time"/>
  <feature var="jabber:iq:version"/>
  <feature var="jabber:x:data"/>
  <feature var="jabber:x:event"/>
  <feature var="jabber:x:oob"/>
  <feature var="urn:xmpp:avatar:metadata+notify"/>
  <feature var="urn:xmpp:ping"/>
  <feature var="urn:xmpp:receipts"/>
  <feature var="urn:xmpp:time"/>
  <x xmlns="jabber:x:data" type="result">
    <field type="hidden" var="FORM_TYPE">
      <value>urn:xmpp:dataforms:softwareinfo</value>
    </field>
    <field var="software">
      <value>Tkabber</value>
    </field>
    <field var="software_version">
      <value>0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)</value>
    </field>
    <field var="os">
      <value>Windows</value>
    </field>
    <field var="os_version">
      <value>XP</value>
    </field>{extra_field}
  </x>
</query>"#
        )
    }

    fn ecaps2_b64(input: &[u8], algo: Algo) -> String {
        let hash = hash_ecaps2(input, algo).map(|h| h.hash).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(hash)
    }

    #[test]
    fn xep0390_examples_4_5_hash_as_published() {
        let simple = HashInput::from_element(&parse(XEP0390_SIMPLE))
            .ecaps2_string()
            .expect("well-formed");
        assert_eq!(simple.len(), 0x1d9);
        assert!(simple.ends_with(b"BombusMod\x1f\x1e\x1c\x1c"));
        assert_eq!(
            ecaps2_b64(&simple, Algo::Sha_256),
            "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8="
        );
        assert_eq!(
            ecaps2_b64(&simple, Algo::Sha3_256),
            "79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/g6TnqUeuD9Q="
        );

        let complex = HashInput::from_element(&parse(&xep0390_complex("")))
            .ecaps2_string()
            .expect("well-formed");
        assert_eq!(complex.len(), 0x543);
        assert_eq!(
            ecaps2_b64(&complex, Algo::Sha_256),
            "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY="
        );
        assert_eq!(
            ecaps2_b64(&complex, Algo::Sha3_256),
            "XpUJzLAc93258sMECZ3FJpebkzuyNXDzRNwQog8eycg="
        );

        // xmpp-parsers 0.23 agrees on both published examples…
        for xml in [XEP0390_SIMPLE.to_owned(), xep0390_complex("")] {
            let el = parse(&xml);
            let parsed = DiscoInfoResult::try_from(el.clone()).expect("parses");
            assert_eq!(
                xmpp_parsers::ecaps2::compute_disco(&parsed).ok(),
                HashInput::from_element(&el).ecaps2_string().ok()
            );
        }
    }

    #[test]
    fn xep0390_sorts_form_type_among_the_fields() {
        // …but not once a field sorts before FORM_TYPE: §4.1 sorts FORM_TYPE like any field.
        let el = parse(&xep0390_complex(
            "<field var='AAA'><value>1</value></field>",
        ));
        let ours = HashInput::from_element(&el)
            .ecaps2_string()
            .expect("well-formed");
        // The identities section ends with 0x1c; the extensions section starts with field AAA.
        let expected: &[u8] = b"\x1e\x1cAAA\x1f1\x1f\x1eFORM_TYPE\x1f";
        assert!(ours.windows(expected.len()).any(|w| w == expected));
        let parsed = DiscoInfoResult::try_from(el).expect("parses");
        let theirs = xmpp_parsers::ecaps2::compute_disco(&parsed).expect("hashes");
        assert_ne!(theirs, ours);
    }

    #[test]
    fn xep0390_rejects_what_it_says_to_reject() {
        let with = |extra: &str| {
            HashInput::from_element(&parse(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='client' type='pc'/>{extra}</query>"
            )))
            .ecaps2_string()
        };
        assert!(with("").is_ok());
        assert_eq!(
            with("<foo xmlns='urn:x'/>"),
            Err(IllFormed::UnexpectedElement("foo".into()))
        );
        assert_eq!(
            with(
                "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
                 <value>urn:f</value></field><reported/></x>"
            ),
            Err(IllFormed::UnexpectedElement("reported".into()))
        );
    }

    #[test]
    fn own_caps_and_ecaps2_verify_and_tampered_info_does_not() {
        let info = disco_info_for(Some("Living room TV"), &["urn.xmpp.tmp.media.player"]);
        let presence = presence_for(&info);
        let caps = Advertised::from_presence(&presence).expect("announces caps");
        assert_eq!(
            caps.keys().len(),
            3,
            "sha-256 + sha3-256 ecaps2, sha-1 caps"
        );
        assert_eq!(caps.primary().map(|k| k.scheme), Some(Scheme::Ecaps2));
        let answer = DiscoAnswer::from_info(info.clone());
        for key in caps.keys() {
            assert_eq!(key.verify(answer.input()), Ok(true), "{key:?}");
        }
        // Own hashes agree with xmpp-parsers where it is right (no forms).
        let theirs =
            hash_caps(&xmpp_parsers::caps::compute_disco(&info), Algo::Sha_1).expect("sha-1");
        assert_eq!(caps_for(&info).ver, theirs.hash);

        let mut forged = info.clone();
        forged.features.insert("urn:xmpp:tmp:pmn:recorder:0".into());
        let forged = DiscoAnswer::from_info(forged);
        let mut cache = CapsCache::default();
        assert_eq!(cache.insert_verified(&caps, &forged), Verdict::Mismatch);
        assert!(cache.is_empty());
        assert_eq!(cache.insert_verified(&caps, &answer), Verdict::Verified);
        assert_eq!(cache.len(), 3);
        assert_eq!(
            cache.get(&caps).map(|i| i.features),
            Some(info.features.clone())
        );

        // The ecaps2 nodes a peer asks for are recognised as ours.
        for key in caps.keys().iter().filter(|k| k.scheme == Scheme::Ecaps2) {
            assert!(is_own_ecaps2_node(&info, &query_node(key, None)));
        }
        assert!(!is_own_ecaps2_node(&info, "urn:xmpp:caps#sha-256.AAAA"));
        let legacy = Advertised::from_caps(&caps_for(&info));
        assert_eq!(
            legacy.query_node(),
            Some(format!("{CAPS_NODE}#{}", b64_of(&caps_for(&info).ver)))
        );
    }

    #[test]
    fn announcing_ecaps2_costs_a_bounded_few_hundred_bytes_per_presence() {
        let info = disco_info_for(Some("Living room TV"), &["urn.xmpp.tmp.media.player"]);
        let legacy = String::from(&Element::from(caps_for(&info))).len();
        let ecaps2 = String::from(&Element::from(ecaps2_for(&info))).len();
        println!("presence caps bytes: XEP-0115 {legacy}, XEP-0390 {ecaps2}");
        assert!(ecaps2 < 300, "{ecaps2} bytes");
    }

    #[test]
    fn only_ecaps2_is_enough_and_unusable_hashes_are_skipped() {
        let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
        let presence = Presence::available().with_payload(ecaps2_for(&info));
        let caps = Advertised::from_presence(&presence).expect("ecaps2");
        assert!(caps
            .query_node()
            .is_some_and(|n| n.starts_with("urn:xmpp:caps#sha-256.")));
        let mut cache = CapsCache::default();
        assert_eq!(
            cache.insert_verified(&caps, &DiscoAnswer::from_info(info.clone())),
            Verdict::Verified
        );
        assert!(cache.get(&caps).is_some());

        // sha-1 is not an ecaps2 algorithm, a truncated hash is no hash, unknown ones are skipped.
        let bad = ECaps2::new(vec![
            Hash {
                algo: Algo::Sha_1,
                hash: vec![0; 20],
            },
            Hash {
                algo: Algo::Sha_256,
                hash: vec![0; 5],
            },
            Hash {
                algo: Algo::Unknown("md5".into()),
                hash: vec![0; 16],
            },
        ]);
        assert_eq!(
            Advertised::from_presence(&Presence::available().with_payload(bad)),
            None
        );
    }

    #[test]
    fn ill_formed_answer_is_not_cached() {
        let el = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='automation' type='service' name='TV'/>\
             <feature var='urn.xmpp.tmp.media.player'/><feature var='urn.xmpp.tmp.media.player'/>\
             </query>",
        );
        let answer = DiscoAnswer::from_element(el).expect("parses");
        // The parsed view dropped the duplicate, so this is the hash a naive peer would announce.
        let naive = Caps::new(
            CAPS_NODE,
            hash_caps(
                &xmpp_parsers::caps::compute_disco(&answer.info),
                Algo::Sha_1,
            )
            .expect("sha-1"),
        );
        let mut cache = CapsCache::default();
        assert!(matches!(
            cache.insert_verified(&Advertised::from_caps(&naive), &answer),
            Verdict::IllFormed(IllFormed::DuplicateFeature(_))
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_form_the_parser_refuses_still_yields_the_device_but_no_cache_entry() {
        let el = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='automation' type='service' name='TV'/>\
             <feature var='urn.xmpp.tmp.media.player'/>\
             <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:a</value><value>urn:b</value></field></x></query>",
        );
        assert!(
            DiscoInfoResult::try_from(el.clone()).is_err(),
            "xmpp-parsers refuses it"
        );
        let answer = DiscoAnswer::from_element(el).expect("read without the form");
        assert!(answer.info.features.contains("urn.xmpp.tmp.media.player"));
        assert_eq!(
            answer.input().caps_string(),
            Err(IllFormed::ConflictingFormType)
        );
        // Not a disco#info at all: still an error.
        assert!(DiscoAnswer::from_element(parse("<query xmlns='urn:x'/>")).is_err());
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_least_recently_used() {
        let mut cache = CapsCache::with_capacity(3);
        let mut announced = Vec::new();
        for i in 0..5 {
            let info = disco_info_for(Some(&format!("TV {i}")), &[]);
            let caps = Advertised::from_caps(&caps_for(&info));
            assert_eq!(
                cache.insert_verified(&caps, &DiscoAnswer::from_info(info)),
                Verdict::Verified
            );
            announced.push(caps);
            if i == 2 {
                // Touch the first: it is now the most recently used.
                assert!(cache.get(&announced[0]).is_some());
            }
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.capacity(), 3);
        assert_eq!(cache.evicted(), 2);
        assert!(cache.get(&announced[0]).is_some(), "recently used survives");
        assert!(cache.get(&announced[1]).is_none());
        assert!(cache.get(&announced[2]).is_none());
        assert!(cache.get(&announced[4]).is_some());
    }

    #[test]
    fn controller_announces_no_service_feature() {
        let info = disco_info_for(None, &[]);
        assert!(info
            .identities
            .iter()
            .all(|i| i.category != IDENTITY_CATEGORY));
        assert!(!info.features.iter().any(|f| f.contains("media.player")));
    }
}
