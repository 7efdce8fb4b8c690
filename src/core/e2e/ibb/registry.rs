//! The inbound side of every IBB stream of one session ([`IbbRegistry`]): which (peer, sid)
//! streams exist, and the checks every block (in an iq or a message) passes before it is accepted —
//! the right sender, in sequence, within the block size, the stream's setup allowance and the
//! registry's byte budget. A violation ends that one stream (with an error reply to an iq), never
//! the session.

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use xmpp_parsers::ibb::{Close, Data, Open};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{INBOUND_DEPTH, NS_IBB, SETUP_BYTES};
use crate::core::e2e::limits::{E2eCounters, E2eLimits};
use crate::core::error::{Error, ErrorKind};

/// What the registry hands to a stream's pump.
#[derive(Debug)]
pub(crate) enum IbbEvent {
    Data(Block),
    Close,
    Fail(Error),
}

/// One inbound block, charged to the registry's byte budget until it is dropped (read by the pump,
/// or thrown away with its stream): the budget can never leak.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) bytes: Vec<u8>,
    budget: Arc<AtomicUsize>,
}

impl Drop for Block {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// Why a stream could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterRefusal {
    /// This peer already has a live stream with this sid (it is left alone).
    Conflict,
    /// The registry holds as many streams as it may.
    Full,
}

impl RegisterRefusal {
    /// The stanza error to answer the session-initiate with.
    pub(crate) fn condition(self) -> DefinedCondition {
        match self {
            RegisterRefusal::Conflict => DefinedCondition::Conflict,
            RegisterRefusal::Full => DefinedCondition::ResourceConstraint,
        }
    }

    /// As a local error (our own open).
    pub(crate) fn error(self) -> Error {
        match self {
            RegisterRefusal::Conflict => Error::new(
                ErrorKind::Internal,
                "in-band bytestream id already in use with this peer",
            ),
            RegisterRefusal::Full => Error::new(
                ErrorKind::ProviderUnavailable,
                "too many in-band bytestreams are open on this device; try again later",
            ),
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            RegisterRefusal::Conflict => "this stream id is already in use",
            RegisterRefusal::Full => "too many in-band bytestreams; try again later",
        }
    }
}

struct InboundState {
    /// Bytes still accepted while the tunnel is being set up; `None` once it is established.
    setup_budget: Option<usize>,
    block_size: u16,
    expected_seq: u16,
    tx: mpsc::Sender<IbbEvent>,
}

/// The inbound side of every IBB stream of one session, keyed by (peer, stream id).
pub(crate) struct IbbRegistry {
    streams: Mutex<HashMap<(FullJid, String), InboundState>>,
    max_streams: usize,
    max_buffered: usize,
    buffered: Arc<AtomicUsize>,
    counters: Arc<E2eCounters>,
}

impl Default for IbbRegistry {
    fn default() -> Self {
        let limits = E2eLimits::default();
        IbbRegistry::new(
            limits.ibb_streams,
            limits.ibb_buffered_bytes,
            Arc::default(),
        )
    }
}

fn error_reply(to: Jid, id: &str, condition: DefinedCondition, text: &str) -> Iq {
    let error_type = match condition {
        DefinedCondition::ResourceConstraint => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    Iq::from_error(
        id.to_owned(),
        StanzaError::new(error_type, condition, "en", text),
    )
    .with_to(to)
}

impl IbbRegistry {
    /// A registry of at most `max_streams` streams buffering at most `max_buffered` bytes in
    /// total; refusals are counted in `counters`.
    pub(crate) fn new(max_streams: usize, max_buffered: usize, counters: Arc<E2eCounters>) -> Self {
        IbbRegistry {
            streams: Mutex::new(HashMap::new()),
            max_streams,
            max_buffered,
            buffered: Arc::new(AtomicUsize::new(0)),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(FullJid, String), InboundState>> {
        // Single map operations: a poisoned lock still holds a consistent map.
        self.streams.locked()
    }

    /// Registers the stream `sid` with `peer`; returns the receiver of its blocks. A live stream
    /// of the same (peer, sid) is never replaced.
    pub(crate) fn register(
        &self,
        sid: &str,
        peer: FullJid,
        block_size: u16,
    ) -> std::result::Result<mpsc::Receiver<IbbEvent>, RegisterRefusal> {
        let mut streams = self.lock();
        let key = (peer, sid.to_owned());
        if streams.contains_key(&key) {
            if E2eCounters::bump(&self.counters.ibb_sid_conflicts) {
                tracing::info!(peer = %key.0, sid, "refused a second in-band bytestream with a live sid");
            }
            return Err(RegisterRefusal::Conflict);
        }
        if streams.len() >= self.max_streams {
            if E2eCounters::bump(&self.counters.ibb_streams_refused) {
                tracing::warn!(peer = %key.0, streams = streams.len(), "in-band bytestream registry full");
            }
            return Err(RegisterRefusal::Full);
        }
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        streams.insert(
            key,
            InboundState {
                block_size,
                expected_seq: 0,
                setup_budget: Some(SETUP_BYTES),
                tx,
            },
        );
        Ok(rx)
    }

    /// Forgets the stream `sid` of `peer` (it ended).
    pub(crate) fn remove(&self, peer: &FullJid, sid: &str) {
        self.lock().remove(&(peer.clone(), sid.to_owned()));
    }

    /// The TLS handshake over the stream `sid` of `peer` succeeded: its setup allowance no longer
    /// applies (the tunnel reads what arrives from now on).
    pub(crate) fn established(&self, peer: &FullJid, sid: &str) {
        if let Some(state) = self.lock().get_mut(&(peer.clone(), sid.to_owned())) {
            state.setup_budget = None;
        }
    }

    /// Forgets every stream (the session was reset: the peers' ends are gone too).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Inbound bytes buffered over all streams, not yet read.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Registered streams.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Checks one data block of `from` and queues it for its stream; `None` when accepted,
    /// otherwise the condition that ended the stream (its reader is told why).
    fn accept_data(
        &self,
        from: &Jid,
        from_full: FullJid,
        data: Data,
    ) -> Option<(DefinedCondition, String)> {
        let mut streams = self.lock();
        let key = (from_full, data.sid.0);
        // Someone else who learnt the sid finds nothing under its own JID: refused, and
        // the real stream is left alone.
        let Some(state) = streams.get_mut(&key) else {
            return Some((DefinedCondition::ItemNotFound, "unknown stream".to_owned()));
        };
        let violation = if data.data.len() > state.block_size as usize {
            Some((
                DefinedCondition::PolicyViolation,
                format!(
                    "block of {} bytes exceeds the negotiated {}",
                    data.data.len(),
                    state.block_size
                ),
            ))
        } else if data.seq != state.expected_seq {
            Some((
                DefinedCondition::UnexpectedRequest,
                format!(
                    "block {} out of sequence (expected {})",
                    data.seq, state.expected_seq
                ),
            ))
        } else if state
            .setup_budget
            .is_some_and(|left| data.data.len() > left)
        {
            let _ = E2eCounters::bump(&self.counters.ibb_setup_overflows);
            Some((
                DefinedCondition::PolicyViolation,
                format!("more than {SETUP_BYTES} bytes before the tunnel was set up"),
            ))
        } else if self.buffered.load(Ordering::Relaxed) + data.data.len() > self.max_buffered {
            let _ = E2eCounters::bump(&self.counters.ibb_total_overflows);
            Some((
                DefinedCondition::ResourceConstraint,
                "this device buffers too much in-band data; try again later".to_owned(),
            ))
        } else {
            state.expected_seq = state.expected_seq.wrapping_add(1);
            if let Some(left) = &mut state.setup_budget {
                *left = left.saturating_sub(data.data.len());
            }
            // Charged now, released when the block is dropped (read or discarded).
            self.buffered.fetch_add(data.data.len(), Ordering::Relaxed);
            let block = Block {
                bytes: data.data,
                budget: self.buffered.clone(),
            };
            match state.tx.try_send(IbbEvent::Data(block)) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = E2eCounters::bump(&self.counters.ibb_stream_overflows);
                    Some((
                        DefinedCondition::ResourceConstraint,
                        "peer ignored flow control".to_owned(),
                    ))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Some((
                    DefinedCondition::ItemNotFound,
                    "stream already ended".to_owned(),
                )),
            }
        };
        if let Some((_, text)) = &violation {
            tracing::info!(%from, %text, "ending an in-band bytestream");
            if let Some(state) = streams.remove(&key) {
                let _ = state.tx.try_send(IbbEvent::Fail(Error::new(
                    ErrorKind::Protocol,
                    format!("in-band bytestream from {from}: {text}"),
                )));
            }
        }
        violation
    }

    /// Handles a `<message>` carrying an IBB `<data/>` (XEP-0047 §3, the stream's default in
    /// pmn). The same checks as for an iq block apply; a message gets no reply, so a violation
    /// ends the stream, whose reader sends the peer our `<close/>` (a block of a stream this peer
    /// does not have — a stranger's guess — is dropped without a word). A message of type
    /// `error` is the server bouncing one of our blocks: the stream lost a block and ends.
    pub(crate) fn handle_message(&self, message: &Message) {
        let Some(from) = &message.from else { return };
        let Ok(from_full) = from.clone().try_into_full() else {
            return;
        };
        for payload in message.payloads.iter().filter(|p| p.is("data", NS_IBB)) {
            let Ok(data) = Data::try_from(payload.clone()) else {
                tracing::debug!(%from, "dropped a malformed in-band data message");
                continue;
            };
            if message.type_ == MessageType::Error {
                if let Some(state) = self.lock().remove(&(from_full.clone(), data.sid.0)) {
                    let _ = state.tx.try_send(IbbEvent::Fail(Error::new(
                        ErrorKind::NotConnected,
                        format!("the server could not deliver in-band data to {from}"),
                    )));
                }
                continue;
            }
            if let Some((_, text)) = self.accept_data(from, from_full.clone(), data) {
                tracing::debug!(%from, %text, "in-band data message not taken");
            }
        }
    }

    /// Handles an iq `set` whose payload is in the IBB namespace; returns the reply to send.
    pub(crate) fn handle(&self, from: &Jid, id: &str, payload: &Element) -> Iq {
        let from_full = match from.clone().try_into_full() {
            Ok(full) => full,
            Err(_) => {
                return error_reply(
                    from.clone(),
                    id,
                    DefinedCondition::BadRequest,
                    "IBB needs a full JID",
                )
            }
        };
        let ok = Iq::empty_result(from.clone(), id.to_owned());
        let fail = |condition, text: &str| error_reply(from.clone(), id, condition, text);
        match payload.name() {
            "open" => {
                let Ok(open) = Open::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <open/>");
                };
                let streams = self.lock();
                match streams.get(&(from_full, open.sid.0)) {
                    // The Jingle negotiation already fixed sid and block size; `open` confirms them.
                    Some(s) if open.block_size <= s.block_size => ok,
                    Some(_) => fail(DefinedCondition::ResourceConstraint, "block size too large"),
                    None => fail(DefinedCondition::ItemNotFound, "unknown stream"),
                }
            }
            "data" => {
                let Ok(data) = Data::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <data/>");
                };
                match self.accept_data(from, from_full, data) {
                    None => ok,
                    Some((condition, text)) => fail(condition, &text),
                }
            }
            "close" => {
                let Ok(close) = Close::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <close/>");
                };
                match self.lock().remove(&(from_full, close.sid.0)) {
                    Some(state) => {
                        let _ = state.tx.try_send(IbbEvent::Close);
                        ok
                    }
                    None => fail(DefinedCondition::ItemNotFound, "unknown stream"),
                }
            }
            _ => fail(DefinedCondition::BadRequest, "unknown IBB element"),
        }
    }
}
