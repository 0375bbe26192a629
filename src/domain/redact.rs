//! How outside-supplied and secret-bearing text is shown: URLs reduced to
//! what names a place without granting access (a Slack-style webhook keeps
//! its token in the path, a NATS URL its password in the userinfo), and
//! control characters escaped before text reaches a terminal. Pure.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `scheme://host[:port]` of `url`, with `/…` after it when the URL had a
/// path beyond `/` or a query: no userinfo, path or query ever appears, so
/// the text may go into errors, events, spans, logs and API answers.
pub fn url_origin(url: &url::Url) -> String {
    if url.cannot_be_a_base() || url.host().is_none() {
        return format!("{}:…", url.scheme());
    }
    let mut out = format!("{}://", url.scheme());
    match url.host() {
        Some(url::Host::Ipv6(v6)) => {
            let _ = write!(out, "[{v6}]");
        }
        Some(host) => {
            let _ = write!(out, "{host}");
        }
        None => {}
    }
    if let Some(port) = url.port() {
        let _ = write!(out, ":{port}");
    }
    if url.path().len() > 1 || url.query().is_some() || url.fragment().is_some() {
        out.push_str("/…");
    }
    out
}

/// [`url_origin`] of `text` when it parses as an absolute URL; otherwise
/// everything up to the first `/`, `?` or `@` after the scheme, which never
/// holds a path, query or userinfo either.
pub fn text_url_origin(text: &str) -> String {
    if let Ok(url) = url::Url::parse(text) {
        return url_origin(&url);
    }
    if text.starts_with('/') {
        // A relative reference (a redirect's `Location: /path`): its path
        // is as secret as any.
        return "/…".to_owned();
    }
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host: String = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .chars()
        .take(255)
        .collect();
    let more = if end < rest.len() { "/…" } else { "" };
    if scheme.is_empty() {
        format!("{host}{more}")
    } else {
        format!("{scheme}://{host}{more}")
    }
}

/// Whether `text` (one URL, or a comma-separated list of them as NATS
/// takes) names a user or a password in any of its URLs.
pub fn has_userinfo(text: &str) -> bool {
    text.split(',').any(|one| {
        let one = one.trim();
        match url::Url::parse(one) {
            Ok(url) => !url.username().is_empty() || url.password().is_some(),
            // Not a URL we can read: any `@` before the path counts.
            Err(_) => one
                .split_once("://")
                .map_or(one, |(_, rest)| rest)
                .split('/')
                .next()
                .is_some_and(|authority| authority.contains('@')),
        }
    })
}

/// Each URL of a comma-separated list as [`text_url_origin`] shows it.
pub fn url_list_origins(text: &str) -> String {
    text.split(',')
        .map(|one| text_url_origin(one.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` with the userinfo of every `scheme://user:pass@host` in it cut
/// out: for messages written by libraries (a client's connect error, a
/// broker library's log line) that may repeat the address they were given.
pub fn strip_userinfo_in(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ',')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***@");
                rest = &tail[userinfo_end + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `text` with every control character (C0, DEL, C1 — ESC, BEL, CR, the CSI
/// introducer U+009B …) written as an escape (`\e`, `\n`, `\u{9b}`), so text
/// from outside cannot move the cursor, recolour, retitle or clear an
/// operator's terminal, nor break a table's line. Borrowed when clean.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> String {
        url_origin(&url::Url::parse(text).expect("url"))
    }

    #[test]
    fn a_url_shows_its_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            origin("http://u:p@127.0.0.1:8080/hook?token=abc"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(origin("https://example.com"), "https://example.com");
        assert_eq!(origin("https://example.com/"), "https://example.com");
        assert_eq!(origin("https://example.com/?t=1"), "https://example.com/…");
        assert_eq!(origin("http://[::1]:9/x"), "http://[::1]:9/…");
        assert_eq!(
            origin("nats://user:pass@nats.local:4222"),
            "nats://nats.local:4222"
        );
    }

    #[test]
    fn text_that_is_no_url_loses_userinfo_and_path_too() {
        assert_eq!(
            text_url_origin("nats://a:b@host:4222/x"),
            "nats://host:4222/…"
        );
        assert_eq!(text_url_origin("weird://a:b@h@st/x?y"), "weird://st/…");
        assert_eq!(text_url_origin("host:1/secret"), "host:…");
        assert_eq!(text_url_origin("::bad::/secret@x"), "::bad::/…");
        assert_eq!(text_url_origin("/services/T/B/token"), "/…");
    }

    #[test]
    fn userinfo_is_found_in_each_url_of_a_list() {
        assert!(has_userinfo("nats://user:pass@h:4222"));
        assert!(has_userinfo("nats://token@h:4222"));
        assert!(has_userinfo("nats://a:4222, nats://u:p@b:4222"));
        assert!(has_userinfo("tls://u:p@[::1"));
        assert!(!has_userinfo("nats://h:4222,tls://b:4223"));
        assert!(!has_userinfo("nats://h:4222/a@b"));
        assert_eq!(
            url_list_origins("nats://u:p@a:1,nats://b:2"),
            "nats://a:1,nats://b:2"
        );
    }

    #[test]
    fn userinfo_inside_a_message_is_cut_out() {
        assert_eq!(
            strip_userinfo_in("failed: nats://alice:pw@h:4222, tls://t0k@b:1/x ok"),
            "failed: nats://***@h:4222, tls://***@b:1/x ok"
        );
        assert_eq!(
            strip_userinfo_in("mail a@b, see http://h/p@q"),
            "mail a@b, see http://h/p@q"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_clean_text_is_borrowed() {
        assert_eq!(
            escape_controls("a\u{1b}]0;pwned\u{7}b\u{1b}[31mred\u{9b}2J\r\n\t\u{7f}"),
            "a\\e]0;pwned\\u{7}b\\e[31mred\\u{9b}2J\\r\\n\\t\\u{7f}"
        );
        assert!(matches!(escape_controls("plain é ✓"), Cow::Borrowed(_)));
    }
}
