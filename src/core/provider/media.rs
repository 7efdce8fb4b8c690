//! Which media URIs a caller may make the player open (`player.play`, `player.enqueue`).
//!
//! A URI is an instruction to the TV's media stack: `file:///…` reads the TV's disk, `http://` a
//! LAN address reaches devices behind the home router, and mpv's pseudo-protocols (`edl://`,
//! `av://lavfi:…`, `memory://`, `fd://`, `subfile://`, …) read descriptors, synthesise streams or
//! splice other files. So:
//!
//! - a **guest** may play only the item shared with it — a [`SharedItem`] URI naming an item of a
//!   library of its own network (the film it brought: the TV fetches it through the tunnel, and
//!   that library serves the TV nothing but what it shared), or the one item of this network its
//!   `library-item` grant names — or a URI whose scheme the owner allowed
//!   ([`MediaPolicy::guest_schemes`], empty by default);
//! - an **own device** may play any URI the player supports, except mpv's pseudo-protocols
//!   ([`MPV_PSEUDO_PROTOCOLS`]) unless the owner allowed one ([`MediaPolicy::pseudo_protocols`]).
//!
//! The decision itself is a row of [`super::policy`]; this module only reads URIs.

use xmpp_parsers::jid::FullJid;

/// mpv's protocols that are not a place to read media from, but a way to make mpv read
/// descriptors, memory, synthesised or spliced streams, or run a helper: those of the mpv manual's
/// "PROTOCOLS" section (`ytdl`, `mf`, `lavf`/`ffmpeg`, `av`/`avdevice`, `appending`, `fd`,
/// `fdclose`, `edl`, `slice`, `null`, `memory`, `hex`), plus the libavformat protocols that `lavf`
/// would reach (`lavfi`, `subfile`, `concat`, `concatf`, `pipe`, `data`, `crypto`, `cache`,
/// `async`, `tee`) and libarchive's `archive`. Network and disc protocols (`http`, `smb`, `dvd`,
/// …) are not among them. Refused to everyone unless configured.
pub const MPV_PSEUDO_PROTOCOLS: &[&str] = &[
    "edl",
    "av",
    "avdevice",
    "lavf",
    "ffmpeg",
    "lavfi",
    "memory",
    "hex",
    "fd",
    "fdclose",
    "subfile",
    "slice",
    "null",
    "mf",
    "appending",
    "ytdl",
    "archive",
    "concat",
    "concatf",
    "pipe",
    "data",
    "crypto",
    "cache",
    "async",
    "tee",
];

/// The owner's media policy for this provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaPolicy {
    /// URI schemes (lowercase, e.g. `"https"`) a guest may play besides the item shared with it.
    /// Default: none.
    pub guest_schemes: Vec<String>,
    /// Entries of [`MPV_PSEUDO_PROTOCOLS`] that callers may use after all (own devices; guests
    /// also need the scheme in [`MediaPolicy::guest_schemes`]). Default: none.
    pub pseudo_protocols: Vec<String>,
}

/// How a URI names a library item: `xmpp:<library full JID>?pmn-item;id=<percent-encoded id>`
/// (an XMPP URI, RFC 5122, with a query type of our own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedItem {
    /// The library that holds it.
    pub library: FullJid,
    /// The item's id in that library.
    pub id: String,
}

/// The URI of item `id` of `library` (what a guest app passes to `player.play`).
pub fn shared_item_uri(library: &FullJid, id: &str) -> String {
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("xmpp:{library}?pmn-item;id={encoded}")
}

impl SharedItem {
    /// Reads a [`shared_item_uri`]; `None` for anything else (or a malformed one).
    pub fn parse(uri: &str) -> Option<SharedItem> {
        let rest = uri.strip_prefix("xmpp:")?;
        let (jid, query) = rest.split_once('?')?;
        let id = query.strip_prefix("pmn-item;id=")?;
        let library = jid.parse::<FullJid>().ok()?;
        let id = percent_decode(id)?;
        if id.is_empty() {
            return None;
        }
        Some(SharedItem { library, id })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            // A separator or space inside the id would make the URI mean two things.
            b';' | b'&' | b'?' | b'#' | b' ' => return None,
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// The scheme of `uri`, lowercase (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`,
/// before the first `:`); `None` for something without one (a bare path, `-` for stdin).
pub(crate) fn scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some(scheme.to_ascii_lowercase())
}

impl MediaPolicy {
    /// Whether `uri` reaches one of mpv's pseudo-protocols the owner did not allow. A URI with no
    /// scheme is a path for mpv (or `-`, stdin): not a pseudo-protocol, but never a guest's.
    pub(crate) fn is_forbidden_pseudo(&self, uri: &str) -> bool {
        // Leading blanks or control characters must not hide a scheme from this check, whatever
        // the player later makes of them.
        let uri = uri.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
        let Some(scheme) = scheme(uri) else {
            return uri.trim() == "-" && !self.pseudo_protocols.iter().any(|p| p == "-");
        };
        MPV_PSEUDO_PROTOCOLS.contains(&scheme.as_str())
            && !self
                .pseudo_protocols
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&scheme))
    }

    /// Whether the owner lets guests play URIs of `uri`'s scheme.
    pub(crate) fn guest_scheme_allowed(&self, uri: &str) -> bool {
        scheme(uri).is_some_and(|s| {
            self.guest_schemes
                .iter()
                .any(|g| g.eq_ignore_ascii_case(&s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_item_uris_round_trip_and_junk_is_not_one() {
        let nas: FullJid = "romeo@friend.test/nas".parse().expect("jid");
        for id in ["videos/7", "a b;c&d?e#f%", "é"] {
            let uri = shared_item_uri(&nas, id);
            assert_eq!(
                SharedItem::parse(&uri),
                Some(SharedItem {
                    library: nas.clone(),
                    id: id.to_owned()
                }),
                "{uri}"
            );
        }
        for junk in [
            "xmpp:romeo@friend.test?pmn-item;id=x",
            "xmpp:romeo@friend.test/nas?pmn-item;id=",
            "xmpp:romeo@friend.test/nas?message;body=x",
            "xmpp:romeo@friend.test/nas?pmn-item;id=a;b",
            "xmpp:romeo@friend.test/nas?pmn-item;id=%zz",
            "file:///etc/passwd",
        ] {
            assert_eq!(SharedItem::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn schemes_and_pseudo_protocols() {
        let policy = MediaPolicy::default();
        assert_eq!(scheme("HTTPS://x").as_deref(), Some("https"));
        assert_eq!(scheme("/media/a.mkv"), None);
        assert_eq!(scheme("-"), None);
        for uri in [
            "edl://a;b",
            "av://lavfi:sine",
            "AV://lavfi:sine",
            "memory://abc",
            "fd://3",
            "fdclose://3",
            "subfile://x",
            "slice://0-1@file:///x",
            "null://",
            "mf://*.jpg",
            "appending://x",
            "ytdl://x",
            "-",
            " edl://x",
            "\t\nav://lavfi:sine",
        ] {
            assert!(policy.is_forbidden_pseudo(uri), "{uri}");
        }
        for uri in ["file:///a.mkv", "https://x/y", "/media/a.mkv", "dvd://1"] {
            assert!(!policy.is_forbidden_pseudo(uri), "{uri}");
        }
        let lenient = MediaPolicy {
            pseudo_protocols: vec!["av".into()],
            guest_schemes: vec!["https".into()],
        };
        assert!(!lenient.is_forbidden_pseudo("av://lavfi:sine"));
        assert!(lenient.is_forbidden_pseudo("edl://x"));
        assert!(lenient.guest_scheme_allowed("HTTPS://x"));
        assert!(!lenient.guest_scheme_allowed("http://192.168.1.1/"));
        assert!(!policy.guest_scheme_allowed("https://x"));
    }
}
