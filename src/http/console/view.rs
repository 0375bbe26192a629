//! What every console page shares: the frame (navigation, the signed-in
//! actor, the CSRF token for its forms, a flash message), the error page,
//! and small formatting helpers. Templates escape every value they print.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::operator::Operator;
use super::session::Flash;

/// The frame of a signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Which navigation entry is this page's.
    pub nav: &'static str,
    pub actor: String,
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl Chrome {
    pub fn of(operator: &Operator, nav: &'static str) -> Self {
        Self {
            nav,
            actor: operator.caller.actor_id.clone(),
            csrf: operator.csrf.clone(),
            flash: operator.flash.clone(),
        }
    }

    /// A time, for the templates.
    pub fn t(&self, at: &DateTime<Utc>) -> String {
        when(at)
    }

    /// An optional time, for the templates.
    pub fn topt(&self, at: &Option<DateTime<Utc>>) -> String {
        when_opt(at)
    }

    /// A ratio as a percentage, for the templates.
    pub fn pct(&self, ratio: &Option<f64>) -> String {
        percent(*ratio)
    }

    /// The navigation, as (path, label, current).
    pub fn entries(&self) -> [(&'static str, &'static str, bool); 7] {
        let e = |path, label, key: &str| (path, label, self.nav == key);
        [
            e("/console", "Overview", "overview"),
            e("/console/webhooks", "Webhooks", "webhooks"),
            e("/console/deliveries", "Deliveries", "deliveries"),
            e("/console/dead", "Dead letters", "dead"),
            e("/console/sources", "Sources", "sources"),
            e("/console/policy", "Policy", "policy"),
            e("/console/audit", "Audit log", "audit"),
        ]
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    errors: &'a [String],
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, message: &str, errors: &[String]) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
        errors,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, "error").into_response(),
    }
}

/// Renders a page template.
pub fn render(page: &impl Template) -> Result<Response, super::ConsoleError> {
    Ok(Html(page.render()?).into_response())
}

/// `next` if it is a path of the console, else the overview: a sign-in
/// link can never send the operator elsewhere.
pub fn local_path(next: &str) -> &str {
    let ok = next.starts_with("/console")
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic());
    if ok { next } else { "/console" }
}

/// Percent-encodes a query value.
pub fn query_escape(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s[2..].to_owned())
        .unwrap_or_default()
}

/// Percent-encodes one path segment (every byte but `A-Z a-z 0-9 - . _ ~`).
pub fn path_escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string of the non-empty `pairs`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// `json` (valid JSON, as stored) indented for reading, every token kept
/// byte for byte: keys in their order, numbers as written, duplicates
/// kept. Only whitespace between tokens changes.
pub fn indent_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|n| n.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A time as the console shows it (UTC, to the second).
pub fn when(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional time, or a dash.
pub fn when_opt(at: &Option<DateTime<Utc>>) -> String {
    at.as_ref().map_or_else(|| "—".to_owned(), when)
}

/// A ratio as a percentage, or a dash.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_returns_to_the_console() {
        assert_eq!(
            local_path("/console/dead?webhook=a"),
            "/console/dead?webhook=a"
        );
        assert_eq!(local_path("https://evil.example/"), "/console");
        assert_eq!(local_path("//evil.example/console"), "/console");
        assert_eq!(local_path("/consolex/\\evil"), "/console");
        assert_eq!(local_path("/console\n/x"), "/console");
    }

    #[test]
    fn a_payload_is_indented_but_never_changed() {
        let raw = r#"{"z":1,"a":[1.10, 18446744073709551617,{}],"a":"x\\\"{,:}","e":[] }"#;
        let shown = indent_json(raw);
        assert_eq!(
            shown,
            "{\n  \"z\": 1,\n  \"a\": [\n    1.10,\n    18446744073709551617,\n    {}\n  ],\n  \"a\": \"x\\\\\\\"{,:}\",\n  \"e\": []\n}"
        );
        let squeeze = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(squeeze(&shown), squeeze(raw), "only whitespace differs");
        assert_eq!(indent_json("42"), "42");
    }

    #[test]
    fn queries_are_escaped_and_skip_empty_values() {
        assert_eq!(query_escape("a&b=c d"), "a%26b%3Dc+d");
        assert_eq!(query(&[("a", "1"), ("b", ""), ("c", "x y")]), "a=1&c=x+y");
        assert_eq!(path_escape("evt_1 /?#<"), "evt_1%20%2F%3F%23%3C");
    }
}
