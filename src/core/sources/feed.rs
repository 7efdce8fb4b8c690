//! One podcast feed: fetched over HTTP(S) within bounds, parsed (RSS or Atom, by `feed-rs`) and
//! mapped to library [`Item`]s. Everything here treats the feed as hostile input: the body, the
//! entry count, every title and URI are bounded, and each failure is a [`SourceError`].

use std::time::Duration;

use crate::core::services::library::{Item, ItemKind};

use super::{SourceError, SourceLimits};

/// What one feed maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFeed {
    /// The feed's title (bounded), or `None` when it has none.
    pub title: Option<String>,
    /// The playable entries, in feed order, at most [`SourceLimits::max_entries`].
    pub items: Vec<Item>,
    /// Entries past [`SourceLimits::max_entries`], not kept.
    pub dropped: u64,
    /// Entries without a playable `http(s)` URI, with one longer than
    /// [`SourceLimits::max_uri_bytes`], or repeating an earlier entry's id.
    pub refused: u64,
}

/// Most element nesting a feed may have. RSS and Atom need about 6 levels; the parser recurses
/// into what it knows, so a feed nested thousands deep is refused before it is parsed.
pub const MAX_FEED_DEPTH: usize = 64;

/// An HTTP client for feeds: rustls with pmn's ring provider and the platform's certificate
/// verification (the same as the XMPP connection), a total timeout per request, few redirects.
pub(crate) fn client(limits: &SourceLimits) -> Result<reqwest::Client, SourceError> {
    let tls = crate::core::session::client_config(&crate::core::session::ServerTrust::Platform)
        .map_err(|e| SourceError::Config(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(limits.fetch_timeout)
        .connect_timeout(limits.fetch_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("pmn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Config(format!("HTTP client: {e}")))
}

fn http_error(e: reqwest::Error, timeout: Duration) -> SourceError {
    if e.is_timeout() {
        SourceError::Timeout(timeout)
    } else {
        SourceError::Http(e.to_string())
    }
}

/// Longest validator (`ETag`, `Last-Modified`) kept: a longer one is not sent back, so a feed
/// server cannot make every later request carry kilobytes of its choosing.
pub const MAX_VALIDATOR_BYTES: usize = 256;

/// What a feed's server said identifies the version it sent (HTTP validators, RFC 9110 §8.8),
/// sent back on the next read so an unchanged feed is answered 304 without a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` header, as sent.
    pub etag: Option<String>,
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        let get = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_BYTES)
                .map(str::to_owned)
        };
        Validators {
            etag: get(reqwest::header::ETAG),
            last_modified: get(reqwest::header::LAST_MODIFIED),
        }
    }
}

/// What a read of a feed brought.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A body and the validators of its version.
    Body(Vec<u8>, Validators),
    /// 304: the version `known` described is still current.
    NotModified,
}

/// The body of `url`, at most [`SourceLimits::max_body_bytes`]: a larger body is refused as soon
/// as its announced length or the bytes read so far pass the bound, so it is never held whole.
/// Conditional on `known` (the last good read's validators): [`Fetched::NotModified`] when the
/// server says nothing changed.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    limits: &SourceLimits,
    known: &Validators,
) -> Result<Fetched, SourceError> {
    let max = limits.max_body_bytes;
    let timeout = limits.fetch_timeout;
    let read = async {
        let mut request = client.get(url);
        if let Some(etag) = &known.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = &known.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, date);
        }
        let mut response = request.send().await.map_err(|e| http_error(e, timeout))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            // Only an answer to a question we asked: a 304 to an unconditional request is odd,
            // and reading it as "unchanged" would keep a feed empty forever.
            if known.etag.is_some() || known.last_modified.is_some() {
                return Ok(Fetched::NotModified);
            }
            return Err(SourceError::Status(304));
        }
        if !status.is_success() {
            return Err(SourceError::Status(status.as_u16()));
        }
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(SourceError::TooLarge(max));
        }
        let validators = Validators::from_headers(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http_error(e, timeout))? {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(SourceError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body(body, validators))
    };
    // reqwest's own timeout covers the request; this one also bounds a body that trickles in.
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| SourceError::Timeout(timeout))?
}

/// Whether `body`'s elements nest deeper than `max`. A byte scan, not a parse: it skips
/// comments, CDATA sections, processing instructions and declarations, so HTML carried in CDATA
/// (`<br>` in a description) does not count.
fn too_deep(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    let skip_to = |from: usize, end: &[u8]| {
        body[from..]
            .windows(end.len())
            .position(|w| w == end)
            .map_or(body.len(), |p| from + p + end.len())
    };
    while i < body.len() {
        if body[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &body[i..];
        if rest.starts_with(b"<!--") {
            i = skip_to(i, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_to(i, b"]]>");
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            i = skip_to(i, b">");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = skip_to(i, b">");
        } else {
            let end = skip_to(i, b">");
            if body[..end].ends_with(b"/>") {
                i = end;
                continue;
            }
            depth += 1;
            if depth > max {
                return true;
            }
            i = end;
        }
    }
    false
}

/// `text` trimmed and cut to at most `max` bytes on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A stable, short item id below `container`: the first 8 bytes of the SHA-256 of the entry's id,
/// so ids survive refreshes, stay far below the library's 1 KiB id bound whatever the feed says,
/// and never contain a `/` of the feed's own.
pub(crate) fn item_id(container: &str, key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{container}/{hex}")
}

/// `uri` when it is an `http(s)` URL of at most `max` bytes: a feed may not make the TV open
/// `file://` or a player's pseudo-protocol.
pub(crate) fn playable_uri(uri: &str, max: usize) -> Option<String> {
    let uri = uri.trim();
    if uri.len() > max {
        return None;
    }
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then(|| uri.to_owned())
}

fn kind_of(media_type: Option<&str>) -> ItemKind {
    match media_type.map(str::to_ascii_lowercase) {
        Some(t) if t.starts_with("video/") => ItemKind::Video,
        Some(t) if t.starts_with("image/") => ItemKind::Image,
        // Podcasts are audio unless they say otherwise.
        _ => ItemKind::Audio,
    }
}

/// The enclosure of `entry`: (URL, media type, duration). RSS `<enclosure>` and Media RSS come as
/// media objects; Atom's `<link rel="enclosure">` as a link.
fn enclosure(entry: &feed_rs::model::Entry) -> Option<(String, Option<String>, Option<Duration>)> {
    for media in &entry.media {
        for content in &media.content {
            if let Some(url) = &content.url {
                let duration = content.duration.or(media.duration);
                return Some((
                    url.to_string(),
                    content.content_type.as_ref().map(|t| t.to_string()),
                    duration,
                ));
            }
        }
    }
    let duration = entry.media.iter().find_map(|m| m.duration);
    entry
        .links
        .iter()
        .find(|l| l.rel.as_deref() == Some("enclosure"))
        .map(|l| (l.href.clone(), l.media_type.clone(), duration))
}

/// Parses `body` (RSS or Atom) into the children of `container`.
pub fn parse_feed(
    body: &[u8],
    container: &str,
    limits: &SourceLimits,
) -> Result<ParsedFeed, SourceError> {
    if body.len() > limits.max_body_bytes {
        return Err(SourceError::TooLarge(limits.max_body_bytes));
    }
    if too_deep(body, MAX_FEED_DEPTH) {
        return Err(SourceError::Malformed(format!(
            "elements nested deeper than {MAX_FEED_DEPTH}"
        )));
    }
    // feed-rs is a third-party parser of hostile input: one of its panics (vendor/feed-rs fixes
    // the one fuzzing found) must cost this feed, not the source provider's refresh task.
    let parsed = std::panic::catch_unwind(|| feed_rs::parser::parse(body)).map_err(|_| {
        SourceError::Malformed("the feed parser failed on this body (a parser bug)".into())
    })?;
    let feed = parsed.map_err(|e| SourceError::Malformed(e.to_string()))?;
    let title = feed
        .title
        .as_ref()
        .map(|t| bounded(&t.content, limits.max_title_bytes))
        .filter(|t| !t.is_empty());
    let mut out = ParsedFeed {
        title,
        items: Vec::new(),
        dropped: 0,
        refused: 0,
    };
    let mut seen = std::collections::HashSet::new();
    for entry in &feed.entries {
        let Some((url, media_type, duration)) = enclosure(entry) else {
            out.refused += 1;
            continue;
        };
        let Some(uri) = playable_uri(&url, limits.max_uri_bytes) else {
            out.refused += 1;
            continue;
        };
        // The entry's own id (RSS guid, Atom id; feed-rs derives one when missing), else the URI.
        let key = if entry.id.is_empty() { &uri } else { &entry.id };
        let id = item_id(container, key);
        if !seen.insert(id.clone()) {
            out.refused += 1;
            continue;
        }
        if out.items.len() >= limits.max_entries {
            out.dropped += 1;
            continue;
        }
        let title = entry
            .title
            .as_ref()
            .map(|t| bounded(&t.content, limits.max_title_bytes))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| bounded(&uri, limits.max_title_bytes));
        out.items.push(Item {
            id,
            parent: container.to_owned(),
            title,
            kind: kind_of(media_type.as_deref()),
            uri: Some(uri),
            duration_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            child_count: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `feed` fuzz target found in feed-rs 2.4.0: a duration of 21 digits panicked the
    /// parser. The entry is kept without a duration.
    #[test]
    fn a_duration_out_of_range_is_no_duration_not_a_panic() {
        for duration in [
            "99999999999999999999999:10:01",
            "5124095576030432:00:00",
            "99999999999999999999999",
        ] {
            let body = format!(
                r#"<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>T</title><item><title>E</title><guid>e</guid><enclosure url="https://cdn.example/e.mp3" type="audio/mpeg"/><itunes:duration>{duration}</itunes:duration></item></channel></rss>"#
            );
            let parsed =
                parse_feed(body.as_bytes(), "feed0", &SourceLimits::default()).expect("parses");
            assert_eq!(parsed.items.len(), 1, "{duration}");
            assert_eq!(parsed.items[0].duration_ms, None, "{duration}");
        }
    }

    const RSS: &str = r#"<?xml version="1.0"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
<channel><title>Night Talks</title>
<item><title>Episode 1</title><guid>ep1</guid>
  <enclosure url="https://cdn.example/ep1.mp3" type="audio/mpeg" length="100"/>
  <itunes:duration>01:02:03</itunes:duration>
  <description><![CDATA[<p>hi<br>there</p>]]></description></item>
<item><title>Episode 2 (video)</title><guid>ep2</guid>
  <enclosure url="http://cdn.example/ep2.mp4" type="video/mp4" length="100"/></item>
<item><title>No media</title><guid>ep3</guid></item>
<item><title>Local file</title><guid>ep4</guid>
  <enclosure url="file:///etc/passwd" type="audio/mpeg" length="1"/></item>
</channel></rss>"#;

    const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom Cast</title><id>urn:a</id>
<updated>2026-01-01T00:00:00Z</updated>
<entry><title>Atom one</title><id>urn:a:1</id><updated>2026-01-01T00:00:00Z</updated>
  <link rel="enclosure" href="https://cdn.example/a1.ogg" type="audio/ogg" length="5"/></entry>
<entry><title>Atom two</title><id>urn:a:2</id><updated>2026-01-01T00:00:00Z</updated>
  <link rel="alternate" href="https://example/page"/></entry>
</feed>"#;

    #[test]
    fn rss_entries_map_to_items_with_kind_uri_and_duration() {
        let feed = parse_feed(RSS.as_bytes(), "feed0", &SourceLimits::default()).expect("rss");
        assert_eq!(feed.title.as_deref(), Some("Night Talks"));
        assert_eq!(feed.items.len(), 2);
        assert_eq!(feed.refused, 2, "no enclosure, and a file: URI");
        let one = &feed.items[0];
        assert_eq!(one.title, "Episode 1");
        assert_eq!(one.kind, ItemKind::Audio);
        assert_eq!(one.uri.as_deref(), Some("https://cdn.example/ep1.mp3"));
        assert_eq!(one.duration_ms, Some(3_723_000));
        assert_eq!(one.parent, "feed0");
        assert_eq!(one.id, item_id("feed0", "ep1"));
        assert_eq!(feed.items[1].kind, ItemKind::Video);
        assert_eq!(feed.items[1].duration_ms, None);
        // Ids are stable from one parse to the next.
        let again = parse_feed(RSS.as_bytes(), "feed0", &SourceLimits::default()).expect("rss");
        assert_eq!(again.items, feed.items);
    }

    #[test]
    fn atom_enclosure_links_map_to_items() {
        let feed = parse_feed(ATOM.as_bytes(), "feed1", &SourceLimits::default()).expect("atom");
        assert_eq!(feed.title.as_deref(), Some("Atom Cast"));
        assert_eq!(feed.items.len(), 1);
        assert_eq!(
            feed.items[0].uri.as_deref(),
            Some("https://cdn.example/a1.ogg")
        );
        assert_eq!(feed.items[0].title, "Atom one");
        assert_eq!(feed.refused, 1);
    }

    #[test]
    fn bounds_cut_entries_titles_and_uris() {
        let limits = SourceLimits {
            max_entries: 3,
            max_title_bytes: 10,
            max_uri_bytes: 40,
            ..SourceLimits::default()
        };
        let mut rss = String::from("<rss version='2.0'><channel><title>T</title>");
        for i in 0..10 {
            rss.push_str(&format!(
                "<item><title>Épisode numéro {i}</title><guid>g{i}</guid>\
                 <enclosure url='https://c.example/{i}.mp3' type='audio/mpeg'/></item>"
            ));
        }
        rss.push_str(&format!(
            "<item><guid>long</guid><enclosure url='https://c.example/{}' type='audio/mpeg'/></item>",
            "x".repeat(100)
        ));
        rss.push_str("</channel></rss>");
        let feed = parse_feed(rss.as_bytes(), "f", &limits).expect("parsed");
        assert_eq!(feed.items.len(), 3);
        assert_eq!((feed.dropped, feed.refused), (7, 1));
        assert!(
            feed.items.iter().all(|i| i.title.len() <= 10),
            "{:?}",
            feed.items
        );
        assert_eq!(feed.items[0].title, "Épisode n");
        assert_eq!(bounded(" ééé ", 3), "é", "cut on a character boundary");
    }

    #[test]
    fn malformed_deep_and_oversized_feeds_are_typed_errors() {
        let limits = SourceLimits::default();
        for bad in [
            "not xml at all",
            "<rss><channel><item>",
            "<html><body>hi</body></html>",
        ] {
            let e = parse_feed(bad.as_bytes(), "f", &limits).expect_err(bad);
            assert!(matches!(e, SourceError::Malformed(_)), "{bad}: {e:?}");
        }
        let deep = "<a>".repeat(10_000);
        let e = parse_feed(deep.as_bytes(), "f", &limits).expect_err("deep");
        assert!(matches!(e, SourceError::Malformed(_)), "{e:?}");
        let small = SourceLimits {
            max_body_bytes: 10,
            ..SourceLimits::default()
        };
        let e = parse_feed(RSS.as_bytes(), "f", &small).expect_err("large");
        assert_eq!(e, SourceError::TooLarge(10));
        // HTML in CDATA and comments does not count as nesting.
        let html = format!(
            "<rss version='2.0'><channel><title>T</title><!-- {} --><description><![CDATA[{}]]></description></channel></rss>",
            "<a>".repeat(100),
            "<br>".repeat(1000)
        );
        assert!(parse_feed(html.as_bytes(), "f", &limits).is_ok());
    }

    #[test]
    fn only_bounded_http_uris_are_playable() {
        assert_eq!(
            playable_uri(" https://a/b ", 100).as_deref(),
            Some("https://a/b")
        );
        assert!(playable_uri("HTTP://a/b", 100).is_some());
        for bad in [
            "file:///x",
            "edl://x",
            "av://lavfi:x",
            "ftp://a",
            "",
            "https",
        ] {
            assert_eq!(playable_uri(bad, 100), None, "{bad}");
        }
        assert_eq!(playable_uri("https://a/bcdef", 10), None);
    }
}
