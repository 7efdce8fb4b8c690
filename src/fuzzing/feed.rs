//! The podcast feed parser of the source provider (`sources` feature), on a feed body as an HTTP
//! server sends it: bytes that are not even known to be XML.

use crate::core::sources::{parse_feed, SourceLimits};

/// Small limits, so the bounds are reached by inputs libFuzzer finds quickly.
fn limits() -> SourceLimits {
    SourceLimits {
        max_body_bytes: 64 * 1024,
        max_entries: 4,
        max_title_bytes: 16,
        max_uri_bytes: 128,
        ..SourceLimits::default()
    }
}

/// [`parse_feed`] on `data`, then the promises it makes whatever the body: at most
/// `max_entries` items, each with a playable `http(s)` URI no longer than `max_uri_bytes`, a
/// title no longer than `max_title_bytes`, distinct ids, all in the container asked for.
pub fn feed(data: &[u8]) {
    let limits = limits();
    let Ok(parsed) = parse_feed(data, "feed0", &limits) else {
        return;
    };
    assert!(parsed.items.len() <= limits.max_entries, "entry bound");
    if let Some(title) = &parsed.title {
        assert!(title.len() <= limits.max_title_bytes, "feed title bound");
    }
    let mut ids = std::collections::HashSet::new();
    for item in &parsed.items {
        assert!(ids.insert(item.id.clone()), "duplicate id {}", item.id);
        assert_eq!(item.parent, "feed0");
        assert!(item.title.len() <= limits.max_title_bytes, "title bound");
        let uri = item.uri.as_deref().unwrap_or_default();
        assert!(uri.len() <= limits.max_uri_bytes, "URI bound");
        assert!(
            uri.starts_with("http://") || uri.starts_with("https://"),
            "unplayable URI kept: {uri}"
        );
    }
}
