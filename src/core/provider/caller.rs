//! Who is asking: every inbound stanza is classified **once**, here, from facts the provider
//! established itself — the way the stanza came (the server, or an end-to-end tunnel), the key that
//! tunnel pinned, the sender's bare JID (stamped by our server), and whether the ACL knows the
//! sender as a guest. Nothing in a payload takes part: a stanza cannot claim to be anyone.

use xmpp_parsers::jid::{BareJid, FullJid, Jid};

use crate::core::access::{AccessGuard, DeviceFingerprint};
use crate::core::e2e::E2eEndpoint;
use crate::core::error::Result;
use crate::core::session::Session;
use tokio_xmpp::Stanza;

/// The way a request came in, and so the only way its answer may go back.
#[derive(Clone)]
pub(crate) enum Route {
    /// Through our server, in clear.
    Plain(Session),
    /// Out of an end-to-end tunnel the peer opened.
    Tunnel(E2eEndpoint),
}

impl Route {
    /// Sends `stanza` back the way the request came.
    pub(crate) fn send(&self, stanza: impl Into<Stanza>) -> Result<()> {
        match self {
            Route::Plain(session) => session.send(stanza),
            Route::Tunnel(e2e) => e2e.send(stanza),
        }
    }

    /// Whether the request came out of a tunnel.
    pub(crate) fn is_tunnel(&self) -> bool {
        matches!(self, Route::Tunnel(_))
    }

    /// The key the tunnel to `from` pinned; `None` in clear, or when that tunnel closed between
    /// delivering the stanza and this question (then the caller counts as having no key).
    fn key_of(&self, from: &Jid) -> Option<DeviceFingerprint> {
        let Route::Tunnel(e2e) = self else {
            return None;
        };
        let full = from.clone().try_into_full().ok()?;
        e2e.existing_tunnel(&full).map(|t| t.peer_fingerprint())
    }
}

/// Who sent a request, as far as the provider can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No `from`: our own account's server side. Nothing the provider serves.
    Server,
    /// Our server itself (`from` is its domain): it asks disco#info to learn what our caps mean,
    /// which is how it knows we want PEP notifications (ejabberd's mod_caps asks from the domain;
    /// Prosody asks from the account). It relays everything we send anyway.
    OwnServer {
        /// The server's JID.
        jid: Jid,
    },
    /// A device of this network, through its end-to-end tunnel.
    OwnDeviceTunnel {
        /// Its JID (full, unless the server stamped a bare one).
        jid: Jid,
        /// The key its tunnel pinned.
        key: Option<DeviceFingerprint>,
    },
    /// A device of this network, in clear through the server.
    OwnDevicePlain {
        /// Its JID.
        jid: Jid,
    },
    /// A device of another network that this provider's ACL knows: it came through a tunnel
    /// (whose key an active grant named when it opened) or holds an active grant now.
    Guest {
        /// Its JID.
        jid: Jid,
        /// Its network.
        bare: BareJid,
        /// The key its tunnel pinned; `None` in clear.
        key: Option<DeviceFingerprint>,
        /// Whether the request came out of a tunnel.
        tunnel: bool,
    },
    /// Anyone else (and anyone outside the network when the provider takes no guests).
    Stranger {
        /// Its JID.
        jid: Jid,
    },
}

impl Caller {
    /// Classifies a stanza from `from` that came by `route`, for the provider of `network`.
    pub(crate) fn classify(
        from: Option<&Jid>,
        route: &Route,
        network: &BareJid,
        access: Option<&AccessGuard>,
    ) -> Caller {
        let key = from.and_then(|jid| route.key_of(jid));
        Caller::from_facts(from, route.is_tunnel(), key, network, access)
    }

    /// The classification itself, from what the route told: whether the stanza came out of a
    /// tunnel, and the key that tunnel pinned.
    fn from_facts(
        from: Option<&Jid>,
        tunnel: bool,
        key: Option<DeviceFingerprint>,
        network: &BareJid,
        access: Option<&AccessGuard>,
    ) -> Caller {
        let Some(jid) = from else {
            return Caller::Server;
        };
        let jid = jid.clone();
        let bare = jid.to_bare();
        if bare.node().is_none() && jid.resource().is_none() && bare.domain() == network.domain() {
            return Caller::OwnServer { jid };
        }
        if &bare == network {
            return if tunnel {
                Caller::OwnDeviceTunnel { jid, key }
            } else {
                Caller::OwnDevicePlain { jid }
            };
        }
        let Some(guard) = access else {
            return Caller::Stranger { jid };
        };
        // A tunnel from outside exists only because the ACL admitted its key (the grant may have
        // ended since: the policy's ACL check says so, with the reason, and audits it).
        if tunnel || guard.knows_guest(&bare) {
            return Caller::Guest {
                jid,
                bare,
                key,
                tunnel,
            };
        }
        Caller::Stranger { jid }
    }

    /// The JID answers go to (`None` for [`Caller::Server`]).
    pub(crate) fn jid(&self) -> Option<&Jid> {
        match self {
            Caller::Server => None,
            Caller::OwnServer { jid }
            | Caller::OwnDeviceTunnel { jid, .. }
            | Caller::OwnDevicePlain { jid }
            | Caller::Guest { jid, .. }
            | Caller::Stranger { jid } => Some(jid),
        }
    }

    /// The full JID, when the sender has a resource (every call needs one).
    pub(crate) fn full(&self) -> Option<FullJid> {
        self.jid().and_then(|j| j.clone().try_into_full().ok())
    }

    /// The key its tunnel pinned (`None` in clear). Part of the caller's identity in the
    /// provider's call log too, so an answer given through a tunnel is never repeated in clear.
    pub(crate) fn tunnel_key(&self) -> Option<&DeviceFingerprint> {
        match self {
            Caller::OwnDeviceTunnel { key, .. } | Caller::Guest { key, .. } => key.as_ref(),
            _ => None,
        }
    }

    /// Whether the caller is a device of this network (either way in).
    pub(crate) fn is_own_device(&self) -> bool {
        matches!(
            self,
            Caller::OwnDeviceTunnel { .. } | Caller::OwnDevicePlain { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("test JID")
    }

    #[test]
    fn every_kind_of_caller() {
        let network: BareJid = "home@home.test".parse().expect("jid");
        let guard = AccessGuard::open(network.clone(), &Default::default()).expect("guard");
        let classify = |from: Option<&Jid>, tunnel, key, access| {
            Caller::from_facts(from, tunnel, key, &network, access)
        };
        assert_eq!(classify(None, false, None, None), Caller::Server);
        let domain: Jid = "home.test".parse().expect("jid");
        assert_eq!(
            classify(Some(&domain), false, None, None),
            Caller::OwnServer {
                jid: domain.clone()
            }
        );
        let other_server: Jid = "friend.test".parse().expect("jid");
        assert!(matches!(
            classify(Some(&other_server), false, None, None),
            Caller::Stranger { .. }
        ));
        assert_eq!(classify(None, true, None, Some(&guard)), Caller::Server);
        let own = jid("home@home.test/phone");
        assert_eq!(
            classify(Some(&own), false, None, Some(&guard)),
            Caller::OwnDevicePlain { jid: own.clone() }
        );
        assert_eq!(
            classify(Some(&own), true, Some(DeviceFingerprint([1; 32])), None),
            Caller::OwnDeviceTunnel {
                jid: own.clone(),
                key: Some(DeviceFingerprint([1; 32]))
            }
        );
        let eve = jid("eve@evil.test/x");
        // Without guest access everyone outside is a stranger, tunnel or not.
        assert_eq!(
            classify(Some(&eve), true, Some(DeviceFingerprint([2; 32])), None),
            Caller::Stranger { jid: eve.clone() }
        );
        // With it, outsiders in clear without an active grant are strangers…
        assert_eq!(
            classify(Some(&eve), false, None, Some(&guard)),
            Caller::Stranger { jid: eve.clone() }
        );
        // …and anyone out of a tunnel (admitted by the ACL) is a guest, with the tunnel's key.
        assert_eq!(
            classify(
                Some(&eve),
                true,
                Some(DeviceFingerprint([2; 32])),
                Some(&guard)
            ),
            Caller::Guest {
                jid: eve.clone(),
                bare: eve.to_bare(),
                key: Some(DeviceFingerprint([2; 32])),
                tunnel: true
            }
        );
        // A JID that only looks like ours (another user of the same server) is not ours.
        let lookalike = jid("home2@home.test/phone");
        assert!(!classify(Some(&lookalike), false, None, None).is_own_device());
        assert!(classify(Some(&own), false, None, None).is_own_device());
    }
}
