//! The live list of providers a controller can drive, fed by presence and disco#info.

use std::collections::{BTreeMap, HashMap, HashSet};

use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::caps::{Advertised, CapsCache, CapsSnapshot, DiscoAnswer, Verdict};
use super::{IDENTITY_CATEGORY, IDENTITY_TYPE};

/// A provider as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's full JID (network identifier + device resource).
    pub jid: FullJid,
    /// The device name from its `automation/service` identity.
    pub name: String,
    /// The service features it announces: the disco#info features that name a pmn service (see
    /// [`is_service_feature`]), never XMPP or pmn protocol features.
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
        caps: Option<Advertised>,
    },
}

/// The protocols under pmn's namespace prefix that are not services: a device announces them to
/// say it speaks them (access requests, events, pairing, key attestation), not to offer them.
const PMN_PROTOCOLS: &[&str] = &["access", "event", "pair", "attest"];

/// Prefix of pmn's own namespaces (services and protocols alike).
const PMN_PREFIX: &str = "urn:xmpp:tmp:pmn:";

/// Whether a disco#info feature names a service a controller can drive: the spec's player
/// (`urn.xmpp.tmp.media.player`, spec §6) or a `urn:xmpp:tmp:pmn:<name>:<version>` feature whose
/// name is not one of pmn's protocols. Everything else a device lists (disco, caps, ping, MUC,
/// PEP `+notify` interest, …) is how it talks, not what it offers.
pub fn is_service_feature(feature: &str) -> bool {
    if feature == crate::core::services::player::FEATURE {
        return true;
    }
    let Some(rest) = feature.strip_prefix(PMN_PREFIX) else {
        return false;
    };
    let name = rest.split(':').next().unwrap_or_default();
    !name.is_empty() && !PMN_PROTOCOLS.contains(&name) && !feature.ends_with("+notify")
}

/// Providers of the trusted networks that are online now.
#[derive(Debug)]
pub struct ProviderDirectory {
    trusted: HashSet<BareJid>,
    own: Option<FullJid>,
    /// Every online resource of a trusted network, with the caps it last announced.
    online: HashMap<FullJid, Option<Advertised>>,
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

    /// Fills the caps cache from a snapshot saved at an earlier start.
    pub fn restore_caps(&mut self, snapshot: &CapsSnapshot) {
        self.cache.restore(snapshot);
    }

    /// Forgets `jid`'s last presence, so that its next presence is looked at afresh (its disco#info
    /// query could not be made).
    pub fn forget(&mut self, jid: &FullJid) {
        self.online.remove(jid);
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
                let caps = Advertised::from_presence(presence);
                let previous = self.online.insert(from.clone(), caps.clone());
                if let (Some(Some(prev)), Some(now)) = (&previous, &caps) {
                    if prev == now {
                        return PresenceOutcome::Ignored; // a status change, same capabilities
                    }
                }
                match caps.as_ref().and_then(|c| self.cache.get(c)) {
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
    /// The answer is cached by caps hash only when it verifies (and is well-formed); it is applied
    /// to `jid` only while that device is still online with the same caps (a late answer must not
    /// resurrect it). An answer that does not verify is still used for `jid` alone (XEP-0115 §5.4).
    ///
    /// `caps` is what the query was made for: `None` for a device asked individually, also when it
    /// announced caps whose hash another device's answer failed.
    pub fn on_info(
        &mut self,
        jid: FullJid,
        caps: Option<&Advertised>,
        answer: &DiscoAnswer,
    ) -> (Vec<DirectoryUpdate>, Option<Verdict>) {
        let Some(current) = self.online.get(&jid) else {
            return (vec![], None);
        };
        if caps.is_some() && current.as_ref() != caps {
            return (vec![], None);
        }
        let verdict = caps.map(|caps| {
            let verdict = self.cache.insert_verified(caps, answer);
            match &verdict {
                Verdict::Verified => {}
                Verdict::Mismatch => tracing::warn!(
                    %jid,
                    "disco#info does not match the announced caps hash; not cached"
                ),
                Verdict::IllFormed(e) => tracing::warn!(
                    %jid,
                    error = %e,
                    "ill-formed disco#info (XEP-0115 §5.4); not cached"
                ),
            }
            verdict
        });
        (self.apply(jid, &answer.info), verdict)
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
            .filter(|f| is_service_feature(f))
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
    use crate::core::discovery::{caps_for, disco_info_for, ecaps2_for, presence_for};
    use minidom::Element;

    fn full(s: &str) -> FullJid {
        s.parse().expect("full JID")
    }

    fn available(from: &str, info: Option<&DiscoInfoResult>) -> Presence {
        match info {
            Some(info) => presence_for(info).with_from(full(from)),
            None => Presence::available().with_from(full(from)),
        }
    }

    fn network() -> ProviderDirectory {
        let mut d = ProviderDirectory::new("home@home.test".parse().expect("bare"));
        d.set_own(full("home@home.test/phone"));
        d
    }

    fn answer(info: &DiscoInfoResult) -> DiscoAnswer {
        DiscoAnswer::from_info(info.clone())
    }

    #[test]
    fn unknown_caps_are_queried_once_then_served_from_cache() {
        let mut d = network();
        let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
        let out = d.on_presence(&available("home@home.test/tv", Some(&info)));
        let PresenceOutcome::NeedInfo { jid, caps } = out else {
            panic!("expected a disco query, got {out:?}");
        };
        let (updates, verdict) = d.on_info(jid, caps.as_ref(), &answer(&info));
        assert_eq!(verdict, Some(Verdict::Verified));
        assert!(
            matches!(&updates[..], [DirectoryUpdate::Added(p)] if p.name == "TV"
            && p.services == vec!["urn.xmpp.tmp.media.player".to_string()])
        );
        // A second device with the same caps: no query.
        let out = d.on_presence(&available("home@home.test/tv2", Some(&info)));
        assert!(matches!(out, PresenceOutcome::Updated(ref u) if u.len() == 1));
        // A device announcing only the XEP-0115 hash, or only ecaps2, is served from the same cache.
        let legacy = Presence::available()
            .with_from(full("home@home.test/tv3"))
            .with_payload(caps_for(&info));
        assert!(matches!(
            d.on_presence(&legacy),
            PresenceOutcome::Updated(_)
        ));
        let modern = Presence::available()
            .with_from(full("home@home.test/tv4"))
            .with_payload(ecaps2_for(&info));
        assert!(matches!(
            d.on_presence(&modern),
            PresenceOutcome::Updated(_)
        ));
        assert_eq!(d.providers().len(), 4);
        assert_eq!(
            d.caps_cache().len(),
            3,
            "one entry per announced (scheme, algo, hash)"
        );
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
        assert!(d.on_info(jid, caps.as_ref(), &answer(&info)).0.is_empty());
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
        assert!(d.on_info(jid, caps.as_ref(), &answer(&phone)).0.is_empty());
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
        let (updates, verdict) = d.on_info(jid, caps.as_ref(), &answer(&forged));
        assert_eq!(updates.len(), 1);
        assert_eq!(verdict, Some(Verdict::Mismatch));
        assert!(d.caps_cache().is_empty());
    }

    /// A foreign provider's answer with an extended form whose fields are not sorted by `var`, and
    /// the XEP-0115 hash it announces (computed here over the spec's sorted verification string).
    fn foreign_provider(duplicate_feature: bool) -> (Presence, DiscoAnswer) {
        let dup = if duplicate_feature {
            "<feature var='urn.xmpp.tmp.media.player'/>"
        } else {
            ""
        };
        let xml = format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='automation' type='service' name='Foreign TV'/>\
             <feature var='urn.xmpp.tmp.media.player'/>{dup}\
             <feature var='http://jabber.org/protocol/muc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='software_version'><value>2.1</value></field>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var='os'><value>Linux</value></field></x></query>"
        );
        let el: Element = xml.parse().expect("xml");
        let verification = "automation/service//Foreign TV<http://jabber.org/protocol/caps<\
            http://jabber.org/protocol/muc<urn.xmpp.tmp.media.player<\
            urn:xmpp:dataforms:softwareinfo<os<Linux<software_version<2.1<";
        let hash = xmpp_parsers::caps::hash_caps(
            verification.as_bytes(),
            xmpp_parsers::hashes::Algo::Sha_1,
        )
        .expect("sha-1");
        let presence = Presence::available()
            .with_from(full("home@home.test/foreign"))
            .with_payload(xmpp_parsers::caps::Caps::new(
                "https://foreign.example",
                hash,
            ));
        (presence, DiscoAnswer::from_element(el).expect("parses"))
    }

    #[test]
    fn foreign_unsorted_form_verifies_and_only_services_are_listed() {
        let mut d = network();
        let (presence, answer) = foreign_provider(false);
        let PresenceOutcome::NeedInfo { jid, caps } = d.on_presence(&presence) else {
            panic!("expected a disco query");
        };
        let (updates, verdict) = d.on_info(jid, caps.as_ref(), &answer);
        assert_eq!(verdict, Some(Verdict::Verified));
        let [DirectoryUpdate::Added(p)] = &updates[..] else {
            panic!("expected one provider, got {updates:?}");
        };
        assert_eq!(p.services, vec!["urn.xmpp.tmp.media.player".to_string()]);
        assert_eq!(d.caps_cache().len(), 1);
    }

    #[test]
    fn ill_formed_answer_is_used_once_but_not_cached() {
        let mut d = network();
        let (presence, answer) = foreign_provider(true);
        let PresenceOutcome::NeedInfo { jid, caps } = d.on_presence(&presence) else {
            panic!("expected a disco query");
        };
        let (updates, verdict) = d.on_info(jid, caps.as_ref(), &answer);
        assert!(matches!(verdict, Some(Verdict::IllFormed(_))));
        assert_eq!(updates.len(), 1, "shown, as an unverified answer is");
        assert!(d.caps_cache().is_empty());
        // The next device with that hash is asked again.
        let again = presence.clone().with_from(full("home@home.test/foreign2"));
        assert!(matches!(
            d.on_presence(&again),
            PresenceOutcome::NeedInfo { .. }
        ));
    }

    #[test]
    fn service_features_are_the_player_and_pmn_services_only() {
        for service in [
            crate::core::services::player::FEATURE,
            crate::core::services::recorder::FEATURE,
            crate::core::services::library::FEATURE,
        ] {
            assert!(is_service_feature(service), "{service}");
        }
        for protocol in [
            crate::core::access::NS_ACCESS,
            crate::core::rpc::events::NS,
            crate::core::e2e::xml::NS_PAIR,
            crate::core::e2e::pubkey::NS_ATTEST,
            crate::core::e2e::pubkey::NOTIFY_PUBKEY,
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/disco#info",
            xmpp_parsers::ns::ECAPS2,
            "jabber:iq:rpc",
            "urn:xmpp:tmp:pmn:",
            "urn:xmpp:tmp:pmn:recorder:0+notify",
        ] {
            assert!(!is_service_feature(protocol), "{protocol}");
        }
    }
}
