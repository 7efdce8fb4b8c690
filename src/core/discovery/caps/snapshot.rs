//! The caps cache saved across starts ([`CapsSnapshot`]): an app stores it when it stops and
//! gives it back at the next start, so that devices seen before are shown from their presence
//! alone, without a disco#info round trip each.
//!
//! Every entry is re-verified when a snapshot is read: an entry is kept only if its disco#info
//! still hashes to the key it is stored under. A caps hash is a hash of the content, so a
//! snapshot tampered with in the app's storage can drop entries but not make a device claim
//! services its announced hash does not cover. The snapshot is read as outside input: bounded in
//! size, nesting and entries.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use minidom::Element;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::ns;
use xso::exports::rxml::xml_ncname;

use super::cache::{CapsCache, DEFAULT_CACHE_CAPACITY};
use super::key::{CapsKey, DiscoAnswer, Scheme};
use crate::core::xml_bounded::{self, ElementLimits};

/// The namespace of a saved caps cache; the version is in the name.
const NS_SNAPSHOT: &str = "urn:pmn:caps-cache:0";

/// The largest snapshot read: 256 entries of a few KiB each fit.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024;

/// How deep a snapshot nests: cache > entry > query > x > field > value, and some room.
const MAX_SNAPSHOT_DEPTH: usize = 8;

/// Most hashes read for one answer, as for one presence.
const MAX_KEYS_PER_ENTRY: usize = 4;

/// Why a saved caps cache was not read at all (an entry that no longer verifies only drops
/// that entry: [`CapsSnapshot::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Larger than [`MAX_SNAPSHOT_BYTES`].
    TooLarge(usize),
    /// Not a saved caps cache: malformed XML, too deep, or another root element.
    Malformed(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::TooLarge(len) => write!(
                f,
                "a saved caps cache of {len} bytes is over the {MAX_SNAPSHOT_BYTES}-byte bound"
            ),
            SnapshotError::Malformed(why) => write!(f, "not a saved caps cache: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// A caps cache saved for the next start: verified disco#info answers, each with the announced
/// hashes it is cached under.
///
/// Made by [`Controller::caps_snapshot`](crate::core::controller::Controller::caps_snapshot),
/// stored by the app as text (its [`Display`](fmt::Display): the verified entries only), read
/// back with [`str::parse`] and given to
/// [`ControllerConfig::caps_cache`](crate::core::controller::ControllerConfig::caps_cache).
///
/// ```
/// use pmn::core::discovery::CapsSnapshot;
///
/// let saved = CapsSnapshot::default().to_string();
/// let restored: CapsSnapshot = saved.parse().expect("a snapshot we wrote reads back");
/// assert_eq!(restored.len(), 0);
/// assert!("<not-a-cache/>".parse::<CapsSnapshot>().is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CapsSnapshot {
    entries: Vec<(Vec<CapsKey>, Arc<DiscoInfoResult>)>,
    refused: usize,
}

/// The text to store: written from the verified entries, so what was refused when it was read
/// is not stored again.
impl fmt::Display for CapsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut root = Element::builder("caps-cache", NS_SNAPSHOT).build();
        for (keys, info) in &self.entries {
            let mut entry = Element::builder("entry", NS_SNAPSHOT).build();
            for key in keys {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&key.hash);
                entry.append_child(
                    Element::builder("key", NS_SNAPSHOT)
                        .attr(xml_ncname!("scheme").into(), scheme_name(key.scheme))
                        .attr(xml_ncname!("algo").into(), String::from(key.algo.clone()))
                        .attr(xml_ncname!("hash").into(), b64)
                        .build(),
                );
            }
            entry.append_child(Element::from(DiscoInfoResult::clone(info)));
            root.append_child(entry);
        }
        f.write_str(&String::from(&root))
    }
}

impl CapsSnapshot {
    /// How many verified answers it holds (one per kind of device; each under up to four
    /// hashes).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries of the text read were dropped: their answer hashed to none of their
    /// keys, or they were over the cache's capacity.
    pub fn refused(&self) -> usize {
        self.refused
    }

    pub(super) fn entries(&self) -> &[(Vec<CapsKey>, Arc<DiscoInfoResult>)] {
        &self.entries
    }
}

impl FromStr for CapsSnapshot {
    type Err = SnapshotError;

    /// Reads a stored snapshot, keeping only the entries that verify.
    fn from_str(text: &str) -> Result<Self, SnapshotError> {
        if text.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge(text.len()));
        }
        let root = xml_bounded::parse_element(
            text.as_bytes(),
            ElementLimits {
                max_depth: MAX_SNAPSHOT_DEPTH,
            },
        )
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if !root.is("caps-cache", NS_SNAPSHOT) {
            return Err(SnapshotError::Malformed(format!(
                "root <{}/> in {}",
                root.name(),
                root.ns()
            )));
        }
        let mut entries = Vec::new();
        let (mut refused, mut keys) = (0, 0);
        for entry in root.children() {
            match read_entry(entry) {
                Some((verified, info)) if keys + verified.len() <= DEFAULT_CACHE_CAPACITY => {
                    keys += verified.len();
                    entries.push((verified, Arc::new(info)));
                }
                _ => refused += 1,
            }
        }
        if refused > 0 {
            tracing::warn!(
                refused,
                kept = entries.len(),
                "saved caps cache: entries dropped"
            );
        }
        Ok(CapsSnapshot { entries, refused })
    }
}

/// One entry's answer and the keys it hashes to; `None` if it hashes to none of them.
fn read_entry(entry: &Element) -> Option<(Vec<CapsKey>, DiscoInfoResult)> {
    if !entry.is("entry", NS_SNAPSHOT) {
        return None;
    }
    let query = entry.get_child("query", ns::DISCO_INFO)?.clone();
    let answer = DiscoAnswer::from_element(query).ok()?;
    let keys: Vec<CapsKey> = entry
        .children()
        .filter(|c| c.is("key", NS_SNAPSHOT))
        .take(MAX_KEYS_PER_ENTRY)
        .filter_map(read_key)
        .filter(|key| {
            let verified = key.usable() && key.verify(answer.input()) == Ok(true);
            if !verified {
                tracing::debug!(?key.scheme, algo = ?key.algo, "saved caps key does not verify");
            }
            verified
        })
        .collect();
    (!keys.is_empty()).then_some((keys, answer.info))
}

fn read_key(key: &Element) -> Option<CapsKey> {
    let scheme = match key.attr("scheme")? {
        "caps" => Scheme::Caps,
        "ecaps2" => Scheme::Ecaps2,
        _ => return None,
    };
    let algo = Algo::from_str(key.attr("algo")?).ok()?;
    let hash = base64::engine::general_purpose::STANDARD
        .decode(key.attr("hash")?)
        .ok()?;
    Some(CapsKey { scheme, algo, hash })
}

fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Caps => "caps",
        Scheme::Ecaps2 => "ecaps2",
    }
}

impl CapsCache {
    /// The verified answers, most recently used first, as a snapshot to store.
    pub fn snapshot(&self) -> CapsSnapshot {
        CapsSnapshot {
            entries: self.answers_by_use(),
            refused: 0,
        }
    }

    /// Adds the answers of a snapshot read back (each verified when it was read).
    pub fn restore(&mut self, snapshot: &CapsSnapshot) {
        // Oldest first, so the most recently used end up the last evicted.
        for (keys, info) in snapshot.entries().iter().rev() {
            self.insert(keys.clone(), info.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use xmpp_parsers::presence::Presence;

    use super::*;
    use crate::core::discovery::caps::{caps_for, disco_info_for, ecaps2_for, Advertised, Verdict};

    /// XEP-0115 §5.3: a form, several identities; its sha-1 is the XEP's.
    const XEP0115_5_3: &str = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
        <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/>\
        <x xmlns='jabber:x:data' type='result'>\
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
        <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
        <field var='os'><value>Mac</value></field>\
        <field var='os_version'><value>10.5.1</value></field>\
        <field var='software'><value>Psi</value></field>\
        <field var='software_version'><value>0.11</value></field></x></query>";

    fn tv(name: &str) -> (Advertised, DiscoAnswer) {
        let info = disco_info_for(Some(name), &["urn.xmpp.tmp.media.player"]);
        let presence = Presence::available()
            .with_payload(ecaps2_for(&info))
            .with_payload(caps_for(&info));
        let caps = Advertised::from_presence(&presence).expect("caps");
        (caps, DiscoAnswer::from_info(info))
    }

    fn psi() -> (Advertised, DiscoAnswer) {
        let query: Element = XEP0115_5_3.parse().expect("XEP example parses");
        let caps = xmpp_parsers::caps::Caps::new(
            "http://psi-im.org",
            xmpp_parsers::hashes::Hash {
                algo: Algo::Sha_1,
                hash: base64::engine::general_purpose::STANDARD
                    .decode("q07IKJEyjvHSyhy//CH0CxmKi8w=")
                    .expect("base64"),
            },
        );
        let answer = DiscoAnswer::from_element(query).expect("answer");
        (Advertised::from_caps(&caps), answer)
    }

    fn filled() -> (CapsCache, Vec<Advertised>) {
        let mut cache = CapsCache::default();
        let mut announced = Vec::new();
        for (caps, answer) in [tv("Living room"), tv("Bedroom"), psi()] {
            assert_eq!(cache.insert_verified(&caps, &answer), Verdict::Verified);
            announced.push(caps);
        }
        (cache, announced)
    }

    #[test]
    fn a_saved_cache_reads_back_and_serves_every_hash_it_held() {
        let (cache, announced) = filled();
        let text = cache.snapshot().to_string();
        let snapshot: CapsSnapshot = text.parse().expect("reads back");
        assert_eq!(snapshot.refused(), 0, "{text}");
        assert_eq!(snapshot.len(), 3, "one entry per answer");
        let keys: usize = snapshot.entries().iter().map(|(keys, _)| keys.len()).sum();
        assert_eq!(keys, cache.len(), "every hash");
        let mut restored = CapsCache::default();
        restored.restore(&snapshot);
        for caps in &announced {
            for key in caps.keys() {
                assert!(restored.contains(key), "{key:?} restored");
            }
        }
        let (psi_caps, psi_answer) = psi();
        assert_eq!(
            restored.get(&psi_caps).map(|info| info.features),
            Some(psi_answer.info.features),
            "the form-bearing answer still verifies after its round trip"
        );
    }

    #[test]
    fn an_entry_changed_in_storage_is_dropped_and_the_others_kept() {
        let (cache, announced) = filled();
        let text = cache.snapshot().to_string();
        // A service the living-room TV's hashes do not cover.
        let tampered = text.replacen(
            "<feature var='urn.xmpp.tmp.media.player'/>",
            "<feature var='urn.xmpp.tmp.media.player'/><feature var='urn:evil'/>",
            1,
        );
        let tampered = if tampered == text {
            text.replacen(
                "<feature var=\"urn.xmpp.tmp.media.player\"/>",
                "<feature var=\"urn.xmpp.tmp.media.player\"/><feature var=\"urn:evil\"/>",
                1,
            )
        } else {
            tampered
        };
        assert_ne!(tampered, text, "the test changed one entry");
        let snapshot: CapsSnapshot = tampered.parse().expect("still a snapshot");
        assert_eq!(snapshot.refused(), 1);
        assert_eq!(snapshot.len(), 2);
        let mut restored = CapsCache::default();
        restored.restore(&snapshot);
        assert!(restored
            .answers_by_use()
            .iter()
            .all(|(_, info)| !info.features.contains("urn:evil")));
        assert!(restored.get(&announced[2]).is_some(), "psi kept");
        // Written again, it holds only what verified.
        let again: CapsSnapshot = snapshot.to_string().parse().expect("reads back");
        assert_eq!((again.len(), again.refused()), (2, 0));
    }

    #[test]
    fn what_is_not_a_saved_cache_is_a_typed_error() {
        for text in ["", "not xml", "<caps-cache xmlns='urn:pmn:caps-cache:0'>"] {
            assert!(
                matches!(
                    text.parse::<CapsSnapshot>(),
                    Err(SnapshotError::Malformed(_))
                ),
                "{text:?}"
            );
        }
        assert!(matches!(
            "<caps-cache xmlns='urn:pmn:caps-cache:9'/>".parse::<CapsSnapshot>(),
            Err(SnapshotError::Malformed(_))
        ));
        let deep = format!(
            "<caps-cache xmlns='{NS_SNAPSHOT}'>{}",
            "<entry>".repeat(10_000)
        );
        assert!(matches!(
            deep.parse::<CapsSnapshot>(),
            Err(SnapshotError::Malformed(_))
        ));
        let huge = format!(
            "<caps-cache xmlns='{NS_SNAPSHOT}'>{}</caps-cache>",
            " ".repeat(MAX_SNAPSHOT_BYTES)
        );
        assert_eq!(
            huge.parse::<CapsSnapshot>().map(|s| s.len()),
            Err(SnapshotError::TooLarge(huge.len()))
        );
        // Entries of the right shape with wrong contents are dropped one by one.
        let junk = format!(
            "<caps-cache xmlns='{NS_SNAPSHOT}'><entry><key scheme='caps' algo='sha-1' hash='AAAA'/>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></entry>\
             <entry><key scheme='other' algo='sha-1' hash='AAAA'/></entry><other/></caps-cache>"
        );
        let snapshot: CapsSnapshot = junk.parse().expect("a snapshot");
        assert_eq!((snapshot.len(), snapshot.refused()), (0, 3));
    }

    #[test]
    fn a_snapshot_holds_at_most_the_cache_capacity() {
        let mut cache = CapsCache::with_capacity(DEFAULT_CACHE_CAPACITY + 20);
        for i in 0..DEFAULT_CACHE_CAPACITY + 20 {
            let info = disco_info_for(Some(&format!("TV {i}")), &[]);
            let caps = Advertised::from_caps(&caps_for(&info));
            assert_eq!(
                cache.insert_verified(&caps, &DiscoAnswer::from_info(info)),
                Verdict::Verified
            );
        }
        let text = cache.snapshot().to_string();
        println!(
            "saved caps cache: {} bytes for {} entries",
            text.len(),
            cache.len()
        );
        assert!(text.len() <= MAX_SNAPSHOT_BYTES, "{} bytes", text.len());
        let snapshot: CapsSnapshot = text.parse().expect("reads back");
        assert_eq!(snapshot.len(), DEFAULT_CACHE_CAPACITY);
        assert_eq!(snapshot.refused(), 20);
        // A pmn device's three hashes: a third as many devices.
        let mut cache = CapsCache::with_capacity(3 * DEFAULT_CACHE_CAPACITY);
        for i in 0..DEFAULT_CACHE_CAPACITY / 3 + 10 {
            let (caps, answer) = tv(&format!("TV {i}"));
            assert_eq!(cache.insert_verified(&caps, &answer), Verdict::Verified);
        }
        let snapshot: CapsSnapshot = cache.snapshot().to_string().parse().expect("reads back");
        assert_eq!(
            (snapshot.len(), snapshot.refused()),
            (DEFAULT_CACHE_CAPACITY / 3, 10)
        );
    }
}
