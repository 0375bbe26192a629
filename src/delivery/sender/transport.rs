//! What the transport said about one attempt: the response body, read up
//! to a cap, and a failure's kind and text (with its cause chain, and no
//! URL path: it may hold a credential).

use std::error::Error as StdError;

use super::{ErrorKind, MAX_RESPONSE_BODY};
use crate::delivery::ssrf::is_blocked_destination;
use crate::domain::redact::url_origin;

/// Reads into `buf` until it holds [`MAX_RESPONSE_BODY`] bytes or the body
/// ends. Writes through `buf` so the caller keeps partial data if this is
/// cancelled by the deadline.
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    buf: &mut Vec<u8>,
) -> reqwest::Result<()> {
    while buf.len() < MAX_RESPONSE_BODY {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = MAX_RESPONSE_BODY - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(())
}

/// Lossy UTF-8 of at most [`MAX_RESPONSE_BODY`] bytes: a character cut in
/// half by the cap is dropped rather than turned into U+FFFD, and the result
/// is re-trimmed because replacement characters are longer than the bytes
/// they replace.
pub(super) fn lossy_capped(bytes: &[u8]) -> String {
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > MAX_RESPONSE_BODY {
        let mut end = MAX_RESPONSE_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Credentials shorter than this are not scrubbed from response bodies:
/// they are not credentials in practice, and hiding every `1` or `ok` would
/// garble the body.
const SCRUBBED_FROM: usize = 8;

/// `body` with every static header value of `webhook` and every OAuth2
/// token in `tokens` replaced by `***`, and the credential of an `<scheme>
/// <credential>` value (`Bearer …`) on its own too: a receiver or gateway
/// that echoes the request's headers in an error page must not put a
/// partner's token into the attempt record, the admin API and the console.
pub(super) fn scrub_credentials(
    mut body: String,
    webhook: &crate::policy::Webhook,
    tokens: &[crate::domain::Secret],
) -> String {
    let values = webhook.headers.iter().map(|(_, v)| v).chain(tokens);
    for value in values {
        let value = value.expose();
        let credential = value.rsplit_once(' ').map(|(_, c)| c);
        for secret in std::iter::once(value).chain(credential) {
            if secret.len() >= SCRUBBED_FROM && body.contains(secret) {
                body = body.replace(secret, "***");
            }
        }
    }
    body
}

/// Maps a transport error to a kind and a message with its whole cause
/// chain (reqwest's top-level text alone is just "error sending request").
/// The URL is dropped from reqwest's text and only its origin named: a
/// webhook URL's path or query may hold a credential (Slack-style
/// `/services/T…/B…/token`), and this text reaches `last_error`, the
/// `endpoint.disabled` event another receiver gets, spans and logs.
pub(super) fn classify(err: reqwest::Error, url: &url::Url) -> (ErrorKind, String) {
    let err = err.without_url();
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if is_blocked_destination(&err) {
        // Checked before `is_connect`: a refused resolution is also a
        // connect error, but the attempt record must say why.
        ErrorKind::BlockedDestination
    } else if err.is_connect() {
        ErrorKind::Connect
    } else {
        response_error_kind(&err)
    };
    let mut message = format!("{err} to {}", url_origin(url));
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    (kind, message)
}

/// What broke a response after the connection was made, from the cause
/// chain: a malformed or oversized head, or a close or reset.
pub(super) fn response_error_kind(err: &reqwest::Error) -> ErrorKind {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_too_large() || h.is_parse_status() {
                return ErrorKind::Protocol;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return ErrorKind::ConnectionClosed;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return ErrorKind::ConnectionClosed;
        }
        source = cause.source();
    }
    ErrorKind::Other
}
