//! The hash inputs of XEP-0115 (§5.1) and XEP-0390 (§4.1) over a disco#info answer as received,
//! and why an answer has none ([`IllFormed`]).
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
//! tests (`caps/tests.rs`) carry the specifications' examples plus the cases where 0.23 differs.

use std::collections::HashSet;

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::ns;

/// XEP-0128 data forms namespace.
pub(super) const NS_DATA_FORMS: &str = "jabber:x:data";

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
    pub(super) fn caps_strings(&self) -> Result<Vec<Vec<u8>>, IllFormed> {
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
