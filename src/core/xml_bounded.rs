//! One element parsed from bytes that are outside input (a stored file, a fuzzer's input) with
//! the bounds a stream reader puts on a stanza: minidom builds and drops elements recursively,
//! so an unbounded nesting would overflow the stack, and an unbounded token would take memory.

use std::fmt;

use minidom::Element;
use xso::exports::rxml::{self, error::EndOrError, Parse as _, WithOptions as _};
use xso::{FromEventsBuilder as _, FromXml as _};

/// Longest token (name, attribute value, text chunk) accepted, as on a stream.
pub(crate) const MAX_TOKEN_LENGTH: usize = 256 * 1024;

/// The bounds of one [`parse_element`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElementLimits {
    /// Deepest nesting, the element itself counting as 1.
    pub(crate) max_depth: usize,
}

/// Why no element was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not well-formed XML, or a token over [`MAX_TOKEN_LENGTH`].
    Malformed(String),
    /// Nested deeper than [`ElementLimits::max_depth`].
    TooDeep(usize),
    /// The bytes end before the element does.
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed XML: {why}"),
            ParseError::TooDeep(max) => write!(f, "nested deeper than {max} elements"),
            ParseError::Truncated => f.write_str("the XML ends inside its element"),
        }
    }
}

/// An XML parser with a stream reader's token bound.
pub(crate) fn stream_parser() -> rxml::Parser {
    rxml::Parser::with_options(rxml::Options {
        max_token_length: MAX_TOKEN_LENGTH,
        ..rxml::Options::default()
    })
}

/// The first element of `data`; what follows it is not read.
pub(crate) fn parse_element(data: &[u8], limits: ElementLimits) -> Result<Element, ParseError> {
    let mut parser = stream_parser();
    let mut buf = data;
    let ctx = xso::Context::empty();
    let mut builder = None;
    let mut depth = 0usize;
    loop {
        let ev = match parser.parse(&mut buf, true) {
            Ok(Some(ev)) => ev,
            Ok(None) | Err(EndOrError::NeedMoreData) => return Err(ParseError::Truncated),
            Err(EndOrError::Error(e)) => return Err(ParseError::Malformed(e.to_string())),
        };
        match ev {
            rxml::Event::StartElement(..) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(ParseError::TooDeep(limits.max_depth));
                }
            }
            rxml::Event::EndElement(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        match builder.as_mut() {
            None => {
                if let rxml::Event::StartElement(_, name, attrs) = ev {
                    builder = Some(
                        Element::from_events(name, attrs, &ctx)
                            .map_err(|e| ParseError::Malformed(e.to_string()))?,
                    );
                }
            }
            Some(b) => {
                if let Some(el) = b
                    .feed(ev, &ctx)
                    .map_err(|e| ParseError::Malformed(e.to_string()))?
                {
                    return Ok(el);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ElementLimits = ElementLimits { max_depth: 3 };

    #[test]
    fn reads_an_element_within_its_bounds() {
        let el = parse_element(b"<a xmlns='x'><b><c/></b></a>", LIMITS).expect("element");
        assert!(el.is("a", "x"));
    }

    #[test]
    fn refuses_nesting_over_the_bound_before_building_it() {
        let deep = "<a xmlns='x'>".repeat(100_000);
        assert_eq!(
            parse_element(deep.as_bytes(), LIMITS),
            Err(ParseError::TooDeep(3))
        );
    }

    #[test]
    fn refuses_truncated_and_malformed_xml() {
        // rxml reports an end inside an element as malformed, not as wanting more.
        assert!(parse_element(b"<a xmlns='x'><b>", LIMITS).is_err());
        assert!(matches!(
            parse_element(b"<a xmlns='x'></b>", LIMITS),
            Err(ParseError::Malformed(_))
        ));
        assert!(parse_element(b"", LIMITS).is_err());
    }
}
