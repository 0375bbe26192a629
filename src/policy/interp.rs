//! `${NAME}` interpolation in policy string values. The lookup is a
//! parameter so tests (and `policy check` against another environment) do
//! not depend on the process environment.

/// Replaces every `${NAME}` in `text` by `lookup(NAME)`, and `${NAME:-text}`
/// by `text` when NAME is unset or empty (shell and Compose semantics, so the
/// shipped example policy validates on a machine with no secrets set).
/// `$${` is a literal `${`. A missing variable without a default, or a
/// malformed reference, is an error that names it.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                "unterminated `${`; write `${NAME}` or `$${` for a literal".to_owned()
            })?;
            let (name, default) = match after[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&after[..end], None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                // Not echoed: the text may be part of a literal secret.
                let at = text[..text.len() - tail.len()].chars().count() + 1;
                return Err(format!(
                    "the `${{…}}` at character {at} is not a valid variable reference; names are [A-Za-z_][A-Za-z0-9_]*, and `$${{` is a literal `${{`"
                ));
            }
            let value = match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references_anywhere_in_the_value() {
        assert_eq!(
            interpolate("x-${A}-${A}", &env).as_deref(),
            Ok("x-alpha-alpha")
        );
        assert_eq!(interpolate("${EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(interpolate("no refs", &env).as_deref(), Ok("no refs"));
        assert_eq!(interpolate("cost $5", &env).as_deref(), Ok("cost $5"));
        assert_eq!(interpolate("$${A}", &env).as_deref(), Ok("${A}"));
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(interpolate("${NOPE:-dev}", &env).as_deref(), Ok("dev"));
        assert_eq!(interpolate("${EMPTY:-dev}", &env).as_deref(), Ok("dev"));
        assert_eq!(interpolate("${A:-dev}", &env).as_deref(), Ok("alpha"));
        assert_eq!(interpolate("${NOPE:-}", &env).as_deref(), Ok(""));
    }

    #[test]
    fn missing_variable_is_named_in_the_error() {
        let err = interpolate("${NOPE_SECRET}", &env).unwrap_err();
        assert!(err.contains("NOPE_SECRET"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(interpolate("${A", &env).is_err());
        assert!(interpolate("${1A}", &env).is_err());
        assert!(interpolate("${}", &env).is_err());
        assert!(interpolate("${A B}", &env).is_err());
    }

    #[test]
    fn a_malformed_reference_is_placed_not_echoed() {
        // The text may be a literal secret that happens to hold `${`.
        let err = interpolate("tok-é${s3cr-3t}x", &env).unwrap_err();
        assert!(err.contains("character 6"), "{err}");
        assert!(!err.contains("s3cr"), "{err}");
    }
}
