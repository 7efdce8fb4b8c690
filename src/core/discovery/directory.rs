//! The live list of providers a controller can drive, fed by presence and disco#info.

use std::collections::{BTreeMap, HashMap, HashSet};

use xmpp_parsers::caps::Caps;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::caps::CapsCache;
use super::{IDENTITY_CATEGORY, IDENTITY_TYPE};

/// A provider as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's full JID (network identifier + device resource).
    pub jid: FullJid,
    /// The device name from its `automation/service` identity.
    pub name: String,
    /// The service features it announces (disco#info features minus the XMPP plumbing ones).
    pub services: Vec<String>,
}

/// A change of the directory, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryUpdate {
    /// A provider came online (or was first seen).
    Added(ProviderInfo),
    /// A provider announced new capabilities.
    Changed(ProviderInfo),
    /// A provider went offline.
    Removed(FullJid),
}

/// What the controller must do after a presence.
#[derive(Debug, Clone)]
pub enum PresenceOutcome {
    /// Nothing (not of our network, our own presence, or nothing changed).
    Ignored,
    /// The directory changed.
    Updated(Vec<DirectoryUpdate>),
    /// Ask this device for disco#info, then call [`ProviderDirectory::on_info`].
    NeedInfo {
        /// The device to ask.
        jid: FullJid,
        /// The caps it announced, if any (the answer is cached only if it verifies against them).
        caps: Option<Caps>,
    },
}

/// Features that every XMPP client has and that are not services.
const PLUMBING: &[&str] = &[
    xmpp_parsers::ns::DISCO_INFO,
    xmpp_parsers::ns::DISCO_ITEMS,
    xmpp_parsers::ns::CAPS,
    xmpp_parsers::ns::PING,
    "jabber:iq:rpc",
    "jabber:iq:version",
    "urn:xmpp:time",
];

/// Providers of the trusted networks that are online now.
#[derive(Debug)]
pub struct ProviderDirectory {
    trusted: HashSet<BareJid>,
    own: Option<FullJid>,
    /// Every online resource of a trusted network, with the caps it last announced.
    online: HashMap<FullJid, Option<Caps>>,
    providers: BTreeMap<FullJid, ProviderInfo>,
    cache: CapsCache,
}

impl ProviderDirectory {
    /// A directory for the network `network` (the controller's own bare JID).
    pub fn new(network: BareJid) -> Self {
        Self {
            trusted: HashSet::from([network]),
            own: None,
            online: HashMap::new(),
            providers: BTreeMap::new(),
            cache: CapsCache::default(),
        }
    }

    /// Sets our own full JID, whose presence is never a provider.
    pub fn set_own(&mut self, own: FullJid) {
        self.own = Some(own);
    }

    /// Trusts the providers of another network (a host household that granted us access).
    pub fn trust_network(&mut self, network: BareJid) {
        self.trusted.insert(network);
    }

    /// Stops trusting `network` (a host that denied or revoked access): its providers leave the
    /// directory. Our own network is never distrusted.
    pub fn distrust_network(&mut self, network: &BareJid) -> Vec<DirectoryUpdate> {
        if self
            .own
            .as_ref()
            .is_some_and(|own| own.to_bare() == *network)
        {
            return vec![];
        }
        self.trusted.remove(network);
        self.online.retain(|jid, _| jid.to_bare() != *network);
        let gone: Vec<FullJid> = self
            .providers
            .keys()
            .filter(|jid| jid.to_bare() == *network)
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|jid| self.providers.remove(&jid).map(|_| jid))
            .map(DirectoryUpdate::Removed)
            .collect()
    }

    /// The providers online now, ordered by JID.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.providers.values().cloned().collect()
    }

    /// One provider, if online.
    pub fn get(&self, jid: &FullJid) -> Option<&ProviderInfo> {
        self.providers.get(jid)
    }

    /// The verified caps cache (for inspection in tests and diagnostics).
    pub fn caps_cache(&self) -> &CapsCache {
        &self.cache
    }

    /// Forgets everyone (the stream was reset; presence will be sent again by the server).
    pub fn clear(&mut self) -> Vec<DirectoryUpdate> {
        self.online.clear();
        let gone: Vec<_> = std::mem::take(&mut self.providers)
            .into_keys()
            .map(DirectoryUpdate::Removed)
            .collect();
        gone
    }

    /// Feeds a presence stanza.
    pub fn on_presence(&mut self, presence: &Presence) -> PresenceOutcome {
        let Some(from) = presence
            .from
            .clone()
            .and_then(|j: Jid| j.try_into_full().ok())
        else {
            return PresenceOutcome::Ignored;
        };
        if !self.trusted.contains(&from.to_bare()) || self.own.as_ref() == Some(&from) {
            return PresenceOutcome::Ignored;
        }
        match presence.type_ {
            PresenceType::None => {
                let caps = presence
                    .payloads
                    .iter()
                    .find(|p| p.is("c", xmpp_parsers::ns::CAPS))
                    .and_then(|p| Caps::try_from(p.clone()).ok());
                let previous = self.online.insert(from.clone(), caps.clone());
                if let Some(Some(prev)) = &previous {
                    if caps.as_ref().map(|c| &c.ver) == Some(&prev.ver) {
                        return PresenceOutcome::Ignored; // a status change, same capabilities
                    }
                }
                match caps.as_ref().and_then(|c| self.cache.get(c).cloned()) {
                    Some(info) => PresenceOutcome::Updated(self.apply(from, &info)),
                    None => PresenceOutcome::NeedInfo { jid: from, caps },
                }
            }
            PresenceType::Unavailable => {
                self.online.remove(&from);
                match self.providers.remove(&from) {
                    Some(_) => PresenceOutcome::Updated(vec![DirectoryUpdate::Removed(from)]),
                    None => PresenceOutcome::Ignored,
                }
            }
            _ => PresenceOutcome::Ignored,
        }
    }

    /// Feeds the disco#info answer for a [`PresenceOutcome::NeedInfo`].
    ///
    /// The answer is cached by caps hash only when it verifies; it is applied to `jid` only while
    /// that device is still online with the same caps (a late answer must not resurrect it).
    pub fn on_info(
        &mut self,
        jid: FullJid,
        caps: Option<&Caps>,
        info: &DiscoInfoResult,
    ) -> Vec<DirectoryUpdate> {
        match self.online.get(&jid) {
            Some(current) if current.as_ref().map(|c| &c.ver) == caps.map(|c| &c.ver) => {}
            _ => return vec![],
        }
        if let Some(caps) = caps {
            if !self.cache.insert_verified(caps, info) {
                tracing::warn!(%jid, "disco#info does not match the announced caps hash; not cached");
            }
        }
        self.apply(jid, info)
    }

    fn apply(&mut self, jid: FullJid, info: &DiscoInfoResult) -> Vec<DirectoryUpdate> {
        let identity = info
            .identities
            .iter()
            .find(|i| i.category == IDENTITY_CATEGORY && i.type_ == IDENTITY_TYPE);
        let Some(identity) = identity else {
            // A controller or another client of the network: not a provider.
            return match self.providers.remove(&jid) {
                Some(_) => vec![DirectoryUpdate::Removed(jid)],
                None => vec![],
            };
        };
        let services: Vec<String> = info
            .features
            .iter()
            // `+notify` is PEP interest (XEP-0163), never a service.
            .filter(|f| !PLUMBING.contains(&f.as_str()) && !f.ends_with("+notify"))
            .cloned()
            .collect();
        let provider = ProviderInfo {
            jid: jid.clone(),
            name: identity
                .name
                .clone()
                .unwrap_or_else(|| jid.resource().to_string()),
            services,
        };
        match self.providers.insert(jid, provider.clone()) {
            None => vec![DirectoryUpdate::Added(provider)],
            Some(old) if old != provider => vec![DirectoryUpdate::Changed(provider)],
            Some(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::discovery::{caps_for, disco_info_for};

    fn full(s: &str) -> FullJid {
        s.parse().expect("full JID")
    }

    fn available(from: &str, info: Option<&DiscoInfoResult>) -> Presence {
        let mut p = Presence::available().with_from(full(from));
        if let Some(info) = info {
            p.add_payload(caps_for(info));
        }
        p
    }

    fn network() -> ProviderDirectory {
        let mut d = ProviderDirectory::new("home@home.test".parse().expect("bare"));
        d.set_own(full("home@home.test/phone"));
        d
    }

    #[test]
    fn unknown_caps_are_queried_once_then_served_from_cache() {
        let mut d = network();
        let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
        let out = d.on_presence(&available("home@home.test/tv", Some(&info)));
        let PresenceOutcome::NeedInfo { jid, caps } = out else {
            panic!("expected a disco query, got {out:?}");
        };
        let updates = d.on_info(jid, caps.as_ref(), &info);
        assert!(
            matches!(&updates[..], [DirectoryUpdate::Added(p)] if p.name == "TV"
            && p.services == vec!["urn.xmpp.tmp.media.player".to_string()])
        );
        // A second device with the same caps: no query.
        let out = d.on_presence(&available("home@home.test/tv2", Some(&info)));
        assert!(matches!(out, PresenceOutcome::Updated(ref u) if u.len() == 1));
        assert_eq!(d.providers().len(), 2);
        assert_eq!(d.caps_cache().len(), 1);
    }

    #[test]
    fn unavailable_removes_and_late_answer_does_not_resurrect() {
        let mut d = network();
        let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
        let out = d.on_presence(&available("home@home.test/tv", Some(&info)));
        let PresenceOutcome::NeedInfo { jid, caps } = out else {
            panic!("expected a disco query");
        };
        let gone = Presence::unavailable().with_from(full("home@home.test/tv"));
        assert!(matches!(d.on_presence(&gone), PresenceOutcome::Ignored));
        assert!(d.on_info(jid, caps.as_ref(), &info).is_empty());
        assert!(d.providers().is_empty());
    }

    #[test]
    fn strangers_self_and_controllers_are_not_providers() {
        let mut d = network();
        let info = disco_info_for(Some("Fake TV"), &["urn.xmpp.tmp.media.player"]);
        assert!(matches!(
            d.on_presence(&available("stranger@home.test/tv", Some(&info))),
            PresenceOutcome::Ignored
        ));
        assert!(matches!(
            d.on_presence(&available("home@home.test/phone", Some(&info))),
            PresenceOutcome::Ignored
        ));
        let phone = disco_info_for(None, &[]);
        let out = d.on_presence(&available("home@home.test/other-phone", Some(&phone)));
        let PresenceOutcome::NeedInfo { jid, caps } = out else {
            panic!("expected a disco query");
        };
        assert!(d.on_info(jid, caps.as_ref(), &phone).is_empty());
        assert!(d.providers().is_empty());
    }

    #[test]
    fn forged_answer_is_used_for_that_device_but_not_cached() {
        let mut d = network();
        let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
        let out = d.on_presence(&available("home@home.test/tv", Some(&info)));
        let PresenceOutcome::NeedInfo { jid, caps } = out else {
            panic!("expected a disco query");
        };
        let forged = disco_info_for(Some("TV"), &["urn:xmpp:tmp:pmn:recorder:0"]);
        assert_eq!(d.on_info(jid, caps.as_ref(), &forged).len(), 1);
        assert!(d.caps_cache().is_empty());
    }
}
