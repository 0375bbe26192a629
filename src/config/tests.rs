use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<(Settings, Vec<String>)> {
    Settings::from_vars(vars(pairs))
}

#[test]
fn values_are_parsed_into_their_types() {
    let (s, unknown) = settings(&[
        ("AION_WEBHOOKS_MAX_IN_FLIGHT", "64"),
        ("AION_WEBHOOKS_WORKERS", "off"),
        ("AION_WEBHOOKS_SOURCES", "1"),
        ("AION_WEBHOOKS_CONSOLE_SECURE_COOKIE", "Always"),
        ("AION_WEBHOOKS_SQLITE_SYNCHRONOUS", "normal"),
        ("AION_WEBHOOKS_LOG", "debug"),
        ("DATABASE_URL", "postgres://elsewhere"),
    ])
    .expect("valid");
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(s.max_in_flight, Some(64));
    assert_eq!((s.workers, s.sources), (Some(false), Some(true)));
    assert_eq!(s.console_secure_cookie, Some(SecureCookie::Always));
    assert_eq!(s.sqlite_synchronous.as_deref(), Some("normal"));
    assert_eq!(s.log.as_deref(), Some("debug"));
}

#[test]
fn a_malformed_value_is_refused_naming_the_variable() {
    for (name, value, expected) in [
        ("AION_WEBHOOKS_MAX_IN_FLIGHT", "lots", "a whole number"),
        ("AION_WEBHOOKS_POLL_INTERVAL_MS", "-5", "a whole number"),
        ("AION_WEBHOOKS_WATCH_POLICY", "maybe", "on or off"),
        (
            "AION_WEBHOOKS_CONSOLE_SECURE_COOKIE",
            "sometimes",
            "one of auto, always, never",
        ),
        ("AION_WEBHOOKS_LOG_FORMAT", "xml", "one of text, json"),
    ] {
        let e = settings(&[(name, value)]).expect_err(name).to_string();
        assert!(
            e.contains(name) && e.contains(value) && e.contains(expected),
            "{e}"
        );
    }
}

/// A misspelt name (split, so that the docs test does not take it for a
/// variable the engine reads).
const TYPO: &str = concat!("AION_WEBHOOKS", "_MAX_IN_FLIHGT");

#[test]
fn an_empty_value_counts_as_unset_and_big_numbers_are_capped() {
    let (s, _) = settings(&[
        ("AION_WEBHOOKS_WORKERS", ""),
        ("AION_WEBHOOKS_MAX_IN_FLIGHT", " "),
        ("AION_WEBHOOKS_DB_MAX_CONNECTIONS", "99999999999"),
    ])
    .expect("valid");
    assert_eq!((s.workers, s.max_in_flight), (None, None));
    let c = Config::with("db".into(), "l".into(), "p".into(), s, None);
    assert!(c.run_workers);
    assert_eq!(c.db_max_connections, u32::MAX);
}

#[test]
fn an_unknown_variable_is_reported_not_fatal() {
    let (s, unknown) =
        settings(&[(TYPO, "64"), ("AION_WEBHOOKS_INGEST_WRITERS", "3")]).expect("valid");
    assert_eq!(unknown, [TYPO]);
    assert_eq!(s.ingest_writers, Some(3));
}

#[test]
fn every_documented_variable_is_a_setting() {
    let doc = include_str!("../../docs/src/reference/configuration.md");
    let mut names: Vec<&str> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("AION_WEBHOOKS_") && w.len() > "AION_WEBHOOKS_".len())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 25, "{names:?}");
    for name in names {
        // A known typed setting may refuse "1"; then the refusal names it.
        match settings(&[(name, "1")]) {
            Ok((_, unknown)) => assert!(unknown.is_empty(), "{name} is not a setting"),
            Err(e) => assert!(e.to_string().contains(name), "{e}"),
        }
    }
}

#[test]
fn settings_reach_the_config_within_their_bounds() {
    let (s, _) = settings(&[
        ("AION_WEBHOOKS_MAX_IN_FLIGHT", "0"),
        ("AION_WEBHOOKS_INITIAL_IN_FLIGHT", "4"),
        ("AION_WEBHOOKS_DB_MAX_CONNECTIONS", "1"),
        ("AION_WEBHOOKS_INGEST_WRITERS", "500"),
        ("AION_WEBHOOKS_CLAIM_DEBOUNCE_MS", "99999"),
        ("AION_WEBHOOKS_HTTP_MAX_HEADERS", "2"),
        ("AION_WEBHOOKS_CONSOLE_IDLE_SECS", "60"),
        ("AION_WEBHOOKS_WATCH_POLICY", "false"),
    ])
    .expect("valid");
    let c = Config::with("db".into(), "l".into(), "p".into(), s, None);
    assert_eq!(c.worker.max_in_flight, 1);
    assert_eq!(c.worker.initial_in_flight, 4);
    assert_eq!(c.db_max_connections, 2);
    assert_eq!(c.ingest_writers, 64);
    assert_eq!(c.worker.claim_debounce, Duration::from_millis(1000));
    assert_eq!(c.server.max_headers, 8);
    assert_eq!(c.console.sessions.idle, Duration::from_secs(60));
    assert!(!c.watch_policy && c.run_workers && c.run_sources);
    let d = Config::with(
        "db".into(),
        "l".into(),
        "p".into(),
        Settings::default(),
        None,
    );
    assert_eq!(
        d.worker.max_in_flight,
        WorkerConfig::default().max_in_flight
    );
    assert_eq!((d.db_max_connections, d.ingest_writers), (16, 2));
}
