//! How a playlist is named where a media URI is expected: `xmpp:<publisher>?pmn-playlist;name=<name>`
//! (an XMPP URI, RFC 5122, with a query type of our own, like the library's `pmn-item`).
//!
//! A TV given such a URI in `player.play` / `player.enqueue` resolves the node itself (fetches
//! the entries, verifies the owner signatures, queues them in playlist order), so a phone hands
//! over a whole playlist in one call, and a guest can play a playlist without being able to name
//! any other URI. Playlist names are `A-Z a-z 0-9 . _ -` only ([`super::node::check_playlist_name`]),
//! so the name needs no escaping; anything else is not a playlist address.

use std::fmt;

use xmpp_parsers::jid::BareJid;

use super::node::check_playlist_name;

const QUERY: &str = "pmn-playlist;name=";

/// A playlist of a household: its publisher's bare JID (the PEP service) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaylistAddress {
    /// The household that publishes it (its network's bare JID).
    pub publisher: BareJid,
    /// The playlist's name.
    pub name: String,
}

impl PlaylistAddress {
    /// Reads a [`PlaylistAddress::uri`]; `None` for anything else: another scheme or query, a
    /// full JID, an invalid name, trailing parameters.
    pub fn parse(uri: &str) -> Option<PlaylistAddress> {
        let rest = uri.strip_prefix("xmpp:")?;
        let (jid, query) = rest.split_once('?')?;
        let name = query.strip_prefix(QUERY)?;
        check_playlist_name(name).ok()?;
        // A bare JID only: a resource would make the address name a device, not a household.
        if jid.contains('/') {
            return None;
        }
        let publisher = jid.parse::<BareJid>().ok()?;
        // The JID as written must be the JID as read (no case or normalisation tricks that would
        // make one URI name two nodes for two readers).
        if publisher.as_str() != jid {
            return None;
        }
        Some(PlaylistAddress {
            publisher,
            name: name.to_owned(),
        })
    }

    /// The URI of this playlist, what a phone passes to `player.play` / `player.enqueue`.
    pub fn uri(&self) -> String {
        format!("xmpp:{}?{QUERY}{}", self.publisher, self.name)
    }
}

impl fmt::Display for PlaylistAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// The URI of `publisher`'s playlist `name` (see [`PlaylistAddress`]).
pub fn playlist_uri(publisher: &BareJid, name: &str) -> String {
    PlaylistAddress {
        publisher: publisher.clone(),
        name: name.to_owned(),
    }
    .uri()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_uris_round_trip_and_nothing_else_is_one() {
        let home: BareJid = "home@home.test".parse().unwrap();
        let uri = playlist_uri(&home, "film-night_2.0");
        assert_eq!(uri, "xmpp:home@home.test?pmn-playlist;name=film-night_2.0");
        assert_eq!(
            PlaylistAddress::parse(&uri),
            Some(PlaylistAddress {
                publisher: home,
                name: "film-night_2.0".into()
            })
        );
        for junk in [
            "xmpp:home@home.test/tv?pmn-playlist;name=a",
            "xmpp:home@home.test?pmn-playlist;name=",
            "xmpp:home@home.test?pmn-playlist;name=a;b=c",
            "xmpp:home@home.test?pmn-playlist;name=a b",
            "xmpp:home@home.test?pmn-playlist;name=%61",
            "xmpp:home@home.test?pmn-item;id=a",
            "xmpp:HOME@home.test?pmn-playlist;name=a",
            "xmpp:?pmn-playlist;name=a",
            "https://home.test/?pmn-playlist;name=a",
        ] {
            assert_eq!(PlaylistAddress::parse(junk), None, "{junk}");
        }
        let long = format!("xmpp:a@b?pmn-playlist;name={}", "x".repeat(65));
        assert_eq!(PlaylistAddress::parse(&long), None);
    }
}
