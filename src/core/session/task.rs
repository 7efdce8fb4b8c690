//! The session task: the one owner of the [`StanzaStream`] (see the module doc of
//! [`super`] for why it must be one task), its run loop over the stream, the commands of the
//! [`Session`](super::Session) handles and the reconnector's failures, and the routing of what arrives — answers
//! to our requests into the [`IqTracker`], everything else up to the role layer. It never hands a
//! response to the role layer, and answers every unreadable request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_xmpp::stanzastream::{Event, InvalidStanza, StanzaStream, StreamEvent};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::iq_tracker::{Answered, IqTracker, ReplySender};
use super::login::is_fatal;
use super::{ConnectionState, Counters, Inbound, IqReply};
use crate::core::error::{Error, ErrorKind};

/// What a [`Session`](super::Session) handle asks of the session task.
///
/// The stanza and the iq are boxed: tokio's mpsc allocates its slots in blocks of 32 and keeps
/// them for the channel's life, so with a ~400-byte stanza inline every session held a 13 KB
/// block (a tenth of a provider's memory); boxed, the block is 1.5 KB. `Send`'s box is the one
/// tokio-xmpp's `send` takes, so sending allocates no more than before.
pub(super) enum Command {
    Send(Box<Stanza>),
    Request {
        iq: Box<Iq>,
        deadline: Instant,
        reply: ReplySender,
    },
    Close(oneshot::Sender<()>),
    /// XEP-0352: the app went to the foreground (`true`) or the background.
    SetForeground(bool),
}

/// The session task's state: the stream it owns, its inputs, and the requests it tracks.
pub(super) struct SessionTask {
    pub(super) stream: StanzaStream,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) failures: mpsc::UnboundedReceiver<Error>,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) state: watch::Sender<ConnectionState>,
    pub(super) pending: IqTracker,
    pub(super) tap: Option<mpsc::UnboundedSender<Stanza>>,
    pub(super) own_jid: FullJid,
    pub(super) stats: Arc<Counters>,
}

impl SessionTask {
    pub(super) async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_ack = None;
        let mut fatal = None;
        loop {
            tokio::select! {
                event = self.stream.next() => match event {
                    Some(event) => {
                        if !self.on_event(event).await {
                            break;
                        }
                    }
                    None => {
                        fatal = Some(Error::new(ErrorKind::NotConnected, "stream ended"));
                        break;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(Command::Send(stanza)) => self.transmit(stanza).await,
                    Some(Command::Request { iq, deadline, reply }) => {
                        let id = match &*iq {
                            Iq::Get { id, .. } | Iq::Set { id, .. } => id.clone(),
                            _ => continue,
                        };
                        let to = iq.to().cloned();
                        // A full tracker answered the caller already: the request stays here.
                        if self.pending.track(id, to, deadline, reply).is_ok() {
                            self.transmit(Box::new(Stanza::Iq(*iq))).await;
                        }
                    }
                    Some(Command::Close(ack)) => {
                        close_ack = Some(ack);
                        break;
                    }
                    // Sent now if the server advertised CSI, and on every later stream.
                    Some(Command::SetForeground(foreground)) => self.stream.set_client_state(foreground),
                    // Every handle is gone: nobody can use this session any more.
                    None => break,
                },
                Some(error) = self.failures.recv() => {
                    if is_fatal(&error) {
                        fatal = Some(error);
                        break;
                    }
                    self.state.send_replace(ConnectionState::Reconnecting { reason: error.to_string() });
                },
                _ = sweep.tick() => self.expire(Instant::now()),
            }
        }
        self.fail_all(|| Error::new(ErrorKind::NotConnected, "the session has ended"));
        self.state
            .send_replace(ConnectionState::Offline { error: fatal });
        drop(self.inbound);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.stream.close()).await;
        if let Some(ack) = close_ack {
            let _ = ack.send(());
        }
    }

    async fn transmit(&mut self, stanza: Box<Stanza>) {
        if let Some(tap) = &self.tap {
            let copy = match &*stanza {
                Stanza::Iq(iq) => Stanza::Iq(iq.clone()),
                Stanza::Message(m) => Stanza::Message(m.clone()),
                Stanza::Presence(p) => Stanza::Presence(p.clone()),
            };
            let _ = tap.send(copy);
        }
        // The token only tracks delivery to the server; replies are matched by id.
        let _token = self.stream.send(stanza).await;
    }

    /// Returns false when the role layer is gone and the session should end.
    async fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Stream(StreamEvent::Reset { bound_jid, .. }) => {
                // A new stream: responses to requests sent on the old one will never come.
                self.fail_all(|| {
                    Error::new(
                        ErrorKind::NotConnected,
                        "connection was reset before the answer arrived",
                    )
                });
                let jid = match bound_jid.try_into_full() {
                    Ok(jid) => jid,
                    Err(_) => self.own_jid.clone(),
                };
                tracing::info!(%jid, "online");
                self.stats.streams_started.fetch_add(1, Ordering::Relaxed);
                self.state
                    .send_replace(ConnectionState::Online { jid: jid.clone() });
                self.inbound
                    .send(Inbound::Online {
                        jid,
                        resumed: false,
                    })
                    .await
                    .is_ok()
            }
            Event::Stream(StreamEvent::Suspended) => {
                tracing::info!("connection lost, reconnecting");
                self.state.send_replace(ConnectionState::Reconnecting {
                    reason: "connection lost".into(),
                });
                true
            }
            Event::Stream(StreamEvent::Resumed) => {
                let jid = self.own_jid.clone();
                tracing::info!(%jid, "stream resumed");
                self.stats.streams_resumed.fetch_add(1, Ordering::Relaxed);
                self.state
                    .send_replace(ConnectionState::Online { jid: jid.clone() });
                self.inbound
                    .send(Inbound::Online { jid, resumed: true })
                    .await
                    .is_ok()
            }
            Event::Stanza(Stanza::Iq(iq)) if matches!(iq, Iq::Result { .. } | Iq::Error { .. }) => {
                self.on_response(iq);
                true
            }
            Event::Invalid(invalid) => {
                self.on_invalid(invalid).await;
                true
            }
            Event::Stanza(stanza) => self
                .inbound
                .send(Inbound::Stanza(Box::new(stanza)))
                .await
                .is_ok(),
        }
    }

    /// A stanza the reader could not parse, or skipped for going over its limits. The stream is
    /// intact (tokio-xmpp counted the stanza for XEP-0198, so it is never replayed): answer a
    /// request with an error, fail our own request it answers, and drop the rest with a count.
    async fn on_invalid(&mut self, invalid: InvalidStanza) {
        self.stats.invalid_stanzas.fetch_add(1, Ordering::Relaxed);
        if invalid.over_limit {
            self.stats
                .over_limit_stanzas
                .fetch_add(1, Ordering::Relaxed);
        }
        let from = invalid.from.as_deref().and_then(|f| f.parse::<Jid>().ok());
        tracing::warn!(
            stanza = invalid.name,
            from = invalid.from.as_deref().unwrap_or(""),
            over_limit = invalid.over_limit,
            error = %invalid.error,
            "refused a stanza that could not be read"
        );
        if invalid.name != "iq" {
            return;
        }
        let Some(id) = invalid.id else { return };
        match invalid.type_.as_deref() {
            Some("get") | Some("set") => {
                // RFC 6120 §8.3.3: policy-violation for a stanza over a limit, else bad-request.
                let Some(to) = from else { return };
                let condition = if invalid.over_limit {
                    DefinedCondition::PolicyViolation
                } else {
                    DefinedCondition::BadRequest
                };
                let text = if invalid.over_limit {
                    "stanza nested too deep or too large for this device"
                } else {
                    "stanza could not be parsed"
                };
                let error = StanzaError::new(ErrorType::Modify, condition, "en", text);
                self.transmit(Box::new(Stanza::Iq(Iq::from_error(id, error).with_to(to))))
                    .await;
            }
            Some("result") | Some("error") => {
                // Only the addressee may fail our request, as for well-formed answers.
                let error = Error::new(
                    ErrorKind::Protocol,
                    format!("unreadable answer: {}", invalid.error),
                );
                let _ = self
                    .pending
                    .answer(&id, from.as_ref(), &self.own_jid, Err(error));
            }
            _ => {}
        }
    }

    fn on_response(&mut self, iq: Iq) {
        let (id, from, reply) = match iq {
            Iq::Result {
                id, from, payload, ..
            } => (id, from, IqReply::Result(payload)),
            Iq::Error {
                id, from, error, ..
            } => (id, from, IqReply::Error(error)),
            _ => return,
        };
        match self
            .pending
            .answer(&id, from.as_ref(), &self.own_jid, Ok(reply))
        {
            Answered::Taken => {}
            Answered::Unknown => {
                tracing::debug!(%id, "response to no pending request (late or unsolicited), dropped");
            }
            Answered::WrongSender { to } => {
                tracing::warn!(%id, ?from, ?to, "response from the wrong JID, ignored");
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.pending.expire(now);
    }

    fn fail_all(&mut self, error: impl Fn() -> Error) {
        self.pending.fail_all(error);
    }
}
