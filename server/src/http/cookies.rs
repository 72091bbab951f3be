//! The `Cookie` headers made unambiguous before the session layer reads
//! them.
//!
//! The session layer (tower-cookies) percent-decodes cookie names, trims
//! Unicode whitespace off them, reads only `Cookie` headers that are UTF-8
//! and keeps the last cookie of a name. A browser knows none of that: a
//! sibling subdomain may set `%5F%5FHost-xene_session` (for the browser not
//! a `__Host-` cookie, so allowed) and the layer would read it as ours. So
//! this layer, in front of the session layer, passes on one `Cookie` header
//! holding only cookies whose names are plain visible ASCII without `%`
//! (read by everyone the same way), and when the request carries more than
//! one cookie that is or decodes to the session cookie's name, it passes
//! none of them and marks the request, so the guard refuses it instead of
//! guessing which one is the user's.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// In a request's extensions: it carried more than one session cookie.
#[derive(Debug, Clone, Copy)]
pub struct TwoSessionCookies;

/// Rewrites the `Cookie` headers (see the module docs).
pub async fn clean_cookies(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.headers().contains_key(header::COOKIE) {
        let cleaned = clean(req.headers(), state.access.session_cookie());
        let headers = req.headers_mut();
        headers.remove(header::COOKIE);
        if let Some(value) = cleaned.header {
            headers.insert(header::COOKIE, value);
        }
        if cleaned.two_sessions {
            req.extensions_mut().insert(TwoSessionCookies);
        }
    }
    next.run(req).await
}

#[derive(Debug)]
struct Cleaned {
    /// The one `Cookie` header to pass on, if any cookie is left.
    header: Option<HeaderValue>,
    two_sessions: bool,
}

fn clean(headers: &HeaderMap, session: &str) -> Cleaned {
    let mut kept: Vec<(&[u8], &[u8])> = Vec::new();
    let mut sessions = 0usize;
    for value in headers.get_all(header::COOKIE) {
        let bytes = value.as_bytes();
        // What is not UTF-8 the session layer skips whole: so do we, but a
        // session cookie in it still counts.
        let utf8 = std::str::from_utf8(bytes).is_ok();
        for pair in bytes.split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let name = pair[..eq].trim_ascii();
            let plain = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() && *b != b'%');
            if plain && name == session.as_bytes() || !plain && decodes_to(name, session) {
                sessions += 1;
            }
            if utf8 && plain {
                kept.push((name, pair[eq + 1..].trim_ascii()));
            }
        }
    }
    let two_sessions = sessions > 1;
    if two_sessions {
        kept.retain(|(name, _)| *name != session.as_bytes());
    }
    let mut joined = Vec::new();
    for (name, value) in kept {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(name);
        joined.push(b'=');
        joined.extend_from_slice(value);
    }
    Cleaned {
        // Made of bytes of valid header values, so valid itself.
        header: (!joined.is_empty())
            .then(|| HeaderValue::from_bytes(&joined).ok())
            .flatten(),
        two_sessions,
    }
}

/// Whether a cookie name reads as `session` once percent-decoded and
/// trimmed, as the session layer reads names.
fn decodes_to(name: &[u8], session: &str) -> bool {
    let mut decoded = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let hex = name
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (name[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok_and(|text| text.trim() == session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean_of(values: &[&[u8]]) -> (Option<String>, bool) {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        let cleaned = clean(&headers, "xene_session");
        let header = cleaned
            .header
            .map(|h| String::from_utf8(h.as_bytes().to_vec()).unwrap());
        (header, cleaned.two_sessions)
    }

    #[test]
    fn plain_cookies_pass_and_headers_are_joined() {
        assert_eq!(
            clean_of(&[b"a=1; xene_session=s", b" b = 2 "]),
            (Some("a=1; xene_session=s; b=2".into()), false)
        );
        assert_eq!(clean_of(&[b"novalue; ;="]), (None, false));
    }

    #[test]
    fn encoded_and_odd_names_never_reach_the_session_layer() {
        // Alone: dropped, so no session.
        for planted in [
            "xene%5Fsession=x",
            "%78ene_session=x",
            "xene_session%20=x",
            "\u{a0}xene_session=x",
        ] {
            assert_eq!(clean_of(&[planted.as_bytes()]), (None, false), "{planted}");
            // Beside the real one: two session cookies.
            let both = format!("xene_session=real; {planted}");
            assert_eq!(clean_of(&[both.as_bytes()]), (None, true), "{planted}");
        }
        // Other names with % just go.
        assert_eq!(
            clean_of(&[b"AMCV_X%40Adobe=1; xene_session=s"]),
            (Some("xene_session=s".into()), false)
        );
    }

    #[test]
    fn two_session_cookies_are_marked_and_neither_passes() {
        assert_eq!(
            clean_of(&[b"xene_session=a; t=1", b"xene_session=b"]),
            (Some("t=1".into()), true)
        );
        // Non-ASCII UTF-8 is read, as the session layer reads it.
        assert_eq!(
            clean_of(&["xene_session=a; x=\u{e9}; xene_session=b".as_bytes()]),
            (Some("x=\u{e9}".into()), true)
        );
        // A header that is not UTF-8 is dropped, its session cookie counted.
        assert_eq!(
            clean_of(&[b"xene_session=a", b"x=\xff; xene_session=b"]),
            (None, true)
        );
        assert_eq!(
            clean_of(&[b"xene_session=a", b"x=\xff"]),
            (Some("xene_session=a".into()), false)
        );
    }
}
