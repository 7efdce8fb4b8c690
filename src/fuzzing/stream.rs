//! The session's stream reader: bytes of an XMPP stream, in pieces, built into top-level
//! elements.

use xso::exports::rxml::{self, error::EndOrError, Parse as _};
use xso::{FromEventsBuilder as _, FromXml as _};

use super::{parser, MAX_DEPTH};

/// Bytes of an XMPP stream (`<stream:stream …>` then top-level elements) read the way the session's
/// reader reads them: arriving in pieces (the first byte picks the piece size), rxml with a 256 KiB
/// token limit, nesting bounded at [`MAX_DEPTH`] below the stream element, every top-level element
/// built as tokio-xmpp's `XmppStreamElement` (stanzas, SASL, STARTTLS, stream errors, …).
pub fn stream(data: &[u8]) {
    use tokio_xmpp::xmlstream::XmppStreamElement;

    enum State {
        Building(Box<<XmppStreamElement as xso::FromXml>::Builder>),
        Skipping,
        Idle,
    }

    let Some((piece, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let ctx = xso::Context::empty();
    let mut parser = parser();
    let mut depth = 0usize;
    let mut state = State::Idle;
    let pieces = data.chunks(piece);
    let count = pieces.len();
    for (i, chunk) in pieces.enumerate() {
        let at_eof = i + 1 == count;
        let mut buf = chunk;
        loop {
            let ev = match parser.parse(&mut buf, at_eof) {
                Ok(Some(ev)) => ev,
                Err(EndOrError::NeedMoreData) => break,
                Ok(None) | Err(EndOrError::Error(_)) => return,
            };
            let end = matches!(ev, rxml::Event::EndElement(_));
            if let rxml::Event::StartElement(..) = ev {
                depth += 1;
                // The stream element itself is depth 1.
                if depth > MAX_DEPTH + 1 {
                    return;
                }
            }
            match depth {
                0 => {}
                1 => {
                    if end {
                        return; // the stream footer
                    }
                    // Start of the stream, or whitespace keepalives between stanzas.
                }
                _ => {
                    state = match (state, ev) {
                        (State::Idle, rxml::Event::StartElement(_, name, attrs)) => {
                            match XmppStreamElement::from_events(name, attrs, &ctx) {
                                Ok(builder) => State::Building(Box::new(builder)),
                                Err(_) => State::Skipping,
                            }
                        }
                        (State::Building(mut builder), ev) => match builder.feed(ev, &ctx) {
                            Ok(Some(_element)) => State::Idle,
                            Ok(None) => State::Building(builder),
                            Err(_) => State::Skipping,
                        },
                        (other, _) => other,
                    };
                    if end && depth == 2 {
                        if let State::Skipping = state {
                            state = State::Idle;
                        }
                    }
                }
            }
            if end {
                depth = depth.saturating_sub(1);
            }
        }
    }
}
