//! The tracker answers each request once, only from its addressee, and stays bounded.

use std::time::Duration;

use super::*;

fn jid(s: &str) -> Jid {
    s.parse().expect("test JID")
}

fn own() -> FullJid {
    "home@home.test/phone".parse().expect("jid")
}

#[test]
fn response_must_come_from_the_addressee() {
    let own = own();
    let tv = jid("home@home.test/tv");
    assert!(response_from_matches(Some(&tv), Some(&tv), &own));
    assert!(!response_from_matches(
        Some(&tv),
        Some(&jid("home@home.test/evil")),
        &own
    ));
    assert!(!response_from_matches(Some(&tv), None, &own));
    assert!(response_from_matches(None, None, &own));
    assert!(response_from_matches(
        None,
        Some(&jid("home@home.test")),
        &own
    ));
    assert!(!response_from_matches(
        None,
        Some(&jid("stranger@home.test")),
        &own
    ));
}

#[tokio::test]
async fn a_request_is_answered_once_and_only_by_its_addressee() {
    let mut tracker = IqTracker::default();
    let tv = jid("home@home.test/tv");
    let (tx, mut rx) = oneshot::channel();
    let deadline = Instant::now() + Duration::from_secs(5);
    tracker
        .track("1".into(), Some(tv.clone()), deadline, tx)
        .unwrap();
    let evil = jid("home@home.test/evil");
    assert_eq!(
        tracker.answer("1", Some(&evil), &own(), Ok(IqReply::Result(None))),
        Answered::WrongSender {
            to: Some(tv.clone())
        }
    );
    assert!(rx.try_recv().is_err(), "the wrong sender answered nothing");
    assert_eq!(
        tracker.answer("1", Some(&tv), &own(), Ok(IqReply::Result(None))),
        Answered::Taken
    );
    assert_eq!(rx.await.unwrap().unwrap(), IqReply::Result(None));
    assert_eq!(
        tracker.answer("1", Some(&tv), &own(), Ok(IqReply::Result(None))),
        Answered::Unknown,
        "a second answer finds no request"
    );
    assert_eq!(tracker.len(), 0);
}

#[tokio::test]
async fn deadlines_gone_callers_and_resets_empty_the_tracker() {
    let mut tracker = IqTracker::default();
    let now = Instant::now();
    let (late_tx, late_rx) = oneshot::channel();
    tracker.track("late".into(), None, now, late_tx).unwrap();
    let (gone_tx, gone_rx) = oneshot::channel();
    let later = now + Duration::from_secs(60);
    tracker.track("gone".into(), None, later, gone_tx).unwrap();
    drop(gone_rx);
    let (live_tx, live_rx) = oneshot::channel();
    tracker.track("live".into(), None, later, live_tx).unwrap();
    tracker.expire(now);
    assert_eq!(
        late_rx.await.unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert_eq!(tracker.len(), 1);
    assert!(tracker.contains("live"));
    tracker.fail_all(|| Error::new(ErrorKind::NotConnected, "reset"));
    assert_eq!(
        live_rx.await.unwrap().unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(tracker.len(), 0);
}

#[tokio::test]
async fn a_full_tracker_refuses_before_the_request_is_sent() {
    let mut tracker = IqTracker::new(2);
    let later = Instant::now() + Duration::from_secs(60);
    let mut receivers = Vec::new();
    for id in ["a", "b"] {
        let (tx, rx) = oneshot::channel();
        tracker.track(id.into(), None, later, tx).unwrap();
        receivers.push(rx);
    }
    let (tx, rx) = oneshot::channel();
    let refused = tracker.track("c".into(), None, later, tx).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ProviderUnavailable);
    assert_eq!(
        rx.await.unwrap().unwrap_err().kind(),
        ErrorKind::ProviderUnavailable,
        "the caller hears the refusal too"
    );
    assert_eq!(tracker.len(), 2);
    tracker.forget("a");
    let (tx, _rx) = oneshot::channel();
    tracker.track("c".into(), None, later, tx).unwrap();
    tracker.clear();
    assert_eq!(tracker.len(), 0);
    for rx in receivers {
        assert!(
            rx.await.is_err(),
            "cleared requests see their channel closed"
        );
    }
}
