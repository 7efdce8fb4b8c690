//! The named scopes an owner can grant a guest. Which methods a scope opens is not listed here: each
//! method declares its scope where it is declared (`method!(…, scope = Playback)` in
//! `crate::core::services`, [`crate::core::rpc::Method::SCOPE`]), a service the scope of its
//! events, and the provider's router reports the scope a call needs. A method that declares none
//! is closed to guests, so a new method (or a new service) stays closed until its declaration
//! opens it on purpose.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A named, small set of methods an owner can grant to a guest.
///
/// ```
/// use pmn::core::access::Scope;
/// use pmn::core::rpc::Method;
/// use pmn::core::services::{library, player};
/// let s: Scope = "playback".parse().unwrap();
/// assert_eq!(player::Pause::SCOPE, Some(s));
/// assert_eq!(library::Browse::SCOPE, None); // closed to guests
/// assert_eq!(library::Read::SCOPE, Some(Scope::LibraryItem));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Control playback on a player: play, pause, resume, stop, seek, volume, mute, next, previous,
    /// status and its events. Not the queue editing, not the library, not the recorder, not admin.
    Playback,
    /// Read exactly one library item (the grant names it): the "only the one file" grant that a
    /// guest's media library gives a host's TV.
    LibraryItem,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 2] = [Scope::Playback, Scope::LibraryItem];

    /// The wire name (`playback`, `library-item`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Playback => "playback",
            Scope::LibraryItem => "library-item",
        }
    }

    /// The scope with this wire name; `None` for an unknown name (refused, never ignored).
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a grant of this scope must name one item (and calls must target that item).
    pub fn targets_one_item(self) -> bool {
        matches!(self, Scope::LibraryItem)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scope {
    type Err = super::AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::from_name(s)
            .ok_or_else(|| super::AccessError::Malformed(format!("unknown scope `{s}`")))
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Scope::from_name(&name).ok_or_else(|| serde::de::Error::custom("unknown scope"))
    }
}

impl xso::FromXmlText for Scope {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        Scope::from_name(&data).ok_or(xso::error::Error::Other("unknown access scope"))
    }
}

impl xso::AsXmlText for Scope {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::services::shipped;

    #[test]
    fn playback_is_exactly_the_twelve_player_controls() {
        let mut declared = shipped::methods_in(Scope::Playback);
        declared.sort();
        let mut expected: Vec<String> = super::super::tests::EXPECTED_PLAYBACK
            .iter()
            .map(|m| m.to_string())
            .collect();
        expected.sort();
        assert_eq!(declared, expected);
        for m in [
            "player.enqueue",
            "player.clear_queue",
            "player.queue",
            "player",
            "player.",
            "player.play ",
            "PLAYER.PLAY",
            "library.browse",
            "recorder.schedule",
            "access.revoke",
        ] {
            assert_ne!(shipped::scope(m), Some(Scope::Playback), "{m}");
        }
    }

    #[test]
    fn library_item_reads_one_item_and_never_browses() {
        assert_eq!(
            shipped::methods_in(Scope::LibraryItem),
            vec!["library.item", "library.read"]
        );
        for m in [
            "library.browse",
            "library.search",
            "library.subscribe",
            "player.play",
        ] {
            assert_ne!(shipped::scope(m), Some(Scope::LibraryItem), "{m}");
        }
        assert!(Scope::LibraryItem.targets_one_item());
        assert!(!Scope::Playback.targets_one_item());
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for s in Scope::ALL {
            assert_eq!(s.name().parse::<Scope>().ok(), Some(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{s}\"")));
        }
        assert!("admin".parse::<Scope>().is_err());
        assert!("Playback".parse::<Scope>().is_err());
        assert!(serde_json::from_str::<Scope>("\"everything\"").is_err());
    }
}
