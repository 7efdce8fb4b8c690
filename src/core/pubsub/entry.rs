//! One playlist entry as it travels in a pubsub item:
//!
//! ```xml
//! <item id='e1'>
//!   <entry xmlns='urn:xmpp:tmp:pmn:playlist:0' kind='audio' duration-ms='1800000' position='3'
//!          updated='1764590000'>
//!     <title>Episode 12</title>
//!     <uri>https://podcasts.example/ep12.mp3</uri>
//!     <artwork>https://podcasts.example/ep12.jpg</artwork>           (optional)
//!     <signature issuer='hex SHA-256 of the owner key SPKI'>base64 DER ECDSA</signature>
//!   </entry>
//! </item>
//! ```
//!
//! Parsing is strict (unknown children and attributes are refused) and bounded: the serialised
//! item is measured against [`MAX_ENTRY_BYTES`] before any parsing, and each text against its own
//! bound afterwards. The item id is the entry's id: the signature covers it (see
//! [`super::signature`]), so the server cannot move an entry to another id or node.

use std::borrow::Cow;
use std::fmt;

use xmpp_parsers::minidom::Element;
use xso::text::Base64;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use super::error::{IgnoredReason, PlaylistError};
use crate::core::access::DeviceFingerprint;

/// Namespace of the entry payload (and prefix of the playlist node names).
pub const NS_PLAYLIST: &str = "urn:xmpp:tmp:pmn:playlist:0";
/// Largest serialised `<entry>` accepted, in bytes: a title, two URIs and a signature fit many
/// times over; anything larger is someone filling a subscriber's memory.
pub const MAX_ENTRY_BYTES: usize = 8 * 1024;
/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;
/// Longest media or artwork URI, in bytes.
pub const MAX_URI_BYTES: usize = 2048;
/// Longest entry id (item id), in characters of `A-Z a-z 0-9 . _ -`.
pub const MAX_ENTRY_ID_LEN: usize = 64;
/// A DER ECDSA P-256 signature is at most 72 bytes.
const MAX_SIGNATURE_BYTES: usize = 80;

/// What kind of media an entry points at; a player picks its pipeline from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio with a length (a song, a podcast episode).
    Audio,
    /// Video with a length (a film, a video podcast episode).
    Video,
    /// A still image (a photo album entry).
    Image,
    /// A live stream without an end (internet radio, IPTV channel).
    Stream,
}

impl MediaKind {
    /// The attribute value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Image => "image",
            MediaKind::Stream => "stream",
        }
    }

    /// The kind named `s` on the wire, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            "image" => MediaKind::Image,
            "stream" => MediaKind::Stream,
            _ => return None,
        })
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromXmlText for MediaKind {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        MediaKind::parse(&data).ok_or(xso::error::Error::Other("unknown media kind"))
    }
}

impl AsXmlText for MediaKind {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(self.as_str()))
    }
}

/// `<signature issuer='…'>`: the owner key's signature over the entry's canonical bytes.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PLAYLIST, name = "signature", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct EntrySignature {
    /// Fingerprint of the owner key that signed.
    #[xml(attribute)]
    pub issuer: DeviceFingerprint,
    /// DER ECDSA P-256/SHA-256.
    #[xml(text = Base64)]
    pub der: Vec<u8>,
}

/// `<entry>` as on the wire, not yet checked or verified. Use [`parse_item`], which bounds the
/// size before it runs this derived parser and checks what a derive cannot express.
pub use wire::EntryElement;

mod wire {
    // xso's derive converts each extracted text into its field's type (String into String here)
    // in impls outside the struct, so the allowance must cover the module.
    #![allow(clippy::useless_conversion)]
    use super::*;

    #[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
    #[xml(namespace = NS_PLAYLIST, name = "entry", on_unknown_child = Fail, on_unknown_attribute = Fail)]
    pub struct EntryElement {
        /// What the URI points at.
        #[xml(attribute)]
        pub kind: MediaKind,
        /// Length in milliseconds; absent for live streams and images.
        #[xml(attribute(default, name = "duration-ms"))]
        pub duration_ms: Option<u64>,
        /// Order in the playlist (ascending; ties by entry id).
        #[xml(attribute(default))]
        pub position: u32,
        /// When the owner signed this version (seconds since the Unix epoch, owner's clock).
        #[xml(attribute)]
        pub updated: u64,
        /// Shown to people.
        #[xml(extract(name = "title", fields(text)))]
        pub title: String,
        /// What a player opens.
        #[xml(extract(name = "uri", fields(text)))]
        pub uri: String,
        /// A picture for the entry.
        #[xml(extract(default, name = "artwork", fields(text(type_ = String))))]
        pub artwork: Option<String>,
        /// The owner's signature; absent on items the household did not sign.
        #[xml(child(default))]
        pub signature: Option<EntrySignature>,
    }
}

/// A playlist entry as the app gives and gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistEntry {
    /// The entry's id in its playlist (the pubsub item id): publishing the same id again updates it.
    pub id: String,
    /// Shown to people.
    pub title: String,
    /// What a player opens (any scheme; a player decides what it accepts).
    pub uri: String,
    /// What the URI points at.
    pub kind: MediaKind,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// A picture for the entry.
    pub artwork: Option<String>,
    /// Order in the playlist (ascending; ties by id).
    pub position: u32,
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what} is {} bytes (at most {max})", text.len()));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// Checks an entry id: 1–[`MAX_ENTRY_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`, safe as an item
/// id, in logs and in file names.
pub fn check_entry_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ENTRY_ID_LEN {
        return Err(format!(
            "entry id must have 1 to {MAX_ENTRY_ID_LEN} characters"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!("entry id {id:?} may only use A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

impl PlaylistEntry {
    /// Checks the bounds an entry must keep, on the publisher's side as on the subscriber's.
    pub fn validate(&self) -> Result<(), PlaylistError> {
        self.check().map_err(PlaylistError::Invalid)
    }

    fn check(&self) -> Result<(), String> {
        check_entry_id(&self.id)?;
        if self.title.trim().is_empty() {
            return Err("an entry needs a title".into());
        }
        check_text("title", &self.title, MAX_TITLE_BYTES)?;
        if self.uri.is_empty() || !self.uri.contains(':') {
            return Err(format!("{:?} is not a URI", self.uri));
        }
        check_text("uri", &self.uri, MAX_URI_BYTES)?;
        if let Some(art) = &self.artwork {
            check_text("artwork", art, MAX_URI_BYTES)?;
        }
        Ok(())
    }

    /// The wire element for this entry at `updated`, with `signature` (none while signing).
    pub(crate) fn to_element(&self, updated: u64, signature: Option<EntrySignature>) -> Element {
        Element::from(EntryElement {
            kind: self.kind,
            duration_ms: self.duration_ms,
            position: self.position,
            updated,
            title: self.title.clone(),
            uri: self.uri.clone(),
            artwork: self.artwork.clone(),
            signature,
        })
    }
}

/// An entry as read from an item: its fields, when it was signed, and the signature (not yet
/// verified; see [`super::signature::verify_entry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEntry {
    /// The entry (its id is the item id).
    pub entry: PlaylistEntry,
    /// When the owner signed it.
    pub updated: u64,
    /// The signature, if the item carries one.
    pub signature: Option<EntrySignature>,
}

/// How many bytes `el` serialises to (what the size bound is measured on).
pub(crate) fn serialized_len(el: &Element) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a failure would mean a broken element: count it as huge.
    match el.write_to(&mut count) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Parses the payload of an item with id `id`: size bound first, then the strict parser, then the
/// field bounds. The signature is not checked here.
pub fn parse_item(
    id: Option<&str>,
    payload: Option<&Element>,
) -> Result<ParsedEntry, IgnoredReason> {
    let (Some(id), Some(payload)) = (id, payload) else {
        return Err(IgnoredReason::Malformed);
    };
    if !payload.is("entry", NS_PLAYLIST) {
        return Err(IgnoredReason::Malformed);
    }
    if serialized_len(payload) > MAX_ENTRY_BYTES {
        return Err(IgnoredReason::Oversized);
    }
    let wire = EntryElement::try_from(payload.clone()).map_err(|_| IgnoredReason::Malformed)?;
    let entry = PlaylistEntry {
        id: id.to_owned(),
        title: wire.title,
        uri: wire.uri,
        kind: wire.kind,
        duration_ms: wire.duration_ms,
        artwork: wire.artwork,
        position: wire.position,
    };
    entry.check().map_err(|_| IgnoredReason::Malformed)?;
    if let Some(sig) = &wire.signature {
        if sig.der.is_empty() || sig.der.len() > MAX_SIGNATURE_BYTES {
            return Err(IgnoredReason::BadSignature);
        }
    }
    Ok(ParsedEntry {
        entry,
        updated: wire.updated,
        signature: wire.signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlaylistEntry {
        PlaylistEntry {
            id: "ep-12".into(),
            title: "Episode 12".into(),
            uri: "https://podcasts.example/ep12.mp3".into(),
            kind: MediaKind::Audio,
            duration_ms: Some(1_800_000),
            artwork: Some("https://podcasts.example/ep12.jpg".into()),
            position: 3,
        }
    }

    #[test]
    fn an_entry_round_trips_through_its_element() {
        let e = sample();
        let el = e.to_element(
            1_764_590_000,
            Some(EntrySignature {
                issuer: DeviceFingerprint([7; 32]),
                der: vec![0x30, 0x06, 1, 2, 3, 4, 5, 6],
            }),
        );
        let parsed = parse_item(Some("ep-12"), Some(&el)).unwrap();
        assert_eq!(parsed.entry, e);
        assert_eq!(parsed.updated, 1_764_590_000);
        assert_eq!(parsed.signature.unwrap().issuer, DeviceFingerprint([7; 32]));
        // Without artwork and duration (a radio station).
        let radio = PlaylistEntry {
            kind: MediaKind::Stream,
            duration_ms: None,
            artwork: None,
            ..sample()
        };
        let parsed = parse_item(Some("ep-12"), Some(&radio.to_element(1, None))).unwrap();
        assert_eq!(parsed.entry, radio);
        assert_eq!(parsed.signature, None);
    }

    #[test]
    fn malformed_and_oversized_items_are_typed_refusals() {
        let ns = NS_PLAYLIST;
        let cases = [
            format!("<entry xmlns='{ns}' kind='audio' updated='1'><uri>a:b</uri></entry>"),
            format!("<entry xmlns='{ns}' kind='tape' updated='1'><title>t</title><uri>a:b</uri></entry>"),
            format!("<entry xmlns='{ns}' kind='audio' updated='x'><title>t</title><uri>a:b</uri></entry>"),
            format!("<entry xmlns='{ns}' kind='audio' updated='1' evil='1'><title>t</title><uri>a:b</uri></entry>"),
            format!("<entry xmlns='{ns}' kind='audio' updated='1'><title>t</title><uri>a:b</uri><x/></entry>"),
            format!("<entry xmlns='{ns}' kind='audio' updated='1'><title> </title><uri>a:b</uri></entry>"),
            format!("<entry xmlns='{ns}' kind='audio' updated='1'><title>t</title><uri>nocolon</uri></entry>"),
            format!("<other xmlns='{ns}'/>"),
        ];
        for xml in &cases {
            let el: Element = xml.parse().unwrap();
            assert_eq!(
                parse_item(Some("a"), Some(&el)),
                Err(IgnoredReason::Malformed),
                "{xml}"
            );
        }
        let ok: Element = format!(
            "<entry xmlns='{ns}' kind='audio' updated='1'><title>t</title><uri>a:b</uri></entry>"
        )
        .parse()
        .unwrap();
        assert!(parse_item(Some("a"), Some(&ok)).is_ok());
        for bad_id in [None, Some(""), Some("a b"), Some(&"x".repeat(65)[..])] {
            assert_eq!(parse_item(bad_id, Some(&ok)), Err(IgnoredReason::Malformed));
        }
        assert_eq!(parse_item(Some("a"), None), Err(IgnoredReason::Malformed));
        let huge = PlaylistEntry {
            title: "t".repeat(MAX_ENTRY_BYTES),
            ..sample()
        };
        assert_eq!(
            parse_item(Some("a"), Some(&huge.to_element(1, None))),
            Err(IgnoredReason::Oversized)
        );
        let long_title = PlaylistEntry {
            title: "t".repeat(MAX_TITLE_BYTES + 1),
            ..sample()
        };
        assert!(long_title.validate().is_err());
        assert_eq!(
            parse_item(Some("a"), Some(&long_title.to_element(1, None))),
            Err(IgnoredReason::Malformed)
        );
    }
}
