//! Events from providers to subscribed controllers.
//!
//! Wire format (DESIGN §3): `<message type='headline'>` carrying
//! `<event xmlns='urn:xmpp:tmp:pmn:event:0' service='player' name='state-changed'>` with an XML-RPC
//! `<params>` inside. A provider sends events only to full JIDs that subscribed (so every recipient
//! contacted the provider first) and forgets a subscriber as soon as its presence becomes unavailable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xso::exports::rxml::xml_ncname;

use super::xmlrpc::{self, Limits, Value};
use crate::core::error::{Error, ErrorKind, Result};

/// Namespace of the `<event/>` element.
pub const NS: &str = "urn:xmpp:tmp:pmn:event:0";

/// Most subscribers one service accepts (a flood of subscriptions must not grow memory unbounded).
pub const MAX_SUBSCRIBERS_PER_SERVICE: usize = 1024;

/// One event of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct EventNotice {
    /// The service name (method prefix), e.g. `player`.
    pub service: String,
    /// The event name, e.g. `state-changed`.
    pub name: String,
    /// The event's parameters.
    pub params: Vec<Value>,
}

impl EventNotice {
    /// The `<event/>` element; [`ErrorKind::Internal`] if a parameter does not encode (a struct
    /// member named twice: the service built a value no reader would accept).
    pub fn to_element(&self) -> Result<Element> {
        let mut params = Element::builder("params", xmlrpc::NS).build();
        for value in &self.params {
            let mut param = Element::builder("param", xmlrpc::NS).build();
            let value = xmlrpc::value_to_element(value).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("event {}.{}: {e}", self.service, self.name),
                )
            })?;
            param.append_child(value);
            params.append_child(param);
        }
        // The parameters are plain XML-RPC, in the Jabber-RPC namespace, so one codec reads both.
        Ok(Element::builder("event", NS)
            .attr(xml_ncname!("service").into(), self.service.as_str())
            .attr(xml_ncname!("name").into(), self.name.as_str())
            .append(params)
            .build())
    }

    /// Parses an `<event/>` element.
    pub fn from_element(el: &Element, limits: &Limits) -> Result<Self> {
        let bad = |why: &str| Error::new(ErrorKind::Protocol, format!("malformed event: {why}"));
        if !el.is("event", NS) {
            return Err(bad("not an <event/>"));
        }
        let service = el.attr("service").ok_or_else(|| bad("no service"))?;
        let name = el.attr("name").ok_or_else(|| bad("no name"))?;
        let mut params = Vec::new();
        if let Some(list) = el.get_child("params", xmlrpc::NS) {
            for param in list.children() {
                if !param.is("param", xmlrpc::NS) {
                    return Err(bad("unexpected child of <params/>"));
                }
                let value = param
                    .children()
                    .find(|c| c.is("value", xmlrpc::NS))
                    .ok_or_else(|| bad("<param/> without <value/>"))?;
                params.push(xmlrpc::parse_value(value, limits).map_err(|e| bad(&e.to_string()))?);
            }
        }
        Ok(Self {
            service: service.to_owned(),
            name: name.to_owned(),
            params,
        })
    }
}

/// Where a service sends its events; the provider fans them out to the subscribers.
#[derive(Debug, Clone)]
pub struct EventSink {
    service: String,
    tx: mpsc::UnboundedSender<EventNotice>,
}

impl EventSink {
    /// A sink for `service` feeding `tx`.
    pub fn new(service: impl Into<String>, tx: mpsc::UnboundedSender<EventNotice>) -> Self {
        Self {
            service: service.into(),
            tx,
        }
    }

    /// Whether the provider reading this sink has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Emits an event; dropped silently once the provider has stopped.
    pub fn emit(&self, name: &str, params: Vec<Value>) {
        let _ = self.tx.send(EventNotice {
            service: self.service.clone(),
            name: name.to_owned(),
            params,
        });
    }
}

/// Which events of a service a subscriber wants: every event, or only the named ones.
pub type EventFilter = Option<BTreeSet<String>>;

/// The subscribers of each service of a provider, each with its [`EventFilter`].
#[derive(Debug, Default)]
pub struct Subscribers {
    by_service: HashMap<String, BTreeMap<FullJid, EventFilter>>,
}

impl Subscribers {
    /// Subscribes `jid` to `service`'s events selected by `filter` (`None`: all), replacing an
    /// earlier subscription of the same JID. Fails when the service is full.
    pub fn subscribe(&mut self, service: &str, jid: FullJid, filter: EventFilter) -> Result<()> {
        let map = self.by_service.entry(service.to_owned()).or_default();
        if !map.contains_key(&jid) && map.len() >= MAX_SUBSCRIBERS_PER_SERVICE {
            return Err(Error::new(
                ErrorKind::Fault,
                format!("{service} has too many subscribers"),
            ));
        }
        map.insert(jid, filter);
        Ok(())
    }

    /// Removes `jid` from `service`'s subscribers. Returns whether it was subscribed.
    pub fn unsubscribe(&mut self, service: &str, jid: &FullJid) -> bool {
        self.by_service
            .get_mut(service)
            .is_some_and(|map| map.remove(jid).is_some())
    }

    /// Forgets `jid` everywhere (its presence became unavailable). Returns whether it was known.
    pub fn forget(&mut self, jid: &FullJid) -> bool {
        let mut any = false;
        for map in self.by_service.values_mut() {
            any |= map.remove(jid).is_some();
        }
        any
    }

    /// The subscribers of `service`, whatever they selected.
    pub fn of(&self, service: &str) -> Vec<FullJid> {
        self.by_service
            .get(service)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscribers of `service` that want the event `name`.
    pub fn for_event(&self, service: &str, name: &str) -> Vec<FullJid> {
        self.by_service
            .get(service)
            .map(|m| {
                m.iter()
                    .filter(|(_, f)| f.as_ref().is_none_or(|set| set.contains(name)))
                    .map(|(jid, _)| jid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Total number of subscriptions.
    pub fn len(&self) -> usize {
        self.by_service.values().map(BTreeMap::len).sum()
    }

    /// Whether nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lets an event through at most once per interval (position updates must not flood subscribers,
/// phones on mobile data least of all).
#[derive(Debug, Clone)]
pub struct Throttle {
    min_interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// At most one event per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last: None,
        }
    }

    /// Whether an event may go out at `now`; if so, `now` counts as the last one.
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.min_interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> FullJid {
        s.parse().expect("full JID")
    }

    #[test]
    fn event_round_trips() {
        let notice = EventNotice {
            service: "player".into(),
            name: "state-changed".into(),
            params: vec![Value::String("playing".into()), Value::Int(42)],
        };
        let el = notice.to_element().expect("encodes");
        assert_eq!(
            EventNotice::from_element(&el, &Limits::default()).expect("parse"),
            notice
        );
    }

    #[test]
    fn malformed_events_are_rejected() {
        let el: Element = "<event xmlns='urn:xmpp:tmp:pmn:event:0' name='x'/>"
            .parse()
            .expect("xml");
        let err = EventNotice::from_element(&el, &Limits::default()).expect_err("no service");
        assert_eq!(err.kind(), ErrorKind::Protocol);
        let el: Element = "<event xmlns='urn:xmpp:tmp:pmn:event:0' service='player' name='x'><params xmlns='jabber:iq:rpc'><param><value><i4>nope</i4></value></param></params></event>"
            .parse()
            .expect("xml");
        assert!(EventNotice::from_element(&el, &Limits::default()).is_err());
    }

    #[test]
    fn forgetting_a_subscriber_removes_it_from_every_service() {
        let mut subs = Subscribers::default();
        let phone = full("home@home.test/phone");
        subs.subscribe("player", phone.clone(), None)
            .expect("subscribe");
        subs.subscribe("recorder", phone.clone(), None)
            .expect("subscribe");
        subs.subscribe("player", phone.clone(), None)
            .expect("idempotent");
        assert_eq!(subs.len(), 2);
        assert!(subs.forget(&phone));
        assert!(subs.is_empty());
        assert!(!subs.forget(&phone));
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut subs = Subscribers::default();
        for i in 0..MAX_SUBSCRIBERS_PER_SERVICE {
            subs.subscribe("player", full(&format!("home@home.test/p{i}")), None)
                .expect("below the bound");
        }
        assert!(subs
            .subscribe("player", full("home@home.test/one-too-many"), None)
            .is_err());
    }

    #[test]
    fn event_filters_select_kinds_and_replace_earlier_ones() {
        let mut subs = Subscribers::default();
        let phone = full("home@home.test/phone");
        let tablet = full("home@home.test/tablet");
        let only_state: EventFilter = Some(["state-changed".to_string()].into());
        subs.subscribe("player", phone.clone(), only_state)
            .expect("subscribe");
        subs.subscribe("player", tablet.clone(), None)
            .expect("subscribe");
        assert_eq!(subs.for_event("player", "position"), vec![tablet.clone()]);
        assert_eq!(subs.for_event("player", "state-changed").len(), 2);
        subs.subscribe(
            "player",
            phone.clone(),
            Some(["position".to_string()].into()),
        )
        .expect("replace");
        assert_eq!(subs.for_event("player", "state-changed"), vec![tablet]);
        assert_eq!(subs.len(), 2);
        assert!(subs.for_event("recorder", "x").is_empty());
    }

    #[test]
    fn throttle_lets_one_event_through_per_interval() {
        let mut t = Throttle::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(t.ready(t0));
        assert!(!t.ready(t0 + Duration::from_millis(50)));
        assert!(t.ready(t0 + Duration::from_millis(100)));
        assert!(!t.ready(t0 + Duration::from_millis(150)));
    }
}
