//! The scope table: which methods each named scope allows. One table, read by [`Scope::allows`]; a
//! method not listed under a scope is refused for it, so a new method (or a new service) is closed to
//! guests until someone adds it here on purpose.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A named, small set of methods an owner can grant to a guest.
///
/// ```
/// use pmn::core::access::Scope;
/// let s: Scope = "playback".parse().unwrap();
/// assert!(s.allows("player.pause"));
/// assert!(!s.allows("library.browse"));
/// assert!(!s.allows("recorder.schedule"));
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

/// `playback`: exactly these. `player.enqueue` / `clear_queue` / `queue` stay out: they let a guest
/// see and rewrite what the household queued, which is more than "control the film I brought".
const PLAYBACK_METHODS: &[&str] = &[
    "player.play",
    "player.pause",
    "player.resume",
    "player.stop",
    "player.seek",
    "player.set_volume",
    "player.mute",
    "player.next",
    "player.previous",
    "player.status",
    "player.subscribe",
    "player.unsubscribe",
];

/// `library-item`: the read methods that take an item id. The ACL additionally requires the id to be
/// the grant's item ([`crate::core::access::Acl::check_item`]); browse and search are never allowed
/// because they would reveal the rest of the library.
const LIBRARY_ITEM_METHODS: &[&str] = &["library.item", "library.read"];

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

    /// The methods this scope allows (`<service>.<verb>`).
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Scope::Playback => PLAYBACK_METHODS,
            Scope::LibraryItem => LIBRARY_ITEM_METHODS,
        }
    }

    /// Whether `method` is in this scope. Exact match only: no prefixes, no wildcards.
    pub fn allows(self, method: &str) -> bool {
        self.methods().contains(&method)
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

    #[test]
    fn playback_is_exactly_the_twelve_player_controls() {
        let expected = [
            "player.play",
            "player.pause",
            "player.resume",
            "player.stop",
            "player.seek",
            "player.set_volume",
            "player.mute",
            "player.next",
            "player.previous",
            "player.status",
            "player.subscribe",
            "player.unsubscribe",
        ];
        assert_eq!(Scope::Playback.methods(), &expected[..]);
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
            assert!(!Scope::Playback.allows(m), "{m}");
        }
    }

    #[test]
    fn library_item_reads_one_item_and_never_browses() {
        assert!(Scope::LibraryItem.allows("library.item"));
        assert!(Scope::LibraryItem.allows("library.read"));
        for m in [
            "library.browse",
            "library.search",
            "library.subscribe",
            "player.play",
        ] {
            assert!(!Scope::LibraryItem.allows(m), "{m}");
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
