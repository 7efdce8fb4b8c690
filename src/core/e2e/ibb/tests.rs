//! The registry's checks (sender, sequence, size, bounds) before any block is acknowledged.

use super::*;
use crate::core::e2e::limits::E2eCounters;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

fn data(sid: &str, seq: u16, len: usize) -> Element {
    Element::from(Data {
        seq,
        sid: StreamId(sid.into()),
        data: vec![0x5a; len],
    })
}

fn is_error(iq: &Iq, condition: DefinedCondition) -> bool {
    matches!(iq, Iq::Error { error, .. } if error.defined_condition == condition)
}

#[tokio::test]
async fn registry_refuses_strangers_gaps_duplicates_and_oversized_blocks() {
    let reg = IbbRegistry::default();
    let peer: FullJid = "home@home.test/tv".parse().unwrap();
    let stranger: Jid = "evil@stranger.test/x".parse().unwrap();
    let from = Jid::from(peer.clone());
    let mut rx = reg.register("s1", peer.clone(), 16).unwrap();

    assert!(matches!(
        reg.handle(&from, "1", &data("s1", 0, 4)),
        Iq::Result { .. }
    ));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 4));
    // A third party that knows the sid is refused and the stream survives.
    assert!(is_error(
        &reg.handle(&stranger, "2", &data("s1", 1, 4)),
        DefinedCondition::ItemNotFound
    ));
    assert!(is_error(
        &reg.handle(&from, "3", &data("nope", 0, 4)),
        DefinedCondition::ItemNotFound
    ));
    assert!(matches!(
        reg.handle(&from, "4", &data("s1", 1, 4)),
        Iq::Result { .. }
    ));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Data(_))));
    // A duplicate ends the stream with an error.
    assert!(is_error(
        &reg.handle(&from, "5", &data("s1", 1, 4)),
        DefinedCondition::UnexpectedRequest
    ));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(e)) if e.kind() == ErrorKind::Protocol));
    assert!(is_error(
        &reg.handle(&from, "6", &data("s1", 2, 4)),
        DefinedCondition::ItemNotFound
    ));

    let mut rx = reg.register("s2", peer.clone(), 16).unwrap();
    assert!(is_error(
        &reg.handle(&from, "7", &data("s2", 0, 17)),
        DefinedCondition::PolicyViolation
    ));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));

    let mut rx = reg.register("s3", peer, 16).unwrap();
    assert!(is_error(
        &reg.handle(&from, "8", &data("s3", 5, 1)),
        DefinedCondition::UnexpectedRequest
    ));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));
    let junk: Element = "<data xmlns='http://jabber.org/protocol/ibb' sid='s3'>AAAA</data>"
        .parse()
        .unwrap();
    assert!(is_error(
        &reg.handle(&from, "9", &junk),
        DefinedCondition::BadRequest
    ));
}

#[tokio::test]
async fn a_reused_sid_from_another_jid_neither_replaces_nor_ends_the_live_stream() {
    let reg = IbbRegistry::default();
    let tv: FullJid = "home@home.test/tv".parse().unwrap();
    let guest: FullJid = "romeo@friend.test/phone".parse().unwrap();
    let mut live = reg.register("s1", tv.clone(), 16).unwrap();
    // Another JID registers (after its own session-initiate) the same sid: its own stream.
    let mut other = reg.register("s1", guest.clone(), 16).unwrap();
    // The same peer cannot register a live sid twice.
    assert_eq!(
        reg.register("s1", tv.clone(), 16).unwrap_err(),
        RegisterRefusal::Conflict
    );
    // Each sender's blocks reach its own stream only; the other's close ends only its own.
    let (from_tv, from_guest) = (Jid::from(tv.clone()), Jid::from(guest.clone()));
    assert!(matches!(
        reg.handle(&from_guest, "1", &data("s1", 0, 3)),
        Iq::Result { .. }
    ));
    let close: Element = Element::from(Close {
        sid: StreamId("s1".into()),
    });
    assert!(matches!(
        reg.handle(&from_guest, "2", &close),
        Iq::Result { .. }
    ));
    assert!(matches!(other.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 3));
    assert!(matches!(other.recv().await, Some(IbbEvent::Close)));
    assert!(matches!(
        reg.handle(&from_tv, "3", &data("s1", 0, 4)),
        Iq::Result { .. }
    ));
    assert!(matches!(live.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 4));
    reg.remove(&guest, "s1");
    assert_eq!(reg.len(), 1);
}

#[tokio::test]
async fn the_registry_is_bounded_in_streams_and_in_buffered_bytes() {
    let counters = Arc::new(E2eCounters::default());
    let reg = IbbRegistry::new(2, 10, counters.clone());
    let peer: FullJid = "home@home.test/tv".parse().unwrap();
    let from = Jid::from(peer.clone());
    let mut a = reg.register("a", peer.clone(), 16).unwrap();
    let _b = reg.register("b", peer.clone(), 16).unwrap();
    assert_eq!(
        reg.register("c", peer.clone(), 16).unwrap_err(),
        RegisterRefusal::Full
    );
    assert_eq!(counters.snapshot().ibb_streams_refused, 1);
    // 8 unread bytes on a, then 4 more on b would exceed 10: refused, b ends, a lives.
    assert!(matches!(
        reg.handle(&from, "1", &data("a", 0, 8)),
        Iq::Result { .. }
    ));
    assert_eq!(reg.buffered(), 8);
    assert!(is_error(
        &reg.handle(&from, "2", &data("b", 0, 4)),
        DefinedCondition::ResourceConstraint
    ));
    assert_eq!(counters.snapshot().ibb_total_overflows, 1);
    assert_eq!(reg.len(), 1);
    // Reading frees the budget.
    assert!(matches!(a.recv().await, Some(IbbEvent::Data(_))));
    assert_eq!(reg.buffered(), 0);
    assert!(matches!(
        reg.handle(&from, "3", &data("a", 1, 8)),
        Iq::Result { .. }
    ));
    // A stream dropped with unread blocks gives their bytes back too.
    drop(a);
    reg.remove(&peer, "a");
    assert_eq!(reg.buffered(), 0);
}

#[tokio::test]
async fn a_peer_that_overfills_its_stream_ends_only_that_stream() {
    let counters = Arc::new(E2eCounters::default());
    let reg = IbbRegistry::new(8, 1 << 20, counters.clone());
    let peer: FullJid = "home@home.test/tv".parse().unwrap();
    let from = Jid::from(peer.clone());
    let _slow = reg.register("slow", peer.clone(), 16).unwrap();
    let mut other = reg.register("other", peer.clone(), 16).unwrap();
    for seq in 0..INBOUND_DEPTH as u16 {
        assert!(matches!(
            reg.handle(&from, "x", &data("slow", seq, 1)),
            Iq::Result { .. }
        ));
    }
    assert!(is_error(
        &reg.handle(&from, "y", &data("slow", INBOUND_DEPTH as u16, 1)),
        DefinedCondition::ResourceConstraint
    ));
    assert_eq!(counters.snapshot().ibb_stream_overflows, 1);
    assert!(matches!(
        reg.handle(&from, "z", &data("other", 0, 1)),
        Iq::Result { .. }
    ));
    assert!(matches!(other.recv().await, Some(IbbEvent::Data(_))));
}

#[tokio::test]
async fn a_stream_takes_only_a_setup_allowance_until_its_tunnel_is_established() {
    let counters = Arc::new(E2eCounters::default());
    let reg = IbbRegistry::new(8, 16 * SETUP_BYTES, counters.clone());
    let peer: FullJid = "home@home.test/mallory".parse().unwrap();
    let from = Jid::from(peer.clone());
    let block = 4096;
    let _parked = reg.register("half", peer.clone(), block as u16).unwrap();
    let mut live = reg.register("live", peer.clone(), block as u16).unwrap();
    let blocks = (SETUP_BYTES / block) as u16;
    for seq in 0..blocks {
        assert!(matches!(
            reg.handle(&from, "x", &data("half", seq, block)),
            Iq::Result { .. }
        ));
    }
    // Nobody reads the half-open stream: one more block ends it instead of piling up.
    assert!(is_error(
        &reg.handle(&from, "y", &data("half", blocks, block)),
        DefinedCondition::PolicyViolation
    ));
    assert_eq!(counters.snapshot().ibb_setup_overflows, 1);
    // An established stream is not held to the allowance.
    reg.established(&peer, "live");
    for seq in 0..(blocks + 4) {
        assert!(matches!(
            reg.handle(&from, "z", &data("live", seq, block)),
            Iq::Result { .. }
        ));
        assert!(matches!(live.recv().await, Some(IbbEvent::Data(_))));
    }
}

fn data_message(from: &Jid, sid: &str, seq: u16, len: usize) -> Message {
    let mut message = Message::new_with_type(MessageType::Headline, None);
    message.from = Some(from.clone());
    message.payloads.push(data(sid, seq, len));
    message
}

#[tokio::test]
async fn blocks_in_messages_pass_the_same_checks_as_blocks_in_iqs() {
    let reg = IbbRegistry::default();
    let peer: FullJid = "home@home.test/tv".parse().unwrap();
    let from = Jid::from(peer.clone());
    let stranger: Jid = "evil@stranger.test/x".parse().unwrap();
    let mut rx = reg.register("s1", peer.clone(), 16).unwrap();

    // In sequence, in messages and iqs mixed (the paced iq every few blocks): all taken.
    reg.handle_message(&data_message(&from, "s1", 0, 4));
    assert!(matches!(
        reg.handle(&from, "1", &data("s1", 1, 5)),
        Iq::Result { .. }
    ));
    reg.handle_message(&data_message(&from, "s1", 2, 6));
    for len in [4, 5, 6] {
        assert!(matches!(rx.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == len));
    }
    // A stranger who knows the sid reaches nothing, and the stream lives on.
    reg.handle_message(&data_message(&stranger, "s1", 3, 4));
    assert!(rx.try_recv().is_err());
    assert_eq!(reg.len(), 1);
    // A gap ends the stream, as in an iq.
    reg.handle_message(&data_message(&from, "s1", 5, 4));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(e)) if e.kind() == ErrorKind::Protocol));
    assert_eq!(reg.len(), 0);

    // Oversized: ended.
    let mut rx = reg.register("s2", peer.clone(), 16).unwrap();
    reg.handle_message(&data_message(&from, "s2", 0, 17));
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));

    // The server bouncing one of our blocks (type error): the stream lost data and ends.
    let mut rx = reg.register("s3", peer.clone(), 16).unwrap();
    let mut bounce = data_message(&from, "s3", 0, 4);
    bounce.type_ = MessageType::Error;
    reg.handle_message(&bounce);
    assert!(
        matches!(rx.recv().await, Some(IbbEvent::Fail(e)) if e.kind() == ErrorKind::NotConnected)
    );

    // The setup allowance holds for messages too.
    let mut rx = reg.register("s4", peer, MAX_BLOCK_SIZE).unwrap();
    let blocks = SETUP_BYTES / MAX_BLOCK_SIZE as usize;
    for seq in 0..blocks {
        reg.handle_message(&data_message(
            &from,
            "s4",
            seq as u16,
            MAX_BLOCK_SIZE as usize,
        ));
    }
    reg.handle_message(&data_message(&from, "s4", blocks as u16, 1));
    for _ in 0..blocks {
        assert!(matches!(rx.recv().await, Some(IbbEvent::Data(_))));
    }
    assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));
}
